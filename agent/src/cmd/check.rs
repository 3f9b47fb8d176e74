//! `rehost check`: the configuration was already validated by loading it (the
//! same code as every other command); this adds what needs I/O, read-only:
//! the compose file (loaded by the same code as `up`), storage access, and
//! the paths the jobs will use; it lists the `notify:` targets without
//! contacting them.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use nix::unistd::{access, AccessFlags};
use serde::Serialize;

use crate::cli::{Ctx, UsageError};
use crate::config::{NotifyTarget, StateEntry, StateKind};
use crate::generation::Lineage;
use crate::output::print_json;
use crate::stack::compose;

/// What `check --json` prints: every section `check` looked at (a section
/// it did not get to is `null`), the problems it found, and the error that
/// stopped it, if one did. Field names are part of the interface (README).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// True when `check` exits 0.
    pub ok: bool,
    /// What stopped `check` or made it fail (the message on stderr).
    pub error: Option<String>,
    /// Each problem found (the identity file opens no backup, this machine
    /// may not write, the metrics directory is not writable).
    pub problems: Vec<String>,
    pub config: Option<ConfigReport>,
    pub stack: Option<StackReport>,
    pub storage: Option<StorageReport>,
    pub generation: Option<Lineage>,
    pub encryption: Option<EncryptionReport>,
    pub state: Vec<StateReport>,
    pub metrics: Option<MetricsReport>,
    /// `notify:` targets as the text output lists them (scheme://host only).
    pub notify: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub path: String,
    pub host: String,
    pub state_entries: usize,
    pub pull_entries: usize,
}

#[derive(Debug, Serialize)]
pub struct StackReport {
    pub compose: String,
    pub project: String,
    pub services: usize,
    pub networks: usize,
    pub volumes: usize,
}

