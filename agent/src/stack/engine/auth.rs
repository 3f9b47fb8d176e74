//! Registry credentials for pulls, from Docker's own `config.json`
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): the
//! `auths` entry of the image's registry, as `docker login` writes it.
//!
//! Invariants:
//! - credentials are never logged or put in an error: messages name the
//!   file and the registry only;
//! - no `config.json`, or no entry for the registry, means an anonymous pull
//!   (the registry's refusal is then the error the operator sees);
//! - credential helpers (`credsStore`, `credHelpers`) are not run: rehost
//!   starts no other program; a warning says so when one would apply.

use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

/// The registry host of an image reference, as Docker decides it: the
/// first path component when it has a `.` or a `:` or is `localhost`,
/// otherwise Docker Hub.
pub(crate) fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The `config.json` rehost reads, from `env` (`DOCKER_CONFIG`, `HOME`).
pub(crate) fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => env("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The key of `auths` as a bare host: `https://host:5000/v1/` → `host:5000`.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn same_registry(key: &str, registry: &str) -> bool {
    let host = host_of(key);
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    host == registry || (hub(host) && hub(registry))
}

/// Credentials for `image` from the `config.json` at `path`, if it has some.
pub(crate) fn credentials(
    path: Option<&std::path::Path>,
    image: &str,
) -> anyhow::Result<Option<DockerCredentials>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    // serde_json's message names a line and column, never the value.
    let config: ConfigFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a Docker config.json", path.display()))?;
    let registry = registry_of(image);
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| same_registry(key, registry))
        .map(|(_, e)| e);
    let Some(entry) = entry else {
        let helper = config
            .cred_helpers
            .iter()
            .any(|(k, _)| same_registry(k, registry))
            || config.creds_store.is_some();
        if helper {
            tracing::warn!(
                registry,
                config = %path.display(),
                "credential helpers are not run by rehost; pulling anonymously (put the registry's credentials under `auths`, as `docker login` does without a helper)"
            );
        }
        return Ok(None);
    };
    let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
            .with_context(|| {
                format!(
                    "{}: the `auth` of registry {registry} is not base64 of USER:PASSWORD",
                    path.display()
                )
            })?;
        username = Some(decoded.0);
        password = Some(decoded.1);
    }
    Ok(Some(DockerCredentials {
        username,
        password,
        identitytoken: entry.identitytoken.clone(),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_found_as_docker_does() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("ghcr.io/org/app"), "ghcr.io");
        assert!(same_registry("https://index.docker.io/v1/", "docker.io"));
        assert!(same_registry("http://127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!same_registry("127.0.0.1:5001", "127.0.0.1:5000"));
    }

    #[test]
    fn credentials_come_from_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:pa:ss");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}}, "https://index.docker.io/v1/": {{"username": "u", "password": "p"}}}}}}"#),
        )
        .unwrap();
        let c = credentials(Some(&path), "127.0.0.1:5000/app:1")
            .unwrap()
            .unwrap();
        assert_eq!(c.username.as_deref(), Some("ci"));
        assert_eq!(c.password.as_deref(), Some("pa:ss"));
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
        let c = credentials(Some(&path), "busybox").unwrap().unwrap();
        assert_eq!(c.username.as_deref(), Some("u"));
        assert!(credentials(Some(&path), "ghcr.io/x/y").unwrap().is_none());
        assert!(credentials(Some(&dir.path().join("none.json")), "busybox")
            .unwrap()
            .is_none());
        std::fs::write(&path, r#"{"auths": {"127.0.0.1:5000": {"auth": "!!"}}}"#).unwrap();
        let err = format!(
            "{:#}",
            credentials(Some(&path), "127.0.0.1:5000/a").unwrap_err()
        );
        assert!(err.contains("not base64"), "{err}");
        std::fs::write(&path, "{secret-looking garbage").unwrap();
        let err = format!("{:#}", credentials(Some(&path), "x").unwrap_err());
        assert!(!err.contains("garbage"), "{err}");
    }
}
