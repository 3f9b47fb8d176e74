//! `rehost prune [NAME…]`: applies `keep:` now. Entries without `keep:` keep
//! every backup and are skipped.

use anyhow::Context;
use chrono::Utc;
use rehost_jobs::retention::prune;

use super::{run_jobs, Done};
use crate::cli::Ctx;
use crate::config::StateKind;
use crate::output::{bytes, count};
use rehost_jobs::lock::StateLock;

pub async fn run(ctx: &Ctx, names: &[String]) -> anyhow::Result<()> {
    // Only the newest generation prunes: a machine that was taken over could
    // otherwise delete what the new one's backups reference.
    crate::generation::for_writing(ctx).await?;
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
    run_jobs(ctx, "prune", states, |(e, _)| e.name.clone(), |(entry, policy)| async move {
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
            &policy,
            Utc::now(),
            ctx.dry_run,
        )
        .await
        .context("apply retention")?;
        let verb = if ctx.dry_run { "would delete" } else { "deleted" };
        for id in &report.plan.delete {
            println!("{}: {verb} backup {id}", entry.name);
        }
        if !report.blocks_deleted.is_empty() {
            println!(
                "{}: {verb} {} no kept backup references",
                entry.name,
                count(report.blocks_deleted.len() as u64, "block")
            );
        }
        if !report.blocks_marked.is_empty() {
            println!(
                "{}: {} no longer referenced: marked, deleted after {} h if still unreferenced",
                entry.name,
                count(report.blocks_marked.len() as u64, "block"),
                rehost_jobs::retention::BLOCK_GRACE.num_hours()
            );
        }
        if !report.blocks_waiting.is_empty() {
            println!(
                "{}: {} unreferenced, waiting for the grace period",
                entry.name,
                count(report.blocks_waiting.len() as u64, "block")
            );
        }
        if let Some(why) = &report.blocks_kept {
            println!("{}: unreferenced blocks kept: {why}", entry.name);
        }
        for (id, why) in &report.plan.keep {
            tracing::debug!(state = %entry.name, backup = %id, reasons = %why.join(", "), "kept");
        }
        Ok(Done {
            message: format!(
                "kept {}, {verb} {} ({}){}",
                report.plan.keep.len(),
                report.plan.delete.len(),
                bytes(report.freed),
                if ctx.dry_run { " (dry run)" } else { "" }
            ),
            bytes: report.freed,
        })
    })
    .await
}
