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
use crate::config::{JobKind, JobRef};
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

/// Every job of the configuration ([`crate::config::Config::jobs`]) that has
/// a schedule or `run_at_start`, in configuration order.
fn jobs(ctx: &Arc<Ctx>) -> anyhow::Result<Vec<JobDef>> {
    ctx.config
        .jobs()
        .filter(|j| j.schedule.is_some() || j.overrides.run_at_start)
        .map(|j| job_def(ctx, j))
        .collect()
}

/// Starts one attempt of a job on the entry named by the `String`.
type Attempt = fn(Arc<Ctx>, String) -> daemon::JobFuture;

/// One attempt of a backup of the state entry named `name`.
fn backup_attempt(ctx: Arc<Ctx>, name: String) -> daemon::JobFuture {
    Box::pin(async move {
        let entry = ctx
            .config
            .state
            .get(&name)
            .with_context(|| format!("state entry {name} vanished"))?;
        backup_one(&ctx, entry).await
    })
}

/// One attempt of a pull of the pull entry named `name`.
fn pull_attempt(ctx: Arc<Ctx>, name: String) -> daemon::JobFuture {
    Box::pin(async move {
        let entry = ctx
            .config
            .pull
            .get(&name)
            .with_context(|| format!("pull entry {name} vanished"))?;
        pull_one(&ctx, entry).await
    })
}

fn job_def(ctx: &Arc<Ctx>, j: JobRef<'_>) -> anyhow::Result<JobDef> {
    let (key, attempt): (String, Attempt) = match j.kind {
        JobKind::Backup => (format!("state.{}.backup", j.target), backup_attempt),
        JobKind::Pull => (format!("pull.{}.schedule", j.target), pull_attempt),
    };
    let schedule = j.schedule.map(Schedule::parse).transpose().context(key)?;
    let settings = ctx.config.jobs.resolve(j.overrides);
    let (ctx, target) = (Arc::clone(ctx), j.target.to_string());
    let op: Op = Arc::new(move || attempt(Arc::clone(&ctx), target.clone()));
    Ok(JobDef {
        job: j.kind.as_str(),
        target: j.target.to_string(),
        schedule,
        run_at_start: j.overrides.run_at_start,
        settings,
        op,
    })
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