#[derive(Debug, Serialize)]
pub struct StorageReport {
    pub url: String,
    /// Objects stored for this host.
    pub objects: usize,
    pub list_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct EncryptionReport {
    pub scheme: &'static str,
    pub recipients: usize,
    pub identity_file: Option<String>,
    /// Whether the identity file holds a key of a recipient; `null` without one.
    pub identity_ok: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct StateReport {
    pub name: String,
    /// `files`, `sqlite`, `prometheus` or `acme`.
    pub kind: &'static str,
    /// `null` for a `volume:` entry, whose path the Docker Engine knows.
    pub path: Option<String>,
    pub volume: Option<String>,
    /// `exists`, `missing` (a restore would create it), `missing_parent`;
    /// `null` for a `volume:` entry.
    pub target: Option<&'static str>,
    /// Cron schedules; `null` when not scheduled.
    pub backup: Option<String>,
    /// A `keep:` policy prunes after each scheduled backup.
    pub prune: bool,
    pub verify: Option<String>,
    /// `kind: acme` with the file present: what a backup would find in it
    /// (the text line of `check`; also in `problems` when a backup would
    /// refuse the file).
    pub acme: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MetricsReport {
    pub textfile_dir: String,
    pub writable: bool,
}

/// Runs the checks; with `json`, prints one document instead of lines, also
/// when a check fails (the exit code is the same either way).
pub async fn run(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let mut report = Report::default();
    let result = gather(ctx, &mut report, json).await;
    if json {
        report.ok = result.is_ok();
        report.error = result.as_ref().err().map(|e| format!("{e:#}"));
        print_json(&report)?;
    }
    result
}

/// Prints `line` unless the output is JSON.
fn say(json: bool, line: String) {
    if !json {
        println!("{line}");
    }
}

async fn gather(ctx: &Ctx, report: &mut Report, json: bool) -> anyhow::Result<()> {
    let c = &ctx.config;
    report.config = Some(ConfigReport {
        path: c.path.display().to_string(),
        host: c.host.clone(),
        state_entries: c.state.len(),
        pull_entries: c.pull.len(),
    });
    say(
        json,
        format!(
            "config {}: ok (host {}, {} state entries, {} pull entries)",
            c.path.display(),
            c.host,
            c.state.len(),
            c.pull.len()
        ),
    );
    // The compose file is configuration too: its errors are exit 2, found
    // before storage is contacted.
    if let Some(stack) = &c.stack {
        let project = compose::load(stack, &|name| std::env::var(name).ok())?;
        for entry in c.state.values() {
            if let Some(key) = &entry.volume {
                if !project.volumes.contains_key(key) {
                    return Err(UsageError(format!(
                        "{}: state `{}`: volume `{key}` is not declared in the top-level `volumes:` of {}",
                        c.path.display(),
                        entry.name,
                        stack.compose.display()
                    ))
                    .into());
                }
            }
        }
        report.stack = Some(StackReport {
            compose: stack.compose.display().to_string(),
            project: project.name.clone(),
            services: project.services.len(),
            networks: project.networks.len(),
            volumes: project.volumes.len(),
        });
        say(
            json,
            format!(
                "stack {}: ok (project {}, {} services, {} networks, {} volumes)",
                stack.compose.display(),
                project.name,
                project.services.len(),
                project.networks.len(),
                project.volumes.len()
            ),
        );
    }
    let clock = Instant::now();
    let listing = ctx
        .store
        .list(&format!("{}/", c.host))
        .await
        .with_context(|| format!("list {}", ctx.store.url()))?;
    let took = clock.elapsed();
    report.storage = Some(StorageReport {
        url: ctx.store.url(),
        objects: listing.len(),
        list_seconds: took.as_secs_f64(),
    });
    say(
        json,
        format!(
            "storage {}: ok ({} objects for host {}, listed in {} ms)",
            ctx.store.url(),
            listing.len(),
            c.host,
            took.as_millis()
        ),
    );
    let lineage = crate::generation::describe(ctx).await?;
    if !lineage.ok {
        report.problems.push(lineage.summary.clone());
    }
    say(json, lineage.summary.clone());
    report.generation = Some(lineage);
    if let Some(enc) = &ctx.encryption {
        let recipients = c.encryption.as_ref().map_or(0, |e| e.recipients.len());
        let mut identity_ok = None;
        let identity = match (enc.identity_file(), enc.identity_matches_recipients()) {
            (None, _) => "no identity_file: this host backs up, but cannot restore or fully \
                          verify encrypted backups"
                .to_string(),
            (Some(path), Ok(Some(true))) => {
                identity_ok = Some(true);
                format!(
                    "identity file {}: ok (it opens new backups)",
                    path.display()
                )
            }
            (Some(path), Ok(_)) => {
                identity_ok = Some(false);
                let problem = format!(
                    "identity file {}: NONE of its keys belongs to a recipient, so this host \
                     could not restore the backups it makes",
                    path.display()
                );
                report.problems.push(problem.clone());
                problem
            }
            (Some(_), Err(e)) => {
                identity_ok = Some(false);
                report.problems.push(format!("{e}"));
                format!("{e}")
            }
        };
        report.encryption = Some(EncryptionReport {
            scheme: "age",
            recipients,
            identity_file: enc.identity_file().map(|p| p.display().to_string()),
            identity_ok,
        });
        say(
            json,
            format!("encryption: age, {recipients} recipient(s); {identity}"),
        );
    }
    for entry in c.state.values() {
        ctx.spec(entry)?;
        let mut state = StateReport {
            name: entry.name.clone(),
            kind: match entry.kind {
                StateKind::Files => "files",
                StateKind::Sqlite => "sqlite",
                StateKind::Prometheus => "prometheus",
                StateKind::Acme => "acme",
            },
            path: None,
            volume: entry.volume.clone(),
            target: None,
            backup: entry.backup.clone(),
            prune: entry.backup.is_some() && entry.keep.is_some(),
            verify: entry.verify.clone(),
            acme: None,
        };
        if let Some(key) = &entry.volume {
            say(
                json,
                format!(
                    "state {}: volume `{key}` of the stack (its path is asked of the Docker Engine)",
                    entry.name
                ),
            );
            report.state.push(state);
            continue;
        }
        let parent = rehost_jobs::fsutil::parent_dir(&entry.path);
        let (target, status) = if entry.path.exists() {
            ("exists", "exists".to_string())
        } else if parent.is_dir() {
            ("missing", "missing (a restore would create it)".to_string())
        } else {
            (
                "missing_parent",
                format!("missing, and so is {}", parent.display()),
            )
        };
        state.path = Some(entry.path.display().to_string());
        state.target = Some(target);
        say(
            json,
            format!("state {}: {} {status}", entry.name, entry.path.display()),
        );
        if entry.kind == StateKind::Acme && entry.path.exists() {
            let (line, ok) = acme_summary(&entry.path);
            if !ok {
                report
                    .problems
                    .push(format!("state {}: {line}", entry.name));
            }
            say(json, format!("state {}: {line}", entry.name));
            state.acme = Some(line);
        }
        report.state.push(state);
        say(
            json,
            format!("state {}: {}", entry.name, schedule_summary(entry)),
        );
    }
    if let Some(m) = &c.metrics {
        let ok = writable(&m.textfile_dir);
        if !ok {
            report.problems.push(format!(
                "metrics {}: NOT writable by this user",
                m.textfile_dir.display()
            ));
        }
        report.metrics = Some(MetricsReport {
            textfile_dir: m.textfile_dir.display().to_string(),
            writable: ok,
        });
        say(
            json,
            format!(
                "metrics {}: {}",
                m.textfile_dir.display(),
                if ok {
                    "writable"
                } else {
                    "NOT writable by this user"
                }
            ),
        );
    }
    for target in &c.notify {
        let line = notify_summary(target);
        say(json, line.clone());
        report.notify.push(line);
    }
    if !report.problems.is_empty() {
        anyhow::bail!("{} problem(s) found", report.problems.len());
    }
    Ok(())
}

/// One `notify:` target as `check` shows it: never its full URL, and nothing
/// is sent (a healthchecks.io ping would count as a success).
pub(crate) fn notify_summary(target: &NotifyTarget) -> String {
    let on: Vec<&str> = target.on.iter().map(|e| e.as_str()).collect();
    let jobs = if target.jobs.is_empty() {
        "every job".to_string()
    } else {
        target
            .jobs
            .iter()
            .map(|f| match &f.target {
                Some(t) => format!("{}:{t}", f.job),
                None => f.job.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "notify {}: {} {} on {} of {jobs} (timeout {}, retries {}; not contacted by check)",
        target.name,
        target.kind.as_str(),
        target.url,
        on.join(", "),
        humantime::format_duration(target.timeout),
        target.retries
    )
}

/// What `rehost run` does with an entry: its backup schedule, the prune
/// after each backup (`keep:`), its verify schedule.
pub(crate) fn schedule_summary(entry: &StateEntry) -> String {
    let backup = match (&entry.backup, entry.keep) {
        (Some(cron), Some(_)) => format!("backup {cron:?}, then prune (keep:)"),
        (Some(cron), None) => format!("backup {cron:?}, every backup kept (no keep:)"),
        (None, _) => "no scheduled backup".to_string(),
    };
    let verify = match (&entry.verify, &entry.backup) {
        (Some(cron), _) => format!("verify {cron:?}"),
        (None, Some(_)) => "never verified (no verify:)".to_string(),
        (None, None) => "no scheduled verify".to_string(),
    };
    format!("{backup}; {verify}")
}

/// A directory that exists and that we may write into (or that we could create).
pub(crate) fn writable(dir: &Path) -> bool {
    // The directory itself, or else the nearest existing ancestor, where it
    // would be created: a file there (even for root) makes it impossible.
    dir.ancestors()
        .find(|a| a.symlink_metadata().is_ok())
        .is_some_and(|a| a.is_dir() && access(a, AccessFlags::W_OK).is_ok())
}

/// `kind: acme`: what a backup would find in acme.json (false: it would be
/// refused).
fn acme_summary(path: &Path) -> (String, bool) {
    match rehost_jobs::acme::read(path) {
        Ok((_, summary)) => {
            let first = summary
                .resolvers
                .values()
                .flatten()
                .min_by_key(|c| c.not_after);
            let expiry = match first {
                Some(c) => {
                    let days = (c.not_after - chrono::Utc::now().timestamp()) / 86400;
                    let date = chrono::DateTime::from_timestamp(c.not_after, 0)
                        .map(|t| t.format("%Y-%m-%d").to_string())
                        .unwrap_or_default();
                    format!(
                        "; the first to expire: {} on {date} (in {days} days)",
                        c.domain
                    )
                }
                None => String::new(),
            };
            (
                format!(
                    "acme.json: ok ({} certificate(s) in {} resolver(s){expiry})",
                    summary.certificates(),
                    summary.resolvers.len()
                ),
                true,
            )
        }
        // A fresh host's file, before Traefik's first start: not a problem
        // of the configuration.
        Err(_) if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) => (
            "acme.json: empty (Traefik has not written it yet; backups fail until it does)"
                .to_string(),
            true,
        ),
        Err(e) => (format!("{e}: a backup would refuse it"), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_the_way_is_not_a_writable_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(writable(dir.path()));
        assert!(writable(&dir.path().join("new/metrics")));
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert!(!writable(&dir.path().join("file")));
        assert!(!writable(&dir.path().join("file/metrics")));
    }

    #[test]
    fn the_notify_summary_hides_the_url_and_names_events_and_jobs() {
        let text = "host: h\nstorage:\n  url: file:///tmp/x\nstate:\n  a:\n    path: /srv/a\nnotify:\n  - url: https://hc-ping.com/SECRET?k=SECRET\n    type: healthchecks\n    on: [start, failure]\n    jobs: [\"backup:a\", pull]\n  - url: http://127.0.0.1:8080/SECRET\n    name: chat\n";
        let config =
            crate::config::parse(Path::new("/etc/rehost/rehost.yaml"), text, &|_| None).unwrap();
        assert_eq!(
            notify_summary(&config.notify[0]),
            "notify 0: healthchecks https://hc-ping.com on start, failure of backup:a, pull (timeout 10s, retries 2; not contacted by check)"
        );
        assert_eq!(
            notify_summary(&config.notify[1]),
            "notify chat: webhook http://127.0.0.1:8080 on success, failure of every job (timeout 10s, retries 2; not contacted by check)"
        );
    }

    #[test]
    fn the_schedule_summary_names_backup_prune_and_verify() {
        let text = "host: h\nstorage:\n  url: file:///tmp/x\nstate:\n  a:\n    path: /srv/a\n    backup: \"0 3 * * *\"\n    keep: { last: 2 }\n    verify: \"15 4 * * *\"\n  b:\n    path: /srv/b\n    backup: \"0 5 * * *\"\n  c:\n    path: /srv/c\n";
        let config =
            crate::config::parse(Path::new("/etc/rehost/rehost.yaml"), text, &|_| None).unwrap();
        assert_eq!(
            schedule_summary(&config.state["a"]),
            "backup \"0 3 * * *\", then prune (keep:); verify \"15 4 * * *\""
        );
        assert_eq!(
            schedule_summary(&config.state["b"]),
            "backup \"0 5 * * *\", every backup kept (no keep:); never verified (no verify:)"
        );
        assert_eq!(
            schedule_summary(&config.state["c"]),
            "no scheduled backup; no scheduled verify"
        );
    }
}
