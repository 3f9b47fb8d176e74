//! The second stage: raw structs → validated [`Config`]. Pure: no file is
//! opened, no variable read; the config file's path is only used to resolve
//! the relative paths that are allowed (`credentials_file`,
//! `encryption.identity_file`, `stack.*`).
//!
//! Invariants of the result (relied on by restore, backup and pull):
//! - state paths and pull dests are absolute, free of `..`, not `/`, and no
//!   one of them is inside another (a restore would clobber its neighbour);
//! - names (host, state, pull) are usable as one segment of a storage key;
//! - schedules parse with `croner`, durations with `humantime`;
//! - with `file://` storage, the S3-only keys that name a place or a credential
//!   (`endpoint`, `credentials_file`, `profile`) are errors rather than ignored;
//!   `region` and `path_style` have harmless defaults and are accepted.
//!
//! The first problem found is returned; every message says what was expected.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rehost_jobs::store::{CredentialSource, S3Settings, StoreLocation};

use super::error::{dotted, Problem};
use super::raw::{
    RawComposeFiles, RawConfig, RawEncryption, RawJobs, RawMetrics, RawPull, RawStack, RawState,
    RawStorage,
};
use super::values::{
    absolute_path, check_name, check_owner, check_user, cron, duration, file_mode, http_url,
    is_project_name, keep_policy, project_from_folder, resolve, s3_url, target_path,
};
use super::{
    Config, EncryptionConfig, JobDefaults, JobOverrides, MetricsConfig, PullEntry, PullSource,
    RestorePolicy, S3Source, StackConfig, StateEntry, StateKind, DEFAULT_PROMETHEUS_API,
};

const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_PROFILE: &str = "default";
const DEFAULT_CONCURRENCY: u32 = 16;
const MAX_CONCURRENCY: u32 = 256;

/// A key path under construction: `at(&["state", name, "mode"])`.
fn at(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| (*s).to_string()).collect()
}

pub(crate) fn validate(raw: RawConfig, file: &Path) -> Result<Config, Problem> {
    let base = file.parent().unwrap_or(Path::new(""));

    let host = raw.host.ok_or_else(|| Problem::missing(at(&["host"])))?;
    check_name(&host).map_err(|m| Problem::new(at(&["host"]), m))?;
    let run_as = raw.run_as.map(|user| check_user(&user).map(|()| user));
    let run_as = run_as
        .transpose()
        .map_err(|m| Problem::new(at(&["run_as"]), m))?;
    let state_dir = target_path(raw.state_dir.as_deref().unwrap_or(super::DEFAULT_STATE_DIR))
        .map_err(|m| Problem::new(at(&["state_dir"]), m))?;
    let mut raw_storage = raw.storage;
    let encryption = raw_storage
        .as_mut()
        .and_then(|s| s.encryption.take())
        .map(|e| encryption(e, base))
        .transpose()?;
    let storage = storage(raw_storage, base)?;
    let stack = raw.stack.map(|s| stack(s, base)).transpose()?;

    let mut state = IndexMap::new();
    for (name, entry) in raw.state.unwrap_or_default() {
        let entry = state_entry(&name, entry)?;
        if entry.volume.is_some() && stack.is_none() {
            return Err(Problem::new(
                at(&["state", &name, "volume"]),
                "`volume` needs a `stack:` section: the volume is one of its compose project",
            ));
        }
        if !entry.stop.is_empty() && stack.is_none() {
            return Err(Problem::new(
                at(&["state", &name, "stop"]),
                "`stop` needs a `stack:` section: the services are those of its compose project",
            ));
        }
        state.insert(name, entry);
    }
    let mut pull = IndexMap::new();
    for (name, entry) in raw.pull.unwrap_or_default() {
        let entry = pull_entry(&name, entry)?;
        pull.insert(name, entry);
    }
    check_overlaps(&state_dir, &state, &pull)?;

    let metrics = raw.metrics.map(metrics).transpose()?;
    let jobs = jobs(raw.jobs.unwrap_or_default())?;
    let notify = super::notify::targets(raw.notify.unwrap_or_default(), &state, &pull)?;

    Ok(Config {
        path: file.to_path_buf(),
        host,
        run_as,
        state_dir,
        storage,
        encryption,
        stack,
        state,
        pull,
        metrics,
        jobs,
        notify,
    })
}

