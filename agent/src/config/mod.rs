//! `rehost.yaml`: read, interpolate, deserialize, validate — in that order.
//!
//! Pipeline (each stage pure except [`load`]'s read and environment lookup):
//! 1. YAML text → [`serde_yaml::Value`]; syntax errors keep serde_yaml's position.
//! 2. `${VAR}` in every string *value* (never in keys) is interpolated with
//!    [`Interpolation::STRICT`]: an unset plain `${VAR}` is an error.
//! 3. Value → [`raw`] structs (`deny_unknown_fields`, key path on every error).
//! 4. [`validate`]: raw → [`Config`], each error carrying its key path.
//! 5. [`locate`] maps that key path back to a line and column of the text.
//!
//! Invariants:
//! - A [`Config`] only exists validated: every path in it is absolute, every
//!   schedule parses, every name is usable as a storage key segment.
//! - Nothing in a [`Config`] is secret (credentials stay in the environment or
//!   in the file that [`CredentialSource`] names), so its `Debug` output is
//!   safe to log. The one exception, a `notify:` URL (it often carries a
//!   token), shows only its scheme and host in `Debug`.
//!
//! [`CredentialSource`]: rehost_jobs::store::CredentialSource

// The compose loader reports its errors the same way (file, line, column, key).
pub(crate) mod error;
pub(crate) mod locate;
mod notify;
pub mod permissions;
mod raw;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_yaml::Value;

use crate::interpolate::Interpolation;
pub use error::ConfigError;
#[allow(
    unused_imports,
    reason = "for the CLI, to tell an unreadable file from a bad one"
)]
pub use error::ConfigErrorKind;
use error::Problem;
pub use notify::{
    JobFilter, NotifyEvent, NotifyKind, NotifyTarget, DEFAULT_NOTIFY_RETRIES,
    DEFAULT_NOTIFY_TIMEOUT, NOTIFY_JOBS,
};
/// `restore:` of a state entry (`if-missing`, `always`, `never`); the jobs
/// library's type, so that restore takes it without a conversion.
pub use rehost_jobs::restore::RestorePolicy;

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// This host's segment in the store's keys (`[A-Za-z0-9._-]+`).
    pub host: String,
    /// The unprivileged user `boot` hands the daemon to.
    pub run_as: Option<String>,
    /// This machine's own records (its generation of the host, its restore
    /// decisions): absolute, default [`DEFAULT_STATE_DIR`].
    pub state_dir: PathBuf,
    pub storage: rehost_jobs::store::StoreLocation,
    /// `storage.encryption`: client-side age encryption of every backup.
    pub encryption: Option<EncryptionConfig>,
    pub stack: Option<StackConfig>,
    /// In the order of the file.
    pub state: IndexMap<String, StateEntry>,
    /// In the order of the file.
    pub pull: IndexMap<String, PullEntry>,
    pub metrics: Option<MetricsConfig>,
    pub jobs: JobDefaults,
    /// `notify:`, in the order of the file.
    pub notify: Vec<NotifyTarget>,
}

/// `storage.encryption`. Public keys only: the secret key stays in the
/// identity file, which is read when a backup is decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// age X25519 public keys (`age1…`), checked to parse.
    pub recipients: Vec<String>,
    /// Absolute (a relative path in the file is resolved against the config
    /// file's folder).
    pub identity_file: Option<PathBuf>,
}

