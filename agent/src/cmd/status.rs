//! `rehost status`: the last success and attempt of every job, read from the
//! metrics files that every run writes (so it shows what node_exporter sees).
//!
//! Rows: one per configured job (`backup` of each state entry, `pull` of each
//! pull entry; "never" when it has no metrics yet), then any other job found
//! in the metrics directory (`restore`, `verify`, …).
//!
//! Staleness rule (exit 1): a *scheduled* job is stale when it has never
//! succeeded, or its last success is older than 2 × its schedule's period +
//! its timeout, where the period is the longest interval between two
//! consecutive occurrences of its cron schedule (over its next 32). A job
//! whose last run failed is not stale while an earlier success is recent
//! enough: one failure is tolerated, two missed periods are not.
//! An unwritable metrics directory is reported too (exit 1): runs then go
//! unrecorded (jobs log it but do not fail because of it).
//! Without a `metrics:` section there is nothing to read: exit 2.

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use rehost_jobs::metrics::{self, JobStatus};
use serde::Serialize;

use crate::cli::{Ctx, UsageError};
use crate::cmd::Stale;
use crate::config::Config;
use crate::daemon::schedule::Schedule;
use crate::output::{print_json, serialize_time};

/// What `status --json` prints. Field names are part of the interface
/// (README).
#[derive(Debug, Serialize)]
pub struct Report {
    /// True when `status` exits 0: nothing stale, the metrics directory writable.
    pub ok: bool,
    /// When the ages were computed (RFC 3339, UTC).
    #[serde(serialize_with = "serialize_time")]
    pub now: DateTime<Utc>,
    pub metrics_dir: String,
    pub metrics_writable: bool,
    pub jobs: Vec<JobReport>,
}

#[derive(Debug, Serialize)]
pub struct JobReport {
    pub job: String,
    pub target: String,
    /// `ok`, `failed` (the last run failed, not stale yet), `never` (no
    /// success yet, not scheduled) or `stale`.
    pub status: &'static str,
    /// How old the last success may be before the job is stale; `null`
    /// for a job without a schedule (never stale).
    pub allowed_age_seconds: Option<u64>,
    /// RFC 3339, UTC; `null` when it never happened.
    pub last_success: Option<String>,
    pub last_success_age_seconds: Option<u64>,
    pub last_attempt: Option<String>,
    /// Whether the last attempt succeeded; `null` when there was none.
    pub last_ok: Option<bool>,
    pub last_duration_seconds: Option<f64>,
    /// Bytes the last run moved.
    pub last_bytes: Option<u64>,
    /// Failed runs since the metrics file was created.
    pub failures_total: u64,
}

impl JobReport {
    fn of(r: &Row, now: DateTime<Utc>) -> Self {
        let s = r.status.as_ref();
        let at = |t: f64| -> Option<String> {
            (t > 0.0)
                .then(|| Utc.timestamp_millis_opt((t * 1000.0) as i64).single())
                .flatten()
                .map(crate::output::rfc3339)
        };
        let attempted = s.filter(|s| s.last_attempt > 0.0);
        JobReport {
            job: r.job.clone(),
            target: r.target.clone(),
            status: match r.state {
                State::Ok => "ok",
                State::Failed => "failed",
                State::Never => "never",
                State::Stale => "stale",
            },
            allowed_age_seconds: r.allowed.map(|a| a.as_secs()),
            last_success: s.and_then(|s| at(s.last_success)),
            last_success_age_seconds: s
                .filter(|s| s.last_success > 0.0)
                .map(|s| age(s.last_success, now).max(0.0) as u64),
            last_attempt: s.and_then(|s| at(s.last_attempt)),
            last_ok: attempted.map(|s| s.last_ok),
            last_duration_seconds: attempted.map(|s| s.last_duration),
            last_bytes: attempted.map(|s| s.last_bytes as u64),
            failures_total: s.map_or(0, |s| s.failures as u64),
        }
    }
}

