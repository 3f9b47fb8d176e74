//! Warnings about secrets other users of the host can read. `rehost.yaml`
//! itself holds no secret (credentials come from the environment or from
//! `storage.credentials_file`), so the files to watch are the credentials
//! file — a group- or world-readable one hands the bucket, and with it every
//! backup, to any local user — and the age identity file
//! (`storage.encryption.identity_file`), which opens every encrypted backup.
//! This warns instead of refusing, as ssh does for keys it merely distrusts:
//! the operator may run rehost under a shared service group on purpose, and a
//! restore at boot must not fail over a mode.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rehost_jobs::store::{CredentialSource, StoreLocation};

use super::Config;

/// Read bits for group and others.
const READABLE_BY_OTHERS: u32 = 0o044;

/// One warning per secret file of `config` that others can read. Files that
/// cannot be inspected are left to the code that reads them, which reports
/// the error properly.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut files = Vec::new();
    if let StoreLocation::S3(s3) = &config.storage {
        if let CredentialSource::File { path, .. } = &s3.credentials {
            files.push(("credentials file", path.as_path()));
        }
    }
    if let Some(identity) = config
        .encryption
        .as_ref()
        .and_then(|e| e.identity_file.as_deref())
    {
        files.push(("age identity file", identity));
    }
    files
        .into_iter()
        .filter_map(|(what, path)| {
            let meta = std::fs::metadata(path).ok()?;
            exposed(what, path, meta.permissions().mode())
        })
        .collect()
}

/// The warning for a secret file (`what`) at `path` with permission bits
/// `mode`, if others can read it.
fn exposed(what: &str, path: &Path, mode: u32) -> Option<String> {
    if mode & READABLE_BY_OTHERS == 0 {
        return None;
    }
    let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
        (true, true) => "its group and all other users",
        (true, false) => "its group",
        _ => "all other users",
    };
    Some(format!(
        "{what} {path} is readable by {who} (mode {mode:04o}): \
         run `chmod 600 {path}`",
        path = path.display(),
        mode = mode & 0o7777
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn only_group_or_world_readable_files_warn() {
        let p = PathBuf::from("/etc/rehost/credentials");
        assert_eq!(exposed("credentials file", &p, 0o100600), None);
        assert_eq!(exposed("credentials file", &p, 0o400), None);
        // Writable by the group is not a leak of the secret.
        assert_eq!(exposed("credentials file", &p, 0o620), None);
        let w = exposed("credentials file", &p, 0o100644).unwrap();
        assert!(w.contains("/etc/rehost/credentials"), "{w}");
        assert!(w.contains("all other users") && w.contains("0644"), "{w}");
        assert!(w.contains("chmod 600 /etc/rehost/credentials"), "{w}");
        assert!(exposed("credentials file", &p, 0o640)
            .unwrap()
            .contains("its group (mode 0640)"));
        assert!(exposed("credentials file", &p, 0o604)
            .unwrap()
            .contains("all other users"));
    }

    #[test]
    fn a_readable_credentials_file_of_a_config_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::write(&creds, "[default]\n").unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "host: h\nstorage:\n  url: s3://bucket\n  credentials_file: {}\n",
            creds.display()
        );
        let config =
            super::super::parse(&dir.path().join("rehost.yaml"), &text, &|_| None).unwrap();
        let w = warnings(&config);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains(&creds.display().to_string()), "{w:?}");
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(warnings(&config).is_empty());
        // No credentials file (environment credentials): nothing to check.
        let env_only = super::super::parse(
            &dir.path().join("rehost.yaml"),
            "host: h\nstorage:\n  url: s3://bucket\n",
            &|_| None,
        )
        .unwrap();
        assert!(warnings(&env_only).is_empty());

        // The age identity file is a secret too.
        let key = dir.path().join("age.key");
        std::fs::write(&key, "# key\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let text = format!(
            "host: h\nstorage:\n  url: file:///srv/store\n  encryption:\n    recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n    identity_file: {}\n",
            key.display()
        );
        let config =
            super::super::parse(&dir.path().join("rehost.yaml"), &text, &|_| None).unwrap();
        let w = warnings(&config);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("age identity file") && w[0].contains("its group"),
            "{w:?}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(warnings(&config).is_empty());
    }
}
