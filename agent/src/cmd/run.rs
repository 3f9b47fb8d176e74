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
use crate::config::JobOverrides;
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
    let backups = config.state.values().map(|e| {
        let run: RunFn = |ctx, name| {
            Box::pin(async move {
                let entry = ctx
                    .config
                    .state
                    .get(&name)
                    .with_context(|| format!("state entry {name} vanished"))?;
                backup_one(&ctx, entry).await
            })
        };
        let key = format!("state.{}.backup", e.name);
        job_def(
            ctx,
            "backup",
            &e.name,
            e.backup.as_deref(),
            key,
            &e.job,
            run,
        )
    });
    let pulls = config.pull.values().map(|e| {
        let run: RunFn = |ctx, name| {
            Box::pin(async move {
                let entry = ctx
                    .config
                    .pull
                    .get(&name)
                    .with_context(|| format!("pull entry {name} vanished"))?;
                pull_one(&ctx, entry).await
            })
        };
        let key = format!("pull.{}.schedule", e.name);
        job_def(
            ctx,
            "pull",
            &e.name,
            e.schedule.as_deref(),
            key,
            &e.job,
            run,
        )
    });
    backups.chain(pulls).filter_map(Result::transpose).collect()
}

/// Starts one attempt of the job on the entry named by the `String`.
type RunFn = fn(Arc<Ctx>, String) -> daemon::JobFuture;

/// The job of one entry, or `None` when it has neither a schedule nor
/// `run_at_start`. `key` names the schedule's configuration key in errors.
fn job_def(
    ctx: &Arc<Ctx>,
    job: &'static str,
    name: &str,
    cron: Option<&str>,
    key: String,
    overrides: &JobOverrides,
    run: RunFn,
) -> anyhow::Result<Option<JobDef>> {
    if cron.is_none() && !overrides.run_at_start {
        return Ok(None);
    }
    let schedule = cron.map(Schedule::parse).transpose().context(key)?;
    let settings = ctx.config.jobs.resolve(overrides);
    let (ctx, target) = (Arc::clone(ctx), name.to_string());
    let op_target = target.clone();
    let op: Op = Arc::new(move || run(Arc::clone(&ctx), op_target.clone()));
    Ok(Some(JobDef {
        job,
        target,
        schedule,
        run_at_start: overrides.run_at_start,
        settings,
        op,
    }))
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
