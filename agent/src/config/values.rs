//! Checks of single values, each returning the message for the caller to
//! attach to its key. Pure functions of one string (or number), so every rule
//! is tested here in a table without building a whole config.
//!
//! Invariants: a value that passes is usable as is by the jobs (paths are
//! normalized and absolute where required, names are storage key segments),
//! and no message echoes a value that could hold a secret (URL user info).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rehost_jobs::retention::KeepPolicy;

use super::raw::{RawKeep, RawMode};

/// `stack.profiles` entries: Compose's profile names.
pub(super) fn check_profile(name: &str) -> Result<(), String> {
    let ok = name
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a profile name: expected letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        ))
    }
}

/// Host, state and pull names become one segment of a storage key.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: expected letters, digits, `.`, `_` or `-`, not starting with `.`"
        ))
    }
}

pub(super) fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == ':') {
        Err(format!(
            "expected a user name like \"rehost\", got {user:?}"
        ))
    } else {
        Ok(())
    }
}

pub(super) fn check_owner(owner: &str) -> Result<(), String> {
    let parts: Vec<&str> = owner.split(':').collect();
    let ok = parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains(|c: char| c.is_whitespace() || c.is_control()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an owner like \"user\", \"user:group\" or \"1000:1000\", got {owner:?}"
        ))
    }
}

/// `"0600"` and `"600"` are octal strings. An unquoted `600` arrives as the
/// integer six hundred: its decimal digits are read as octal digits, because
/// that is what the operator typed. (`0600` unquoted is a string in YAML 1.2.)
pub(super) fn file_mode(mode: &RawMode) -> Result<u32, String> {
    const EXPECTED: &str = "expected an octal file mode like \"0600\"";
    match mode {
        RawMode::Text(text) => {
            let t = text.trim();
            if (3..=4).contains(&t.len()) && t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                u32::from_str_radix(t, 8).map_err(|e| format!("{EXPECTED}, got {text:?} ({e})"))
            } else {
                Err(format!("{EXPECTED}, got {text:?}"))
            }
        }
        RawMode::Int(n) => {
            let digits = n.to_string();
            match u32::from_str_radix(&digits, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(mode),
                // 0o600 in YAML is the integer 384: point at quoting.
                _ => Err(format!(
                    "{EXPECTED}, got the number {n} (write the mode in quotes, like mode: \"0600\")"
                )),
            }
        }
    }
}

pub(super) fn cron(schedule: &str) -> Result<String, String> {
    let schedule = schedule.trim();
    match crate::daemon::schedule::parse_cron(schedule) {
        Ok(_) => Ok(schedule.to_string()),
        Err(e) => Err(format!(
            "expected a cron schedule with 5 or 6 fields like \"*/5 * * * *\", got {schedule:?} ({e})"
        )),
    }
}

pub(super) fn keep_policy(raw: RawKeep) -> Result<KeepPolicy, String> {
    let keep = KeepPolicy {
        last: raw.last.unwrap_or(0),
        hourly: raw.hourly.unwrap_or(0),
        daily: raw.daily.unwrap_or(0),
        weekly: raw.weekly.unwrap_or(0),
        monthly: raw.monthly.unwrap_or(0),
        yearly: raw.yearly.unwrap_or(0),
    };
    if keep == KeepPolicy::default() {
        return Err("keep would delete every backup; set at least `last: 1`".to_string());
    }
    Ok(keep)
}

pub(super) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("expected a duration like \"30s\", \"30m\" or \"1h 30m\", got {text:?} ({e})")
    })
}

