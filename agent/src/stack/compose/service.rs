//! One service: raw keys → [`Service`], with Compose's defaults and forms.
//!
//! Invariants of the result (see `model` for what the engine relies on):
//! - names it refers to (networks, named volumes, `depends_on` targets,
//!   `network_mode: service:X`) exist — checked against the names the file
//!   declares, passed in as [`Names`];
//! - `environment` holds `env_file` values first, then `environment:` (which
//!   wins); a bare `KEY` takes the loader's variable, and is left out when
//!   that is unset (also removing an `env_file` value, as Compose v1 does);
//! - paths are absolute (bind sources, build context).

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::Value;

use super::error::{At, ComposeError, Fault};
use super::raw::{RawDependency, RawHealthcheck, RawService, RawServiceNetwork};
use super::secrets::{self, Kind};
use super::value::{self, from_value, opt};
use super::{build, duration, env_file, mounts, ports, settings, shlex};
use crate::stack::model::{
    Condition, Dependency, Healthcheck, Mount, NetworkMode, PullPolicy, Restart, SecretSource,
    Service, ServiceNetwork,
};

/// What the loader needs besides the service itself.
pub(crate) struct Ctx<'a> {
    /// The compose files (path, text) in merge order; errors are located in
    /// them.
    pub(crate) sources: &'a [(PathBuf, String)],
    pub(crate) working_dir: &'a Path,
    /// The compose file's variables: `stack.env_file` and the process environment.
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    /// The process environment alone, for `${VAR}` inside services' env files.
    pub(crate) process_env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, fault: Fault) -> ComposeError {
        fault.into_error_in(self.sources)
    }
}

/// The names a service may refer to.
pub(crate) struct Names<'a> {
    pub(crate) services: &'a HashSet<String>,
    /// Declared networks plus `default`, which always exists implicitly.
    pub(crate) networks: &'a HashSet<String>,
    pub(crate) volumes: &'a HashSet<String>,
    /// Top-level secrets and configs, keyed `secrets.NAME` / `configs.NAME`.
    pub(crate) secrets: &'a IndexMap<String, SecretSource>,
}

/// A normalized service, and where each of its dependencies is written
/// (to point a `depends_on` cycle at the right line).
pub(crate) struct Loaded {
    pub(crate) service: Service,
    pub(crate) dependency_at: IndexMap<String, At>,
    /// Keys accepted without effect.
    pub(crate) warnings: Vec<Fault>,
}

pub(crate) fn load(
    name: &str,
    raw: RawService,
    at: &At,
    names: &Names<'_>,
    cx: &Ctx<'_>,
) -> Result<Loaded, ComposeError> {
    // Env files are other files: their errors name them, not the compose file.
    let mut from_files = IndexMap::new();
    if let Some(value) = &raw.env_file {
        let paths = env_file_paths(value, &at.key("env_file"), cx).map_err(|f| cx.err(f))?;
        for (path, required) in paths {
            // `required: false`: a missing file is no error (Compose v2).
            if !required && !path.exists() {
                continue;
            }
            from_files.extend(env_file::read(&path, cx.process_env)?);
        }
    }
    normalize(name, raw, at, names, cx, from_files).map_err(|f| cx.err(f))
}

/// `env_file:` as (path, required): a path, or a list of paths and of
/// `{ path, required }` (Compose v2's long form).
fn env_file_paths(value: &Value, at: &At, cx: &Ctx<'_>) -> Result<Vec<(PathBuf, bool)>, Fault> {
    let items: Vec<(At, &Value)> = match value {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (at.index(i), item))
            .collect(),
        other => vec![(at.clone(), other)],
    };
    items
        .into_iter()
        .map(|(at, item)| {
            let (path, path_at, required) = match item {
                Value::Mapping(_) => {
                    #[derive(serde::Deserialize)]
                    #[serde(deny_unknown_fields)]
                    struct Long {
                        path: Value,
                        required: Option<Value>,
                        format: Option<Value>,
                    }
                    let long: Long = from_value(item, &at)?;
                    if let Some(format) = &long.format {
                        return Err(at.key("format").fault(format!(
                            "only the default env file format is supported by rehost, got {}",
                            value::describe(format)
                        )));
                    }
                    let required = opt(&long.required, &at.key("required"), value::boolean)?;
                    let path_at = at.key("path");
                    (
                        value::string(&long.path, &path_at)?,
                        path_at,
                        required.unwrap_or(true),
                    )
                }
                other => (value::string(other, &at)?, at.clone(), true),
            };
            if path.is_empty() {
                return Err(path_at.fault("expected the path of an env file, got an empty string"));
            }
            let path =
                mounts::host_path(&path, cx.working_dir, cx.env).map_err(|e| path_at.fault(e))?;
            Ok((path, required))
        })
        .collect()
}

