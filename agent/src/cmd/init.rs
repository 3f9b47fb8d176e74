//! `rehost init`: registers the host in the store, once per new host (from
//! Terraform, say). Idempotent. A `required` state entry makes `boot` refuse
//! a host the store does not know, so that a typo in `host:` stops the boot
//! instead of starting the stack on empty state.

use chrono::Utc;
use rehost_jobs::generation;

use crate::cli::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let host = &ctx.config.host;
    let (record, new) =
        generation::register(ctx.store.as_ref(), host, Utc::now(), ctx.dry_run).await?;
    let url = ctx.store.url();
    match (new, ctx.dry_run) {
        (true, true) => println!("host {host}: would be registered in {url} (dry run)"),
        (true, false) => println!("host {host}: registered in {url}"),
        (false, _) => println!(
            "host {host}: already registered in {url} (since {} by {})",
            record.registered.format("%Y-%m-%d %H:%M UTC"),
            record.machine
        ),
    }
    Ok(())
}