/// `s3://bucket[/prefix]` → (bucket, prefix without leading/trailing `/`).
pub(super) fn s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("expected `s3://bucket/prefix`, got {url:?}"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket(bucket)?;
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        for segment in prefix.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(format!(
                    "invalid prefix {prefix:?} in {url:?}: empty, `.` and `..` segments are not allowed"
                ));
            }
        }
        if prefix.contains(char::is_control) {
            return Err(format!(
                "invalid prefix {prefix:?}: control characters are not allowed"
            ));
        }
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// S3's bucket naming rules (the subset every S3-compatible service shares).
fn check_bucket(bucket: &str) -> Result<(), String> {
    let bytes = bucket.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let looks_like_ip = bucket.split('.').count() == 4
        && bucket
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let ok = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && !bucket.contains("..")
        && !looks_like_ip
        && !bucket.starts_with("xn--")
        && !bucket.ends_with("-s3alias")
        && !bucket.ends_with("--ol-s3");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid bucket name {bucket:?}: expected 3 to 63 lowercase letters, digits, `.` or `-`, starting and ending with a letter or digit"
        ))
    }
}

/// An `http://` or `https://` URL. User info is refused without echoing the
/// URL, because it would be a secret and this message gets printed.
pub(super) fn http_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("expected an http:// or https:// URL, got {url:?}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "credentials in the URL are not allowed (use the AWS_* environment variables or `credentials_file`)"
                .to_string(),
        );
    }
    if authority.is_empty() || url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "expected an http:// or https:// URL with a host, got {url:?}"
        ));
    }
    Ok(url.to_string())
}

/// An absolute path without `..`, normalized (no `.`, no repeated or
/// trailing `/`), so that comparisons between paths are by component.
pub(super) fn absolute_path(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "expected an absolute path (starting with `/`), got {text:?}"
        ));
    }
    if text.contains('\0') {
        return Err(format!("a path cannot contain a NUL byte, got {text:?}"));
    }
    let path = Path::new(text);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("`..` is not allowed in a path, got {text:?}"));
    }
    Ok(path.components().collect())
}

/// A path rehost writes into by rename or swap: also refuse `/` itself.
pub(super) fn target_path(text: &str) -> Result<PathBuf, String> {
    let path = absolute_path(text)?;
    if path.parent().is_none() {
        return Err(format!("expected a path below `/`, got {text:?}"));
    }
    Ok(path)
}

/// Absolute paths as written; relative ones are relative to the config file's
/// folder, so that a config and its files can move together.
pub(super) fn resolve(base: &Path, text: &str) -> PathBuf {
    let path = Path::new(text);
    if path.is_absolute() {
        path.components().collect()
    } else {
        base.join(path).components().collect()
    }
}

