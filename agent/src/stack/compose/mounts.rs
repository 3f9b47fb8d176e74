//! A service's `volumes:` entries, short (`./data:/data:ro`, `named:/v`,
//! `/anon`) and long (`{ type: bind, source: ./data, target: /data }`).
//!
//! Invariants of every [`Mount`] returned: the target is an absolute
//! container path; a bind source is absolute and lexically normalized
//! (relative ones are resolved against the compose file's folder, `~` against
//! `$HOME`, as Compose v1 does); a named volume is left to the caller to
//! check against the project's `volumes:`.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

use super::error::{At, Fault};
use super::value::{self, from_value};
use crate::stack::model::Mount;

/// One `volumes:` item of a service.
pub(crate) fn parse(
    value: &Value,
    at: &At,
    working_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Mount, Fault> {
    match value {
        Value::Mapping(_) => long(value, at, working_dir, env),
        Value::String(text) => short(text, working_dir, env).map_err(|e| at.fault(e)),
        other => Err(at.fault(format!(
            "expected a volume like \"./data:/data:ro\" or a mapping with `type:`, got {}",
            value::kind_of(other)
        ))),
    }
}

/// `TARGET`, `SOURCE:TARGET` or `SOURCE:TARGET:MODE`.
fn short(
    text: &str,
    working_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Mount, String> {
    let expected = |why: String| {
        format!("{why}: expected a volume like \"./data:/data\", \"name:/data:ro\" or \"/data\", got {text:?}")
    };
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, mode] => (Some(*source), *target, Some(*mode)),
        _ => return Err(expected("too many `:`".to_string())),
    };
    check_target(target).map_err(expected)?;
    let read_only = match mode {
        None => false,
        Some(mode) => read_only(mode).map_err(expected)?,
    };
    let target = target.to_string();
    match source {
        None => {
            if mode.is_some() {
                return Err(expected("a mode needs a source".to_string()));
            }
            Ok(Mount::Anonymous { target })
        }
        Some("") => Err(expected("the source is empty".to_string())),
        Some(source) if is_path(source) => Ok(Mount::Bind {
            source: host_path(source, working_dir, env).map_err(expected)?,
            target,
            read_only,
            create_host_path: true,
        }),
        Some(name) => Ok(Mount::Volume {
            name: name.to_string(),
            target,
            read_only,
        }),
    }
}

/// As Compose decides: a source is a host path when it looks like one.
fn is_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~'])
}

/// `ro` or `rw`; SELinux relabelling (`z`, `Z`), `nocopy` and propagation
/// options are refused rather than dropped, since rehost would not apply them.
/// The consistency flags of Docker Desktop (`cached`, `delegated`,
/// `consistent`) are accepted: the Engine on Linux ignores them too.
fn read_only(mode: &str) -> Result<bool, String> {
    let mut read_only = false;
    for option in mode.split(',') {
        match option {
            "ro" => read_only = true,
            "rw" | "cached" | "delegated" | "consistent" => {}
            other => {
                return Err(format!(
                    "the volume option {other:?} is not supported by rehost (only `ro` and `rw`)"
                ))
            }
        }
    }
    Ok(read_only)
}

fn check_target(target: &str) -> Result<(), String> {
    if !target.starts_with('/') {
        return Err(format!(
            "the container path {target:?} must be absolute (start with `/`)"
        ));
    }
    Ok(())
}

