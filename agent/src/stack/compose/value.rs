//! Typed reads of interpolated YAML values, each failing with the key path
//! and an "expected X, got Y" message.
//!
//! Invariants:
//! - Interpolation turns `${N}` into a string, so where Compose takes a number
//!   or a boolean a string holding one is accepted too (Compose v1 converts
//!   those fields the same way after interpolation).
//! - A string is never silently taken from a boolean: `environment:` and
//!   `labels:` values `true` must be quoted, as Compose requires, because YAML
//!   would otherwise decide between `true`, `True` and `yes` for the operator.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::error::{At, Fault, Seg};

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A string; a number is taken as written (`user: 1000`).
pub(crate) fn string(value: &Value, at: &At) -> Result<String, Fault> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(_) => Err(at.fault("expected a string, got a boolean (quote it)")),
        other => Err(at.fault(format!("expected a string, got {}", kind_of(other)))),
    }
}

/// A whole number of 0 or more, or a string holding one.
pub(crate) fn count(value: &Value, at: &At) -> Result<u32, Fault> {
    let parsed = match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        at.fault(format!(
            "expected a whole number of 0 or more, got {}",
            describe(value)
        ))
    })
}

/// `true`/`false`, or the strings Compose v1 accepts for them after
/// interpolation (`yes`, `on`, ... in any case).
pub(crate) fn boolean(value: &Value, at: &At) -> Result<bool, Fault> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" | "on" => Ok(true),
            "n" | "no" | "false" | "off" => Ok(false),
            _ => Err(at.fault(format!("expected true or false, got {s:?}"))),
        },
        other => Err(at.fault(format!("expected true or false, got {}", kind_of(other)))),
    }
}

/// A value for messages: short scalars quoted, anything else by its kind.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= 60 => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind_of(other).to_string(),
    }
}

/// The entries of a mapping with string keys, in file order.
pub(crate) fn mapping<'v>(value: &'v Value, at: &At) -> Result<Vec<(String, &'v Value)>, Fault> {
    let Value::Mapping(map) = value else {
        return Err(at.fault(format!("expected a mapping, got {}", kind_of(value))));
    };
    map.iter()
        .map(|(key, item)| match key {
            Value::String(k) => Ok((k.clone(), item)),
            Value::Number(n) => Ok((n.to_string(), item)),
            other => Err(at.fault(format!("expected string keys, got {}", kind_of(other)))),
        })
        .collect()
}

/// An optional key, read with `read` unless absent or null.
pub(crate) fn opt<T>(
    value: &Option<Value>,
    at: &At,
    read: impl Fn(&Value, &At) -> Result<T, Fault>,
) -> Result<Option<T>, Fault> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => read(v, at).map(Some),
    }
}

/// `labels:` (of a service, its build, a network or a volume): a map or a
/// `KEY=VALUE` list; a label without a value is the empty string.
pub(crate) fn labels(value: &Option<Value>, at: &At) -> Result<BTreeMap<String, String>, Fault> {
    match value {
        None => Ok(BTreeMap::new()),
        Some(v) => Ok(dict_or_list(v, at)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()),
    }
}

/// `environment:`, `labels:` and `build.args:`: a list of `KEY=VALUE` (or a
/// bare `KEY`, value `None`) or a mapping (a null value is `None`). Later
/// entries win, as in Compose.
pub(crate) fn dict_or_list(
    value: &Value,
    at: &At,
) -> Result<IndexMap<String, Option<String>>, Fault> {
    let mut out = IndexMap::new();
    match value {
        Value::Null => {}
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = at.index(i);
                let text = string(item, &at)?;
                let (key, val) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (text.clone(), None),
                };
                check_key(&key, &at)?;
                out.insert(key, val);
            }
        }
        Value::Mapping(_) => {
            for (key, item) in mapping(value, at)? {
                let at = at.key(&key);
                check_key(&key, &at)?;
                let val = match item {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(_) => {
                        return Err(at.fault(
                            "expected a string, a number or nothing, got a boolean (quote it: \"true\")",
                        ))
                    }
                    other => {
                        return Err(at.fault(format!(
                            "expected a string, a number or nothing, got {}",
                            kind_of(other)
                        )))
                    }
                };
                out.insert(key, val);
            }
        }
        other => {
            return Err(at.fault(format!(
                "expected a mapping or a list of KEY=VALUE, got {}",
                kind_of(other)
            )))
        }
    }
    Ok(out)
}