fn normalize(
    name: &str,
    mut raw: RawService,
    at: &At,
    names: &Names<'_>,
    cx: &Ctx<'_>,
    from_files: IndexMap<String, String>,
) -> Result<Loaded, Fault> {
    let image = opt(&raw.image, &at.key("image"), value::string)?;
    let build = match &raw.build {
        None => None,
        Some(value) => Some(build::read(value, &at.key("build"), cx)?),
    };
    if image.is_none() && build.is_none() {
        return Err(at.fault("a service needs `image:` or `build:`"));
    }
    let command = opt(&raw.command, &at.key("command"), words)?;
    let entrypoint = opt(&raw.entrypoint, &at.key("entrypoint"), words)?;

    let mut environment: BTreeMap<String, String> = from_files.into_iter().collect();
    if let Some(value) = &raw.environment {
        for (key, val) in value::dict_or_list(value, &at.key("environment"))? {
            match val.or_else(|| (cx.env)(&key)) {
                Some(val) => environment.insert(key, val),
                None => environment.remove(&key),
            };
        }
    }
    let labels = value::labels(&raw.labels, &at.key("labels"))?;
    let ports = list(&raw.ports, &at.key("ports"), ports::parse)?;
    let volumes = list(&raw.volumes, &at.key("volumes"), |v, at| {
        let mount = mounts::parse(v, at, cx.working_dir, cx.env)?;
        if let Mount::Volume { name, .. } = &mount {
            if !names.volumes.contains(name) {
                return Err(at.fault(format!(
                    "the volume `{name}` is not declared under the top-level `volumes:`"
                )));
            }
        }
        Ok(mount)
    })?;

    let network_mode = opt(&raw.network_mode, &at.key("network_mode"), |v, at| {
        network_mode(v, at, name, names)
    })?;
    let networks = match (&raw.networks, &network_mode) {
        (Some(_), Some(_)) => {
            return Err(at
                .key("networks")
                .fault("`networks:` cannot be combined with `network_mode:`"))
        }
        (Some(value), None) => service_networks(value, &at.key("networks"), names)?,
        (None, Some(_)) => IndexMap::new(),
        (None, None) => IndexMap::from([("default".to_string(), ServiceNetwork::default())]),
    };

    let mut warnings = Vec::new();
    let policy = raw.deploy.as_ref().and_then(|d| d.restart_policy.as_ref());
    let restart = match (&raw.restart, policy) {
        (Some(value), policy) => {
            if policy.is_some() {
                warnings.push(
                    at.key("deploy")
                        .key("restart_policy")
                        .fault("ignored: `restart:` is given too, and it wins (as in Compose)"),
                );
            }
            restart(value, &at.key("restart"))?
        }
        (None, Some(policy)) => restart_policy(
            policy,
            &at.key("deploy").key("restart_policy"),
            &mut warnings,
        )?,
        (None, None) => Restart::No,
    };
    let user = opt(&raw.user, &at.key("user"), value::string)?;
    let healthcheck = match raw.healthcheck.take() {
        None => None,
        Some(h) => Some(healthcheck(h, &at.key("healthcheck"))?),
    };

    let scale = opt(&raw.scale, &at.key("scale"), value::count)?;
    let replicas = match &raw.deploy {
        Some(deploy) => opt(
            &deploy.replicas,
            &at.key("deploy").key("replicas"),
            value::count,
        )?,
        None => None,
    };
    let replicas = match (scale, replicas) {
        (Some(s), Some(r)) if s != r => {
            return Err(at.key("scale").fault(format!(
                "`scale: {s}` and `deploy.replicas: {r}` disagree; give one of them"
            )))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => 1,
    };

    let (depends_on, dependency_at) = match &raw.depends_on {
        None => (IndexMap::new(), IndexMap::new()),
        Some(value) => depends_on(value, &at.key("depends_on"), names)?,
    };

    let container_name = opt(&raw.container_name, &at.key("container_name"), |v, at| {
        let text = value::string(v, at)?;
        let ok = text.len() >= 2
            && text.as_bytes()[0].is_ascii_alphanumeric()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(at.fault(format!(
                "{text:?} is not a valid container name: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
            )));
        }
        if replicas > 1 {
            return Err(at.fault(format!(
                "a container name is unique, so the service cannot have {replicas} replicas (remove `container_name` or the scale)"
            )));
        }
        Ok(text)
    })?;
    let links = list(&raw.links, &at.key("links"), |v, at| {
        let text = value::string(v, at)?;
        let (service, alias) = text.split_once(':').unwrap_or((&text, &text));
        if !names.services.contains(service) {
            return Err(at.fault(format!("no service `{service}` in this file")));
        }
        if service == name {
            return Err(at.fault("a service cannot link to itself"));
        }
        if alias.is_empty() {
            return Err(at.fault(format!(
                "expected `SERVICE` or `SERVICE:ALIAS`, got {text:?}"
            )));
        }
        Ok((service.to_string(), alias.to_string()))
    })?;
    if !links.is_empty() && network_mode.is_some() {
        return Err(at
            .key("links")
            .fault("`links:` cannot be combined with `network_mode:`"));
    }
    let profiles = list(&raw.profiles, &at.key("profiles"), |v, at| {
        let text = value::string(v, at)?;
        if !is_profile_name(&text) {
            return Err(at.fault(format!(
                "{text:?} is not a valid profile name: use letters, digits, `.`, `_` and `-`, starting with a letter or digit"
            )));
        }
        Ok(text)
    })?;
    let mut secret_mounts = Vec::new();
    for (kind, value) in [(Kind::Secret, &raw.secrets), (Kind::Config, &raw.configs)] {
        if let Some(value) = value {
            let at = at.key(kind.section());
            for m in secrets::uses(kind, value, &at, names.secrets)? {
                if let Some(twice) = secret_mounts
                    .iter()
                    .find(|o: &&crate::stack::model::SecretMount| o.target == m.target)
                {
                    return Err(at.fault(format!(
                        "{} is already the target of `{}`",
                        m.target, twice.source
                    )));
                }
                secret_mounts.push(m);
            }
        }
    }
    let pull_policy = match opt(&raw.pull_policy, &at.key("pull_policy"), value::string)? {
        None => PullPolicy::Missing,
        Some(p) => match p.as_str() {
            "always" => PullPolicy::Always,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "never" => PullPolicy::Never,
            "build" if build.is_some() => PullPolicy::Build,
            "build" => {
                return Err(at
                    .key("pull_policy")
                    .fault("`pull_policy: build` needs `build:`"))
            }
            other => {
                return Err(at.key("pull_policy").fault(format!(
                    "expected `always`, `missing`, `never` or `build`, got {other:?}"
                )))
            }
        },
    };
    let settings = settings::read(&raw, at, &mut warnings)?;
    if settings.read_only {
        // Files that are not bind mounts are copied into the container
        // before it starts, which a read-only root file system refuses.
        if let Some(m) = secret_mounts.iter().find(|m| copied(m, names.secrets)) {
            return Err(at.key("read_only").fault(format!(
                "`{}` is copied into the container (it comes from a variable or inline text, or sets uid/gid/mode), which a read-only container refuses; use a `file:` source without uid/gid/mode",
                m.source
            )));
        }
    }

    Ok(Loaded {
        service: Service {
            name: name.to_string(),
            image,
            build,
            command,
            entrypoint,
            environment,
            labels,
            ports,
            volumes,
            networks,
            network_mode,
            restart,
            user,
            healthcheck,
            replicas,
            depends_on,
            container_name,
            links,
            profiles,
            secrets: secret_mounts,
            pull_policy,
            settings,
        },
        dependency_at,
        warnings,
    })
}

