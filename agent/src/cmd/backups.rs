//! `rehost backups list [NAME] [--json]`: what storage holds, read from the
//! manifests.

use anyhow::Context;
use chrono::{DateTime, Utc};
use rehost_jobs::catalog;
use serde::Serialize;

use crate::cli::Ctx;
use crate::output::{bytes, print_json, serialize_time, table};

/// What `backups list --json` prints. Field names are part of the interface
/// (README).
#[derive(Debug, Serialize)]
pub struct Listing {
    pub host: String,
    pub storage: String,
    /// Complete backups, per state entry in configuration order, oldest first.
    pub backups: Vec<Listed>,
    /// Backups without a manifest (interrupted; not restorable), not listed.
    pub incomplete: usize,
}

#[derive(Debug, Serialize)]
pub struct Listed {
    pub state: String,
    pub id: String,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "serialize_time")]
    pub created: DateTime<Utc>,
    /// Bytes stored: what a restore downloads.
    pub size_bytes: u64,
    /// Bytes of the uncompressed archive.
    pub tar_bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Of the data object; of all its objects for a block backup (Prometheus).
    pub sha256: String,
    /// A `verify` succeeded on it.
    pub verified: bool,
    pub encrypted: bool,
    /// The generation of the host that made it; `null` without generations.
    pub generation: Option<String>,
}

pub async fn list(ctx: &Ctx, name: Option<String>, json: bool) -> anyhow::Result<()> {
    let names: Vec<String> = match name {
        Some(n) => vec![n],
        None => ctx.config.state.keys().cloned().collect(),
    };
    let host = &ctx.config.host;
    let mut found = Vec::new();
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
            found.push(Listed {
                state: state.clone(),
                id: b.id.clone(),
                created: m.created,
                size_bytes: m.total_size(),
                tar_bytes: m.total_tar_bytes(),
                files: m.total_files(),
                dirs: m
                    .blocks
                    .iter()
                    .fold(m.dirs, |t, b| t.saturating_add(b.dirs)),
                symlinks: m.symlinks,
                sha256,
                verified: b.verified,
                encrypted: m.encryption.is_some(),
                generation: m.generation.clone(),
            });
        }
    }
    if json {
        return print_json(&Listing {
            host: host.clone(),
            storage: ctx.store.url(),
            backups: found,
            incomplete,
        });
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|b| {
            vec![
                b.state.clone(),
                b.id.clone(),
                b.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                bytes(b.size_bytes),
                b.files.to_string(),
                b.sha256[..12.min(b.sha256.len())].to_string(),
                if b.verified { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
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
