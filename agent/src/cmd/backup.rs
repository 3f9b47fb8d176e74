//! `rehost backup [NAME…]`, and [`backup_one`]: the backup of one entry that
//! the command and the daemon both run.

use std::sync::Arc;

use anyhow::Context;
use rehost_jobs::backup::{backup_until, BackupOutcome};
use rehost_jobs::cancel::CancellationToken;
use rehost_jobs::progress::Progress;

use super::{run_jobs, with_progress, Done};
use crate::cleanup;
use crate::cli::Ctx;
use crate::config::StateEntry;
use crate::output::{bytes, count};
use crate::stack::engine;

pub async fn run(ctx: &Ctx, names: &[String]) -> anyhow::Result<()> {
    let states = ctx.states(names)?;
    run_jobs(
        ctx,
        "backup",
        states,
        |e| e.name.clone(),
        |entry| {
            with_progress("backup", &entry.name, move |progress| async move {
                backup_one_reporting(ctx, entry, &CancellationToken::new(), progress).await
            })
        },
    )
    .await
}

/// Backs `entry` up once (honouring `--dry-run`); the caller logs and records.
pub async fn backup_one(ctx: &Ctx, entry: &StateEntry) -> anyhow::Result<Done> {
    backup_one_until(ctx, entry, &CancellationToken::new()).await
}

/// [`backup_one`], stopping soon after `cancel` is cancelled (the daemon's
/// timeout and shutdown). `stop:` services are started again on every path:
/// after the backup, or from a [`RestartGuard`] if this future is dropped.
pub async fn backup_one_until(
    ctx: &Ctx,
    entry: &StateEntry,
    cancel: &CancellationToken,
) -> anyhow::Result<Done> {
    backup_one_reporting(ctx, entry, cancel, None).await
}

/// [`backup_one_until`], counting its progress into `progress`.
pub async fn backup_one_reporting(
    ctx: &Ctx,
    entry: &StateEntry,
    cancel: &CancellationToken,
    progress: Option<Arc<Progress>>,
) -> anyhow::Result<Done> {
    // Before anything is written: a machine that was taken over stops here
    // (exit 4), and an entry whose restore was never decided is not backed up.
    let generation = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(rehost_jobs::Error::Cancelled.into()),
        g = crate::generation::for_writing(ctx) => g?,
    };
    if let (Some(g), false) = (&generation, ctx.dry_run) {
        crate::generation::ensure_decided(ctx, entry, g).await?;
    }
    let mut spec = ctx.resolve(entry, false).await?;
    spec.generation = generation;
    let stopped = match (&ctx.config.stack, entry.stop.is_empty() || ctx.dry_run) {
        (Some(stack), false) => Some(RestartGuard(Some(
            stop_for_backup(&stack.project, &entry.stop).await?,
        ))),
        _ => None,
    };
    let outcome = backup_until(
        ctx.store.as_ref(),
        &ctx.config.host,
        &spec,
        ctx.dry_run,
        cancel,
        progress,
    )
    .await
    .with_context(|| format!("back up {}", entry.path.display()));
    super::record_acme(ctx, entry, &spec.path).await;
    if let Some((docker, ids)) = stopped.and_then(|mut g| g.0.take()) {
        // Started again whatever the backup did; a failure to start is an
        // error of this run even when the backup itself succeeded.
        let started = engine::start_services(&docker, &ids)
            .await
            .with_context(|| format!("start {} again after the backup", entry.stop.join(", ")));
        if let Err(e) = started {
            return Err(match outcome {
                Ok(_) => e,
                Err(b) => b.context(format!("{e:#}")),
            });
        }
    }
    let outcome = outcome?;
    let message = match &outcome {
        BackupOutcome::Uploaded {
            id,
            files,
            bytes: size,
            uploaded,
            new_blocks,
            reused_blocks,
        } => {
            let blocks = if *new_blocks + *reused_blocks > 0 {
                format!(
                    ", {} new, {} already stored",
                    count(*new_blocks, "block"),
                    count(*reused_blocks, "block")
                )
            } else {
                String::new()
            };
            format!(
                "uploaded backup {id} ({}, {} archived, {} uploaded{blocks})",
                count(*files, "file"),
                bytes(*size),
                bytes(*uploaded)
            )
        }
        BackupOutcome::Unchanged { id } => {
            format!("unchanged since backup {id}; nothing uploaded")
        }
        BackupOutcome::WouldUpload { files, bytes: size } => format!(
            "would upload {} ({}) to {} (dry run)",
            count(*files, "file"),
            bytes(*size),
            ctx.store.url()
        ),
    };
    Ok(Done {
        message,
        bytes: outcome.uploaded_bytes(),
    })
}

/// Services stopped for a backup; dropped while still holding them (the
/// backup's future was dropped), it starts them from a tracked clean-up task.
struct RestartGuard(Option<(bollard::Docker, Vec<String>)>);

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if let Some((docker, ids)) = self.0.take() {
            cleanup::spawn("start the `stop:` services again", async move {
                match engine::start_services(&docker, &ids).await {
                    Ok(()) => tracing::info!(
                        containers = ids.len(),
                        "`stop:` services started again after an abandoned backup"
                    ),
                    Err(e) => tracing::error!("cannot start the `stop:` services again: {e:#}"),
                }
            });
        }
    }
}

/// `stop:` — for applications with no online backup: their containers are
/// stopped (all replicas) so that the files are at rest while archived.
async fn stop_for_backup(
    project: &str,
    services: &[String],
) -> anyhow::Result<(bollard::Docker, Vec<String>)> {
    let docker = engine::connect()
        .await
        .context("`stop:` needs the Docker Engine (the daemon's user must be allowed to use it)")?;
    let ids = engine::stop_services(&docker, project, services)
        .await
        .with_context(|| format!("stop {} for the backup", services.join(", ")))?;
    Ok((docker, ids))
}
