//! `rehost fleet`: every host under the store's prefix, read from the store
//! alone (see [`rehost_jobs::fleet`] for what it reads and what that costs),
//! as a table, one JSON document, or node_exporter textfile metrics that a
//! central Prometheus alerts on — a destroyed host's own staleness alerts go
//! with it, these do not.
//!
//! Staleness rule (exit 1): an entry is stale when it has no complete backup,
//! when its newest complete backup is older than its `--max-age` (the last
//! `ENTRY=DURATION` naming it, else the last bare `DURATION`, else
//! [`DEFAULT_MAX_AGE`]), or when that backup's manifest cannot be read. A
//! host with no state entry at all (registered, never backed up, or one
//! that only pulls) is shown and not stale; a host named with `--host` that
//! has nothing at all in the store is.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rehost_jobs::fleet::{self, EntryView, Fleet, HostView};
use rehost_jobs::metrics::{escape, family};
use rehost_jobs::safefs::Dir;
use serde::Serialize;

use crate::cli::{Ctx, UsageError};
use crate::cmd::status::short_duration;
use crate::cmd::Stale;
use crate::output::{bytes, print_json, rfc3339, serialize_time, table};

/// How old an entry's newest backup may be without `--max-age`: a daily
/// backup plus an hour of slack.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(25 * 3600);

/// One `--max-age`: for every entry, or for entries named `entry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxAge {
    pub entry: Option<String>,
    pub age: Duration,
}

/// `DURATION` or `ENTRY=DURATION` (clap value parser).
pub fn parse_max_age(s: &str) -> Result<MaxAge, String> {
    let (entry, age) = match s.split_once('=') {
        Some((e, a)) if !e.is_empty() => (Some(e.to_string()), a),
        Some(_) => return Err(format!("{s:?}: expected ENTRY=DURATION, e.g. acme=2h")),
        None => (None, s),
    };
    let age = humantime::parse_duration(age)
        .map_err(|e| format!("{age:?}: {e} (expected a duration like 25h or 90m)"))?;
    if age.is_zero() {
        return Err(format!("{s:?}: a maximum age must be more than 0"));
    }
    Ok(MaxAge { entry, age })
}

/// The maximum age that applies to entries named `entry`.
fn max_age_for(rules: &[MaxAge], entry: &str) -> Duration {
    rules
        .iter()
        .rev()
        .find(|r| r.entry.as_deref() == Some(entry))
        .or_else(|| rules.iter().rev().find(|r| r.entry.is_none()))
        .map_or(DEFAULT_MAX_AGE, |r| r.age)
}

/// What `fleet --json` prints. Field names are part of the interface
/// (README).
#[derive(Debug, Serialize)]
pub struct Report {
    /// True when `fleet` exits 0: no entry is stale.
    pub ok: bool,
    #[serde(serialize_with = "serialize_time")]
    pub now: DateTime<Utc>,
    pub storage: String,
    pub hosts: Vec<HostReport>,
    /// `HOST/ENTRY` of every stale entry.
    pub stale: Vec<String>,
    /// Objects the listings returned, and manifests read: what the view cost.
    pub objects_listed: usize,
    pub manifests_read: usize,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub registered: bool,
    /// The host's newest generation (its newest `rehost boot`); `null` if none.
    pub generation: Option<String>,
    pub entries: Vec<EntryReport>,
}

#[derive(Debug, Serialize)]
pub struct EntryReport {
    pub name: String,
    /// `ok`, `stale` (too old), `none` (no complete backup) or `broken`
    /// (its newest manifest cannot be read).
    pub status: &'static str,
    pub max_age_seconds: u64,
    /// Complete backups, and backups without a manifest.
    pub backups: usize,
    pub incomplete: usize,
    pub newest: Option<NewestReport>,
    /// When a `verify` last succeeded on any of its backups (store's clock).
    pub last_verified: Option<String>,
    pub problem: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NewestReport {
    pub id: String,
    /// By the clock of the machine that made it.
    pub created: String,
    /// When the store received it (its clock); `null` if the store does not say.
    pub stored: Option<String>,
    /// From `stored`, else `created`.
    pub age_seconds: u64,
    pub size_bytes: u64,
    pub files: u64,
    pub generation: Option<String>,
    /// When a `verify` succeeded on this backup; `null` if none did.
    pub verified: Option<String>,
    pub encrypted: bool,
}

/// One entry, judged.
struct Judged<'a> {
    host: &'a HostView,
    entry: &'a EntryView,
    status: &'static str,
    max_age: Duration,
    age: Option<Duration>,
}

