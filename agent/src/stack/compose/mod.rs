//! The compose loader: a `docker-compose.yml` (the subset in SPEC.md) →
//! [`Project`].
//!
//! Pipeline, each stage in its own module:
//! 1. [`env_file`]: `stack.env_file` read for `${VAR}` values; the process
//!    environment wins over it, like Compose's `--env-file` (only in [`load`]).
//! 2. YAML text → [`serde_yaml::Value`]; syntax errors keep libyaml's position.
//! 3. [`tree`]: merge keys, `x-*` extension fields dropped, `${VAR}`
//!    interpolated in every string value (Compose's rules).
//! 4. [`raw`]: structure checked with `deny_unknown_fields` — an unsupported
//!    key is an error naming it.
//! 5. [`service`], [`networks`] (with [`ports`], [`mounts`], [`duration`],
//!    [`shlex`]): values normalized into the model, names checked;
//!    [`graph`]: no `depends_on` cycle.
//! 6. Every error is located in the text: `FILE:LINE:COL: KEY: message`
//!    (the same code as `rehost.yaml`'s errors).
//!
//! Rules worth knowing (they are Compose v1's unless said otherwise):
//! - `$PWD` is an ordinary variable: taken from the environment, empty when
//!   unset (Compose v1 does not default it to the project folder).
//! - A service's `env_file:` expands `${VAR}` from the process environment
//!   only, not from `stack.env_file` (python-dotenv in Compose v1 does so).
//! - No `.env` file is read implicitly; `stack.env_file` is the only source
//!   besides the environment (Compose reads `<project dir>/.env` by default).
//! - The project name is rehost's `stack.project` (which defaults to the
//!   compose file's folder name); a top-level `name:` that differs is
//!   ignored with a warning.
//! - Several files (`stack.compose` as a list) are each interpolated, then
//!   merged (see `merge`); `extends:` is resolved on the merged tree (see
//!   `extends`); errors are located in the file that holds the key.
//!
//! [`parse`] opens no file except the `env_file:`s of services and the files
//! `extends:` names (regular files only, size-capped), so it can be fuzzed;
//! it never panics on any input.

mod build;
mod duration;
mod env_file;
mod error;
mod extends;
mod graph;
mod merge;
mod mounts;
mod networks;
mod ports;
mod raw;
mod secrets;
mod service;
mod settings;
mod shlex;
mod tree;
mod value;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::Value;

use crate::config::StackConfig;
use crate::stack::model::{Network, NetworkMode, Project};
use error::At;
pub use error::ComposeError;
use service::{Ctx, Names};

/// The name under which a `dockerfile_inline:` text is added to the build
/// context (the engine puts it there, replacing a file of that name).
pub const INLINE_DOCKERFILE: &str = ".rehost-inline.Dockerfile";