fn encryption(raw: RawEncryption, base: &Path) -> Result<EncryptionConfig, Problem> {
    let key = |k: &str| at(&["storage", "encryption", k]);
    let recipients = raw.recipients.unwrap_or_default();
    if recipients.is_empty() {
        return Err(Problem::new(
            key("recipients"),
            "expected at least one age public key (`age1…`, from `age-keygen -y KEYFILE`)",
        ));
    }
    let identity_file = match raw.identity_file {
        Some(f) if f.is_empty() => {
            return Err(Problem::new(
                key("identity_file"),
                "expected a path, got an empty string",
            ))
        }
        Some(f) => Some(resolve(base, &f)),
        None => None,
    };
    let config = EncryptionConfig {
        recipients: recipients.iter().map(|r| r.trim().to_string()).collect(),
        identity_file,
    };
    // Parsing the keys is pure; the identity file is read only when needed.
    config.build().map_err(|e| {
        let message = e.to_string();
        let message = message.strip_prefix("encryption: ").unwrap_or(&message);
        Problem::new(key("recipients"), message)
    })?;
    Ok(config)
}

fn storage(raw: Option<RawStorage>, base: &Path) -> Result<StoreLocation, Problem> {
    let raw = raw.ok_or_else(|| Problem::missing(at(&["storage"])))?;
    let url = raw
        .url
        .ok_or_else(|| Problem::missing(at(&["storage", "url"])))?;

    if let Some(rest) = url.strip_prefix("file://") {
        // Keys that only make sense for S3 would be silently ignored here;
        // an operator who wrote them meant something, so refuse.
        for (key, present) in [
            ("endpoint", raw.endpoint.is_some()),
            ("credentials_file", raw.credentials_file.is_some()),
            ("profile", raw.profile.is_some()),
        ] {
            if present {
                return Err(Problem::new(
                    at(&["storage", key]),
                    format!("`{key}` only applies to s3:// storage, not file://"),
                ));
            }
        }
        let path = absolute_path(rest).map_err(|m| {
            Problem::new(
                at(&["storage", "url"]),
                format!("expected `file:///absolute/path`: {m}"),
            )
        })?;
        return Ok(StoreLocation::File(path));
    }

    if !url.starts_with("s3://") {
        return Err(Problem::new(
            at(&["storage", "url"]),
            format!("expected `s3://bucket/prefix` or `file:///absolute/path`, got {url:?}"),
        ));
    }
    let (bucket, prefix) = s3_url(&url).map_err(|m| Problem::new(at(&["storage", "url"]), m))?;
    let endpoint = raw
        .endpoint
        .map(|e| http_url(&e))
        .transpose()
        .map_err(|m| Problem::new(at(&["storage", "endpoint"]), m))?;
    let region = raw.region.unwrap_or_else(|| DEFAULT_REGION.to_string());
    if region.is_empty() || region.contains(char::is_whitespace) {
        return Err(Problem::new(
            at(&["storage", "region"]),
            format!("expected a region name like \"us-east-1\" or \"garage\", got {region:?}"),
        ));
    }
    let credentials = match (raw.credentials_file, raw.profile) {
        (Some(file), profile) => {
            if file.is_empty() {
                return Err(Problem::new(
                    at(&["storage", "credentials_file"]),
                    "expected a path, got an empty string",
                ));
            }
            let profile = profile.unwrap_or_else(|| DEFAULT_PROFILE.to_string());
            if profile.is_empty() || profile.contains(char::is_whitespace) {
                return Err(Problem::new(
                    at(&["storage", "profile"]),
                    format!("expected a profile name like \"default\", got {profile:?}"),
                ));
            }
            CredentialSource::File {
                path: resolve(base, &file),
                profile,
            }
        }
        (None, Some(_)) => {
            return Err(Problem::new(
                at(&["storage", "profile"]),
                "`profile` needs `credentials_file` (without it, credentials come from the AWS_* environment variables)",
            ))
        }
        (None, None) => CredentialSource::Environment,
    };
    Ok(StoreLocation::S3(S3Settings {
        bucket,
        prefix,
        endpoint,
        region,
        path_style: raw.path_style.unwrap_or(false),
        credentials,
    }))
}

