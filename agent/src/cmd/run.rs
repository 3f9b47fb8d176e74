//! `rehost run`: the scheduler daemon (see [`crate::daemon`] for its rules).
//! This module is its wiring: the root check, one job per scheduled state
//! entry (and pull entry), metrics through [`super::record`] and
//! notifications through [`Ctx::notify`] like every other command, and
//! SIGTERM/SIGINT as the shutdown future.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::BoxFuture;
use rehost_jobs::metrics;
use tokio::signal::unix::{signal, SignalKind};

use rehost_jobs::cancel::CancellationToken;
use rehost_jobs::catalog::Selector;

use super::backup::backup_one_until;
use super::prune::prune_one;
use super::pull::pull_one;
use super::verify::verify_one;
use crate::cli::{Ctx, UsageError};
use crate::config::{JobKind, JobRef, StateEntry};
use crate::daemon::schedule::{Schedule, SystemClock};
use crate::daemon::{self, FollowUp, JobDef, Op, Outcome, Recorder, Reporter};

pub async fn run(ctx: Ctx, allow_root: bool, grace: Duration) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() && !allow_root {
        return Err(UsageError(
            "refusing to run the daemon as root: it needs only the state, content and metrics \
             directories. Run it as an unprivileged user (`run_as:` in the config, e.g. with \
             `runuser -u rehost -- rehost run`), or pass --allow-root"
                .into(),
        )
        .into());
    }
    let ctx = Arc::new(ctx);
    let jobs = jobs(&ctx)?;
    if ctx.config.metrics.is_none() {
        tracing::warn!(
            "no `metrics:` section: runs are logged only, and `rehost status` cannot see them"
        );
    }
    // Handlers first, so that a SIGTERM arriving from now on is a clean stop.
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping: no new runs");
    };
    tracing::info!(
        jobs = jobs.len(),
        grace_ms = grace.as_millis() as u64,
        "daemon started"
    );
    if jobs.is_empty() {
        tracing::warn!(
            "nothing to schedule: no `backup:`, `verify:`, `schedule:` or `run_at_start:` in the config"
        );
    }
    let report = daemon::run(jobs, Arc::new(SystemClock), recorder(&ctx), grace, shutdown).await;
    // `stop:` services of an abandoned backup are being started again.
    crate::cleanup::wait(Duration::from_secs(5)).await;
    tracing::info!(
        runs = report.started,
        skipped = report.skipped,
        "daemon stopped"
    );
    Ok(())
}

/// Every job of the configuration ([`crate::config::Config::jobs`]) that has
/// a schedule or `run_at_start`, in configuration order.
fn jobs(ctx: &Arc<Ctx>) -> anyhow::Result<Vec<JobDef>> {
    ctx.config
        .jobs()
        .filter(|j| j.schedule.is_some() || j.run_at_start)
        .map(|j| job_def(ctx, j))
        .collect()
}

/// Starts one attempt of a job on the entry named by the `String`.
type Attempt = fn(Arc<Ctx>, String, CancellationToken) -> daemon::JobFuture;

fn state_entry<'a>(ctx: &'a Ctx, name: &str) -> anyhow::Result<&'a StateEntry> {
    ctx.config
        .state
        .get(name)
        .with_context(|| format!("state entry {name} vanished"))
}

/// One attempt of a backup of the state entry named `name`.
fn backup_attempt(ctx: Arc<Ctx>, name: String, cancel: CancellationToken) -> daemon::JobFuture {
    Box::pin(async move { backup_one_until(&ctx, state_entry(&ctx, &name)?, &cancel).await })
}

/// The prune that follows a successful backup of `name`, per its `keep:`.
fn prune_attempt(ctx: Arc<Ctx>, name: String, cancel: CancellationToken) -> daemon::JobFuture {
    Box::pin(async move {
        let entry = state_entry(&ctx, &name)?;
        let policy = entry
            .keep
            .with_context(|| format!("state entry {name} has no keep policy"))?;
        // Retention only sends requests: dropping it at cancellation stops
        // it between deletes (manifests go first, so nothing is left half-deleted
        // that a later prune does not finish).
        tokio::select! {
            _ = cancel.cancelled() => anyhow::bail!("cancelled"),
            pruned = prune_one(&ctx, entry, &policy) => {
                let pruned = pruned?;
                for line in &pruned.lines {
                    tracing::info!(job = "prune", target = %name, "{line}");
                }
                Ok(pruned.done)
            }
        }
    })
}

