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
            let data = m.data();
            rows.push(vec![
                state.clone(),
                b.id.clone(),
                m.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                bytes(data.map(|d| d.size).unwrap_or(0)),
                m.files.to_string(),
                data.map(|d| d.sha256[..12.min(d.sha256.len())].to_string())
                    .unwrap_or_default(),
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
