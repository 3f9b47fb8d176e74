//! `rehost restore [NAME…] [--force] [--backup ID | --at TIME]`

use std::sync::Arc;

use anyhow::Context;
use rehost_jobs::catalog::Selector;
use rehost_jobs::progress::Progress;
use rehost_jobs::restore::{restore, RestoreOutcome, RestoreRequest};

use super::{run_jobs, with_progress, Done};
use crate::cli::Ctx;
use crate::config::StateEntry;
use crate::output::{bytes, count};

pub async fn run(
    ctx: &Ctx,
    names: &[String],
    force: bool,
    selector: Selector,
) -> anyhow::Result<()> {
    let states = ctx.states(names)?;
    run_jobs(
        ctx,
        "restore",
        states,
        |e| e.name.clone(),
        |entry| {
            let selector = selector.clone();
            with_progress("restore", &entry.name, move |progress| {
                restore_one_reporting(ctx, entry, force, selector, progress)
            })
        },
    )
    .await
}

/// Restores `entry` once (honouring `--dry-run`); the caller logs and
/// records. Shared by `restore` and `boot`.
pub async fn restore_one(
    ctx: &Ctx,
    entry: &StateEntry,
    force: bool,
    selector: Selector,
) -> anyhow::Result<Done> {
    restore_one_reporting(ctx, entry, force, selector, None).await
}

/// [`restore_one`], counting its progress into `progress`.
pub async fn restore_one_reporting(
    ctx: &Ctx,
    entry: &StateEntry,
    force: bool,
    selector: Selector,
    progress: Option<Arc<Progress>>,
) -> anyhow::Result<Done> {
    let spec = ctx.resolve(entry, !ctx.dry_run).await?;
    let req = RestoreRequest {
        policy: entry.restore,
        force,
        selector,
        dry_run: ctx.dry_run,
        progress,
    };
    let outcome = restore(ctx.store.as_ref(), &ctx.config.host, &spec, &req)
        .await
        .with_context(|| format!("restore {}", entry.path.display()))?;
    // What Traefik will read: the restored file, or the one a policy kept.
    if matches!(
        outcome,
        RestoreOutcome::Restored { .. } | RestoreOutcome::Skipped(_)
    ) {
        super::record_acme(ctx, entry, &spec.path).await;
    }
    let (message, moved) = match outcome {
        RestoreOutcome::Restored {
            id,
            files,
            bytes: size,
        } => (
            format!(
                "restored backup {id} into {} ({}, {} downloaded)",
                entry.path.display(),
                count(files, "file"),
                bytes(size)
            ),
            size,
        ),
        RestoreOutcome::NoBackup => ("no backup in storage yet; nothing restored".to_string(), 0),
        RestoreOutcome::Skipped(why) => (format!("skipped: {why}"), 0),
        RestoreOutcome::WouldRestore {
            id,
            files,
            bytes: size,
            replaces,
        } => (
            format!(
                "would restore backup {id} ({}, {}) into {}{} (dry run)",
                count(files, "file"),
                bytes(size),
                entry.path.display(),
                if replaces {
                    ", replacing what is there"
                } else {
                    ""
                }
            ),
            0,
        ),
    };
    Ok(Done {
        message,
        bytes: moved,
    })
}
