//! What a compose problem ends up as ([`ComposeError`]), and the [`Fault`] the
//! loader's stages return before a position is known.
//!
//! Invariants:
//! - A [`ComposeError`] has the shape of a [`ConfigError`] (the same Display,
//!   `FILE:LINE:COL: KEY: MESSAGE`, the same locating code), so an operator
//!   reads compose and rehost.yaml errors alike; line and column appear only
//!   when found in the text, never guessed.
//! - Key paths print sequence items as `[N]`: `services.web.ports[0]`.

use std::fmt;
use std::path::Path;

use crate::config::error::quote_segment;
use crate::config::locate::{locate_segments, Segment};
use crate::config::{ConfigError, ConfigErrorKind};

/// A compose file (or one of its env files) that could not be read, parsed or
/// turned into a [`Project`](crate::stack::model::Project).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ComposeError(pub ConfigError);

impl ComposeError {
    /// Line, column, key path and message, as for `rehost.yaml`.
    pub fn detail(&self) -> &ConfigError {
        &self.0
    }

    pub(crate) fn read(file: &Path, err: &std::io::Error) -> ComposeError {
        ComposeError(ConfigError::read(file, err))
    }

    pub(crate) fn syntax(file: &Path, err: &serde_yaml::Error) -> ComposeError {
        ComposeError(ConfigError::syntax(file, err))
    }

    /// A problem at a known position that no key path describes (env files).
    pub(crate) fn at_line(file: &Path, line: usize, column: usize, message: String) -> Self {
        ComposeError(ConfigError {
            file: file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            key: None,
            message,
            kind: ConfigErrorKind::Invalid,
        })
    }
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path under construction; cheap to extend, cloned on every step
/// because paths are short.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct At(pub(crate) Vec<Seg>);

impl At {
    pub(crate) fn root() -> At {
        At(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> At {
        let mut path = self.0.clone();
        path.push(Seg::Key(key.to_string()));
        At(path)
    }

    pub(crate) fn index(&self, index: usize) -> At {
        let mut path = self.0.clone();
        path.push(Seg::Index(index));
        At(path)
    }

    /// The path as the compose file's locator walks it.
    fn segments(&self) -> Vec<Segment<'_>> {
        self.0
            .iter()
            .map(|seg| match seg {
                Seg::Key(key) => Segment::Key(key),
                Seg::Index(index) => Segment::Index(*index),
            })
            .collect()
    }

    /// A problem with the value at this path.
    pub(crate) fn fault(&self, message: impl Into<String>) -> Fault {
        Fault {
            at: self.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) if i == 0 => write!(f, "{}", quote_segment(key))?,
                Seg::Key(key) => write!(f, ".{}", quote_segment(key))?,
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A problem found by a stage, before it is located in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) at: At,
    pub(crate) message: String,
}

impl Fault {
    /// Locates the problem in the files `sources` (path, text) were merged
    /// from: the last file that holds the whole key path (a later file's
    /// value is the one that counts), else the last one holding the longest
    /// part of it; the message keeps the whole path either way.
    pub(crate) fn into_error_in(self, sources: &[(std::path::PathBuf, String)]) -> ComposeError {
        if let [(file, text)] = sources {
            return self.into_error(file, text);
        }
        let segments = self.at.segments();
        for len in (1..=segments.len()).rev() {
            for (file, text) in sources.iter().rev() {
                if let Some(p) = locate_segments(text, &segments[..len]) {
                    return ComposeError(ConfigError {
                        file: file.clone(),
                        line: Some(p.line),
                        column: Some(p.column),
                        key: Some(self.at.to_string()),
                        message: self.message,
                        kind: ConfigErrorKind::Invalid,
                    });
                }
            }
        }
        match sources.first() {
            Some((file, text)) => self.into_error(file, text),
            None => self.into_error(Path::new("docker-compose.yml"), ""),
        }
    }

    /// Locates the problem in `text` (the compose file's content).
    pub(crate) fn into_error(self, file: &Path, text: &str) -> ComposeError {
        let segments = self.at.segments();
        let position = if segments.is_empty() {
            None
        } else {
            locate_segments(text, &segments)
        };
        ComposeError(ConfigError {
            file: file.to_path_buf(),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            key: (!self.at.0.is_empty()).then(|| self.at.to_string()),
            message: self.message,
            kind: ConfigErrorKind::Invalid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_indices_in_brackets_and_quote_odd_keys() {
        let at = At::root().key("services").key("web").key("ports").index(0);
        assert_eq!(at.to_string(), "services.web.ports[0]");
        let at = At::root()
            .key("services")
            .key("web")
            .key("labels")
            .key("traefik.enable");
        assert_eq!(at.to_string(), "services.web.labels.\"traefik.enable\"");
        assert_eq!(At::root().index(2).index(1).to_string(), "[2][1]");
    }
}
