//! `extends:` — a service built on another one, of the same file or of
//! another file, with Compose's override rules (see `merge`).
//!
//! Invariants:
//! - resolved on the interpolated tree, before the structure is checked, so
//!   the result is checked like any service;
//! - a base from another file has its relative paths (`build`, `env_file`,
//!   bind sources) made absolute against that file's folder, as Compose
//!   does; only the named service is taken from that file;
//! - chains are followed (a base may extend another), a cycle is an error,
//!   and so is a chain deeper than [`MAX_DEPTH`];
//! - every file read is added to the sources errors are located in.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::error::{At, ComposeError, Fault};
use super::merge::merge_service;
use super::{mounts, tree, value};

/// Longest `extends` chain followed.
const MAX_DEPTH: usize = 16;

/// What resolving needs besides the tree.
pub(crate) struct Resolver<'a> {
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    /// Files read so far (path, text), the compose files first.
    pub(crate) sources: Vec<(PathBuf, String)>,
}

impl Resolver<'_> {
    fn err(&self, fault: Fault) -> ComposeError {
        fault.into_error_in(&self.sources)
    }

    /// Replaces every service of `top` that has `extends:` by the merge of
    /// its base and itself. `dir` is the folder of the (first) compose file.
    pub(crate) fn resolve(&mut self, top: &mut Value, dir: &Path) -> Result<(), ComposeError> {
        let Some(Value::Mapping(services)) = top.get("services").cloned() else {
            return Ok(());
        };
        let mut out = services.clone();
        for (name, service) in &services {
            let (Some(name), Value::Mapping(service)) = (name.as_str(), service) else {
                continue;
            };
            if service.contains_key("extends") {
                let resolved = self.service(&services, name, service, dir, dir, &mut Vec::new())?;
                out.insert(Value::String(name.to_string()), Value::Mapping(resolved));
            }
        }
        if let Value::Mapping(top) = top {
            top.insert(Value::String("services".into()), Value::Mapping(out));
        }
        Ok(())
    }

    /// `service` (named `name`, of the file in `file_dir` whose services are
    /// `services`) with its `extends` chain applied.
    fn service(
        &mut self,
        services: &Mapping,
        name: &str,
        service: &Mapping,
        file_dir: &Path,
        project_dir: &Path,
        chain: &mut Vec<(PathBuf, String)>,
    ) -> Result<Mapping, ComposeError> {
        let at = At::root().key("services").key(name).key("extends");
        let mut own = service.clone();
        let Some(extends) = own.remove("extends") else {
            return Ok(own);
        };
        let me = (file_dir.to_path_buf(), name.to_string());
        if chain.contains(&me) {
            let names: Vec<String> = chain.iter().map(|(_, n)| n.clone()).collect();
            return Err(
                self.err(at.fault(format!("`extends` cycle: {} → {name}", names.join(" → "))))
            );
        }
        if chain.len() >= MAX_DEPTH {
            return Err(
                self.err(at.fault(format!("`extends` chain longer than {MAX_DEPTH} services")))
            );
        }
        chain.push(me);
        let (base_name, file) = match &extends {
            Value::String(s) => (s.clone(), None),
            Value::Mapping(m) => {
                for key in m.keys() {
                    let k = key.as_str().unwrap_or_default();
                    if k != "service" && k != "file" {
                        return Err(self.err(at.key(k).fault(format!(
                            "`{k}` is not supported by rehost (supported here: `service`, `file`)"
                        ))));
                    }
                }
                let service = m
                    .get("service")
                    .ok_or_else(|| self.err(at.fault("missing required key `service`")))
                    .and_then(|v| value::string(v, &at.key("service")).map_err(|f| self.err(f)))?;
                let file = match m.get("file") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(value::string(v, &at.key("file")).map_err(|f| self.err(f))?),
                };
                (service, file)
            }
            other => {
                return Err(self.err(at.fault(format!(
                    "expected a service name or a mapping with `service` and `file`, got {}",
                    value::kind_of(other)
                ))))
            }
        };
        let mut base = match file {
            None => {
                let base = match services.get(base_name.as_str()) {
                    Some(Value::Mapping(b)) => b.clone(),
                    Some(Value::Null) => Mapping::new(),
                    _ => {
                        return Err(self.err(
                            at.fault(format!("no service `{base_name}` in this file to extend")),
                        ))
                    }
                };
                self.service(services, &base_name, &base, file_dir, project_dir, chain)?
            }
            Some(file) => {
                let path = mounts::host_path(&file, file_dir, self.env)
                    .map_err(|e| self.err(at.key("file").fault(e)))?;
                let text = super::read_file(&path)?;
                let mut other: Value =
                    serde_yaml::from_str(&text).map_err(|e| ComposeError::syntax(&path, &e))?;
                self.sources.push((path.clone(), text.clone()));
                let other_sources = [(path.clone(), text)];
                tree::prepare(&mut other, self.env).map_err(|f| f.into_error_in(&other_sources))?;
                let other_services = match other.get("services") {
                    Some(Value::Mapping(s)) => s.clone(),
                    _ => Mapping::new(),
                };
                let base = match other_services.get(base_name.as_str()) {
                    Some(Value::Mapping(b)) => b.clone(),
                    _ => {
                        return Err(self.err(
                            at.fault(format!("no service `{base_name}` in {}", path.display())),
                        ))
                    }
                };
                let other_dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
                let mut base = self.service(
                    &other_services,
                    &base_name,
                    &base,
                    &other_dir,
                    project_dir,
                    chain,
                )?;
                if other_dir != project_dir {
                    absolute_paths(&mut base, &other_dir);
                }
                base
            }
        };
        chain.pop();
        merge_service(&mut base, own);
        Ok(base)
    }
}

/// Makes the relative paths of a service from another folder absolute.
fn absolute_paths(service: &mut Mapping, dir: &Path) {
    let fix = |s: &str| -> String {
        if s.starts_with('.') {
            mounts::normalize(&dir.join(s))
                .to_string_lossy()
                .into_owned()
        } else {
            s.to_string()
        }
    };
    if let Some(build) = service.get_mut("build") {
        match build {
            Value::String(s) => *s = fix(s),
            Value::Mapping(m) => {
                if let Some(Value::String(c)) = m.get_mut("context") {
                    *c = fix(c);
                } else if !m.contains_key("context") {
                    m.insert(
                        Value::String("context".into()),
                        Value::String(dir.to_string_lossy().into_owned()),
                    );
                }
            }
            _ => {}
        }
    }
    if let Some(env_file) = service.get_mut("env_file") {
        match env_file {
            Value::String(s) => *s = fix(s),
            Value::Sequence(items) => {
                for item in items {
                    if let Value::String(s) = item {
                        *s = fix(s);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Sequence(volumes)) = service.get_mut("volumes") {
        for v in volumes {
            match v {
                Value::String(s) if s.starts_with('.') => {
                    if let Some((source, rest)) = s.split_once(':') {
                        *s = format!("{}:{rest}", fix(source));
                    }
                }
                Value::Mapping(m) => {
                    let bind = m.get("type").and_then(Value::as_str) == Some("bind");
                    if let (true, Some(Value::String(source))) = (bind, m.get_mut("source")) {
                        *source = fix(source);
                    }
                }
                _ => {}
            }
        }
    }
}