fn stack(raw: RawStack, base: &Path) -> Result<StackConfig, Problem> {
    let files = match raw
        .compose
        .ok_or_else(|| Problem::missing(at(&["stack", "compose"])))?
    {
        RawComposeFiles::One(file) => vec![file],
        RawComposeFiles::Many(files) => files,
    };
    if files.is_empty() || files.iter().any(String::is_empty) {
        return Err(Problem::new(
            at(&["stack", "compose"]),
            "expected the path of a docker-compose.yml (or a list of them), got an empty one",
        ));
    }
    let mut files = files.iter().map(|f| resolve(base, f));
    let compose = files.next().unwrap_or_default();
    let overrides: Vec<PathBuf> = files.collect();
    let project = match raw.project {
        Some(project) => {
            if !is_project_name(&project) {
                return Err(Problem::new(
                    at(&["stack", "project"]),
                    format!("expected a Compose project name of lowercase letters, digits, `_` and `-`, starting with a letter or digit, got {project:?}"),
                ));
            }
            project
        }
        None => {
            let folder = compose
                .parent()
                .and_then(Path::file_name)
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let project = project_from_folder(&folder);
            if project.is_empty() {
                return Err(Problem {
                    path: at(&["stack", "project"]),
                    message: format!("cannot derive a project name from the folder {folder:?} of the compose file; set `project`"),
                    missing: true,
                });
            }
            project
        }
    };
    let env_file = match raw.env_file {
        Some(f) if f.is_empty() => {
            return Err(Problem::new(
                at(&["stack", "env_file"]),
                "expected a path, got an empty string",
            ))
        }
        Some(f) => Some(resolve(base, &f)),
        None => None,
    };
    let profiles = raw.profiles.unwrap_or_default();
    for profile in &profiles {
        super::values::check_profile(profile)
            .map_err(|m| Problem::new(at(&["stack", "profiles"]), m))?;
    }
    Ok(StackConfig {
        compose,
        overrides,
        project,
        env_file,
        profiles,
    })
}

