//! `rehost verify [NAME…] [--backup ID]`

use std::sync::Arc;

use anyhow::Context;
use rehost_jobs::catalog::Selector;
use rehost_jobs::progress::Progress;
use rehost_jobs::verify::verify;

use super::{run_jobs, with_progress, Done};
use crate::cli::Ctx;
use crate::config::StateEntry;
use crate::output::{bytes, count};

pub async fn run(ctx: &Ctx, names: &[String], selector: Selector) -> anyhow::Result<()> {
    let states = ctx.states(names)?;
    run_jobs(
        ctx,
        "verify",
        states,
        |e| e.name.clone(),
        |entry| {
            let selector = selector.clone();
            with_progress("verify", &entry.name, move |progress| async move {
                verify_one_reporting(ctx, entry, &selector, progress).await
            })
        },
    )
    .await
}

/// Verifies the backup of `entry` that `selector` names (recording it in
/// `verified.json` unless `--dry-run`): the code path of `rehost verify` and
/// of the daemon's scheduled verify.
pub(crate) async fn verify_one(
    ctx: &Ctx,
    entry: &StateEntry,
    selector: &Selector,
) -> anyhow::Result<Done> {
    verify_one_reporting(ctx, entry, selector, None).await
}

/// [`verify_one`], counting its progress into `progress`.
async fn verify_one_reporting(
    ctx: &Ctx,
    entry: &StateEntry,
    selector: &Selector,
    progress: Option<Arc<Progress>>,
) -> anyhow::Result<Done> {
    // A machine whose generation was taken over still checks, but records
    // nothing in the store.
    let record = !ctx.dry_run
        && match crate::generation::for_writing(ctx).await {
            Ok(_) => true,
            Err(e) if crate::generation::is_superseded(&e) => false,
            Err(e) => return Err(e),
        };
    let report = verify(
        ctx.store.as_ref(),
        &ctx.config.host,
        &entry.name,
        selector,
        ctx.encryption.as_deref(),
        record,
        progress,
    )
    .await
    .context("verify backup")?;
    Ok(match report {
        Some(r) if r.content_checked => Done {
            message: format!(
                "backup {} is intact ({}, {} checked)",
                r.id,
                count(r.files, "file"),
                bytes(r.bytes)
            ),
            bytes: r.bytes,
        },
        Some(r) => Done {
            message: format!(
                "backup {}: the encrypted objects match their manifest ({} checked); \
                 their content was not checked: no storage.encryption.identity_file here",
                r.id,
                bytes(r.bytes)
            ),
            bytes: r.bytes,
        },
        None => Done {
            message: "no backup in storage yet; nothing to verify".into(),
            bytes: 0,
        },
    })
}
