//! `rehost backups list [NAME]`: what storage holds, read from the manifests.

use anyhow::Context;
use rehost_jobs::catalog;

use crate::cli::Ctx;
use crate::output::{bytes, table};

pub async fn list(ctx: &Ctx, name: Option<String>) -> anyhow::Result<()> {
    let names: Vec<String> = match name {
        Some(n) => vec![n],
        None => ctx.config.state.keys().cloned().collect(),
    };
    let host = &ctx.config.host;
    let mut rows = Vec::new();
    let mut incomplete = 0;
    for state in &names {
        let backups = catalog::list(ctx.store.as_ref(), host, state)
            .await
            .with_context(|| format!("list backups of `{state}`"))?;
        for b in backups {
            if !b.complete {
                incomplete += 1;
                continue;
            }
            let m = catalog::load_manifest(ctx.store.as_ref(), host, state, &b.id)
                .await
                .with_context(|| format!("read manifest of backup {} of `{state}`", b.id))?;
            // A block backup is more than its data object: its checksum is
            // the one over all its objects (the manifest's fingerprint).
            let sha256 = if m.blocks.is_empty() {
                m.data().map(|d| d.sha256.clone()).unwrap_or_default()
            } else {
                m.source.fingerprint.clone()
            };
            rows.push(vec![
                state.clone(),
                b.id.clone(),
                m.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                bytes(m.total_size()),
                m.total_files().to_string(),
                sha256[..12.min(sha256.len())].to_string(),
                if b.verified { "yes" } else { "no" }.to_string(),
            ]);
        }
    }
    if rows.is_empty() {
        println!("no backups in {} for host {host}", ctx.store.url());
    } else {
        print!(
            "{}",
            table(
                &[
                    "STATE",
                    "ID",
                    "CREATED (UTC)",
                    "SIZE",
                    "FILES",
                    "SHA256",
                    "VERIFIED"
                ],
                &rows
            )
        );
    }
    if incomplete > 0 {
        println!("({incomplete} incomplete backup(s) without a manifest not shown; `rehost prune` removes them after 24 h)");
    }
    Ok(())
}
