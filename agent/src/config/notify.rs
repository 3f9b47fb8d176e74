//! `notify:`: the webhooks and healthchecks.io-style pings told about job
//! runs, validated like every other section (key path on every error). The
//! sending is [`crate::notify`]'s.
//!
//! Invariants of a validated [`NotifyTarget`]:
//! - its URL parsed (http or https, a host, no user info) and is never shown
//!   in full, not even in an error about it ([`NotifyUrl`]);
//! - `on` is a non-empty set of events, `jobs` names only jobs rehost has
//!   and entries the configuration defines;
//! - `timeout` is in `0s..=MAX_TIMEOUT` (exclusive of 0) and `retries` at most
//!   [`MAX_RETRIES`], so a delivery is bounded in time;
//! - names are unique (they label the delivery metrics).

use std::time::Duration;

use indexmap::IndexMap;

use super::error::Problem;
use super::raw::RawNotify;
use super::values::{check_name, duration};
use super::{PullEntry, StateEntry};
use crate::notify::NotifyUrl;

/// `notify.N.timeout` when the file does not set it: per attempt.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_NOTIFY_TIMEOUT: Duration = Duration::from_secs(300);
/// `notify.N.retries` when the file does not set it.
pub const DEFAULT_NOTIFY_RETRIES: u32 = 2;
pub const MAX_RETRIES: u32 = 10;

/// One entry of `notify:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyTarget {
    /// `name:`, or the entry's position (`0`, `1`, …): the delivery metrics'
    /// `target` label, and what logs call it.
    pub name: String,
    pub url: NotifyUrl,
    /// `type:`.
    pub kind: NotifyKind,
    /// The events sent (`on:`), without repeats.
    pub on: Vec<NotifyEvent>,
    /// The runs that are notified (`jobs:`); empty: every run.
    pub jobs: Vec<JobFilter>,
    /// Bound of each attempt: connection, TLS, request and the answer's head.
    pub timeout: Duration,
    /// Extra attempts after a failed one that may succeed later (no answer,
    /// 5xx, 408, 429).
    pub retries: u32,
}

/// How events reach the target (`type:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyKind {
    /// A JSON document POSTed to the URL.
    Webhook,
    /// healthchecks.io's ping API: the URL for a success, `URL/start`,
    /// `URL/fail`.
    Healthchecks,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Healthchecks => "healthchecks",
        }
    }
}

/// An event of a run (`on:`), and the `status` of the webhook's document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyEvent {
    /// The run began (for the daemon: after its jitter, once per run).
    Start,
    /// The run succeeded.
    Success,
    /// The run failed (for the daemon: after its retries).
    Failure,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Start => "start",
            NotifyEvent::Success => "success",
            NotifyEvent::Failure => "failure",
        }
    }
}

/// The jobs that notify, and the entries each one runs on: `backup`,
/// `restore`, `verify` and `prune` on state entries, `pull` on pull entries,
/// `boot` on none (its target is empty).
pub const NOTIFY_JOBS: [&str; 6] = ["backup", "restore", "verify", "prune", "pull", "boot"];

/// One item of `jobs:`: `KIND` (every run of that job) or `KIND:NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFilter {
    /// One of [`NOTIFY_JOBS`].
    pub job: String,
    pub target: Option<String>,
}

impl JobFilter {
    pub fn matches(&self, job: &str, target: &str) -> bool {
        self.job == job && self.target.as_deref().is_none_or(|t| t == target)
    }
}

impl NotifyTarget {
    /// Whether `event` of a run of `job` on `target` is sent here.
    pub fn wants(&self, event: NotifyEvent, job: &str, target: &str) -> bool {
        self.on.contains(&event)
            && (self.jobs.is_empty() || self.jobs.iter().any(|f| f.matches(job, target)))
    }
}

fn at(index: usize, key: &str) -> Vec<String> {
    vec!["notify".to_string(), index.to_string(), key.to_string()]
}

/// Validates `notify:` against the state and pull entries its `jobs:` name.
pub(crate) fn targets(
    raw: Vec<RawNotify>,
    state: &IndexMap<String, StateEntry>,
    pull: &IndexMap<String, PullEntry>,
) -> Result<Vec<NotifyTarget>, Problem> {
    let mut out: Vec<NotifyTarget> = Vec::with_capacity(raw.len());
    for (i, raw) in raw.into_iter().enumerate() {
        let target = target(i, raw, state, pull)?;
        if let Some(j) = out.iter().position(|t| t.name == target.name) {
            return Err(Problem::new(
                at(i, "name"),
                format!(
                    "the name {:?} is already that of notify.{j}: each target needs its own (`name:`, or its position when unnamed)",
                    target.name
                ),
            ));
        }
        out.push(target);
    }
    Ok(out)
}

