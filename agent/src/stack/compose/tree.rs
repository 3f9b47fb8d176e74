//! The YAML tree before its structure is checked: merge keys resolved,
//! extension fields removed, YAML tags refused, `${VAR}` interpolated.
//!
//! Rules (Compose v1's):
//! - `<<: *anchor` merge keys are resolved first (PyYAML does it while
//!   loading), so merged values are interpolated like any other.
//! - `x-*` keys at the top level and directly inside a service, network or
//!   volume are extension fields: Compose ignores them by definition, and so
//!   does rehost (they usually hold anchors). They are removed before
//!   interpolation, so a `${VAR?}` inside one is not evaluated.
//! - Every string *value* is interpolated; keys never are. Unset variables
//!   become empty strings, as in Compose ([`interpolate::interpolate`]);
//!   `${VAR?msg}`/`${VAR:?msg}` fail with the message.

use serde_yaml::{Mapping, Value};

use super::error::{At, Fault};
use crate::config::key_name;
use crate::interpolate;

/// Applies every rule above to the whole document, in place.
pub(crate) fn prepare(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Fault> {
    value
        .apply_merge()
        .map_err(|err| At::root().fault(format!("invalid merge key (`<<`): {err}")))?;
    if let Value::Mapping(top) = value {
        strip_extensions(top);
        for section in ["services", "networks", "volumes"] {
            if let Some(Value::Mapping(entries)) = top.get_mut(section) {
                for (_, entry) in entries.iter_mut() {
                    if let Value::Mapping(entry) = entry {
                        strip_extensions(entry);
                    }
                }
            }
        }
    }
    interpolate(value, &At::root(), env)
}

fn strip_extensions(map: &mut Mapping) {
    map.retain(|key, _| !matches!(key, Value::String(k) if k.starts_with("x-")));
}

fn interpolate(
    value: &mut Value,
    at: &At,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Fault> {
    match value {
        Value::String(text) => {
            *text = interpolate::interpolate(text, env).map_err(|err| at.fault(err.to_string()))?;
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate(item, &at.index(index), env)?;
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                interpolate(item, &at.key(&key_name(key)), env)?;
            }
        }
        // Compose files take no tags (`!reset`, `!override` are Compose v2
        // merge directives that rehost does not implement).
        Value::Tagged(tagged) => {
            return Err(at.fault(format!(
                "YAML tags such as `{}` are not supported by rehost",
                tagged.tag
            )))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TAG").then(|| "2.4".to_string())
    }

    fn prepared(text: &str) -> Result<Value, Fault> {
        let mut value: Value = serde_yaml::from_str(text).unwrap();
        prepare(&mut value, &env).map(|()| value)
    }

    #[test]
    fn merges_strips_extensions_and_interpolates_values_only() {
        let text = "\
x-common: &common
  image: httpd:${TAG}
  restart: ${NEVER?not evaluated}
services:
  web:
    <<: *common
    restart: always
    x-note: ${ALSO?not evaluated}
    labels:
      ${TAG}: $${TAG} ${UNSET}
";
        let value = prepared(text).unwrap();
        let want: Value = serde_yaml::from_str(
            "services: {web: {image: 'httpd:2.4', restart: always, labels: {'${TAG}': '${TAG} '}}}",
        )
        .unwrap();
        assert_eq!(value, want);
    }

    #[test]
    fn errors_carry_the_path() {
        let err = prepared("services:\n  web:\n    ports: ['${P:?set P}']\n").unwrap_err();
        assert_eq!(err.at.to_string(), "services.web.ports[0]");
        assert_eq!(err.message, "required variable P is missing a value: set P");
        let err = prepared("services:\n  web:\n    image: a$\n").unwrap_err();
        assert_eq!(err.at.to_string(), "services.web.image");
        let err = prepared("services:\n  web:\n    image: !reset x\n").unwrap_err();
        assert!(err.message.contains("`!reset`"), "{}", err.message);
    }
}