/// Resolves a bind source: `~` and `~/x` with `$HOME`, relative paths against
/// the compose file's folder; then `.` and `..` are removed lexically
/// (Python's `os.path.normpath`, which Compose v1 applies).
pub(crate) fn host_path(
    source: &str,
    working_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, String> {
    let joined = if source == "~" || source.starts_with("~/") {
        let home = env("HOME")
            .filter(|h| h.starts_with('/'))
            .ok_or_else(|| format!("{source:?} needs $HOME set to an absolute path"))?;
        Path::new(&home).join(source.trim_start_matches('~').trim_start_matches('/'))
    } else if source.starts_with('~') {
        return Err(format!(
            "{source:?}: `~user` paths are not supported, write the path out"
        ));
    } else {
        working_dir.join(source)
    };
    Ok(normalize(&joined))
}

/// Lexical normalization of an absolute path (`/a/./b/../c` → `/a/c`); `..`
/// at the root stays at the root, as in `normpath`.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLong {
    #[serde(rename = "type")]
    kind: Option<Value>,
    source: Option<Value>,
    target: Option<Value>,
    read_only: Option<Value>,
    bind: Option<RawBindOptions>,
    tmpfs: Option<RawTmpfsOptions>,
    /// Docker Desktop's; the Engine on Linux ignores it, and so does rehost.
    #[allow(dead_code, reason = "accepted and, like the Engine on Linux, not used")]
    consistency: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBindOptions {
    create_host_path: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTmpfsOptions {
    size: Option<Value>,
    mode: Option<Value>,
}

fn long(
    value: &Value,
    at: &At,
    working_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Mount, Fault> {
    let raw: RawLong = from_value(value, at)?;
    let kind = match &raw.kind {
        Some(k) => value::string(k, &at.key("type"))?,
        None => return Err(at.fault("missing required key `type` (`bind`, `volume` or `tmpfs`)")),
    };
    if raw.bind.is_some() && kind != "bind" {
        return Err(at.key("bind").fault("`bind:` options need `type: bind`"));
    }
    if raw.tmpfs.is_some() && kind != "tmpfs" {
        return Err(at.key("tmpfs").fault("`tmpfs:` options need `type: tmpfs`"));
    }
    let at_target = at.key("target");
    let target = match &raw.target {
        Some(t) => value::string(t, &at_target)?,
        None => return Err(at.fault("missing required key `target` (the container path)")),
    };
    check_target(&target).map_err(|e| at_target.fault(e))?;
    let read_only = match &raw.read_only {
        Some(v) => value::boolean(v, &at.key("read_only"))?,
        None => false,
    };
    let at_source = at.key("source");
    let source = match &raw.source {
        Some(Value::Null) | None => None,
        Some(s) => Some(value::string(s, &at_source)?).filter(|s| !s.is_empty()),
    };
    match kind.as_str() {
        "bind" => {
            let source =
                source.ok_or_else(|| at.fault("missing required key `source` (the host path)"))?;
            let create_host_path = match raw.bind.as_ref().and_then(|b| b.create_host_path.as_ref()) {
                Some(v) => value::boolean(v, &at.key("bind").key("create_host_path"))?,
                None => false,
            };
            Ok(Mount::Bind {
                source: host_path(&source, working_dir, env).map_err(|e| at_source.fault(e))?,
                target,
                read_only,
                create_host_path,
            })
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(at_source.fault("a tmpfs mount has no source"));
            }
            if read_only {
                return Err(at.key("read_only").fault("a tmpfs mount cannot be read-only"));
            }
            let (size, mode) = match &raw.tmpfs {
                None => (None, None),
                Some(t) => {
                    let at = at.key("tmpfs");
                    let size = match &t.size {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(super::settings::bytes(v, &at.key("size"))?),
                    };
                    let mode = match &t.mode {
                        None | Some(Value::Null) => None,
                        Some(v) => {
                            let at = at.key("mode");
                            let text = value::string(v, &at)?;
                            // Octal as in chmod (`1777`), whatever YAML 1.2
                            // made of the digits: what people mean by it.
                            Some(
                                u32::from_str_radix(text.trim_start_matches("0o"), 8)
                                    .ok()
                                    .filter(|m| *m <= 0o7777)
                                    .ok_or_else(|| {
                                        at.fault(format!(
                                            "expected a file mode in octal like 1777, got {text:?}"
                                        ))
                                    })?,
                            )
                        }
                    };
                    (size, mode)
                }
            };
            Ok(Mount::Tmpfs { target, size, mode })
        }
        "volume" => match source {
            None if !read_only => Ok(Mount::Anonymous { target }),
            None => Err(at.fault("an anonymous volume cannot be read-only")),
            Some(name) => Ok(Mount::Volume {
                name,
                target,
                read_only,
            }),
        },
        other => Err(at.key("type").fault(format!(
            "expected `bind`, `volume` or `tmpfs`, got {other:?} (npipe and cluster are not supported by rehost)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME").then(|| "/home/op".to_string())
    }

    fn wd() -> &'static Path {
        Path::new("/opt/stack")
    }

    fn bind(source: &str, target: &str, read_only: bool) -> Mount {
        Mount::Bind {
            source: PathBuf::from(source),
            target: target.to_string(),
            read_only,
            create_host_path: true,
        }
    }

    #[test]
    fn short_forms() {
        let table: &[(&str, Mount)] = &[
            ("./data:/data", bind("/opt/stack/data", "/data", false)),
            ("./data:/data:ro", bind("/opt/stack/data", "/data", true)),
            (
                "./data:/data:cached",
                bind("/opt/stack/data", "/data", false),
            ),
            (
                "./data:/data:ro,delegated",
                bind("/opt/stack/data", "/data", true),
            ),
            ("../shared/./x:/x:rw", bind("/opt/shared/x", "/x", false)),
            (
                "/srv/www:/usr/local/apache2/htdocs:ro",
                bind("/srv/www", "/usr/local/apache2/htdocs", true),
            ),
            ("~/cfg:/cfg", bind("/home/op/cfg", "/cfg", false)),
            (".:/app", bind("/opt/stack", "/app", false)),
            (
                "prom-data:/prometheus",
                Mount::Volume {
                    name: "prom-data".to_string(),
                    target: "/prometheus".to_string(),
                    read_only: false,
                },
            ),
            (
                "/var/lib/x",
                Mount::Anonymous {
                    target: "/var/lib/x".to_string(),
                },
            ),
        ];
        for (text, want) in table {
            assert_eq!(short(text, wd(), &env).as_ref(), Ok(want), "input {text:?}");
        }
    }

    #[test]
    fn bad_short_forms() {
        let table: &[(&str, &str)] = &[
            ("./data:data", "must be absolute"),
            ("data", "must be absolute"),
            ("./a:/a:z", "not supported by rehost"),
            ("./a:/a:ro,Z", "not supported by rehost"),
            ("./a:/a:nocopy", "not supported by rehost"),
            ("./a:/a:ro:x", "too many"),
            (":/a", "source is empty"),
            ("~bob/x:/x", "`~user`"),
        ];
        for (text, why) in table {
            let err = short(text, wd(), &env).unwrap_err();
            assert!(err.contains(why), "input {text:?}: {err}");
        }
        let err = short("~/x:/x", wd(), &|_| None).unwrap_err();
        assert!(err.contains("$HOME"), "{err}");
    }

    #[test]
    fn long_forms() {
        let at = At::root().key("volumes").index(0);
        let parse = |text: &str| parse(&serde_yaml::from_str(text).unwrap(), &at, wd(), &env);
        assert_eq!(
            parse("{type: bind, source: ./www, target: /www, read_only: true, bind: {create_host_path: true}}"),
            Ok(bind("/opt/stack/www", "/www", true))
        );
        assert_eq!(
            parse("{type: bind, source: /x, target: /www}"),
            Ok(Mount::Bind {
                source: PathBuf::from("/x"),
                target: "/www".into(),
                read_only: false,
                create_host_path: false
            })
        );
        assert_eq!(
            parse("{type: tmpfs, target: /t, tmpfs: {size: 64m, mode: 1777}}"),
            Ok(Mount::Tmpfs {
                target: "/t".into(),
                size: Some(64 << 20),
                mode: Some(0o1777)
            })
        );
        let err = parse("{type: tmpfs, source: x, target: /t}").unwrap_err();
        assert_eq!(err.at.to_string(), "volumes[0].source");
        let err = parse("{type: volume, source: v, target: /t, bind: {create_host_path: true}}")
            .unwrap_err();
        assert_eq!(err.at.to_string(), "volumes[0].bind");
        assert_eq!(
            parse("{type: volume, source: db, target: /db}"),
            Ok(Mount::Volume {
                name: "db".to_string(),
                target: "/db".to_string(),
                read_only: false
            })
        );
        assert_eq!(
            parse("{type: volume, target: /tmp/x}"),
            Ok(Mount::Anonymous {
                target: "/tmp/x".to_string()
            })
        );
        let err = parse("{type: npipe, target: /t}").unwrap_err();
        assert_eq!(err.at.to_string(), "volumes[0].type");
        let err = parse("{type: bind, target: /t}").unwrap_err();
        assert!(err.message.contains("`source`"), "{}", err.message);
        let err =
            parse("{type: bind, source: ., target: /t, bind: {propagation: rshared}}").unwrap_err();
        assert_eq!(err.at.to_string(), "volumes[0].bind.propagation");
        let err = parse("{type: bind, source: ., target: rel}").unwrap_err();
        assert_eq!(err.at.to_string(), "volumes[0].target");
        let err = parse("42").unwrap_err();
        assert!(err.message.contains("got a number"), "{}", err.message);
    }
}