impl EncryptionConfig {
    pub fn build(&self) -> rehost_jobs::Result<rehost_jobs::encryption::Encryption> {
        rehost_jobs::encryption::Encryption::new(&self.recipients, self.identity_file.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackConfig {
    /// Absolute (a relative path in the file is resolved against the config
    /// file's folder).
    pub compose: PathBuf,
    /// `stack.compose`'s further files when it is a list: merged onto the
    /// first, in order, with Compose's override rules. Absolute.
    pub overrides: Vec<PathBuf>,
    /// Compose project name: `[a-z0-9][a-z0-9_-]*`; defaults to the compose
    /// file's folder name, normalized the way Compose does.
    pub project: String,
    /// Absolute, like `compose`.
    pub env_file: Option<PathBuf>,
    /// Compose profiles to enable: a service with `profiles:` runs only
    /// when one of them is listed here.
    pub profiles: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEntry {
    /// The map key (`[A-Za-z0-9._-]+`, not starting with `.`).
    pub name: String,
    /// Absolute, without `..`, not `/`. For a [`volume`](Self::volume) entry
    /// it is `docker-volume:KEY`, for messages only: the real path is the
    /// volume's mountpoint, which [`crate::cli::Ctx::spec`] asks the Engine for.
    pub path: PathBuf,
    /// `volume: KEY`: a named volume of the compose project (a key of its
    /// top-level `volumes:`) instead of a path; needs `stack:`.
    pub volume: Option<String>,
    pub kind: StateKind,
    /// Permission bits (at most `0o7777`) enforced after restore.
    pub mode: Option<u32>,
    /// `user`, `uid`, `user:group` or `uid:gid` (syntax checked only).
    pub owner: Option<String>,
    pub restore: RestorePolicy,
    /// Boot fails when this entry cannot be restored (e.g. storage unreachable).
    pub required: bool,
    /// Cron schedule of backups (5 fields, or 6 with seconds first).
    pub backup: Option<String>,
    /// Applied by `rehost prune`, and by `rehost run` after each successful
    /// scheduled backup of this entry.
    pub keep: Option<rehost_jobs::retention::KeepPolicy>,
    /// Cron schedule of `rehost run`'s verify of the newest backup.
    pub verify: Option<String>,
    /// Admin API base URL (`http://` only), for [`StateKind::Prometheus`]:
    /// always set for that kind (default [`DEFAULT_PROMETHEUS_API`]).
    pub api: Option<String>,
    /// Globs of the database files, only for [`StateKind::Sqlite`]; empty
    /// means [`rehost_jobs::sqlite::DEFAULT_DATABASES`].
    pub databases: Vec<String>,
    /// Compose services (of `stack.project`) stopped for the backup and
    /// started again afterwards, even when it fails.
    pub stop: Vec<String>,
    /// `timeout`, `jitter`, `retries`, `run_at_start` of the scheduled backup.
    pub job: JobOverrides,
}

/// `api:` of a `kind: prometheus` entry that names none.
pub const DEFAULT_PROMETHEUS_API: &str = "http://127.0.0.1:9090";
/// `state_dir:` when the file does not set it.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rehost";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    /// A file or directory tree, archived as is.
    Files,
    /// A Prometheus TSDB, snapshotted through the admin API, stored per block.
    Prometheus,
    /// SQLite databases, copied with the online backup API, and other files.
    Sqlite,
    /// Traefik's acme.json, checked before upload, restored 0600.
    Acme,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullEntry {
    /// The map key (same rules as a state name).
    pub name: String,
    pub source: PullSource,
    /// Absolute, without `..`, not `/`.
    pub dest: PathBuf,
    /// Cron schedule (5 fields, or 6 with seconds first).
    pub schedule: Option<String>,
    pub delete_removed: bool,
    /// An empty source may empty `dest` only when this is true.
    pub allow_empty: bool,
    /// Parallel downloads, 1..=256.
    pub concurrency: u32,
    /// `timeout`, `jitter`, `retries`, `run_at_start` of the scheduled pull.
    pub job: JobOverrides,
}

/// Where a pull reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullSource {
    /// `s3://bucket/prefix/`, with the `storage:` endpoint, region, path style
    /// and credentials.
    S3(S3Source),
    /// `file:///dir`: a local directory (absolute).
    File(PathBuf),
}

/// `s3://bucket/prefix`, read with the `storage:` connection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Source {
    pub bucket: String,
    /// Without leading or trailing `/` (may be empty).
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// node_exporter's `--collector.textfile.directory`; absolute.
    pub textfile_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDefaults {
    /// Longest a single job run may take (default 30m, never zero).
    pub timeout: Duration,
    /// Random delay up to this before each scheduled run (default 0s).
    pub jitter: Duration,
    /// Extra attempts after a failure (default 0).
    pub retries: u32,
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            timeout: Duration::from_secs(30 * 60),
            jitter: Duration::ZERO,
            retries: 0,
        }
    }
}

/// What a configured job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Back up a state entry.
    Backup,
    /// Pull a pull entry.
    Pull,
    /// Verify the newest backup of a state entry.
    Verify,
}

impl JobKind {
    /// The metrics' `job` label.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Pull => "pull",
            JobKind::Verify => "verify",
        }
    }
}

