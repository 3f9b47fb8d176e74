//! `rehost down [--volumes]`: stop and remove the stack's containers and
//! networks (named volumes too with `--volumes`). Works from the project name
//! alone, so it also cleans up after a compose file that no longer loads.

use crate::cli::{Ctx, UsageError};
use crate::stack::engine::{self, DownOptions};

pub async fn run(ctx: &Ctx, volumes: bool) -> anyhow::Result<()> {
    let stack = ctx.config.stack.as_ref().ok_or_else(|| {
        UsageError(format!(
            "{}: no `stack:` section, so there is no stack to take down",
            ctx.config.path.display()
        ))
    })?;
    let docker = engine::connect().await?;
    let lines = engine::down(
        &docker,
        &stack.project,
        DownOptions {
            dry_run: ctx.dry_run,
            volumes,
        },
    )
    .await?;
    let prefix = if ctx.dry_run { "would " } else { "" };
    for line in &lines {
        println!("{}: {prefix}{line}", stack.project);
    }
    if lines.is_empty() {
        println!("{}: nothing to remove", stack.project);
    }
    Ok(())
}
