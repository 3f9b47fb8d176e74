//! `rehost up [--wait-timeout 120s]`: reconcile the Engine with the stack's
//! compose file — build changed images, create what is missing, recreate
//! what changed, restart what depends on it, remove orphans, wait for health.
//! With `--dry-run`, print the plan and change nothing. One line per action
//! on stdout; `unchanged` when there was nothing to do.

use std::time::{Duration, Instant};

use crate::cli::{Ctx, UsageError};
use crate::stack::compose;
use crate::stack::engine::{self, UpOptions};

pub async fn run(ctx: &Ctx, wait_timeout: Duration) -> anyhow::Result<()> {
    let clock = Instant::now();
    let stack = ctx.config.stack.as_ref().ok_or_else(|| {
        UsageError(format!(
            "{}: no `stack:` section, so there is no stack to bring up",
            ctx.config.path.display()
        ))
    })?;
    let project = compose::load(stack, &|name| std::env::var(name).ok())?;
    let docker = engine::connect().await?;
    let report = engine::up(
        &docker,
        &project,
        &UpOptions {
            dry_run: ctx.dry_run,
            wait_timeout,
        },
    )
    .await?;
    let prefix = if ctx.dry_run { "would " } else { "" };
    for line in report.lines.iter().filter(|l| !l.starts_with("keep")) {
        println!("{}: {prefix}{line}", project.name);
    }
    let kept = report.plan.actions.len() - report.changes();
    tracing::info!(
        project = %project.name,
        changes = report.changes(),
        kept,
        duration_ms = clock.elapsed().as_millis() as u64,
        "up finished"
    );
    if report.changes() == 0 && report.lines.iter().all(|l| l.starts_with("keep")) {
        println!("{}: unchanged ({kept} containers)", project.name);
    }
    Ok(())
}