fn target(
    i: usize,
    raw: RawNotify,
    state: &IndexMap<String, StateEntry>,
    pull: &IndexMap<String, PullEntry>,
) -> Result<NotifyTarget, Problem> {
    let name = match raw.name {
        Some(name) => {
            check_name(&name).map_err(|m| Problem::new(at(i, "name"), m))?;
            name
        }
        None => i.to_string(),
    };
    let url = raw.url.ok_or_else(|| Problem::missing(at(i, "url")))?;
    let url = NotifyUrl::parse(&url).map_err(|m| Problem::new(at(i, "url"), m))?;
    let kind = match raw.kind.as_deref() {
        None | Some("webhook") => NotifyKind::Webhook,
        Some("healthchecks") => NotifyKind::Healthchecks,
        Some(other) => {
            return Err(Problem::new(
                at(i, "type"),
                format!("expected `webhook` or `healthchecks`, got {other:?}"),
            ))
        }
    };
    let on = match raw.on {
        None => vec![NotifyEvent::Success, NotifyEvent::Failure],
        Some(events) => events_of(i, &events)?,
    };
    let jobs = match raw.jobs {
        None => Vec::new(),
        Some(items) if items.is_empty() => {
            return Err(Problem::new(
                at(i, "jobs"),
                "expected at least one job (leave `jobs` out to be told about every job)",
            ))
        }
        Some(items) => items
            .iter()
            .enumerate()
            .map(|(j, item)| {
                job_filter(item, state, pull).map_err(|m| {
                    let mut path = at(i, "jobs");
                    path.push(j.to_string());
                    Problem::new(path, m)
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let timeout = match raw.timeout {
        Some(t) => duration(&t).map_err(|m| Problem::new(at(i, "timeout"), m))?,
        None => DEFAULT_NOTIFY_TIMEOUT,
    };
    if timeout.is_zero() || timeout > MAX_NOTIFY_TIMEOUT {
        return Err(Problem::new(
            at(i, "timeout"),
            format!(
                "expected a duration longer than 0s and at most {}: a notification must not hold the jobs up",
                humantime::format_duration(MAX_NOTIFY_TIMEOUT)
            ),
        ));
    }
    let retries = raw.retries.unwrap_or(DEFAULT_NOTIFY_RETRIES);
    if retries > MAX_RETRIES {
        return Err(Problem::new(
            at(i, "retries"),
            format!("expected a number from 0 to {MAX_RETRIES}, got {retries}"),
        ));
    }
    Ok(NotifyTarget {
        name,
        url,
        kind,
        on,
        jobs,
        timeout,
        retries,
    })
}

fn events_of(i: usize, events: &[String]) -> Result<Vec<NotifyEvent>, Problem> {
    if events.is_empty() {
        return Err(Problem::new(
            at(i, "on"),
            "expected at least one of `start`, `success`, `failure`",
        ));
    }
    let mut out = Vec::new();
    for (j, event) in events.iter().enumerate() {
        let event = match event.as_str() {
            "start" => NotifyEvent::Start,
            "success" => NotifyEvent::Success,
            "failure" => NotifyEvent::Failure,
            other => {
                let mut path = at(i, "on");
                path.push(j.to_string());
                return Err(Problem::new(
                    path,
                    format!("expected one of `start`, `success`, `failure`, got {other:?}"),
                ));
            }
        };
        if !out.contains(&event) {
            out.push(event);
        }
    }
    Ok(out)
}

/// `backup`, `backup:acme`, `pull:site`, `boot`, …
fn job_filter(
    item: &str,
    state: &IndexMap<String, StateEntry>,
    pull: &IndexMap<String, PullEntry>,
) -> Result<JobFilter, String> {
    let (job, target) = match item.split_once(':') {
        Some((job, target)) => (job, Some(target)),
        None => (item, None),
    };
    if !NOTIFY_JOBS.contains(&job) {
        return Err(format!(
            "expected a job ({}), optionally with `:NAME` of an entry (`backup:acme`), got {item:?}",
            NOTIFY_JOBS.map(|j| format!("`{j}`")).join(", ")
        ));
    }
    let Some(target) = target else {
        return Ok(JobFilter {
            job: job.to_string(),
            target: None,
        });
    };
    let (section, known): (&str, Vec<&str>) = match job {
        "boot" => {
            return Err(format!(
                "`boot` runs on no entry: write `boot`, not {item:?}"
            ))
        }
        "pull" => ("pull", pull.keys().map(String::as_str).collect()),
        _ => ("state", state.keys().map(String::as_str).collect()),
    };
    if !known.contains(&target) {
        return Err(format!(
            "no {section} entry {target:?} for {item:?} (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    Ok(JobFilter {
        job: job.to_string(),
        target: Some(target.to_string()),
    })
}
