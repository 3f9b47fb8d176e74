//! The first stage: `rehost.yaml` as written, deserialized from an already
//! interpolated [`serde_yaml::Value`] without any checks beyond types.
//!
//! Invariants:
//! - Every struct has `deny_unknown_fields`, so a misspelt key is an error, and
//!   every field is optional here: "required" is decided in `validate`, where
//!   the message can name the key.
//! - Interpolation runs before this stage, so `${N}` in a numeric or boolean
//!   field arrives as a string; the `lenient` helpers accept an integer or a
//!   string holding one (likewise `true`/`false`), and integers where a string
//!   is expected (`owner: 1000`).
//! - Type errors carry the key path (via `serde_path_to_error`) and are worded
//!   "expected X, got Y".

use indexmap::IndexMap;
use serde::Deserialize;

use super::error::{reword_serde, Problem};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawConfig {
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) host: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) run_as: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) state_dir: Option<String>,
    pub(crate) storage: Option<RawStorage>,
    pub(crate) stack: Option<RawStack>,
    pub(crate) state: Option<IndexMap<String, RawState>>,
    pub(crate) pull: Option<IndexMap<String, RawPull>>,
    pub(crate) metrics: Option<RawMetrics>,
    pub(crate) jobs: Option<RawJobs>,
    pub(crate) notify: Option<Vec<RawNotify>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawStorage {
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) url: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) endpoint: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) region: Option<String>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub(crate) path_style: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) credentials_file: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) profile: Option<String>,
    pub(crate) encryption: Option<RawEncryption>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawEncryption {
    pub(crate) recipients: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) identity_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawStack {
    pub(crate) compose: Option<RawComposeFiles>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) project: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) env_file: Option<String>,
    pub(crate) profiles: Option<Vec<String>>,
}

/// `stack.compose`: one file, or a list merged in order.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a path or a list of paths")]
pub(crate) enum RawComposeFiles {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawState {
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) path: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) kind: Option<String>,
    #[serde(default, deserialize_with = "lenient::mode")]
    pub(crate) mode: Option<RawMode>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) owner: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) restore: Option<String>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub(crate) required: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) backup: Option<String>,
    pub(crate) keep: Option<RawKeep>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) verify: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) api: Option<String>,
    #[serde(default)]
    pub(crate) databases: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) stop: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) volume: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) jitter: Option<String>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) retries: Option<u32>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub(crate) run_at_start: Option<bool>,
}

/// A file mode as written: YAML gives `0600` (leading zero) as a string but
/// `600` as an integer, and the two must mean the same thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RawMode {
    Int(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping like `{ last: 10, daily: 14 }`"
)]
pub(crate) struct RawKeep {
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) last: Option<u32>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) hourly: Option<u32>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) daily: Option<u32>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) weekly: Option<u32>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) monthly: Option<u32>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) yearly: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawPull {
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) source: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) dest: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) schedule: Option<String>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub(crate) delete_removed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub(crate) allow_empty: Option<bool>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) concurrency: Option<u32>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) jitter: Option<String>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) retries: Option<u32>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub(crate) run_at_start: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawMetrics {
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) textfile_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawJobs {
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) jitter: Option<String>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) retries: Option<u32>,
}

/// One entry of `notify:`. Its `Debug` would show the URL: never logged.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping like `{ url: https://…, on: [failure] }`"
)]
pub(crate) struct RawNotify {
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) name: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) url: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "lenient::string")]
    pub(crate) kind: Option<String>,
    pub(crate) on: Option<Vec<String>>,
    pub(crate) jobs: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub(crate) timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::count")]
    pub(crate) retries: Option<u32>,
}

/// Deserializes the document (already interpolated). A `null` document (empty
/// file, or only comments) is an empty mapping, so that the "missing `host`"
/// message comes from validation rather than a type error.
pub(crate) fn from_value(value: serde_yaml::Value) -> Result<RawConfig, Problem> {
    if value.is_null() {
        return Ok(RawConfig::default());
    }
    if !value.is_mapping() {
        return Err(Problem::new(
            Vec::new(),
            format!(
                "expected a mapping of keys such as `host:` and `storage:` at the top level, got {}",
                kind_of(&value)
            ),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        Problem::new(path, reword_serde(&err.into_inner().to_string()))
    })
}

pub(crate) fn kind_of(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "an empty value",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// `deserialize_with` helpers. Each returns `Some` for a present value and is
/// paired with `#[serde(default)]` for an absent key. An explicit empty value
/// (`host:` with nothing after it) is an error rather than "absent": the
/// operator wrote the key, so silently using the default would surprise them.
mod lenient {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};

    use super::RawMode;

    const EMPTY: &str = "got an empty value";

    pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
            // `owner: 1000` or `project: 2024` are strings to the operator.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<String, E> {
                Err(E::custom(format!("expected a string, {EMPTY}")))
            }
        }
        d.deserialize_any(V).map(Some)
    }

    pub(super) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true` or `false`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
                match v.trim() {
                    s if s.eq_ignore_ascii_case("true") => Ok(true),
                    s if s.eq_ignore_ascii_case("false") => Ok(false),
                    _ => Err(E::custom(format!(
                        "expected `true` or `false`, got string {v:?}"
                    ))),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
                Err(E::custom(format!("expected `true` or `false`, {EMPTY}")))
            }
        }
        d.deserialize_any(V).map(Some)
    }

    /// A non-negative count that fits in a u32 (retries, keep, concurrency).
    pub(super) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = u32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
                u32::try_from(v).map_err(|_| {
                    E::custom(format!(
                        "expected a whole number up to {}, got {v}",
                        u32::MAX
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "expected a whole number of 0 or more, got {v}"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
                match v.trim().parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "expected a whole number, got string {v:?}"
                    ))),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<u32, E> {
                Err(E::custom(format!("expected a whole number, {EMPTY}")))
            }
        }
        d.deserialize_any(V).map(Some)
    }

    pub(super) fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawMode>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal file mode like \"0600\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMode, E> {
                Ok(RawMode::Int(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMode, E> {
                Ok(RawMode::Text(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawMode, E> {
                Err(E::custom(format!(
                    "expected an octal file mode like \"0600\", {EMPTY}"
                )))
            }
        }
        d.deserialize_any(V).map(Some)
    }
}
