//! The error every config problem ends up as, and the internal [`Problem`] the
//! pipeline stages return before a position is known.
//!
//! Invariants:
//! - A [`ConfigError`] always names the file; line and column are present only
//!   when they were found in the text (never guessed), and `key` is the dotted
//!   path of the offending key when there is one.
//! - Messages say what was expected; they never contain a secret, because the
//!   configuration holds none (credentials live in the environment or a file).

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate;

/// A configuration file that could not be read, parsed or validated.
///
/// Displays as `FILE:LINE:COLUMN: KEY: MESSAGE`, leaving out what is unknown,
/// or as `cannot read FILE: REASON` when the file itself could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// Dotted key path such as `state.acme.mode`; segments that are not plain
    /// names are double-quoted (`state."my.db".path`).
    pub key: Option<String>,
    pub message: String,
    /// What went wrong, so a caller can tell an unreadable file from a bad one.
    pub kind: ConfigErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read (missing, permissions, not UTF-8).
    Read,
    /// Not valid YAML.
    Syntax,
    /// Valid YAML, but not a valid configuration (including interpolation).
    Invalid,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ConfigErrorKind::Read {
            return write!(f, "cannot read {}: {}", self.file.display(), self.message);
        }
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    pub(crate) fn read(file: &Path, err: &std::io::Error) -> ConfigError {
        // io::Error's Display appends " (os error 2)", noise for an operator.
        let message = err.to_string();
        let message = match message.rfind(" (os error ") {
            Some(i) if message.ends_with(')') => message[..i].to_string(),
            _ => message,
        };
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message,
            kind: ConfigErrorKind::Read,
        }
    }

    pub(crate) fn syntax(file: &Path, err: &serde_yaml::Error) -> ConfigError {
        let mut message = err.to_string();
        let (line, column) = match err.location() {
            Some(loc) => {
                // The position is printed in front already; drop libyaml's copy.
                let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                if let Some(i) = message.find(&suffix) {
                    message.replace_range(i..i + suffix.len(), "");
                }
                (Some(loc.line()), Some(loc.column()))
            }
            None => (None, None),
        };
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key: None,
            message: format!("invalid YAML: {message}"),
            kind: ConfigErrorKind::Syntax,
        }
    }
}

/// A problem found by a pipeline stage, before it is located in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Key path from the document root; empty for the document itself.
    pub(crate) path: Vec<String>,
    pub(crate) message: String,
    /// The key at `path` is absent: point at its parent, which is where the
    /// operator has to add it.
    pub(crate) missing: bool,
}

impl Problem {
    pub(crate) fn new(path: Vec<String>, message: impl Into<String>) -> Problem {
        Problem {
            path,
            message: message.into(),
            missing: false,
        }
    }

    pub(crate) fn missing(path: Vec<String>) -> Problem {
        let name = path.last().cloned().unwrap_or_default();
        Problem {
            path,
            message: format!("missing required key `{name}`"),
            missing: true,
        }
    }

    /// Locates the problem in `text` and turns it into the public error.
    pub(crate) fn into_error(self, file: &Path, text: &str) -> ConfigError {
        let target = if self.missing {
            &self.path[..self.path.len().saturating_sub(1)]
        } else {
            &self.path[..]
        };
        let position = if target.is_empty() {
            None
        } else {
            locate::locate(text, target)
        };
        ConfigError {
            file: file.to_path_buf(),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            key: (!self.path.is_empty()).then(|| dotted(&self.path)),
            message: self.message,
            kind: ConfigErrorKind::Invalid,
        }
    }
}

/// `["state", "acme", "mode"]` → `state.acme.mode`, quoting segments that are
/// not plain names so that the path stays unambiguous.
pub(crate) fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|segment| quote_segment(segment))
        .collect::<Vec<_>>()
        .join(".")
}

/// One segment of a dotted key path, double-quoted unless it is a plain name.
pub(crate) fn quote_segment(segment: &str) -> String {
    let plain = !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        segment.to_string()
    } else {
        format!("{segment:?}")
    }
}

/// Rewords serde's messages into the "expected X, got Y" / "unknown key" style
/// used everywhere else in rehost's config errors.
pub(crate) fn reword_serde(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.split_once(", expected ") {
                let got = match got {
                    "unit value" => "an empty value",
                    "map" => "a mapping",
                    "sequence" => "a list",
                    other => other,
                };
                return format!("expected {expected}, got {got}");
            }
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, column: Option<usize>, key: Option<&str>) -> ConfigError {
        ConfigError {
            file: PathBuf::from("/etc/rehost/rehost.yaml"),
            line,
            column,
            key: key.map(str::to_string),
            message: "expected an octal file mode like \"0600\", got \"rw\"".to_string(),
            kind: ConfigErrorKind::Invalid,
        }
    }

    #[test]
    fn display_leaves_out_unknown_parts() {
        assert_eq!(
            error(Some(12), Some(5), Some("state.acme.mode")).to_string(),
            "/etc/rehost/rehost.yaml:12:5: state.acme.mode: expected an octal file mode like \"0600\", got \"rw\""
        );
        assert_eq!(
            error(None, None, Some("state.acme.mode")).to_string(),
            "/etc/rehost/rehost.yaml: state.acme.mode: expected an octal file mode like \"0600\", got \"rw\""
        );
        assert_eq!(
            error(Some(3), None, None).to_string(),
            "/etc/rehost/rehost.yaml:3: expected an octal file mode like \"0600\", got \"rw\""
        );
    }

    #[test]
    fn read_errors_drop_the_os_error_number() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = ConfigError::read(Path::new("/etc/x.yaml"), &io);
        assert_eq!(
            err.to_string(),
            "cannot read /etc/x.yaml: No such file or directory"
        );
        assert_eq!(err.kind, ConfigErrorKind::Read);
    }

    #[test]
    fn dotted_quotes_only_when_needed() {
        let path = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(dotted(&path(&["state", "acme", "mode"])), "state.acme.mode");
        assert_eq!(
            dotted(&path(&["state", "my.db", "path"])),
            "state.\"my.db\".path"
        );
        assert_eq!(dotted(&path(&["pull", "a b"])), "pull.\"a b\"");
    }

    #[test]
    fn serde_messages_are_reworded() {
        assert_eq!(
            reword_serde("unknown field `retires`, expected one of `timeout`, `jitter`, `retries`"),
            "unknown key `retires`, expected one of `timeout`, `jitter`, `retries`"
        );
        assert_eq!(
            reword_serde("invalid type: string \"x\", expected a mapping"),
            "expected a mapping, got string \"x\""
        );
        assert_eq!(
            reword_serde("invalid type: sequence, expected a map"),
            "expected a map, got a list"
        );
        assert_eq!(reword_serde("something else"), "something else");
    }
}