/// One job a configuration defines: the backup of a state entry, or the pull
/// of a pull entry.
#[derive(Clone, Copy, Debug)]
pub struct JobRef<'a> {
    pub kind: JobKind,
    /// The entry's name: the metrics' `target` label.
    pub target: &'a str,
    pub schedule: Option<&'a str>,
    /// Timeout, jitter and retries (the entry's).
    pub overrides: &'a JobOverrides,
    /// Also run once when the daemon starts: the entry's `run_at_start` for
    /// backups and pulls; never for verifies (a verify at every start would
    /// download every backup on every boot).
    pub run_at_start: bool,
}

impl Config {
    /// Every job of the configuration: a backup per state entry, then a pull
    /// per pull entry, then a verify per state entry with `verify:`, in file
    /// order. `rehost run` schedules these and `rehost status` reports on
    /// them. (Prune is no job of its own: the daemon applies `keep:` after
    /// each successful backup.)
    pub fn jobs(&self) -> impl Iterator<Item = JobRef<'_>> {
        let backups = self.state.values().map(|e| JobRef {
            kind: JobKind::Backup,
            target: &e.name,
            schedule: e.backup.as_deref(),
            overrides: &e.job,
            run_at_start: e.job.run_at_start,
        });
        let pulls = self.pull.values().map(|e| JobRef {
            kind: JobKind::Pull,
            target: &e.name,
            schedule: e.schedule.as_deref(),
            overrides: &e.job,
            run_at_start: e.job.run_at_start,
        });
        let verifies = self
            .state
            .values()
            .filter(|e| e.verify.is_some())
            .map(|e| JobRef {
                kind: JobKind::Verify,
                target: &e.name,
                schedule: e.verify.as_deref(),
                overrides: &e.job,
                run_at_start: false,
            });
        backups.chain(pulls).chain(verifies)
    }
}

impl JobDefaults {
    /// The settings of one job: its own keys where set, these defaults otherwise.
    pub fn resolve(&self, job: &JobOverrides) -> JobDefaults {
        JobDefaults {
            timeout: job.timeout.unwrap_or(self.timeout),
            jitter: job.jitter.unwrap_or(self.jitter),
            retries: job.retries.unwrap_or(self.retries),
        }
    }
}

/// A state or pull entry's own job settings; unset ones fall back to `jobs:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOverrides {
    /// Never zero.
    pub timeout: Option<Duration>,
    pub jitter: Option<Duration>,
    pub retries: Option<u32>,
    /// Run once as soon as the daemon starts (cron's `@reboot`), besides the schedule.
    pub run_at_start: bool,
}

/// Reads and validates the configuration file at `path`, looking `${VAR}`s up
/// in the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    // Relative paths in the file are resolved against its folder, which must
    // therefore be absolute; `absolute` only fails without a working directory.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&path).map_err(|err| ConfigError::read(&path, &err))?;
    parse(&path, &text, &|name| std::env::var(name).ok())
}

/// Validates `text` as the content of `path` (used for messages and to resolve
/// relative paths), looking `${VAR}`s up with `env`. Pure: reads no file.
pub fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut value: Value =
        serde_yaml::from_str(text).map_err(|err| ConfigError::syntax(path, &err))?;
    let located = |problem: Problem| problem.into_error(path, text);
    // `<<: *defaults` merge keys are plain YAML 1.1 that operators use to share
    // settings between entries; resolve them before keys are checked.
    value
        .apply_merge()
        .map_err(|err| located(Problem::new(Vec::new(), err.to_string())))?;
    interpolate_values(&mut value, &mut Vec::new(), env).map_err(located)?;
    let raw = raw::from_value(value).map_err(located)?;
    validate::validate(raw, path).map_err(located)
}

/// Interpolates every string value in place; keys are left alone because they
/// are names the operator reads in the file, not data.
fn interpolate_values(
    value: &mut Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Problem> {
    match value {
        Value::String(text) => {
            *text = Interpolation::STRICT
                .apply(text, env)
                .map_err(|err| Problem::new(path.clone(), err.to_string()))?;
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push(index.to_string());
                interpolate_values(item, path, env)?;
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                path.push(key_name(key));
                interpolate_values(item, path, env)?;
                path.pop();
            }
        }
        // Nothing in rehost.yaml takes a tag; serde would report it as a
        // confusing "enum", so name the actual problem.
        Value::Tagged(tagged) => {
            return Err(Problem::new(
                path.clone(),
                format!(
                    "YAML tags such as `{}` are not supported in rehost.yaml",
                    tagged.tag
                ),
            ))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// A YAML mapping key as it appears in an error path (`services.web`).
pub(crate) fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".to_string(),
    }
}
