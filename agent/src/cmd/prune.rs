//! `rehost prune [NAME…]`: applies `keep:` now. Entries without `keep:` keep
//! every backup and are skipped.

use anyhow::Context;
use chrono::Utc;
use rehost_jobs::retention::prune;

use super::{run_jobs, Done};
use crate::cli::Ctx;
use crate::config::{StateEntry, StateKind};
use crate::output::{bytes, count};
use rehost_jobs::lock::StateLock;
use rehost_jobs::retention::KeepPolicy;

pub async fn run(ctx: &Ctx, names: &[String]) -> anyhow::Result<()> {
    let states: Vec<_> = ctx
        .states(names)?
        .into_iter()
        .filter_map(|e| match e.keep {
            Some(policy) => Some((e, policy)),
            None => {
                println!("{}: no keep policy; every backup is kept", e.name);
                None
            }
        })
        .collect();
    run_jobs(
        ctx,
        "prune",
        states,
        |(e, _)| e.name.clone(),
        |(entry, policy)| async move {
            let pruned = prune_one(ctx, entry, &policy).await?;
            for line in &pruned.lines {
                println!("{}: {line}", entry.name);
            }
            Ok(pruned.done)
        },
    )
    .await
}

/// What [`prune_one`] did: the summary, and a line per deleted backup.
pub(crate) struct Pruned {
    pub done: Done,
    pub lines: Vec<String>,
}

/// Applies `policy` to `entry`'s backups once (honouring `--dry-run`): the
/// code path of `rehost prune` and of the daemon's prune after a backup.
pub(crate) async fn prune_one(
    ctx: &Ctx,
    entry: &StateEntry,
    policy: &KeepPolicy,
) -> anyhow::Result<Pruned> {
    // Only the newest generation prunes: a machine that was taken over could
    // otherwise delete what the new one's backups reference.
    crate::generation::for_writing(ctx).await?;
    // Shared blocks: a backup of this entry must not reuse a block while
    // this prune deletes it.
    let _lock = if entry.kind == StateKind::Prometheus && !ctx.dry_run {
        let spec = ctx.resolve(entry, false).await?;
        Some(StateLock::acquire(&spec.path, &entry.name, false).context("lock the entry")?)
    } else {
        None
    };
    let report = prune(
        ctx.store.as_ref(),
        &ctx.config.host,
        &entry.name,
        policy,
        Utc::now(),
        ctx.dry_run,
    )
    .await
    .context("apply retention")?;
    let verb = if ctx.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut lines: Vec<String> = report
        .plan
        .delete
        .iter()
        .map(|id| format!("{verb} backup {id}"))
        .collect();
    if !report.blocks_deleted.is_empty() {
        lines.push(format!(
            "{verb} {} no kept backup references",
            count(report.blocks_deleted.len() as u64, "block")
        ));
    }
    if !report.blocks_marked.is_empty() {
        lines.push(format!(
            "{} no longer referenced: marked, deleted after {} h if still unreferenced",
            count(report.blocks_marked.len() as u64, "block"),
            rehost_jobs::retention::BLOCK_GRACE.num_hours()
        ));
    }
    if !report.blocks_waiting.is_empty() {
        lines.push(format!(
            "{} unreferenced, waiting for the grace period",
            count(report.blocks_waiting.len() as u64, "block")
        ));
    }
    if let Some(why) = &report.blocks_kept {
        lines.push(format!("unreferenced blocks kept: {why}"));
    }
    for (id, why) in &report.plan.keep {
        tracing::debug!(state = %entry.name, backup = %id, reasons = %why.join(", "), "kept");
    }
    Ok(Pruned {
        done: Done {
            message: format!(
                "kept {}, {verb} {} ({}){}",
                report.plan.keep.len(),
                report.plan.delete.len(),
                bytes(report.freed),
                if ctx.dry_run { " (dry run)" } else { "" }
            ),
            bytes: report.freed,
        },
        lines,
    })
}
