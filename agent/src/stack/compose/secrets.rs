//! `secrets:` and `configs:`: the top-level definitions (where the content
//! comes from) and each service's use of them (where the file appears).
//!
//! Invariants:
//! - a top-level entry has exactly one source: `file:` (resolved to an
//!   absolute path) or `environment:` (read now; an unset variable is an
//!   error), or for configs `content:`; `external:` is refused (it names a
//!   Swarm object, and rehost runs no Swarm);
//! - a variable's value is held as [`Redacted`] and never enters a message;
//! - every service entry refers to a declared name and has an absolute
//!   target: `/run/secrets/NAME` by default for secrets (a relative target
//!   goes under `/run/secrets/`), `/NAME` for configs;
//! - `mode` is octal as Compose reads it: `0440` (which YAML 1.2 would read
//!   as the decimal 440) means `r--r-----`, and so does `"0440"`.

use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_yaml::Value;

use super::error::{At, Fault};
use super::mounts;
use super::raw::RawSecret;
use super::value::{self, from_value};
use crate::stack::model::{Redacted, SecretMount, SecretSource};

/// `secrets` or `configs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Secret,
    Config,
}

impl Kind {
    pub(crate) fn section(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }
}

/// One top-level entry.
pub(crate) fn source(
    kind: Kind,
    raw: Option<RawSecret>,
    at: &At,
    working_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretSource, Fault> {
    let raw = raw.unwrap_or_default();
    if raw.external.is_some() {
        return Err(at.key("external").fault(format!(
            "external {} are Swarm objects, and rehost runs no Swarm: use `file:` or `environment:`",
            kind.section()
        )));
    }
    if raw.name.is_some() {
        return Err(at.key("name").fault(
            "`name:` names a Swarm object, and rehost runs no Swarm: the file in the container is named by `target:`",
        ));
    }
    if kind == Kind::Secret && raw.content.is_some() {
        return Err(at.key("content").fault(
            "a secret cannot be written in the compose file: use `file:` or `environment:`",
        ));
    }
    let given = [
        raw.file.is_some(),
        raw.environment.is_some(),
        raw.content.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(at.fault(match kind {
            Kind::Secret => "give exactly one of `file:` and `environment:`",
            Kind::Config => "give exactly one of `file:`, `environment:` and `content:`",
        }));
    }
    if let Some(file) = &raw.file {
        let at = at.key("file");
        let path = value::string(file, &at)?;
        if path.is_empty() {
            return Err(at.fault("expected a path, got an empty string"));
        }
        let path = mounts::host_path(&path, working_dir, env).map_err(|e| at.fault(e))?;
        return Ok(SecretSource::File(path));
    }
    if let Some(variable) = &raw.environment {
        let at = at.key("environment");
        let variable = value::string(variable, &at)?;
        let value = env(&variable).ok_or_else(|| {
            at.fault(format!(
                "the variable {variable} is not set (in rehost's environment or `stack.env_file`)"
            ))
        })?;
        return Ok(SecretSource::Environment {
            variable,
            value: Redacted(value),
        });
    }
    match &raw.content {
        Some(content) => Ok(SecretSource::Content(value::string(
            content,
            &at.key("content"),
        )?)),
        None => Err(at.fault("no source")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawUse {
    source: Option<Value>,
    target: Option<Value>,
    uid: Option<Value>,
    gid: Option<Value>,
    mode: Option<Value>,
}

/// A service's `secrets:` or `configs:` list; `declared` holds the
/// top-level names of that kind.
pub(crate) fn uses(
    kind: Kind,
    value: &Value,
    at: &At,
    declared: &IndexMap<String, SecretSource>,
) -> Result<Vec<SecretMount>, Fault> {
    let Value::Sequence(items) = value else {
        return Err(at.fault(format!(
            "expected a list of {} names or mappings with `source:`, got {}",
            kind.section(),
            value::kind_of(value)
        )));
    };
    let mut out: Vec<SecretMount> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = at.index(i);
        let raw = match item {
            Value::Mapping(_) => from_value::<RawUse>(item, &at)?,
            other => RawUse {
                source: Some(other.clone()),
                ..RawUse::default()
            },
        };
        let source_at = if item.is_mapping() {
            at.key("source")
        } else {
            at.clone()
        };
        let name = match &raw.source {
            Some(v) => value::string(v, &source_at)?,
            None => return Err(at.fault("missing required key `source`")),
        };
        let key = format!("{}.{name}", kind.section());
        if !declared.contains_key(&key) {
            return Err(source_at.fault(format!(
                "the {} `{name}` is not declared under the top-level `{}:`",
                &kind.section()[..kind.section().len() - 1],
                kind.section()
            )));
        }
        let target = match &raw.target {
            None => match kind {
                Kind::Secret => format!("/run/secrets/{name}"),
                Kind::Config => format!("/{name}"),
            },
            Some(v) => {
                let at = at.key("target");
                let t = value::string(v, &at)?;
                if t.is_empty() || t.split('/').any(|part| part == "..") {
                    return Err(at.fault(format!(
                        "expected a file name or an absolute path without `..`, got {t:?}"
                    )));
                }
                match (t.starts_with('/'), kind) {
                    (true, _) => t,
                    (false, Kind::Secret) => format!("/run/secrets/{t}"),
                    (false, Kind::Config) => format!("/{t}"),
                }
            }
        };
        if target.ends_with('/') {
            return Err(at
                .key("target")
                .fault("the target names a folder; name the file"));
        }
        if let Some(twice) = out.iter().find(|m| m.target == target) {
            return Err(at.fault(format!(
                "{target} is already the target of `{}`",
                twice.source
            )));
        }
        let id = |v: &Option<Value>, key: &str| match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => value::count(v, &at.key(key)).map(Some),
        };
        let mode = match &raw.mode {
            None | Some(Value::Null) => 0o444,
            Some(v) => mode(v, &at.key("mode"))?,
        };
        out.push(SecretMount {
            source: key,
            target,
            uid: id(&raw.uid, "uid")?,
            gid: id(&raw.gid, "gid")?,
            mode,
        });
    }
    Ok(out)
}

/// A file mode in octal: `0440`, `440`, `"0440"`, `0o440`.
fn mode(value: &Value, at: &At) -> Result<u32, Fault> {
    let text = value::string(value, at)?;
    let digits = text.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(at.fault(format!(
            "expected a file mode in octal like 0440, got {}",
            value::describe(value)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    fn env(name: &str) -> Option<String> {
        (name == "DB_PASSWORD").then(|| "hunter2".to_string())
    }

    fn declared() -> IndexMap<String, SecretSource> {
        IndexMap::from([
            (
                "secrets.db".to_string(),
                SecretSource::File("/s/db.txt".into()),
            ),
            ("configs.app".to_string(), SecretSource::Content("x".into())),
        ])
    }

    #[test]
    fn sources() {
        let at = At::root().key("secrets").key("db");
        let wd = Path::new("/opt/stack");
        let read = |kind, text: &str| {
            let raw: Option<RawSecret> = serde_yaml::from_str(text).unwrap();
            source(kind, raw, &at, wd, &env)
        };
        assert_eq!(
            read(Kind::Secret, "{file: ./db.txt}"),
            Ok(SecretSource::File("/opt/stack/db.txt".into()))
        );
        let got = read(Kind::Secret, "{environment: DB_PASSWORD}").unwrap();
        assert!(matches!(&got, SecretSource::Environment { value, .. } if value.0 == "hunter2"));
        assert!(!format!("{got:?}").contains("hunter2"));
        let err = read(Kind::Secret, "{environment: UNSET}").unwrap_err();
        assert!(err.message.contains("UNSET is not set"), "{}", err.message);
        let err = read(Kind::Secret, "{external: true}").unwrap_err();
        assert_eq!(err.at.to_string(), "secrets.db.external");
        assert!(read(Kind::Secret, "{content: x}").is_err());
        assert!(read(Kind::Secret, "{}").is_err());
        assert!(read(Kind::Secret, "{file: a, environment: DB_PASSWORD}").is_err());
        assert_eq!(
            read(Kind::Config, "{content: 'a: 1'}"),
            Ok(SecretSource::Content("a: 1".into()))
        );
    }

    #[test]
    fn service_uses() {
        let at = At::root().key("services").key("web").key("secrets");
        let got = uses(
            Kind::Secret,
            &yaml("[db, {source: db, target: pw, uid: '103', gid: 104, mode: 0440}]"),
            &at,
            &declared(),
        )
        .unwrap();
        assert_eq!(got[0].target, "/run/secrets/db");
        assert_eq!(got[0].mode, 0o444);
        assert_eq!(
            got[1],
            SecretMount {
                source: "secrets.db".into(),
                target: "/run/secrets/pw".into(),
                uid: Some(103),
                gid: Some(104),
                mode: 0o440,
            }
        );
        let got = uses(Kind::Config, &yaml("[app]"), &at, &declared()).unwrap();
        assert_eq!(got[0].target, "/app");
        let err = uses(Kind::Secret, &yaml("[nope]"), &at, &declared()).unwrap_err();
        assert_eq!(err.at.to_string(), "services.web.secrets[0]");
        let err = uses(Kind::Secret, &yaml("[db, db]"), &at, &declared()).unwrap_err();
        assert!(
            err.message.contains("already the target"),
            "{}",
            err.message
        );
        let err = uses(
            Kind::Secret,
            &yaml("[{source: db, mode: 999}]"),
            &at,
            &declared(),
        )
        .unwrap_err();
        assert_eq!(err.at.to_string(), "services.web.secrets[0].mode");
        let err = uses(
            Kind::Secret,
            &yaml("[{source: db, target: ../x}]"),
            &at,
            &declared(),
        )
        .unwrap_err();
        assert_eq!(err.at.to_string(), "services.web.secrets[0].target");
    }
}