fn check_key(key: &str, at: &At) -> Result<(), Fault> {
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(at.fault(format!(
            "expected a name without whitespace before `=`, got {key:?}"
        )));
    }
    Ok(())
}

/// A string, or a list of strings (`env_file:`, the `depends_on` list).
pub(crate) fn one_or_list(value: &Value, at: &At) -> Result<Vec<(At, String)>, Fault> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = at.index(i);
                string(item, &at).map(|s| (at, s))
            })
            .collect(),
        other => Ok(vec![(at.clone(), string(other, at)?)]),
    }
}

/// Deserializes a sub-tree into a `deny_unknown_fields` struct, so that its
/// keys are checked and misspellings named, with the path prefixed by `at`.
pub(crate) fn from_value<T: DeserializeOwned>(value: &Value, at: &At) -> Result<T, Fault> {
    serde_path_to_error::deserialize(value.clone()).map_err(|err| {
        let mut full = at.clone();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => full.0.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => full.0.push(Seg::Index(*index)),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        full.fault(reword(&err.into_inner().to_string()))
    })
}

/// serde's messages in rehost's words; an unknown key says that rehost (not
/// YAML, not Compose) refuses it, and what it takes instead.
fn reword(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return match rest.split_once(", expected ") {
            Some((key, expected)) => {
                let expected = expected.trim_start_matches("one of ");
                format!("{key} is not supported by rehost (supported here: {expected})")
            }
            None => format!("{rest} is not supported by rehost"),
        };
    }
    crate::config::error::reword_serde(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn dict_or_list_reads_both_forms_in_order() {
        let at = At::root().key("environment");
        let list = dict_or_list(&yaml("[A=1, B, C=, D=x=y]"), &at).unwrap();
        let want: Vec<(&str, Option<&str>)> = vec![
            ("A", Some("1")),
            ("B", None),
            ("C", Some("")),
            ("D", Some("x=y")),
        ];
        let got: Vec<(&str, Option<&str>)> = list
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(got, want);
        let map = dict_or_list(&yaml("{A: 1, B: , C: '', D: 1.5}"), &at).unwrap();
        let got: Vec<(&str, Option<&str>)> = map
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A", Some("1")),
                ("B", None),
                ("C", Some("")),
                ("D", Some("1.5"))
            ]
        );
    }

    #[test]
    fn dict_or_list_refuses_booleans_nested_values_and_blank_names() {
        let at = At::root().key("labels");
        let err = dict_or_list(&yaml("{a: true}"), &at).unwrap_err();
        assert_eq!(err.at.to_string(), "labels.a");
        assert!(err.message.contains("quote it"), "{}", err.message);
        let err = dict_or_list(&yaml("{a: [1]}"), &at).unwrap_err();
        assert!(err.message.contains("got a list"), "{}", err.message);
        let err = dict_or_list(&yaml("['a b=1']"), &at).unwrap_err();
        assert_eq!(err.at.to_string(), "labels[0]");
        let err = dict_or_list(&yaml("x"), &at).unwrap_err();
        assert!(err.message.contains("got a string"), "{}", err.message);
    }

    #[test]
    fn scalars_convert_like_compose() {
        let at = At::root().key("x");
        assert_eq!(count(&yaml("3"), &at), Ok(3));
        assert_eq!(count(&yaml("'3'"), &at), Ok(3));
        assert!(count(&yaml("-1"), &at).is_err());
        assert!(count(&yaml("1.5"), &at).is_err());
        assert_eq!(boolean(&yaml("'yes'"), &at), Ok(true));
        assert_eq!(boolean(&yaml("'Off'"), &at), Ok(false));
        assert!(boolean(&yaml("'maybe'"), &at).is_err());
        assert_eq!(string(&yaml("1000"), &at).as_deref(), Ok("1000"));
        assert!(string(&yaml("true"), &at).is_err());
        assert!(string(&yaml("~"), &at).is_err());
    }
}
