//! `rehost run`: the scheduler daemon (see [`crate::daemon`] for its rules).
//! This module is its wiring: the root check, one job per scheduled state
//! entry (and pull entry), metrics through [`super::record`] like every other
//! command, and SIGTERM/SIGINT as the shutdown future.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rehost_jobs::metrics;
use tokio::signal::unix::{signal, SignalKind};

use super::backup::backup_one;
use super::pull::pull_one;
use crate::cli::{Ctx, UsageError};
use crate::daemon::schedule::{Schedule, SystemClock};
use crate::daemon::{self, JobDef, Op, Outcome, Recorder};

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
            "nothing to schedule: no `backup:`, `schedule:` or `run_at_start:` in the config"
        );
    }
    let report = daemon::run(jobs, Arc::new(SystemClock), recorder(&ctx), grace, shutdown).await;
    tracing::info!(
        runs = report.started,
        skipped = report.skipped,
        "daemon stopped"
    );
    Ok(())
}

/// Every state entry with a `backup:` schedule or `run_at_start`, then every
/// pull entry likewise, in configuration order.
fn jobs(ctx: &Arc<Ctx>) -> anyhow::Result<Vec<JobDef>> {
    let config = &ctx.config;
    let mut jobs = Vec::new();
    for entry in config.state.values() {
        if entry.backup.is_none() && !entry.job.run_at_start {
            continue;
        }
        let schedule = entry
            .backup
            .as_deref()
            .map(Schedule::parse)
            .transpose()
            .with_context(|| format!("state.{}.backup", entry.name))?;
        let (ctx, name) = (Arc::clone(ctx), entry.name.clone());
        let op: Op = Arc::new(move || {
            let (ctx, name) = (Arc::clone(&ctx), name.clone());
            Box::pin(async move {
                let entry = ctx
                    .config
                    .state
                    .get(&name)
                    .with_context(|| format!("state entry {name} vanished"))?;
                backup_one(&ctx, entry).await
            })
        });
        jobs.push(JobDef {
            job: "backup",
            target: entry.name.clone(),
            schedule,
            run_at_start: entry.job.run_at_start,
            settings: config.jobs.resolve(&entry.job),
            op,
        });
    }
    for entry in config.pull.values() {
        if entry.schedule.is_none() && !entry.job.run_at_start {
            continue;
        }
        let schedule = entry
            .schedule
            .as_deref()
            .map(Schedule::parse)
            .transpose()
            .with_context(|| format!("pull.{}.schedule", entry.name))?;
        let (ctx, name) = (Arc::clone(ctx), entry.name.clone());
        let op: Op = Arc::new(move || {
            let (ctx, name) = (Arc::clone(&ctx), name.clone());
            Box::pin(async move {
                let entry = ctx
                    .config
                    .pull
                    .get(&name)
                    .with_context(|| format!("pull entry {name} vanished"))?;
                pull_one(&ctx, entry).await
            })
        });
        jobs.push(JobDef {
            job: "pull",
            target: entry.name.clone(),
            schedule,
            run_at_start: entry.job.run_at_start,
            settings: config.jobs.resolve(&entry.job),
            op,
        });
    }
    Ok(jobs)
}

/// Writes each run's final outcome with the commands' code path.
fn recorder(ctx: &Arc<Ctx>) -> Recorder {
    let ctx = Arc::clone(ctx);
    Arc::new(move |o: &Outcome| {
        let run = metrics::Run {
            started: o.started,
            duration: o.duration,
            ok: o.result.is_ok(),
            bytes: o.result.as_ref().map_or(0, |b| *b),
        };
        if let Err(e) = super::record(&ctx, o.job, &o.target, run) {
            tracing::error!(job = o.job, target = %o.target, attempts = o.attempts, "cannot record the run: {e:#}");
        }
    })
}