/// Whether the engine copies this secret or config into the container
/// rather than bind-mounting its file (the engine decides the same way,
/// see `engine::secrets`).
pub(crate) fn copied(
    m: &crate::stack::model::SecretMount,
    declared: &IndexMap<String, SecretSource>,
) -> bool {
    let plain_file = matches!(declared.get(&m.source), Some(SecretSource::File(_)));
    !(plain_file && m.uid.is_none() && m.gid.is_none() && m.mode == 0o444)
}

/// Compose's profile names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(crate) fn is_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A list key (absent is empty), each item read with `read`.
fn list<T>(
    value: &Option<Value>,
    at: &At,
    read: impl Fn(&Value, &At) -> Result<T, Fault>,
) -> Result<Vec<T>, Fault> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| read(item, &at.index(i)))
            .collect(),
        Some(other) => Err(at.fault(format!("expected a list, got {}", value::kind_of(other)))),
    }
}

/// `command:`/`entrypoint:`: a string split like a shell (Compose uses
/// shlex), or a list taken as is.
fn words(value: &Value, at: &At) -> Result<Vec<String>, Fault> {
    match value {
        Value::String(s) => {
            shlex::split(s).map_err(|e| at.fault(format!("cannot split {s:?} into words: {e}")))
        }
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| value::string(item, &at.index(i)))
            .collect(),
        other => Err(at.fault(format!(
            "expected a string or a list of strings, got {}",
            value::kind_of(other)
        ))),
    }
}

