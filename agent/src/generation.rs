//! This machine's place in its host's lineage (see `rehost_jobs::generation`):
//! what `backup` and `prune` ask before they write, and what `boot` records.
//!
//! Invariants:
//! - [`for_writing`] is called before any object is written; a machine whose
//!   generation is not the newest gets `Error::Superseded` (exit 4), and from
//!   then on every later call in the same process fails the same way without
//!   asking the store again (a takeover is final).
//! - A machine whose boot could not reach the store has a pending local
//!   record: the first write begins its generation then (one at a time in a
//!   process).
//! - [`ensure_decided`]: an entry is backed up in a generation only once its
//!   restore decision was made against the store in that generation.

use anyhow::Context;
use chrono::Utc;
use rehost_jobs::catalog::{self, Selector};
use rehost_jobs::generation::{self, Decision, LocalRecord, Standing};
use rehost_jobs::metrics;

use crate::cli::Ctx;
use crate::config::StateEntry;

/// The generation this machine writes as (`None` on a host without
/// generations), after checking that it is still the newest.
pub async fn for_writing(ctx: &Ctx) -> anyhow::Result<Option<String>> {
    if let Some(s) = ctx.superseded.get() {
        return Err(rehost_jobs::Error::Superseded(Box::new(s.clone())).into());
    }
    let c = &ctx.config;
    let url = ctx.store.url();
    let mine = {
        // One pending generation begins once, however many jobs ask at once.
        let _one = ctx.lineage.lock().await;
        let local = generation::read_local(&c.state_dir, &c.host, &url)?;
        match local {
            Some(LocalRecord {
                generation: None,
                started,
                ..
            }) if !ctx.dry_run => {
                let record = generation::begin(ctx.store.as_ref(), &c.host, Utc::now())
                    .await
                    .context("begin this machine's generation (boot could not reach the store)")?;
                generation::write_local(
                    &c.state_dir,
                    &LocalRecord {
                        host: c.host.clone(),
                        store: url.clone(),
                        generation: Some(record.id.clone()),
                        started,
                    },
                )?;
                tracing::info!(generation = %record.id, "began this machine's generation of the host: boot could not reach the store");
                Some(record.id)
            }
            // A dry run begins nothing, and has nothing to compare yet.
            Some(LocalRecord {
                generation: None, ..
            }) => return Ok(None),
            Some(r) => r.generation,
            None => None,
        }
    };
    match generation::standing(ctx.store.as_ref(), &c.host, mine.as_deref()).await {
        Ok(standing) => {
            if standing != Standing::NoGenerations {
                record_superseded(ctx, false);
            }
            Ok(standing.generation().map(str::to_string))
        }
        Err(rehost_jobs::Error::Superseded(s)) => {
            record_superseded(ctx, true);
            let first = ctx.superseded.set((*s).clone()).is_ok();
            if first {
                tracing::error!("{s}: this machine stops backing up and pruning");
            }
            Err(rehost_jobs::Error::Superseded(s).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `rehost-generation.prom`; a metrics problem never stops a job.
fn record_superseded(ctx: &Ctx, superseded: bool) {
    if ctx.dry_run {
        return;
    }
    if let Some(m) = &ctx.config.metrics {
        if let Err(e) = metrics::record_generation(&m.textfile_dir, &ctx.config.host, superseded) {
            tracing::warn!(dir = %m.textfile_dir.display(), "cannot write {}: {e}", metrics::GENERATION_FILE);
        }
    }
}

/// Whether an error (anywhere in its chain) is a takeover.
pub fn is_superseded(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<rehost_jobs::Error>()
            .is_some_and(rehost_jobs::Error::is_superseded)
    })
}

/// Records the restore decision for `entry` in `generation`.
pub fn record_decision(
    ctx: &Ctx,
    entry: &str,
    generation: &str,
    outcome: String,
) -> anyhow::Result<()> {
    generation::write_decision(
        &ctx.config.state_dir,
        &ctx.config.host,
        &Decision {
            state: entry.to_string(),
            generation: Some(generation.to_string()),
            decided: Utc::now(),
            outcome,
        },
    )
    .with_context(|| {
        format!(
            "record the restore decision of `{entry}` in {}",
            ctx.config.state_dir.display()
        )
    })
}

/// Makes sure `entry` was restored (or found to have nothing to restore) in
/// `generation` before it is backed up. Boot decides for every entry; this
/// decides now for one boot could not (the store was unreachable) or that
/// was added to the configuration since: it restores into a missing or empty
/// target, and refuses while the store holds a backup that a non-empty
/// target would silently replace as the newest.
pub async fn ensure_decided(ctx: &Ctx, entry: &StateEntry, generation: &str) -> anyhow::Result<()> {
    let c = &ctx.config;
    if generation::read_decision(&c.state_dir, &c.host, &entry.name, generation)?.is_some() {
        return Ok(());
    }
    if entry.restore == rehost_jobs::restore::RestorePolicy::Never {
        return record_decision(ctx, &entry.name, generation, "restore: never".into());
    }
    let backups = catalog::list(ctx.store.as_ref(), &c.host, &entry.name).await?;
    let Some(latest) = catalog::select(&backups, &Selector::Latest) else {
        return record_decision(
            ctx,
            &entry.name,
            generation,
            "no backup in the store".into(),
        );
    };
    let spec = ctx.resolve(entry, false).await?;
    let empty = rehost_jobs::restore::target_is_missing_or_empty(&spec.path)?;
    if !empty {
        anyhow::bail!(
            "state `{}` was not restored in this machine's generation (its boot could not reach \
             the store), and the store holds backup {}: backing {} up now would make it the \
             newest. Take the stored one with `rehost restore {} --force` (then restart what \
             uses it), or empty {} and the next run restores it",
            entry.name,
            latest.id,
            spec.path.display(),
            entry.name,
            spec.path.display()
        );
    }
    let done = crate::cmd::restore::restore_one(ctx, entry, false, Selector::Latest).await?;
    tracing::info!(state = %entry.name, "restored before its first backup: {}", done.message);
    record_decision(ctx, &entry.name, generation, done.message)
}

/// What `check` reports about the host's registration and this machine's
/// generation (`check --json` shows the fields, `check` the summary).
#[derive(Debug, serde::Serialize)]
pub struct Lineage {
    /// When `rehost init` registered the host (RFC 3339, UTC), and from
    /// which machine.
    pub registered: Option<String>,
    pub registered_by: Option<String>,
    /// The store knows the host: registered, or it has backups.
    pub known: bool,
    pub generations: usize,
    pub newest_generation: Option<String>,
    pub this_machine_generation: Option<String>,
    /// False when this machine may not back up or prune.
    pub ok: bool,
    /// The line `check` prints.
    pub summary: String,
}

/// The host's registration and this machine's generation, for `check`.
pub async fn describe(ctx: &Ctx) -> anyhow::Result<Lineage> {
    let c = &ctx.config;
    let store = ctx.store.as_ref();
    let registered = generation::registration(store, &c.host).await?;
    let ids = generation::list(store, &c.host).await?;
    let local = generation::read_local(&c.state_dir, &c.host, &ctx.store.url())?;
    let known = registered.is_some() || generation::is_known(store, &c.host).await?;
    let mut text = match &registered {
        Some(r) => format!(
            "host {}: registered {} by {}",
            c.host,
            r.registered.format("%Y-%m-%d %H:%M UTC"),
            r.machine
        ),
        None if known => format!(
            "host {}: known (it has backups) but not registered with `rehost init`",
            c.host
        ),
        None => format!(
            "host {}: UNKNOWN to the store (no `rehost init`, no backup); a `required` entry stops `boot`",
            c.host
        ),
    };
    let mut ok = true;
    let newest = ids.last();
    text.push_str(&format!("; {} generation(s)", ids.len()));
    if let Some(n) = newest {
        text.push_str(&format!(", newest {n}"));
    }
    let mine = local.as_ref().and_then(|l| l.generation.clone());
    match (&mine, newest, &local) {
        (Some(m), Some(n), _) if m == n => text.push_str("; this machine runs it"),
        (Some(m), _, _) => {
            ok = false;
            text.push_str(&format!(
                "; this machine runs generation {m}, which is NOT the newest: it may not back up or prune"
            ));
        }
        (None, _, Some(_)) => text.push_str(
            "; this machine's boot could not reach the store: its first backup begins its generation",
        ),
        (None, Some(_), None) => {
            ok = false;
            text.push_str(&format!(
                "; this machine has no generation (no `rehost boot` with state_dir {}): it may not back up or prune",
                c.state_dir.display()
            ));
        }
        (None, None, None) => text.push_str("; this machine has no generation"),
    }
    Ok(Lineage {
        registered: registered
            .as_ref()
            .map(|r| crate::output::rfc3339(r.registered)),
        registered_by: registered.map(|r| r.machine),
        known,
        generations: ids.len(),
        newest_generation: newest.cloned(),
        this_machine_generation: mine,
        ok,
        summary: text,
    })
}