fn state_entry(name: &str, raw: RawState) -> Result<StateEntry, Problem> {
    let key = |k: &str| at(&["state", name, k]);
    check_name(name).map_err(|m| Problem::new(at(&["state", name]), m))?;
    let (path, volume) = match (raw.path, raw.volume) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                key("volume"),
                "give either `path` or `volume`, not both",
            ))
        }
        (None, None) => return Err(Problem::missing(key("path"))),
        (Some(p), None) => (
            target_path(&p).map_err(|m| Problem::new(key("path"), m))?,
            None,
        ),
        (None, Some(v)) => {
            let ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(Problem::new(
                    key("volume"),
                    format!(
                        "expected the key of a volume in the compose file's `volumes:`, got {v:?}"
                    ),
                ));
            }
            (PathBuf::from(format!("docker-volume:{v}")), Some(v))
        }
    };

    let kind = match raw.kind.as_deref() {
        None | Some("files") => StateKind::Files,
        Some("prometheus") => StateKind::Prometheus,
        Some("sqlite") => StateKind::Sqlite,
        Some("acme") => StateKind::Acme,
        Some(other) => {
            return Err(Problem::new(
                key("kind"),
                format!("expected one of `files`, `prometheus`, `sqlite`, `acme`, got {other:?}"),
            ))
        }
    };
    if kind == StateKind::Acme && volume.is_some() {
        return Err(Problem::new(
            key("volume"),
            "`kind: acme` needs `path:` to Traefik's acme.json file, not a volume",
        ));
    }
    let mode = raw
        .mode
        .map(|m| file_mode(&m))
        .transpose()
        .map_err(|m| Problem::new(key("mode"), m))?;
    if kind == StateKind::Acme && mode.is_some_and(|m| m != 0o600) {
        return Err(Problem::new(
            key("mode"),
            "`kind: acme` is always restored 0600 (it holds the private keys, and Traefik refuses anything else): set \"0600\" or leave `mode` out",
        ));
    }
    let owner = raw
        .owner
        .map(|o| check_owner(&o).map(|()| o))
        .transpose()
        .map_err(|m| Problem::new(key("owner"), m))?;
    let restore = match raw.restore.as_deref() {
        None | Some("if-missing") => RestorePolicy::IfMissing,
        Some("always") => RestorePolicy::Always,
        Some("never") => RestorePolicy::Never,
        Some(other) => {
            return Err(Problem::new(
                key("restore"),
                format!("expected one of `if-missing`, `always`, `never`, got {other:?}"),
            ))
        }
    };
    let backup = raw
        .backup
        .map(|s| cron(&s))
        .transpose()
        .map_err(|m| Problem::new(key("backup"), m))?;
    let verify = raw
        .verify
        .map(|s| cron(&s))
        .transpose()
        .map_err(|m| Problem::new(key("verify"), m))?;
    let keep = raw
        .keep
        .map(keep_policy)
        .transpose()
        .map_err(|m| Problem::new(key("keep"), m))?;
    let api = match raw.api {
        None if kind == StateKind::Prometheus => Some(DEFAULT_PROMETHEUS_API.to_string()),
        None => None,
        Some(_) if kind != StateKind::Prometheus => {
            return Err(Problem::new(
                key("api"),
                "`api` only applies to `kind: prometheus`",
            ))
        }
        Some(api) => {
            let url = http_url(&api).map_err(|m| Problem::new(key("api"), m))?;
            if !url.starts_with("http://") {
                return Err(Problem::new(
                    key("api"),
                    "expected an http:// URL: rehost reaches the admin API without TLS, normally on loopback",
                ));
            }
            Some(url)
        }
    };
    let databases = match raw.databases {
        None => Vec::new(),
        Some(_) if kind != StateKind::Sqlite => {
            return Err(Problem::new(
                key("databases"),
                "`databases` only applies to `kind: sqlite`",
            ))
        }
        Some(globs) => database_globs(globs).map_err(|m| Problem::new(key("databases"), m))?,
    };
    let stop = raw.stop.unwrap_or_default();
    for (i, service) in stop.iter().enumerate() {
        if service.is_empty() || service.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Problem::new(
                key("stop"),
                format!("expected compose service names, got {service:?}"),
            ));
        }
        if stop[..i].contains(service) {
            return Err(Problem::new(
                key("stop"),
                format!("service `{service}` is listed twice"),
            ));
        }
    }
    let job = job_overrides(
        &["state", name],
        raw.timeout,
        raw.jitter,
        raw.retries,
        raw.run_at_start,
    )?;

    Ok(StateEntry {
        name: name.to_string(),
        path,
        kind,
        mode,
        owner,
        restore,
        required: raw.required.unwrap_or(false),
        backup,
        keep,
        verify,
        api,
        databases,
        stop,
        volume,
        job,
    })
}

/// Globs relative to the entry's directory: `*.db`, `data/*.sqlite`.
fn database_globs(globs: Vec<String>) -> Result<Vec<String>, String> {
    if globs.is_empty() {
        return Err("expected at least one glob, such as \"*.db\"".to_string());
    }
    for g in &globs {
        if g.is_empty()
            || g.starts_with('/')
            || g.contains('\0')
            || g.split('/').any(|seg| seg.is_empty() || seg == "..")
        {
            return Err(format!(
                "expected a glob relative to `path` without `..` or empty segments, such as \"*.db\", got {g:?}"
            ));
        }
    }
    Ok(globs)
}

fn pull_entry(name: &str, raw: RawPull) -> Result<PullEntry, Problem> {
    let key = |k: &str| at(&["pull", name, k]);
    check_name(name).map_err(|m| Problem::new(at(&["pull", name]), m))?;
    let source = raw.source.ok_or_else(|| Problem::missing(key("source")))?;
    let source = pull_source(&source).map_err(|m| Problem::new(key("source"), m))?;
    let dest = raw.dest.ok_or_else(|| Problem::missing(key("dest")))?;
    let dest = target_path(&dest).map_err(|m| Problem::new(key("dest"), m))?;
    let schedule = raw
        .schedule
        .map(|s| cron(&s))
        .transpose()
        .map_err(|m| Problem::new(key("schedule"), m))?;
    let job = job_overrides(
        &["pull", name],
        raw.timeout,
        raw.jitter,
        raw.retries,
        raw.run_at_start,
    )?;
    let concurrency = raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(Problem::new(
            key("concurrency"),
            format!("expected a number from 1 to {MAX_CONCURRENCY}, got {concurrency}"),
        ));
    }
    Ok(PullEntry {
        name: name.to_string(),
        source,
        dest,
        schedule,
        delete_removed: raw.delete_removed.unwrap_or(false),
        allow_empty: raw.allow_empty.unwrap_or(false),
        concurrency,
        job,
    })
}