fn network_mode(value: &Value, at: &At, me: &str, names: &Names<'_>) -> Result<NetworkMode, Fault> {
    let text = value::string(value, at)?;
    match text.as_str() {
        "host" => Ok(NetworkMode::Host),
        "none" => Ok(NetworkMode::None),
        "bridge" => Ok(NetworkMode::Bridge),
        other => match other.strip_prefix("service:") {
            Some(service) if service == me => {
                Err(at.fault("a service cannot share its own network namespace"))
            }
            Some(service) if names.services.contains(service) => {
                Ok(NetworkMode::Service(service.to_string()))
            }
            Some(service) => Err(at.fault(format!("no service `{service}` in this file"))),
            None => Err(at.fault(format!(
                "expected `host`, `none`, `bridge` or `service:NAME`, got {other:?}{}",
                if other.starts_with("container:") {
                    " (containers outside the project are not supported by rehost)"
                } else {
                    ""
                }
            ))),
        },
    }
}

fn service_networks(
    value: &Value,
    at: &At,
    names: &Names<'_>,
) -> Result<IndexMap<String, ServiceNetwork>, Fault> {
    let known = |name: &str, at: &At| {
        if names.networks.contains(name) {
            Ok(())
        } else {
            Err(at.fault(format!(
                "the network `{name}` is not declared under the top-level `networks:`"
            )))
        }
    };
    let mut out = IndexMap::new();
    match value {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = at.index(i);
                let name = value::string(item, &at)?;
                known(&name, &at)?;
                out.insert(name, ServiceNetwork::default());
            }
        }
        Value::Mapping(_) => {
            for (name, item) in value::mapping(value, at)? {
                let at = at.key(&name);
                known(&name, &at)?;
                let raw: RawServiceNetwork = match item {
                    Value::Null => RawServiceNetwork::default(),
                    other => from_value(other, &at)?,
                };
                let ipv4_address = opt(&raw.ipv4_address, &at.key("ipv4_address"), |v, at| {
                    let text = value::string(v, at)?;
                    text.parse::<Ipv4Addr>().map_err(|_| {
                        at.fault(format!(
                            "expected an IPv4 address like 172.28.0.5, got {text:?}"
                        ))
                    })
                })?;
                let aliases = list(&raw.aliases, &at.key("aliases"), value::string)?;
                out.insert(
                    name,
                    ServiceNetwork {
                        ipv4_address,
                        aliases,
                    },
                );
            }
        }
        other => {
            return Err(at.fault(format!(
                "expected a list of network names or a mapping, got {}",
                value::kind_of(other)
            )))
        }
    }
    Ok(out)
}

/// `deploy.restart_policy` as the container's restart policy, as Compose
/// applies it without Swarm: `condition` and `max_attempts`; the timing keys
/// have no Engine equivalent.
fn restart_policy(
    raw: &super::raw::RawRestartPolicy,
    at: &At,
    warnings: &mut Vec<Fault>,
) -> Result<Restart, Fault> {
    let max = opt(&raw.max_attempts, &at.key("max_attempts"), value::count)?;
    for (key, v) in [("delay", &raw.delay), ("window", &raw.window)] {
        if v.is_some() {
            warnings.push(at.key(key).fault(
                "ignored: the Engine's restart policy has no delay or window (only Swarm does)",
            ));
        }
    }
    let condition = opt(&raw.condition, &at.key("condition"), value::string)?;
    match condition.as_deref() {
        None | Some("any") => Ok(Restart::Always),
        Some("on-failure") => Ok(Restart::OnFailure(max)),
        Some("none") => Ok(Restart::No),
        Some(other) => Err(at.key("condition").fault(format!(
            "expected `none`, `on-failure` or `any`, got {other:?}"
        ))),
    }
}

fn restart(value: &Value, at: &At) -> Result<Restart, Fault> {
    // `restart: no` unquoted is a boolean to YAML 1.1 readers such as PyYAML.
    if value == &Value::Bool(false) {
        return Ok(Restart::No);
    }
    let text = value::string(value, at)?;
    match text.as_str() {
        "no" => Ok(Restart::No),
        "always" => Ok(Restart::Always),
        "unless-stopped" => Ok(Restart::UnlessStopped),
        "on-failure" => Ok(Restart::OnFailure(None)),
        other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
            Some(Ok(max)) => Ok(Restart::OnFailure(Some(max))),
            _ => Err(at.fault(format!(
                "expected `no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`, got {other:?}"
            ))),
        },
    }
}