/// Loads the stack's compose file: `stack.env_file` (if any) gives the
/// variables for `${VAR}`, overridden by `env` (the process environment in
/// production); `stack.profiles` selects the services with `profiles:`.
/// Keys accepted without effect are logged as warnings.
pub fn load(
    stack: &StackConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, ComposeError> {
    let from_file = match &stack.env_file {
        Some(path) => env_file::read(path, env)?,
        None => IndexMap::new(),
    };
    let merged = |name: &str| env(name).or_else(|| from_file.get(name).cloned());
    let mut sources = Vec::new();
    for path in std::iter::once(&stack.compose).chain(&stack.overrides) {
        let file = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        let text = read_file(&file)?;
        sources.push((file, text));
    }
    // Relative paths of every file are relative to the first one's folder
    // (Compose's project directory).
    let working_dir = sources
        .first()
        .and_then(|(f, _)| f.parent())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let project = parse_with(
        sources,
        &working_dir,
        &stack.project,
        &stack.profiles,
        &merged,
        env,
    )?;
    for warning in &project.warnings {
        tracing::warn!("{warning}");
    }
    Ok(project)
}

/// Turns the compose file's `text` into a [`Project`]. `file` is used in
/// messages, `working_dir` to resolve relative paths (both should be
/// absolute), `project` names the project, `env` gives `${VAR}` values.
pub fn parse(
    text: &str,
    file: &Path,
    working_dir: &Path,
    project: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, ComposeError> {
    let sources = vec![(file.to_path_buf(), text.to_string())];
    parse_with(sources, working_dir, project, &[], env, env)
}

/// [`parse`] with the profiles `profiles` enabled.
pub fn parse_profiles(
    text: &str,
    file: &Path,
    working_dir: &Path,
    project: &str,
    profiles: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, ComposeError> {
    let sources = vec![(file.to_path_buf(), text.to_string())];
    parse_with(sources, working_dir, project, profiles, env, env)
}

/// [`parse`], where `env` holds the compose file's variables (`stack.env_file`
/// and the process environment) and `process_env` only the latter: Compose v1
/// expands `${VAR}` inside a service's `env_file:` from the process
/// environment alone.
fn parse_with(
    sources: Vec<(PathBuf, String)>,
    working_dir: &Path,
    project: &str,
    profiles: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    process_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, ComposeError> {
    // Each file is read and interpolated alone, then merged into the first
    // with Compose's override rules.
    let mut value = Value::Null;
    for (i, (file, text)) in sources.iter().enumerate() {
        let one = std::slice::from_ref(&sources[i]);
        let mut doc: Value =
            serde_yaml::from_str(text).map_err(|err| ComposeError::syntax(file, &err))?;
        if !doc.is_mapping() {
            return Err(At::root()
                .fault(format!(
                    "expected a mapping with `services:` at the top level, got {}",
                    value::kind_of(&doc)
                ))
                .into_error_in(one));
        }
        tree::prepare(&mut doc, env).map_err(|f| f.into_error_in(one))?;
        if i == 0 {
            value = doc;
        } else {
            merge::merge_files(&mut value, doc);
        }
    }
    let mut resolver = extends::Resolver { env, sources };
    resolver.resolve(&mut value, working_dir)?;
    let sources = resolver.sources;
    let file = sources.first().map(|(f, _)| f.clone()).unwrap_or_default();
    let cx = Ctx {
        sources: &sources,
        working_dir,
        env,
        process_env,
    };
    let raw: raw::RawFile = value::from_value(&value, &At::root()).map_err(|f| cx.err(f))?;
    let mut warnings = Vec::new();
    if let Some(name) = &raw.name {
        let at = At::root().key("name");
        let name = value::string(name, &at).map_err(|f| cx.err(f))?;
        if name != project {
            // Compose lets `-p` win over `name:`; `stack.project` is rehost's `-p`.
            warnings.push(
                cx.err(at.fault(format!(
                    "ignored: the project is `{project}` (`stack.project`, which defaults to the compose file's folder name); set `stack.project: {name}` to use this name"
                )))
                .to_string(),
            );
        }
    }

    let raw_services = raw.services.unwrap_or_default();
    let raw_networks = raw.networks.unwrap_or_default();
    let raw_volumes = raw.volumes.unwrap_or_default();
    let mut secret_sources = IndexMap::new();
    for (kind, entries) in [
        (secrets::Kind::Secret, raw.secrets.unwrap_or_default()),
        (secrets::Kind::Config, raw.configs.unwrap_or_default()),
    ] {
        for (key, raw) in entries {
            let at = At::root().key(kind.section()).key(&key);
            check_name(&key, &at).map_err(|f| cx.err(f))?;
            let source =
                secrets::source(kind, raw, &at, working_dir, env).map_err(|f| cx.err(f))?;
            secret_sources.insert(format!("{}.{key}", kind.section()), source);
        }
    }
    if raw_services.is_empty() {
        return Err(cx
            .err(At::root().fault(
                "no services: a compose file needs `services:` with at least one service",
            )));
    }
    let top = At::root();
    for (section, keys) in [
        ("services", raw_services.keys().collect::<Vec<_>>()),
        ("networks", raw_networks.keys().collect()),
        ("volumes", raw_volumes.keys().collect()),
    ] {
        for key in keys {
            check_name(key, &top.key(section).key(key)).map_err(|f| cx.err(f))?;
        }
    }
    let service_names: HashSet<String> = raw_services.keys().cloned().collect();
    let mut network_names: HashSet<String> = raw_networks.keys().cloned().collect();
    network_names.insert("default".to_string());
    let volume_names: HashSet<String> = raw_volumes.keys().cloned().collect();
    let names = Names {
        services: &service_names,
        networks: &network_names,
        volumes: &volume_names,
        secrets: &secret_sources,
    };

    let mut services = IndexMap::new();
    let mut dependency_at = IndexMap::new();
    for (name, raw) in raw_services {
        let at = top.key("services").key(&name);
        let loaded = service::load(&name, raw.unwrap_or_default(), &at, &names, &cx)?;
        dependency_at.insert(name.clone(), loaded.dependency_at);
        // Only what runs is warned about.
        if enabled(&loaded.service.profiles, profiles) {
            warnings.extend(loaded.warnings.into_iter().map(|f| cx.err(f).to_string()));
        }
        services.insert(name, loaded.service);
    }
    let services =
        select_profiles(services, profiles, &dependency_at, &top).map_err(|f| cx.err(f))?;
    let used: HashSet<&str> = services
        .values()
        .flat_map(|s| s.secrets.iter().map(|m| m.source.as_str()))
        .collect();
    secret_sources.retain(|key, _| used.contains(key.as_str()));

    let mut networks = IndexMap::new();
    for (key, raw) in raw_networks {
        let at = top.key("networks").key(&key);
        let network = networks::network(project, &key, raw, &at).map_err(|f| cx.err(f))?;
        networks.insert(key, network);
    }
    let uses_default = services
        .values()
        .any(|s| s.networks.contains_key("default"));
    if uses_default && !networks.contains_key("default") {
        networks.insert("default".to_string(), Network::project_default(project));
    }
    for (name, service) in &services {
        for (key, attachment) in &service.networks {
            let (Some(ip), Some(network)) = (attachment.ipv4_address, networks.get(key)) else {
                continue;
            };
            // An external network's subnets are not known here; the Engine checks.
            if !network.external && !networks::in_subnets(network, ip) {
                let at = top
                    .key("services")
                    .key(name)
                    .key("networks")
                    .key(key)
                    .key("ipv4_address");
                return Err(cx.err(at.fault(format!(
                    "{ip} is not inside a subnet of the network `{key}` (a fixed address needs `ipam: config: [{{subnet: ...}}]` on the network)"
                ))));
            }
        }
    }

    let mut volumes = IndexMap::new();
    for (key, raw) in raw_volumes {
        let at = top.key("volumes").key(&key);
        let volume = networks::volume(project, &key, raw, &at).map_err(|f| cx.err(f))?;
        volumes.insert(key, volume);
    }

    if let Some(cycle) = graph::find_cycle(&services) {
        let (last, target) = match cycle.as_slice() {
            [.., last, target] => (last.clone(), target.clone()),
            _ => (String::new(), String::new()),
        };
        let at = dependency_at
            .get(&last)
            .and_then(|deps| deps.get(&target))
            .cloned()
            .unwrap_or_else(|| top.key("services").key(&last).key("network_mode"));
        return Err(cx.err(at.fault(format!("dependency cycle: {}", cycle.join(" → ")))));
    }

    Ok(Project {
        name: project.to_string(),
        compose_file: file,
        override_files: cx.sources.iter().skip(1).map(|(f, _)| f.clone()).collect(),
        working_dir: working_dir.to_path_buf(),
        services,
        networks,
        volumes,
        secrets: secret_sources,
        warnings,
    })
}

/// Whether a service with `own` profiles runs when `enabled` are.
fn enabled(own: &[String], enabled: &[String]) -> bool {
    own.is_empty() || own.iter().any(|p| enabled.contains(p))
}

/// Drops the services whose profiles are not enabled. A service that runs
/// may not need one that does not (`depends_on` with `required: true`,
/// `links`, `network_mode: service:`): Compose refuses that too, and the
/// error points at the reference. Optional dependencies on a dropped service
/// are dropped with it.
fn select_profiles(
    mut services: IndexMap<String, crate::stack::model::Service>,
    profiles: &[String],
    dependency_at: &IndexMap<String, IndexMap<String, At>>,
    top: &At,
) -> Result<IndexMap<String, crate::stack::model::Service>, error::Fault> {
    let off: HashSet<String> = services
        .values()
        .filter(|s| !enabled(&s.profiles, profiles))
        .map(|s| s.name.clone())
        .collect();
    if off.is_empty() {
        return Ok(services);
    }
    services.retain(|name, _| !off.contains(name));
    let needs = |service: &str, profiles_of: &str| {
        format!(
            "`{service}` is in a profile that is not enabled (`stack.profiles`), so nothing can depend on it; enable the profile or give this service the same one (needed by {profiles_of})"
        )
    };
    for (name, s) in services.iter_mut() {
        let at = top.key("services").key(name);
        for (dep, d) in &s.depends_on {
            if off.contains(dep) && d.required {
                let at = dependency_at
                    .get(name)
                    .and_then(|m| m.get(dep))
                    .cloned()
                    .unwrap_or_else(|| at.key("depends_on"));
                return Err(at.fault(needs(dep, name)));
            }
        }
        s.depends_on.retain(|dep, _| !off.contains(dep));
        if let Some(i) = s.links.iter().position(|(l, _)| off.contains(l)) {
            return Err(at.key("links").index(i).fault(needs(&s.links[i].0, name)));
        }
        if let Some(NetworkMode::Service(other)) = &s.network_mode {
            if off.contains(other) {
                return Err(at.key("network_mode").fault(needs(other, name)));
            }
        }
    }
    Ok(services)
}

/// Largest compose file read (real ones are a few KiB).
const MAX_FILE: u64 = 16 << 20;

/// A compose file's text: a regular file of at most [`MAX_FILE`] bytes, so
/// that a path to a device or a pipe is an error, not a hang.
pub(crate) fn read_file(path: &Path) -> Result<String, ComposeError> {
    use std::io::Read as _;
    let err = |e: std::io::Error| ComposeError::read(path, &e);
    let f = std::fs::File::open(path).map_err(err)?;
    let meta = f.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::other("not a regular file")));
    }
    let mut text = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(err)?;
    if text.len() as u64 > MAX_FILE {
        return Err(err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_FILE >> 20
        ))));
    }
    Ok(text)
}

/// Service, network and volume names: what Compose accepts, which is also
/// what can go into an Engine object name after `<project>_`.
fn check_name(name: &str, at: &At) -> Result<(), error::Fault> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(at.fault(format!(
            "{name:?} is not a valid name: use letters, digits, `.`, `_` and `-`, starting with a letter or digit"
        )))
    }
}