fn judge<'a>(
    host: &'a HostView,
    entry: &'a EntryView,
    rules: &[MaxAge],
    now: DateTime<Utc>,
) -> Judged<'a> {
    let max_age = max_age_for(rules, &entry.name);
    let age = entry
        .newest
        .as_ref()
        .map(|n| (now - n.time()).to_std().unwrap_or(Duration::ZERO));
    let status = match (&entry.problem, age) {
        (Some(_), _) => "broken",
        (None, None) => "none",
        (None, Some(a)) if a > max_age => "stale",
        (None, Some(_)) => "ok",
    };
    Judged {
        host,
        entry,
        status,
        max_age,
        age,
    }
}

pub async fn run(
    ctx: &Ctx,
    hosts: &[String],
    rules: &[MaxAge],
    json: bool,
    metrics: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(bad) = hosts
        .iter()
        .find(|h| h.is_empty() || h.contains('/') || h.starts_with('.'))
    {
        return Err(UsageError(format!("--host {bad:?}: not a host name")).into());
    }
    let clock = Instant::now();
    let view = fleet::scan(ctx.store.as_ref(), hosts)
        .await
        .with_context(|| format!("list the hosts in {}", ctx.store.url()))?;
    let took = clock.elapsed();
    let now = Utc::now();
    let judged: Vec<Judged> = view
        .hosts
        .iter()
        .flat_map(|h| h.entries.iter().map(move |e| (h, e)))
        .map(|(h, e)| judge(h, e, rules, now))
        .collect();
    // A host asked for by name that the store knows nothing of is a typo or
    // a host that never ran: stale as well.
    let stale: Vec<String> = view
        .hosts
        .iter()
        .filter(|h| h.objects == 0)
        .map(|h| format!("{} (nothing in the store)", h.host))
        .chain(
            judged
                .iter()
                .filter(|j| j.status != "ok")
                .map(|j| format!("{}/{}", j.host.host, j.entry.name)),
        )
        .collect();
    if let Some(path) = metrics {
        let text = render_metrics(&view, &judged, now, took);
        write_metrics(path, &text)?;
    }
    if json {
        print_json(&report(ctx, &view, &judged, &stale, now))?;
    } else {
        print!("{}", text_view(&view, &judged, now));
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(Stale {
            what: ("entry", "entries"),
            items: stale,
        }
        .into())
    }
}

fn report(
    ctx: &Ctx,
    view: &Fleet,
    judged: &[Judged],
    stale: &[String],
    now: DateTime<Utc>,
) -> Report {
    let hosts = view
        .hosts
        .iter()
        .map(|h| HostReport {
            host: h.host.clone(),
            registered: h.registered,
            generation: h.generation.clone(),
            entries: judged
                .iter()
                .filter(|j| std::ptr::eq(j.host, h))
                .map(|j| EntryReport {
                    name: j.entry.name.clone(),
                    status: j.status,
                    max_age_seconds: j.max_age.as_secs(),
                    backups: j.entry.backups,
                    incomplete: j.entry.incomplete,
                    newest: j.entry.newest.as_ref().map(|n| NewestReport {
                        id: n.id.clone(),
                        created: rfc3339(n.created),
                        stored: n.stored.map(rfc3339),
                        age_seconds: j.age.unwrap_or_default().as_secs(),
                        size_bytes: n.size_bytes,
                        files: n.files,
                        generation: n.generation.clone(),
                        verified: n.verified.map(rfc3339),
                        encrypted: n.encrypted,
                    }),
                    last_verified: j.entry.last_verified.map(rfc3339),
                    problem: j.entry.problem.clone(),
                })
                .collect(),
        })
        .collect();
    Report {
        ok: stale.is_empty(),
        now,
        storage: ctx.store.url(),
        hosts,
        stale: stale.to_vec(),
        objects_listed: view.objects,
        manifests_read: view.manifests,
    }
}