/// How long the prune after a backup that uploaded nothing may be left out.
///
/// A backup that found its source unchanged changed no backup's fate:
/// retention depends on the backups and their times, not on the clock. What
/// the clock does change (an incomplete upload turning a day old, a block
/// marked unreferenced a day ago) waits at most this long. At a backup a
/// minute this is 2 of an unchanged run's 5 requests (README, scale model).
const PRUNE_AT_LEAST_EVERY: Duration = Duration::from_secs(3600);

/// Whether the prune after a backup of one entry has anything to do; shared
/// by the entry's backup job and its prune (which never overlap).
#[derive(Default)]
struct PruneGate {
    /// A backup uploaded since the last prune that succeeded.
    uploaded: AtomicBool,
    /// When the last prune that succeeded started.
    last: Mutex<Option<Instant>>,
}

impl PruneGate {
    fn needed(&self, now: Instant) -> bool {
        let recent = self
            .last
            .lock()
            .map(|last| last.is_some_and(|t| now.duration_since(t) < PRUNE_AT_LEAST_EVERY))
            .unwrap_or(false);
        self.uploaded.load(Ordering::SeqCst) || !recent
    }

    fn pruned(&self, started: Instant) {
        self.uploaded.store(false, Ordering::SeqCst);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(started);
        }
    }
}

/// The backup job of an entry with `keep:`: tells `gate` when it uploaded.
fn gated_backup(ctx: &Arc<Ctx>, target: &str, gate: Arc<PruneGate>) -> Op {
    let inner = op(ctx, target, backup_attempt);
    Arc::new(move |cancel| {
        let (inner, gate) = (Arc::clone(&inner), Arc::clone(&gate));
        Box::pin(async move {
            let done = inner(cancel).await?;
            // Every upload writes a manifest, so it moved bytes.
            if done.bytes > 0 {
                gate.uploaded.store(true, Ordering::SeqCst);
            }
            Ok(done)
        })
    })
}

/// The prune after a backup, left out while `gate` says it has nothing to do.
fn gated_prune(ctx: &Arc<Ctx>, target: &str, gate: Arc<PruneGate>) -> Op {
    let inner = op(ctx, target, prune_attempt);
    Arc::new(move |cancel| {
        let (inner, gate) = (Arc::clone(&inner), Arc::clone(&gate));
        Box::pin(async move {
            let started = Instant::now();
            if !gate.needed(started) {
                return Ok(super::Done {
                    message: "nothing uploaded since the last prune; nothing to apply".into(),
                    bytes: 0,
                });
            }
            let done = inner(cancel).await?;
            gate.pruned(started);
            Ok(done)
        })
    })
}

/// One attempt of a verify of the newest backup of `name`.
fn verify_attempt(ctx: Arc<Ctx>, name: String, cancel: CancellationToken) -> daemon::JobFuture {
    Box::pin(async move {
        let entry = state_entry(&ctx, &name)?;
        // Verify only reads the store: dropping it stops it.
        tokio::select! {
            _ = cancel.cancelled() => anyhow::bail!("cancelled"),
            done = verify_one(&ctx, entry, &Selector::Latest) => done,
        }
    })
}

/// One attempt of a pull of the pull entry named `name`.
fn pull_attempt(ctx: Arc<Ctx>, name: String, cancel: CancellationToken) -> daemon::JobFuture {
    Box::pin(async move {
        let entry = ctx
            .config
            .pull
            .get(&name)
            .with_context(|| format!("pull entry {name} vanished"))?;
        tokio::select! {
            _ = cancel.cancelled() => anyhow::bail!("cancelled"),
            done = pull_one(&ctx, entry) => done,
        }
    })
}

fn op(ctx: &Arc<Ctx>, target: &str, attempt: Attempt) -> Op {
    let (ctx, target) = (Arc::clone(ctx), target.to_string());
    Arc::new(move |cancel| attempt(Arc::clone(&ctx), target.clone(), cancel))
}

fn job_def(ctx: &Arc<Ctx>, j: JobRef<'_>) -> anyhow::Result<JobDef> {
    let (key, attempt): (String, Attempt) = match j.kind {
        JobKind::Backup => (format!("state.{}.backup", j.target), backup_attempt),
        JobKind::Pull => (format!("pull.{}.schedule", j.target), pull_attempt),
        JobKind::Verify => (format!("state.{}.verify", j.target), verify_attempt),
    };
    let schedule = j.schedule.map(Schedule::parse).transpose().context(key)?;
    let settings = ctx.config.jobs.resolve(j.overrides);
    // `keep:` is applied after each successful backup of its entry that
    // uploaded, and at least hourly after the others ([`PruneGate`]).
    let keep = ctx.config.state.get(j.target).and_then(|e| e.keep);
    let (op, then) = match (j.kind, keep) {
        (JobKind::Backup, Some(_)) => {
            let gate = Arc::new(PruneGate::default());
            let then = FollowUp {
                job: "prune",
                op: gated_prune(ctx, j.target, Arc::clone(&gate)),
            };
            (gated_backup(ctx, j.target, gate), Some(then))
        }
        _ => (op(ctx, j.target, attempt), None),
    };
    Ok(JobDef {
        job: j.kind.as_str(),
        target: j.target.to_string(),
        schedule,
        run_at_start: j.run_at_start,
        settings,
        op,
        then,
    })
}

