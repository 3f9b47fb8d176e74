//! One module per command. [`run_jobs`] is the shared loop: run a job on each
//! target, log its outcome, record its metrics, notify `notify:`, and keep
//! going after a failure so that one broken entry does not stop the others.

pub mod backup;
pub mod backups;
pub mod boot;
pub mod check;
pub mod completions;
pub mod down;
pub mod fleet;
pub mod init;
pub mod prune;
pub mod pull;
pub mod restore;
pub mod run;
pub mod status;
pub mod up;
pub mod verify;

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rehost_jobs::metrics;
use rehost_jobs::progress::Progress;

use crate::cli::Ctx;

/// Some runs of a multi-target command failed; each was logged already.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} {job} runs failed (see the errors above)")]
pub struct Failures {
    pub job: &'static str,
    pub failed: usize,
    pub total: usize,
    pub storage_unavailable: bool,
    /// A newer generation took over (exit 4).
    pub superseded: bool,
}

/// Things found stale (exit code 1): `status`'s scheduled jobs, `fleet`'s
/// entries. `what` is the thing, singular and plural.
#[derive(Debug, thiserror::Error)]
#[error("{} stale: {}", if .items.len() == 1 { format!("1 {} is", .what.0) } else { format!("{} {} are", .items.len(), .what.1) }, .items.join(", "))]
pub struct Stale {
    pub what: (&'static str, &'static str),
    pub items: Vec<String>,
}

/// What one successful run reports: a line for stdout and the bytes it moved.
pub struct Done {
    pub message: String,
    pub bytes: u64,
}

/// Runs `job` on every target in turn. A single failing target returns its own
/// error (so `main` prints it in full); several failures are summarized.
pub async fn run_jobs<'a, T, F, Fut>(
    ctx: &'a Ctx,
    job: &'static str,
    targets: Vec<T>,
    name_of: impl Fn(&T) -> String,
    mut op: F,
) -> anyhow::Result<()>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = anyhow::Result<Done>> + 'a,
{
    let total = targets.len();
    let mut errors: Vec<anyhow::Error> = Vec::new();
    for target in targets {
        let name = name_of(&target);
        let started = SystemTime::now();
        let clock = Instant::now();
        // The start is announced alongside the run, not before it.
        let run = async {
            let result = op(target).await;
            (result, clock.elapsed())
        };
        let ((), (result, duration)) = tokio::join!(ctx.notify.started(job, &name), run);
        let (ok, bytes) = match &result {
            Ok(done) => (true, done.bytes),
            Err(_) => (false, 0),
        };
        match &result {
            Ok(done) => {
                println!("{name}: {}", done.message);
                tracing::info!(job, target = %name, ok, bytes, duration_ms = duration.as_millis() as u64, "{job} finished");
            }
            // A lone target's error is printed by `main`; logging it too would say it twice.
            Err(e) if total == 1 => {
                tracing::debug!(job, target = %name, duration_ms = duration.as_millis() as u64, "{job} failed: {e:#}");
            }
            Err(e) => {
                tracing::error!(job, target = %name, duration_ms = duration.as_millis() as u64, "{job} failed: {e:#}");
            }
        }
        let recorded = record(
            ctx,
            job,
            &name,
            metrics::Run {
                started,
                duration,
                ok,
                bytes,
            },
        );
        // Metrics are a report on the job, not part of it: an unwritable
        // metrics directory is logged (and shown by `status`/`check`), and
        // the job's own outcome decides the exit code.
        if let Err(e) = recorded {
            tracing::error!(job, target = %name, "cannot record the run's metrics: {e:#}");
        }
        let outcome = result
            .as_ref()
            .map(|d| d.bytes)
            .map_err(|e| format!("{e:#}"));
        ctx.notify
            .finished(job, &name, started, duration, outcome)
            .await;
        if let Err(e) = result {
            errors.push(e.context(format!("{job} {name}")));
        }
    }
    if errors.len() == 1 && total == 1 {
        return Err(errors.remove(0));
    }
    if errors.is_empty() {
        return Ok(());
    }
    let storage_unavailable = errors.iter().any(|e| {
        e.chain().any(|c| {
            c.downcast_ref::<rehost_jobs::Error>()
                .is_some_and(rehost_jobs::Error::is_storage_unavailable)
        })
    });
    let superseded = errors.iter().any(crate::generation::is_superseded);
    Err(Failures {
        job,
        failed: errors.len(),
        total,
        storage_unavailable,
        superseded,
    }
    .into())
}

/// Runs `op` with a progress bar on a terminal ([`crate::progress`]): `op`
/// gets the counters to hand its job, `None` when no bar is drawn.
pub(crate) async fn with_progress<Fut>(
    job: &str,
    target: &str,
    op: impl FnOnce(Option<Arc<Progress>>) -> Fut,
) -> anyhow::Result<Done>
where
    Fut: Future<Output = anyhow::Result<Done>>,
{
    let shown = crate::progress::show(job, target);
    let result = op(shown.as_ref().map(crate::progress::Shown::counters)).await;
    if let Some(s) = shown {
        s.finish(result.is_ok());
    }
    result
}

/// Writes the run's textfile metrics (not in `--dry-run`, nor without a
/// `metrics:` section). The one code path of the commands and the daemon.
pub(crate) fn record(ctx: &Ctx, job: &str, target: &str, run: metrics::Run) -> anyhow::Result<()> {
    use anyhow::Context;
    if ctx.dry_run {
        return Ok(());
    }
    let Some(m) = &ctx.config.metrics else {
        return Ok(());
    };
    metrics::record(&m.textfile_dir, job, target, &run)
        .with_context(|| format!("write metrics into {}", m.textfile_dir.display()))?;
    Ok(())
}

/// `kind: acme`: reads acme.json at `path` (the live file after a backup, the
/// restored one after a restore) and writes its certificates' metrics
/// (`rehost-acme-NAME.prom`). A file that does not parse is logged and
/// recorded as `rehost_acme_file_valid 0`. Like [`record`], a report on the
/// job: never its outcome.
pub(crate) async fn record_acme(
    ctx: &Ctx,
    entry: &crate::config::StateEntry,
    path: &std::path::Path,
) {
    use rehost_jobs::acme;
    if ctx.dry_run || entry.kind != crate::config::StateKind::Acme {
        return;
    }
    let Some(m) = &ctx.config.metrics else {
        return;
    };
    let (path, dir, name) = (
        path.to_path_buf(),
        m.textfile_dir.clone(),
        entry.name.clone(),
    );
    let recorded = tokio::task::spawn_blocking(move || {
        let summary = match acme::read(&path) {
            Ok((_, summary)) => Some(summary),
            Err(e) => {
                tracing::warn!(target = %name, "{e}");
                None
            }
        };
        acme::metrics::record(&dir, &name, summary.as_ref())
    })
    .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(target = %entry.name, "cannot record acme.json's metrics in {}: {e}", m.textfile_dir.display())
        }
        Err(e) => tracing::error!(target = %entry.name, "acme.json metrics task failed: {e}"),
    }
}