fn healthcheck(raw: RawHealthcheck, at: &At) -> Result<Healthcheck, Fault> {
    let disable = opt(&raw.disable, &at.key("disable"), value::boolean)?.unwrap_or(false);
    let duration_at = |key: &str, v: &Option<Value>| {
        let at = at.key(key);
        opt(v, &at, |v, at| {
            let text = value::string(v, at)?;
            duration::parse(&text).map_err(|e| at.fault(e))
        })
    };
    let interval = duration_at("interval", &raw.interval)?;
    let timeout = duration_at("timeout", &raw.timeout)?;
    let start_period = duration_at("start_period", &raw.start_period)?;
    let start_interval = duration_at("start_interval", &raw.start_interval)?;
    let retries = opt(&raw.retries, &at.key("retries"), value::count)?;
    if disable {
        let others = raw.test.is_some()
            || interval.is_some()
            || timeout.is_some()
            || start_period.is_some()
            || start_interval.is_some()
            || retries.is_some();
        if others {
            return Err(at
                .key("disable")
                .fault("`disable: true` cannot be combined with other healthcheck keys"));
        }
        return Ok(Healthcheck {
            test: vec!["NONE".to_string()],
            interval,
            timeout,
            retries,
            start_period,
            start_interval,
        });
    }
    let test_at = at.key("test");
    let test = match &raw.test {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
        Some(Value::Sequence(items)) => {
            let test: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, item)| value::string(item, &test_at.index(i)))
                .collect::<Result<_, _>>()?;
            match test.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL") if test.len() >= 2 => test,
                Some("NONE") if test.len() == 1 => test,
                _ => {
                    return Err(test_at.fault(
                        "expected a list starting with \"CMD\" (then the command), \"CMD-SHELL\" (then a shell line) or [\"NONE\"]",
                    ))
                }
            }
        }
        Some(other) => {
            return Err(test_at.fault(format!(
                "expected a shell line or a list like [\"CMD\", \"curl\", \"-f\", \"http://localhost\"], got {}",
                value::kind_of(other)
            )))
        }
    };
    Ok(Healthcheck {
        test,
        interval,
        timeout,
        retries,
        start_period,
        start_interval,
    })
}

type Dependencies = (IndexMap<String, Dependency>, IndexMap<String, At>);

fn depends_on(value: &Value, at: &At, names: &Names<'_>) -> Result<Dependencies, Fault> {
    let mut deps = IndexMap::new();
    let mut places = IndexMap::new();
    let known = |name: &str, at: &At| {
        if names.services.contains(name) {
            Ok(())
        } else {
            Err(at.fault(format!("no service `{name}` in this file")))
        }
    };
    match value {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = at.index(i);
                let name = value::string(item, &at)?;
                known(&name, &at)?;
                deps.insert(
                    name.clone(),
                    Dependency {
                        condition: Condition::Started,
                        restart: false,
                        required: true,
                    },
                );
                places.insert(name, at);
            }
        }
        Value::Mapping(_) => {
            for (name, item) in value::mapping(value, at)? {
                let at = at.key(&name);
                let raw: RawDependency = match item {
                    Value::Null => RawDependency::default(),
                    other => from_value(other, &at)?,
                };
                let condition = opt(&raw.condition, &at.key("condition"), |v, at| {
                    match value::string(v, at)?.as_str() {
                        "service_started" => Ok(Condition::Started),
                        "service_healthy" => Ok(Condition::Healthy),
                        "service_completed_successfully" => Ok(Condition::CompletedSuccessfully),
                        other => Err(at.fault(format!(
                            "expected service_started, service_healthy or service_completed_successfully, got {other:?}"
                        ))),
                    }
                })?
                .unwrap_or_default();
                let restart =
                    opt(&raw.restart, &at.key("restart"), value::boolean)?.unwrap_or(false);
                let required =
                    opt(&raw.required, &at.key("required"), value::boolean)?.unwrap_or(true);
                if required {
                    known(&name, &at)?;
                }
                deps.insert(
                    name.clone(),
                    Dependency {
                        condition,
                        restart,
                        required,
                    },
                );
                places.insert(name, at);
            }
        }
        other => {
            return Err(at.fault(format!(
                "expected a list of service names or a mapping, got {}",
                value::kind_of(other)
            )))
        }
    }
    Ok((deps, places))
}