pub async fn run(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let Some(m) = &ctx.config.metrics else {
        return Err(UsageError(format!(
            "`rehost status` reads the metrics files, and {} has no `metrics:` section",
            ctx.config.path.display()
        ))
        .into());
    };
    let found = match metrics::read_dir(&m.textfile_dir) {
        Ok(found) => found.into_iter().map(|(_, s)| s).collect(),
        // No directory there (yet): no run recorded; reported below when
        // it cannot be created either.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Vec::new()
        }
        Err(e) => {
            return Err(e).with_context(|| format!("read metrics in {}", m.textfile_dir.display()))
        }
    };
    let now = Utc::now();
    let rows = assess(&ctx.config, found, now);
    // Jobs never fail because of their metrics (they log it): this is where
    // an operator sees that runs are going unrecorded.
    let unwritable = !super::check::writable(&m.textfile_dir);
    if json {
        print_json(&Report {
            ok: !unwritable && rows.iter().all(|r| r.state != State::Stale),
            now,
            metrics_dir: m.textfile_dir.display().to_string(),
            metrics_writable: !unwritable,
            jobs: rows.iter().map(|r| JobReport::of(r, now)).collect(),
        })?;
    } else {
        print!("{}", table(&rows, now));
    }
    if unwritable && !json {
        println!(
            "metrics {}: NOT writable by this user: runs are not recorded, and alerts on them go blind",
            m.textfile_dir.display()
        );
    }
    let stale: Vec<String> = rows
        .iter()
        .filter(|r| r.state == State::Stale)
        .map(|r| format!("{} {}", r.job, r.target))
        .collect();
    if !stale.is_empty() {
        return Err(Stale {
            what: ("scheduled job", "scheduled jobs"),
            items: stale,
        }
        .into());
    }
    if unwritable {
        anyhow::bail!(
            "the metrics directory {} is not writable by this user",
            m.textfile_dir.display()
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Ok,
    /// The last run failed, but the job is not stale.
    Failed,
    /// No success yet, and the job is not scheduled.
    Never,
    Stale,
}

#[derive(Debug)]
pub(crate) struct Row {
    pub job: String,
    pub target: String,
    pub status: Option<JobStatus>,
    /// How old the last success may be; `None` for unscheduled jobs.
    pub allowed: Option<Duration>,
    pub state: State,
}

/// The allowed age of a scheduled job's last success (see the module header).
pub(crate) fn allowed_age(
    schedule: &str,
    timeout: Duration,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let period = Schedule::parse(schedule).ok()?.period(now)?;
    Some(period.saturating_mul(2).saturating_add(timeout))
}

/// Pure: the configured jobs and the found statuses → rows.
pub(crate) fn assess(config: &Config, mut found: Vec<JobStatus>, now: DateTime<Utc>) -> Vec<Row> {
    let mut rows = Vec::new();
    for j in config.jobs() {
        let status = found
            .iter()
            .position(|s| s.job == j.kind.as_str() && s.target == j.target)
            .map(|i| found.remove(i));
        let timeout = config.jobs.resolve(j.overrides).timeout;
        let allowed = j.schedule.and_then(|s| allowed_age(s, timeout, now));
        rows.push(row(
            j.kind.as_str().to_string(),
            j.target.to_string(),
            status,
            allowed,
            now,
        ));
    }
    for status in found {
        rows.push(row(
            status.job.clone(),
            status.target.clone(),
            Some(status),
            None,
            now,
        ));
    }
    rows
}

fn row(
    job: String,
    target: String,
    status: Option<JobStatus>,
    allowed: Option<Duration>,
    now: DateTime<Utc>,
) -> Row {
    let success = status.as_ref().map(|s| s.last_success).filter(|t| *t > 0.0);
    let fresh = match (allowed, success) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(allowed), Some(t)) => age(t, now) <= allowed.as_secs_f64(),
    };
    let state = match (&status, fresh) {
        (_, false) => State::Stale,
        (None, true) => State::Never,
        (Some(s), true) if s.last_ok => State::Ok,
        (Some(_), true) if success.is_none() => State::Never,
        (Some(_), true) => State::Failed,
    };
    Row {
        job,
        target,
        status,
        allowed,
        state,
    }
}

/// Seconds from unix time `t` to `now`.
fn age(t: f64, now: DateTime<Utc>) -> f64 {
    now.timestamp_millis() as f64 / 1000.0 - t
}