fn text_view(view: &Fleet, judged: &[Judged], now: DateTime<Utc>) -> String {
    let ago = |t: DateTime<Utc>| {
        let secs = (now - t).num_seconds().max(0) as u64;
        format!("{} ago", short_duration(secs))
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for h in &view.hosts {
        let mine: Vec<&Judged> = judged.iter().filter(|j| std::ptr::eq(j.host, h)).collect();
        if mine.is_empty() {
            let what = match (h.registered, h.objects) {
                (_, 0) => "nothing in the store",
                (true, _) => "registered, no backups",
                (false, _) => "no backups",
            };
            rows.push(vec![
                h.host.clone(),
                "-".into(),
                what.into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                if h.objects == 0 { "UNKNOWN" } else { "-" }.into(),
            ]);
        }
        for j in mine {
            let e = j.entry;
            let status = match j.status {
                "stale" => format!("STALE (> {})", short_duration(j.max_age.as_secs())),
                "none" => "NO BACKUP".to_string(),
                "broken" => "BROKEN".to_string(),
                other => other.to_string(),
            };
            let row = match &e.newest {
                Some(n) => vec![
                    h.host.clone(),
                    e.name.clone(),
                    n.id.clone(),
                    short_duration(j.age.unwrap_or_default().as_secs()),
                    bytes(n.size_bytes),
                    generation_number(n.generation.as_deref())
                        .map_or("-".into(), |g| g.to_string()),
                    match (n.verified, e.last_verified) {
                        (Some(t), _) => format!("yes, {}", ago(t)),
                        (None, Some(t)) => format!("no (older: {})", ago(t)),
                        (None, None) => "never".into(),
                    },
                    e.backups.to_string(),
                    status,
                ],
                None => vec![
                    h.host.clone(),
                    e.name.clone(),
                    "none".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    e.backups.to_string(),
                    status,
                ],
            };
            rows.push(row);
        }
    }
    let mut out = if rows.is_empty() {
        "no hosts\n".to_string()
    } else {
        table(
            &[
                "HOST", "ENTRY", "NEWEST", "AGE", "SIZE", "GEN", "VERIFIED", "BACKUPS", "STATUS",
            ],
            &rows,
        )
    };
    for j in judged.iter().filter(|j| j.status == "broken") {
        let _ = writeln!(
            out,
            "{}/{}: {}",
            j.host.host,
            j.entry.name,
            j.entry.problem.as_deref().unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "{} host(s), {} entr{}; {} objects listed, {} manifests read",
        view.hosts.len(),
        judged.len(),
        if judged.len() == 1 { "y" } else { "ies" },
        view.objects,
        view.manifests
    );
    out
}

/// The sequence number of a generation id (`00000003-1a2b3c4d` → 3).
fn generation_number(id: Option<&str>) -> Option<u64> {
    id?.split_once('-')?.0.parse().ok()
}

/// Unix seconds of `t`, 0 for none.
fn unix(t: Option<DateTime<Utc>>) -> f64 {
    t.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
}

/// The families with one series per host and entry: name, help, value.
type EntryFamily = (&'static str, &'static str, fn(&Judged) -> f64);
const ENTRY_FAMILIES: [EntryFamily; 8] = [
    (
        fleet::LAST_BACKUP,
        "Unix time of the entry's newest complete backup, by the store's clock (0: none).",
        |j| unix(j.entry.newest.as_ref().map(|n| n.time())),
    ),
    (
        "rehost_fleet_backup_last_size_bytes",
        "Bytes a restore of the entry's newest complete backup downloads.",
        |j| j.entry.newest.as_ref().map_or(0.0, |n| n.size_bytes as f64),
    ),
    (
        "rehost_fleet_backup_last_verified",
        "1 if a verify succeeded on the entry's newest complete backup.",
        |j| {
            let verified = j
                .entry
                .newest
                .as_ref()
                .is_some_and(|n| n.verified.is_some());
            f64::from(u8::from(verified))
        },
    ),
    (
        "rehost_fleet_backup_verified_timestamp_seconds",
        "Unix time a verify last succeeded on any backup of the entry (0: never).",
        |j| unix(j.entry.last_verified),
    ),
    (
        "rehost_fleet_backups",
        "Complete backups of the entry in the store.",
        |j| j.entry.backups as f64,
    ),
    (
        fleet::MAX_AGE,
        "How old the entry's newest backup may be (rehost fleet --max-age).",
        |j| j.max_age.as_secs_f64(),
    ),
    (
        "rehost_fleet_backup_stale",
        "1 if the entry had no recent, readable backup when the fleet was scanned.",
        |j| f64::from(u8::from(j.status != "ok")),
    ),
    (
        "rehost_fleet_backup_last_generation",
        "Generation number of the host that made the entry's newest backup (0: none).",
        |j| {
            let newest = j.entry.newest.as_ref();
            newest
                .and_then(|n| generation_number(n.generation.as_deref()))
                .unwrap_or(0) as f64
        },
    ),
];

fn render_metrics(view: &Fleet, judged: &[Judged], now: DateTime<Utc>, took: Duration) -> String {
    let mut out = String::new();
    for (name, help, value) in ENTRY_FAMILIES {
        family(&mut out, name, "gauge", help);
        for j in judged {
            let _ = writeln!(
                out,
                "{name}{{host=\"{}\",target=\"{}\"}} {}",
                escape(&j.host.host),
                escape(&j.entry.name),
                value(j)
            );
        }
    }
    let name = "rehost_fleet_host_generation";
    family(
        &mut out,
        name,
        "gauge",
        "The host's newest generation number (its newest rehost boot; 0: none).",
    );
    for h in &view.hosts {
        let _ = writeln!(
            out,
            "{name}{{host=\"{}\"}} {}",
            escape(&h.host),
            generation_number(h.generation.as_deref()).unwrap_or(0)
        );
    }
    let scan: [(&str, &str, f64); 4] = [
        (
            fleet::SCAN_TIMESTAMP,
            "Unix time of the scan that wrote this file.",
            unix(Some(now)),
        ),
        (
            "rehost_fleet_scan_duration_seconds",
            "How long the scan took.",
            took.as_secs_f64(),
        ),
        (
            "rehost_fleet_hosts",
            "Hosts found in the store.",
            view.hosts.len() as f64,
        ),
        (
            "rehost_fleet_scan_objects",
            "Objects the scan listed.",
            view.objects as f64,
        ),
    ];
    for (name, help, value) in scan {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// Writes the metrics file atomically (node_exporter never reads half of
/// it), relative to its directory opened without following a symlink in
/// place of the file.
fn write_metrics(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| UsageError(format!("--metrics {}: not a file name", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = Dir::open(parent).with_context(|| format!("open {}", parent.display()))?;
    dir.write_atomic(name, text.as_bytes(), 0o644)
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_rules_take_the_last_naming_the_entry_then_the_last_bare_one() {
        let rules: Vec<MaxAge> = ["30h", "acme=2h", "1d", "acme=3h"]
            .iter()
            .map(|s| parse_max_age(s).unwrap())
            .collect();
        assert_eq!(max_age_for(&rules, "acme"), Duration::from_secs(3 * 3600));
        assert_eq!(max_age_for(&rules, "grafana"), Duration::from_secs(86400));
        assert_eq!(max_age_for(&[], "grafana"), DEFAULT_MAX_AGE);
        assert!(parse_max_age("=2h").is_err());
        assert!(parse_max_age("acme=soon").is_err());
        assert!(parse_max_age("0s").is_err());
    }

    #[test]
    fn generation_numbers() {
        assert_eq!(generation_number(Some("00000003-1a2b3c4d")), Some(3));
        assert_eq!(generation_number(None), None);
        assert_eq!(generation_number(Some("x")), None);
    }
}