pub(super) fn is_project_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// Compose's normalization of a folder name: lowercase, drop characters a
/// project name cannot hold, and drop leading `_`/`-`.
pub(super) fn project_from_folder(folder: &str) -> String {
    let name: String = folder
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect();
    name.trim_start_matches(['_', '-']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes() {
        let text = |s: &str| file_mode(&RawMode::Text(s.to_string()));
        assert_eq!(text("0600"), Ok(0o600));
        assert_eq!(text("600"), Ok(0o600));
        assert_eq!(text("4755"), Ok(0o4755));
        assert_eq!(text("7777"), Ok(0o7777));
        for bad in ["rw", "", "60", "0680", "07777", "0o600", "-600", "u+rw"] {
            let err = text(bad).unwrap_err();
            assert!(
                err.starts_with("expected an octal file mode like \"0600\", got"),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(file_mode(&RawMode::Int(600)), Ok(0o600));
        assert_eq!(file_mode(&RawMode::Int(644)), Ok(0o644));
        assert_eq!(file_mode(&RawMode::Int(7777)), Ok(0o7777));
        for bad in [10000, 680, 384, 9] {
            let err = file_mode(&RawMode::Int(bad)).unwrap_err();
            assert!(err.contains("in quotes"), "{bad}: {err}");
        }
    }

    #[test]
    fn owners() {
        for ok in ["rehost", "1000", "1000:1000", "www-data:www-data", "u:1"] {
            assert_eq!(check_owner(ok), Ok(()), "{ok}");
        }
        for bad in ["", ":", "a:", ":b", "a:b:c", "a b", "a:\tb"] {
            assert!(check_owner(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for ok in ["acme", "web-1", "a.b_c", "A9"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn s3_urls_and_buckets() {
        let ok = |u: &str| s3_url(u).unwrap();
        assert_eq!(ok("s3://infra-state"), ("infra-state".into(), "".into()));
        assert_eq!(ok("s3://infra-state/"), ("infra-state".into(), "".into()));
        assert_eq!(
            ok("s3://infra-state/hosts"),
            ("infra-state".into(), "hosts".into())
        );
        assert_eq!(
            ok("s3://content/site/a/"),
            ("content".into(), "site/a".into())
        );
        assert_eq!(ok("s3://b.1-x//p//"), ("b.1-x".into(), "p".into()));
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://ab",
            "s3://Upper",
            "s3://under_score",
            "s3://-dash",
            "s3://dash-",
            "s3://a..b",
            "s3://192.168.1.1",
            "s3://xn--abc",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "s3://bucket/./b",
            "https://bucket",
        ] {
            assert!(s3_url(bad).is_err(), "{bad:?}");
        }
        let long = format!("s3://{}", "a".repeat(64));
        assert!(s3_url(&long).is_err());
        assert!(s3_url(&format!("s3://{}", "a".repeat(63))).is_ok());
    }

    #[test]
    fn http_urls_never_echo_user_info() {
        assert!(http_url("http://127.0.0.1:3900").is_ok());
        assert!(http_url("https://s3.example.com/").is_ok());
        for bad in [
            "s3.example.com",
            "ftp://x",
            "http://",
            "https:///x",
            "http://a b",
        ] {
            assert!(http_url(bad).is_err(), "{bad:?}");
        }
        let err = http_url("https://AKIA:hunter2@s3.example.com").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn crons() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 */6 * * *",
            "30 3 * * *",
            "0 0 3 * * *",
            " 30 3 * * 1-5 ",
        ] {
            assert!(cron(ok).is_ok(), "{ok:?}");
        }
        assert_eq!(cron(" 30 3 * * * ").as_deref(), Ok("30 3 * * *"));
        for bad in ["", "every minute", "* * * *", "* * * * * * *", "61 * * * *"] {
            let err = cron(bad).unwrap_err();
            assert!(
                err.starts_with("expected a cron schedule with 5 or 6 fields"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            absolute_path("/srv//acme/./x/"),
            Ok(PathBuf::from("/srv/acme/x"))
        );
        assert!(absolute_path("srv/acme").is_err());
        assert!(absolute_path("/srv/../etc").is_err());
        assert!(absolute_path("").is_err());
        assert!(target_path("/").is_err());
        assert!(target_path("//").is_err());
        assert!(target_path("/srv").is_ok());
        assert_eq!(
            resolve(Path::new("/etc/rehost"), "creds"),
            PathBuf::from("/etc/rehost/creds")
        );
        assert_eq!(
            resolve(Path::new("/etc/rehost"), "../aws/creds"),
            PathBuf::from("/etc/rehost/../aws/creds")
        );
        assert_eq!(
            resolve(Path::new("/etc/rehost"), "/x/y"),
            PathBuf::from("/x/y")
        );
    }

    #[test]
    fn project_names() {
        assert!(is_project_name("site"));
        assert!(is_project_name("1site_a-b"));
        assert!(!is_project_name("Site"));
        assert!(!is_project_name("-site"));
        assert!(!is_project_name(""));
        assert_eq!(project_from_folder("My Stack.v2"), "mystackv2");
        assert_eq!(project_from_folder("_stack"), "stack");
        assert_eq!(project_from_folder("..."), "");
    }

    #[test]
    fn keep_all_zero_is_refused() {
        assert_eq!(
            keep_policy(RawKeep::default()).unwrap_err(),
            "keep would delete every backup; set at least `last: 1`"
        );
        let raw = RawKeep {
            daily: Some(7),
            ..RawKeep::default()
        };
        assert_eq!(
            keep_policy(raw),
            Ok(KeepPolicy {
                daily: 7,
                ..KeepPolicy::default()
            })
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(duration("30").is_err());
        assert!(duration("soon").is_err());
    }
}