/// `s3://bucket/prefix/` (read with the `storage:` connection settings) or
/// `file:///dir` (a local directory: cheap tests, content on a shared mount).
fn pull_source(source: &str) -> Result<PullSource, String> {
    if let Some(rest) = source.strip_prefix("file://") {
        return Ok(PullSource::File(target_path(rest)?));
    }
    if !source.starts_with("s3://") {
        return Err(format!(
            "expected `s3://bucket/prefix/` or `file:///dir`, got {source:?}"
        ));
    }
    let (bucket, prefix) = s3_url(source)?;
    Ok(PullSource::S3(S3Source { bucket, prefix }))
}

/// Restore renames into state paths and pull swaps dests: if one lies inside
/// another, one of them would destroy the other's content.
fn check_overlaps(
    state_dir: &Path,
    state: &IndexMap<String, StateEntry>,
    pull: &IndexMap<String, PullEntry>,
) -> Result<(), Problem> {
    // `state_dir` first: a default that is not in the file is never the key named.
    let targets: Vec<(Vec<String>, &Path)> = std::iter::once((at(&["state_dir"]), state_dir))
        .chain(
            state
                .values()
                .filter(|s| s.volume.is_none())
                .map(|s| (at(&["state", &s.name, "path"]), s.path.as_path())),
        )
        .chain(
            pull.values()
                .map(|p| (at(&["pull", &p.name, "dest"]), p.dest.as_path())),
        )
        .collect();
    for (i, (key, path)) in targets.iter().enumerate() {
        for (earlier_key, earlier) in &targets[..i] {
            if path.starts_with(earlier) || earlier.starts_with(path) {
                return Err(Problem::new(
                    key.clone(),
                    format!(
                        "{} overlaps {} ({}): state paths, pull dests and state_dir must not contain each other",
                        path.display(),
                        dotted(earlier_key),
                        earlier.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn metrics(raw: RawMetrics) -> Result<MetricsConfig, Problem> {
    let dir = raw
        .textfile_dir
        .ok_or_else(|| Problem::missing(at(&["metrics", "textfile_dir"])))?;
    let textfile_dir =
        absolute_path(&dir).map_err(|m| Problem::new(at(&["metrics", "textfile_dir"]), m))?;
    Ok(MetricsConfig { textfile_dir })
}

fn jobs(raw: RawJobs) -> Result<JobDefaults, Problem> {
    let defaults = JobDefaults::default();
    let timeout = match raw.timeout {
        Some(t) => duration(&t).map_err(|m| Problem::new(at(&["jobs", "timeout"]), m))?,
        None => defaults.timeout,
    };
    if timeout.is_zero() {
        return Err(Problem::new(
            at(&["jobs", "timeout"]),
            "expected a duration longer than 0s",
        ));
    }
    let jitter = match raw.jitter {
        Some(j) => duration(&j).map_err(|m| Problem::new(at(&["jobs", "jitter"]), m))?,
        None => defaults.jitter,
    };
    Ok(JobDefaults {
        timeout,
        jitter,
        retries: raw.retries.unwrap_or(defaults.retries),
    })
}

/// The per-entry job keys (`timeout`, `jitter`, `retries`, `run_at_start`)
/// of the entry at `entry` (`["state", name]` or `["pull", name]`).
fn job_overrides(
    entry: &[&str],
    timeout: Option<String>,
    jitter: Option<String>,
    retries: Option<u32>,
    run_at_start: Option<bool>,
) -> Result<JobOverrides, Problem> {
    let key = |k: &str| {
        let mut path = at(entry);
        path.push(k.to_string());
        path
    };
    let timeout = timeout
        .map(|t| duration(&t))
        .transpose()
        .map_err(|m| Problem::new(key("timeout"), m))?;
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(Problem::new(
            key("timeout"),
            "expected a duration longer than 0s",
        ));
    }
    let jitter = jitter
        .map(|j| duration(&j))
        .transpose()
        .map_err(|m| Problem::new(key("jitter"), m))?;
    Ok(JobOverrides {
        timeout,
        jitter,
        retries,
        run_at_start: run_at_start.unwrap_or(false),
    })
}
