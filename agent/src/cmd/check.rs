//! `rehost check`: the configuration was already validated by loading it (the
//! same code as every other command); this adds what needs I/O, read-only:
//! the compose file (loaded by the same code as `up`), storage access, and
//! the paths the jobs will use.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use nix::unistd::{access, AccessFlags};

use crate::cli::{Ctx, UsageError};
use crate::stack::compose;

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let c = &ctx.config;
    println!(
        "config {}: ok (host {}, {} state entries, {} pull entries)",
        c.path.display(),
        c.host,
        c.state.len(),
        c.pull.len()
    );
    // The compose file is configuration too: its errors are exit 2, found
    // before storage is contacted.
    if let Some(stack) = &c.stack {
        let project = compose::load(stack, &|name| std::env::var(name).ok())?;
        for entry in c.state.values() {
            if let Some(key) = &entry.volume {
                if !project.volumes.contains_key(key) {
                    return Err(UsageError(format!(
                        "{}: state `{}`: volume `{key}` is not declared in the top-level `volumes:` of {}",
                        c.path.display(),
                        entry.name,
                        stack.compose.display()
                    ))
                    .into());
                }
            }
        }
        println!(
            "stack {}: ok (project {}, {} services, {} networks, {} volumes)",
            stack.compose.display(),
            project.name,
            project.services.len(),
            project.networks.len(),
            project.volumes.len()
        );
    }
    let clock = Instant::now();
    let listing = ctx
        .store
        .list(&format!("{}/", c.host))
        .await
        .with_context(|| format!("list {}", ctx.store.url()))?;
    println!(
        "storage {}: ok ({} objects for host {}, listed in {} ms)",
        ctx.store.url(),
        listing.len(),
        c.host,
        clock.elapsed().as_millis()
    );
    let mut problems = 0;
    let (lineage, ok) = crate::generation::describe(ctx).await?;
    if !ok {
        problems += 1;
    }
    println!("{lineage}");
    if let Some(enc) = &ctx.encryption {
        let recipients = c.encryption.as_ref().map_or(0, |e| e.recipients.len());
        let identity = match (enc.identity_file(), enc.identity_matches_recipients()) {
            (None, _) => "no identity_file: this host backs up, but cannot restore or fully \
                          verify encrypted backups"
                .to_string(),
            (Some(path), Ok(Some(true))) => {
                format!(
                    "identity file {}: ok (it opens new backups)",
                    path.display()
                )
            }
            (Some(path), Ok(_)) => {
                problems += 1;
                format!(
                    "identity file {}: NONE of its keys belongs to a recipient, so this host \
                     could not restore the backups it makes",
                    path.display()
                )
            }
            (Some(_), Err(e)) => {
                problems += 1;
                format!("{e}")
            }
        };
        println!("encryption: age, {recipients} recipient(s); {identity}");
    }
    for entry in c.state.values() {
        ctx.spec(entry)?;
        if let Some(key) = &entry.volume {
            println!(
                "state {}: volume `{key}` of the stack (its path is asked of the Docker Engine)",
                entry.name
            );
            continue;
        }
        let parent = rehost_jobs::fsutil::parent_dir(&entry.path);
        let status = if entry.path.exists() {
            "exists".to_string()
        } else if parent.is_dir() {
            "missing (a restore would create it)".to_string()
        } else {
            format!("missing, and so is {}", parent.display())
        };
        println!("state {}: {} {status}", entry.name, entry.path.display());
    }
    if let Some(m) = &c.metrics {
        let ok = writable(&m.textfile_dir);
        if !ok {
            problems += 1;
        }
        println!(
            "metrics {}: {}",
            m.textfile_dir.display(),
            if ok {
                "writable"
            } else {
                "NOT writable by this user"
            }
        );
    }
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found");
    }
    Ok(())
}

/// A directory that exists and that we may write into (or that we could create).
fn writable(dir: &Path) -> bool {
    if dir.is_dir() {
        return access(dir, AccessFlags::W_OK).is_ok();
    }
    dir.ancestors()
        .skip(1)
        .find(|a| a.is_dir())
        .is_some_and(|a| access(a, AccessFlags::W_OK).is_ok())
}