fn when(t: f64, now: DateTime<Utc>) -> String {
    if t <= 0.0 {
        return "never".to_string();
    }
    let Some(at) = Utc.timestamp_millis_opt((t * 1000.0) as i64).single() else {
        return format!("{t}");
    };
    format!(
        "{} ({} ago)",
        at.format("%Y-%m-%d %H:%M:%SZ"),
        short_duration(age(t, now).max(0.0) as u64)
    )
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`.
pub(crate) fn short_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn table(rows: &[Row], now: DateTime<Utc>) -> String {
    let header = [
        "JOB",
        "TARGET",
        "LAST SUCCESS",
        "LAST ATTEMPT",
        "STATUS",
        "FAILURES",
    ]
    .map(String::from);
    let mut lines = vec![header];
    for r in rows {
        let (success, attempt, failures) = match &r.status {
            Some(s) => (
                when(s.last_success, now),
                when(s.last_attempt, now),
                format!("{}", s.failures),
            ),
            None => ("never".into(), "never".into(), "0".into()),
        };
        let state = match (r.state, r.allowed) {
            (State::Ok, _) => "ok".to_string(),
            (State::Failed, _) => "failed".to_string(),
            (State::Never, _) => "never".to_string(),
            (State::Stale, Some(a)) => format!("STALE (> {})", short_duration(a.as_secs())),
            (State::Stale, None) => "STALE".to_string(),
        };
        lines.push([
            r.job.clone(),
            r.target.clone(),
            success,
            attempt,
            state,
            failures,
        ]);
    }
    let mut widths = [0usize; 6];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CONFIG: &str = "host: h\nstorage:\n  url: file:///store\nstate:\n  acme:\n    path: /srv/acme\n    backup: \"0 * * * *\"\n    timeout: 10m\n  site:\n    path: /srv/site\n  db:\n    path: /srv/db\n    backup: \"*/5 * * * *\"\nmetrics:\n  textfile_dir: /srv/metrics\n";

    fn config() -> Config {
        crate::config::parse(Path::new("/etc/rehost/rehost.yaml"), CONFIG, &|_| None).unwrap()
    }

    fn status(job: &str, target: &str, success: f64, attempt: f64, ok: bool) -> JobStatus {
        JobStatus {
            job: job.into(),
            target: target.into(),
            last_success: success,
            last_attempt: attempt,
            last_ok: ok,
            ..Default::default()
        }
    }

    #[test]
    fn allowed_age_is_two_periods_plus_the_timeout() {
        let now = Utc::now();
        assert_eq!(
            allowed_age("0 * * * *", Duration::from_secs(600), now),
            Some(Duration::from_secs(2 * 3600 + 600))
        );
        assert_eq!(
            allowed_age("*/2 * * * * *", Duration::from_secs(1), now),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn fresh_failed_stale_and_never() {
        let now = Utc.with_ymd_and_hms(2026, 1, 7, 12, 0, 0).unwrap();
        let t = now.timestamp() as f64;
        let found = vec![
            // acme: hourly + 10m → allowed 2h10m; 2h ago is fresh even though the last run failed.
            status("backup", "acme", t - 7200.0, t - 60.0, false),
            // db: every 5m + default 30m timeout → allowed 40m; 41m is stale.
            status("backup", "db", t - 41.0 * 60.0, t - 41.0 * 60.0, true),
            status("restore", "acme", t - 86400.0, t - 86400.0, true),
        ];
        let rows = assess(&config(), found, now);
        let states: Vec<(&str, &str, State)> = rows
            .iter()
            .map(|r| (r.job.as_str(), r.target.as_str(), r.state))
            .collect();
        assert_eq!(
            states,
            [
                ("backup", "acme", State::Failed),
                ("backup", "site", State::Never),
                ("backup", "db", State::Stale),
                ("restore", "acme", State::Ok),
            ]
        );
        let text = table(&rows, now);
        assert!(text.starts_with("JOB "), "{text}");
        assert!(text.contains("2026-01-07 10:00:00Z (2h00m ago)"), "{text}");
        assert!(text.contains("STALE (> 40m00s)"), "{text}");

        // A scheduled job without any metrics is stale, and a fresh one is ok.
        let rows = assess(
            &config(),
            vec![status("backup", "db", t - 60.0, t - 60.0, true)],
            now,
        );
        assert_eq!(rows[0].state, State::Stale, "acme never ran");
        assert_eq!(rows[2].state, State::Ok);
        // A scheduled job that only ever failed is stale.
        let rows = assess(
            &config(),
            vec![status("backup", "db", 0.0, t - 60.0, false)],
            now,
        );
        assert_eq!(rows[2].state, State::Stale);
    }

    #[test]
    fn the_json_rows_carry_times_ages_and_states() {
        let now = Utc.with_ymd_and_hms(2026, 1, 7, 12, 0, 0).unwrap();
        let t = now.timestamp() as f64;
        let mut failed = status("backup", "acme", t - 7200.0, t - 60.0, false);
        failed.last_duration = 1.5;
        failed.last_bytes = 4096.0;
        failed.failures = 3.0;
        let rows = assess(&config(), vec![failed], now);
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::to_value(JobReport::of(r, now)).unwrap())
            .collect();
        assert_eq!(
            json[0],
            serde_json::json!({
                "job": "backup",
                "target": "acme",
                "status": "failed",
                "allowed_age_seconds": 2 * 3600 + 600,
                "last_success": "2026-01-07T10:00:00.000Z",
                "last_success_age_seconds": 7200,
                "last_attempt": "2026-01-07T11:59:00.000Z",
                "last_ok": false,
                "last_duration_seconds": 1.5,
                "last_bytes": 4096,
                "failures_total": 3,
            })
        );
        // Unscheduled and never run: every time is null, and it is not stale.
        assert_eq!(json[1]["target"], "site");
        assert_eq!(json[1]["status"], "never");
        assert!(json[1]["allowed_age_seconds"].is_null());
        assert!(json[1]["last_success"].is_null());
        assert!(json[1]["last_ok"].is_null());
        // Scheduled and never run: stale.
        assert_eq!(json[2]["status"], "stale");
        assert_eq!(json[2]["allowed_age_seconds"], 40 * 60);
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(192), "3m12s");
        assert_eq!(short_duration(7500), "2h05m");
        assert_eq!(short_duration(3 * 86400 + 4 * 3600 + 5), "3d04h");
    }

    #[test]
    fn the_stale_error_names_the_jobs() {
        assert_eq!(
            Stale {
                what: ("scheduled job", "scheduled jobs"),
                items: vec!["backup acme".into()]
            }
            .to_string(),
            "1 scheduled job is stale: backup acme"
        );
    }
}
