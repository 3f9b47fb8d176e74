//! `rehost pull [NAME…]`, and [`pull_one`]: one content pull of one `pull:`
//! entry, which the command and the daemon both run. The source store is
//! built here: an `s3://` source borrows endpoint, region, path style and
//! credentials from `storage:`; a `file://` source is a local directory.

use std::sync::Arc;

use anyhow::Context;
use rehost_jobs::progress::Progress;
use rehost_jobs::pull::{pull, PullSpec};
use rehost_jobs::store::{self, ObjectStore, StoreLocation};

use super::{run_jobs, with_progress, Done};
use crate::cli::{Ctx, UsageError};
use crate::config::{PullEntry, PullSource};
use crate::output::{bytes, count};

pub async fn run(ctx: &Ctx, names: &[String]) -> anyhow::Result<()> {
    let entries = ctx.select(&ctx.config.pull, "pull", names)?;
    run_jobs(
        ctx,
        "pull",
        entries,
        |e| e.name.clone(),
        |entry| {
            with_progress("pull", &entry.name, move |progress| {
                pull_one_reporting(ctx, entry, progress)
            })
        },
    )
    .await
}

/// Where `entry` reads from, as a store whose root is the source prefix.
pub fn source_location(ctx: &Ctx, entry: &PullEntry) -> anyhow::Result<StoreLocation> {
    match (&entry.source, &ctx.config.storage) {
        (PullSource::File(dir), _) => Ok(StoreLocation::File(dir.clone())),
        (PullSource::S3(src), StoreLocation::S3(storage)) => {
            let mut settings = storage.clone();
            settings.bucket = src.bucket.clone();
            settings.prefix = src.prefix.clone();
            Ok(StoreLocation::S3(settings))
        }
        (PullSource::S3(_), StoreLocation::File(_)) => Err(UsageError(format!(
            "pull `{}`: an s3:// source uses the endpoint and credentials of `storage:`, \
             which is file:// here; use s3:// storage or a file:// source",
            entry.name
        ))
        .into()),
    }
}

/// Pulls `entry` once (honouring `--dry-run`); the caller logs and records.
pub async fn pull_one(ctx: &Ctx, entry: &PullEntry) -> anyhow::Result<Done> {
    pull_one_reporting(ctx, entry, None).await
}

/// [`pull_one`], counting its progress into `progress`.
pub async fn pull_one_reporting(
    ctx: &Ctx,
    entry: &PullEntry,
    progress: Option<Arc<Progress>>,
) -> anyhow::Result<Done> {
    let location = source_location(ctx, entry)?;
    let source: Arc<dyn ObjectStore> = store::open(&location)
        .with_context(|| format!("open pull source {}", location.display_url()))?;
    let spec = PullSpec {
        name: entry.name.clone(),
        dest: entry.dest.clone(),
        delete_removed: entry.delete_removed,
        allow_empty: entry.allow_empty,
        concurrency: entry.concurrency as usize,
        progress,
    };
    let outcome = pull(source.as_ref(), &spec, ctx.dry_run)
        .await
        .with_context(|| {
            format!(
                "pull {} into {}",
                location.display_url(),
                entry.dest.display()
            )
        })?;
    let verb = if ctx.dry_run {
        "would download"
    } else {
        "downloaded"
    };
    let deleted = if ctx.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let refused = match outcome.refused.len() {
        0 => String::new(),
        n => format!(", {} refused (see the log)", count(n as u64, "key")),
    };
    let message = format!(
        "{verb} {} ({}), {deleted} {}, {} unchanged{refused}, from {}{}",
        count(outcome.downloaded as u64, "file"),
        bytes(outcome.bytes),
        count(outcome.deleted as u64, "file"),
        outcome.unchanged,
        location.display_url(),
        if ctx.dry_run { " (dry run)" } else { "" }
    );
    Ok(Done {
        message,
        bytes: if ctx.dry_run { 0 } else { outcome.bytes },
    })
}