/// Reports each run with the commands' code paths: its metrics, and its
/// notifications.
fn recorder(ctx: &Arc<Ctx>) -> Recorder {
    Arc::new(CtxReporter(Arc::clone(ctx)))
}

struct CtxReporter(Arc<Ctx>);

impl Reporter for CtxReporter {
    fn started(&self, job: &'static str, target: &str) -> BoxFuture<'static, ()> {
        let (ctx, target) = (Arc::clone(&self.0), target.to_string());
        Box::pin(async move { ctx.notify.started(job, &target).await })
    }

    fn finished(&self, o: &Outcome) -> BoxFuture<'static, ()> {
        let ctx = Arc::clone(&self.0);
        let run = metrics::Run {
            started: o.started,
            duration: o.duration,
            ok: o.result.is_ok(),
            bytes: o.result.as_ref().map_or(0, |b| *b),
        };
        if let Err(e) = super::record(&ctx, o.job, &o.target, run) {
            tracing::error!(job = o.job, target = %o.target, attempts = o.attempts, "cannot record the run: {e:#}");
        }
        let (job, target, result) = (o.job, o.target.clone(), o.result.clone());
        let (started, duration) = (o.started, o.duration);
        Box::pin(async move {
            ctx.notify
                .finished(job, &target, started, duration, result)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_prune_after_an_unchanged_backup_waits_up_to_an_hour() {
        let gate = PruneGate::default();
        let t0 = Instant::now();
        assert!(gate.needed(t0), "the first prune of the daemon runs");
        gate.pruned(t0);
        assert!(
            !gate.needed(t0 + Duration::from_secs(60)),
            "nothing uploaded since"
        );
        assert!(
            gate.needed(t0 + PRUNE_AT_LEAST_EVERY),
            "an hour later it runs again"
        );
        gate.uploaded.store(true, Ordering::SeqCst);
        assert!(
            gate.needed(t0 + Duration::from_secs(60)),
            "a backup uploaded"
        );
        gate.pruned(t0 + Duration::from_secs(60));
        assert!(!gate.needed(t0 + Duration::from_secs(120)));
    }

    /// Every schedule the configuration names becomes a job of the daemon:
    /// backups (with the prune after them where `keep:` is set), pulls and
    /// verifies.
    #[test]
    fn every_configured_schedule_is_scheduled() {
        let text = "host: h\nstorage:\n  url: file:///tmp/rehost-unused\nstate:\n  a:\n    path: /srv/a\n    backup: \"0 3 * * *\"\n    keep: { last: 2 }\n    verify: \"15 4 * * *\"\n  b:\n    path: /srv/b\n    backup: \"0 5 * * *\"\n  c:\n    path: /srv/c\n    run_at_start: true\n  d:\n    path: /srv/d\npull:\n  www:\n    source: s3://content/www/\n    dest: /srv/www\n    schedule: \"*/5 * * * *\"\n";
        let config =
            crate::config::parse(Path::new("/etc/rehost/rehost.yaml"), text, &|_| None).unwrap();
        let ctx = Arc::new(Ctx::new(
            config,
            Arc::new(rehost_jobs::store::FsStore::new(
                "/tmp/rehost-unused".into(),
            )),
            None,
            false,
        ));
        let jobs: Vec<_> = jobs(&ctx)
            .unwrap()
            .into_iter()
            .map(|j| {
                (
                    j.job,
                    j.target,
                    j.schedule.map(|s| s.as_str().to_string()),
                    j.run_at_start,
                    j.then.map(|t| t.job),
                )
            })
            .collect();
        let s = |t: &str| Some(t.to_string());
        assert_eq!(
            jobs,
            [
                ("backup", "a".into(), s("0 3 * * *"), false, Some("prune")),
                ("backup", "b".into(), s("0 5 * * *"), false, None),
                ("backup", "c".into(), None, true, None),
                ("pull", "www".into(), s("*/5 * * * *"), false, None),
                ("verify", "a".into(), s("15 4 * * *"), false, None),
            ]
        );
    }
}
