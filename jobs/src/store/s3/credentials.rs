//! The access key: from the environment or a shared-credentials file. The
//! values go straight into the SDK's `Credentials`, whose `Debug` redacts
//! them; error texts name keys and lines, never values.

use std::path::Path;

use aws_sdk_s3::config::Credentials;

use crate::store::{CredentialSource, StoreError};

/// Reads the access key from the environment or a shared-credentials file. The
/// values go straight into the SDK's `Credentials`, whose `Debug` redacts them.
pub(super) fn load_credentials(source: &CredentialSource) -> Result<Credentials, StoreError> {
    let (id, secret, token) = match source {
        CredentialSource::Environment => {
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
            else {
                return Err(StoreError::Config(
                    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     or storage.credentials_file"
                        .into(),
                ));
            };
            (id, secret, var("AWS_SESSION_TOKEN"))
        }
        CredentialSource::File { path, profile } => read_credentials_file(path, profile)?,
    };
    Ok(Credentials::new(id, secret, token, None, "rehost"))
}

type KeyTriple = (String, String, Option<String>);

fn read_credentials_file(path: &Path, profile: &str) -> Result<KeyTriple, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StoreError::Config(format!(
            "cannot read credentials file {}: {e}",
            path.display()
        ))
    })?;
    parse_credentials(&text, profile)
        .map_err(|what| StoreError::Config(format!("credentials file {}: {what}", path.display())))
}

/// Parses the INI format of `~/.aws/credentials`. Error texts name keys and
/// lines, never values.
fn parse_credentials(text: &str, profile: &str) -> Result<KeyTriple, String> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut found = false;
    let mut in_profile = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = section.trim();
            let name = name.strip_prefix("profile ").unwrap_or(name).trim();
            in_profile = name == profile;
            found |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not `key = value`", n + 1));
        };
        let value = value.trim().to_string();
        match key.trim() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    if !found {
        return Err(format!("no [{profile}] section"));
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id, secret, token)),
        _ => Err(format!(
            "section [{profile}] needs aws_access_key_id and aws_secret_access_key"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_profiles() {
        let text = "# comment\n[default]\naws_access_key_id = AK1\naws_secret_access_key=SK1\n\n\
                    [profile backup]\naws_access_key_id = AK2\naws_secret_access_key = SK2\n\
                    aws_session_token = T2\n";
        assert_eq!(
            parse_credentials(text, "default").unwrap(),
            ("AK1".into(), "SK1".into(), None)
        );
        assert_eq!(
            parse_credentials(text, "backup").unwrap(),
            ("AK2".into(), "SK2".into(), Some("T2".into()))
        );
        let err = parse_credentials(text, "nope").unwrap_err();
        assert!(err.contains("[nope]"));
        let err = parse_credentials("[default]\naws_access_key_id = AK\n", "default").unwrap_err();
        assert!(err.contains("aws_secret_access_key"));
        assert!(!err.contains("AK"), "error must not echo values: {err}");
    }
}
