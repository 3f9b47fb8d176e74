//! `restore`: newest complete backup (or the one asked for) → checks while
//! streaming → staging directory next to the target → owners and modes fixed →
//! one `syncfs` → atomic switch. Until the switch the target is untouched; a
//! corrupt, truncated or hostile archive leaves it exactly as it was, and a
//! crash leaves only a `.rehost-staging-*` directory that the next run removes.
//!
//! Directories are switched with `renameat2(RENAME_EXCHANGE)`, so readers see
//! the old tree or the new one, never a missing target.
//!
//! Root-safety: restore runs as root while the target's parent (and maybe its
//! parent's parent) belongs to another user, who may rename, replace or
//! symlink any entry there at any instant. So every step works relative to
//! descriptors ([`crate::safefs`]): the parent is opened once (walked from `/`
//! without following an untrusted symlink), the lock, the staging directory
//! and the switch are names in that descriptor; the new tree is built in
//! `<staging>/tree`, where `<staging>` is a `root`-only `0700` directory we
//! hold open, so extraction, owners, modes and the switch itself
//! (`renameat2(<staging fd>, "tree", <parent fd>, <name>)`) never resolve a
//! name the other user controls. Renaming the staging directory away only
//! leaves an empty directory under the name that user chose; nothing is ever
//! created, chmod'ed or chown'ed outside the target.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::FutureExt;

use nix::fcntl::RenameFlags;

use crate::archive::{ExtractOptions, SourceKind};
use crate::catalog::{self, Selector};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::StateLock;
use crate::manifest::{BlockEntry, Manifest};
use crate::parts::Timings;
use crate::progress::Progress;
use crate::safefs::{self, Dir, Ident, Kind};
use crate::state::StateSpec;
use crate::store::ObjectStore;
use crate::unpack::{each_block, unpack, unpack_block, Keys};

/// The new tree's name inside the staging directory.
const TREE: &str = "tree";

/// `restore:` of a state entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestorePolicy {
    /// Restore only when the target is missing or empty (first boot).
    #[default]
    IfMissing,
    /// Always replace the target with the backup.
    Always,
    /// Never restore automatically (an explicit `--force` still does).
    Never,
}

#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub policy: RestorePolicy,
    /// Restore even if the policy says not to.
    pub force: bool,
    pub selector: Selector,
    pub dry_run: bool,
    /// Counts the stored bytes fetched and the files extracted; its totals
    /// are the manifest's.
    pub progress: Option<Arc<Progress>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    Restored {
        id: String,
        files: u64,
        bytes: u64,
    },
    /// Nothing to restore from: normal on a first boot.
    NoBackup,
    /// The policy said not to; the reason is for the log.
    Skipped(String),
    /// `--dry-run`: what a real run would do.
    WouldRestore {
        id: String,
        files: u64,
        bytes: u64,
        replaces: bool,
    },
}

pub async fn restore(
    store: &dyn ObjectStore,
    host: &str,
    spec: &StateSpec,
    req: &RestoreRequest,
) -> Result<RestoreOutcome> {
    let target = &spec.path;
    let parent_path = fsutil::parent_dir(target);
    let target_name = target
        .file_name()
        .map(OsStr::to_os_string)
        .ok_or_else(|| Error::Refused(format!("{} names no file to restore", target.display())))?;
    let open_err = |e| Error::io(format!("open {}", parent_path.display()), e);
    // Only looked at for now: the parent may not exist yet (first boot).
    let existing_parent = match Dir::open(&parent_path) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(open_err(e)),
    };
    let missing = match &existing_parent {
        None => true,
        Some(p) => is_missing_or_empty(p, &target_name)
            .map_err(|e| Error::io(format!("inspect {}", target.display()), e))?,
    };
    if !req.force {
        match req.policy {
            RestorePolicy::Never => return Ok(RestoreOutcome::Skipped("restore: never".into())),
            RestorePolicy::IfMissing if !missing => {
                return Ok(RestoreOutcome::Skipped(format!(
                    "{} exists (restore: if-missing; use --force to replace it)",
                    target.display()
                )))
            }
            _ => {}
        }
    }
    let Some(manifest) = catalog::find(store, host, &spec.name, &req.selector).await? else {
        return Ok(RestoreOutcome::NoBackup);
    };
    // Before anything changes: an encrypted backup without the key to open it
    // is an error now, not after the target was moved aside.
    let keys = Keys::for_backup(&manifest, spec.encryption.as_deref(), true)?;
    let bytes = manifest.total_size();
    if req.dry_run {
        return Ok(RestoreOutcome::WouldRestore {
            id: manifest.id.clone(),
            files: manifest.files,
            bytes,
            replaces: !missing,
        });
    }

    let parent = match existing_parent {
        Some(p) => p,
        None => Dir::open_or_create(&parent_path, 0o755)
            .map_err(|e| Error::io(format!("create {}", parent_path.display()), e))?,
    };
    if let Some(p) = &req.progress {
        p.set_totals(bytes, manifest.total_files());
    }
    let _lock = StateLock::acquire_in(&parent, &spec.name, true)?;
    remove_leftovers(&parent, &spec.name)?;
    check_space(&parent, manifest.total_tar_bytes())?;

    let staging_name = PathBuf::from(format!(
        ".rehost-staging-{}-{}",
        spec.name,
        fsutil::random_suffix()
    ));
    let staging_path = parent.path().join(&staging_name);
    let staging = parent
        .create_dir(&staging_name, 0o700)
        .map_err(|e| Error::io(format!("create {}", staging_path.display()), e))?;
    let staging_id = staging
        .meta()
        .map_err(|e| Error::io(format!("inspect {}", staging_path.display()), e))?
        .ident;
    let started = Instant::now();
    let timings = Arc::new(Timings::default());
    let result = restore_into(
        store,
        spec,
        &manifest,
        &keys,
        &parent,
        &target_name,
        &staging,
        &Reporting {
            timings: &timings,
            progress: req.progress.clone(),
        },
    )
    .await;
    // On success the staging directory holds the previous content (or
    // nothing); on failure, the partial new tree.
    let cleanup = discard_staging(&parent, &staging_name, &staging, staging_id);
    let (files, synced) = result?;
    // Where the time went, for operators and the scale benchmark.
    tracing::info!(
        state = %spec.name,
        "restore timings: {} sync={:.2} wall={:.2}",
        timings.summary(),
        synced.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = cleanup {
        tracing::warn!(path = %staging_path.display(), error = %e, "could not remove the previous content");
    }
    Ok(RestoreOutcome::Restored {
        id: manifest.id,
        files,
        bytes,
    })
}

/// Where a restore reports how it goes: the time per stage (for the log) and
/// the progress (for a display).
struct Reporting<'a> {
    timings: &'a Arc<Timings>,
    progress: Option<Arc<Progress>>,
}

/// Builds the new tree and switches it in; returns the files restored and
/// the time the sync before the switch took.
#[allow(clippy::too_many_arguments)]
async fn restore_into(
    store: &dyn ObjectStore,
    spec: &StateSpec,
    manifest: &Manifest,
    keys: &Keys,
    parent: &Dir,
    target_name: &OsStr,
    staging: &Dir,
    reporting: &Reporting<'_>,
) -> Result<(u64, Duration)> {
    let timings = reporting.timings;
    let target = &spec.path;
    let tree_path = staging.path().join(TREE);
    let io_err = |what: &str, e: io::Error| Error::io(format!("{what} {}", tree_path.display()), e);
    let tree = staging
        .create_dir(Path::new(TREE), 0o700)
        .map_err(|e| io_err("create", e))?;
    let opts = ExtractOptions {
        preserve_owner: nix::unistd::geteuid().is_root(),
        final_root: match manifest.source.kind {
            SourceKind::Dir => Some(target.clone()),
            SourceKind::File => None,
        },
        progress: reporting.progress.clone(),
    };
    let into = tree.try_clone().map_err(|e| io_err("open", e))?;
    let mut files = unpack(store, manifest, keys, Some(into), opts, timings)
        .await?
        .files;
    // Blocks a few at a time; every one is awaited, even after a failure,
    // so that no extraction is still writing when the staging directory is
    // removed.
    let blocks = manifest
        .blocks
        .iter()
        .map(|block| {
            restore_block(
                store, manifest, block, keys, staging, &tree, target, reporting,
            )
            .boxed()
        })
        .collect();
    files += each_block(blocks).await?.iter().sum::<u64>();
    let spec2 = spec.clone();
    let kind = manifest.source.kind;
    let (root_mode, root_mtime) = (manifest.source.root_mode, manifest.source.root_mtime);
    let parent = parent.try_clone().map_err(|e| io_err("open", e))?;
    let staging = staging.try_clone().map_err(|e| io_err("open", e))?;
    let target_name = target_name.to_os_string();
    let synced = tokio::task::spawn_blocking(move || {
        let target = &spec2.path;
        let synced;
        let at = |what: &str, e: io::Error| Error::io(format!("{what} {}", target.display()), e);
        match kind {
            SourceKind::File => {
                let name = single_file(&tree)?;
                let rel = Path::new(&name);
                if let Some(owner) = spec2.owner {
                    tree.chown_at(rel, owner.uid, owner.gid)
                        .map_err(|e| at("chown", e))?;
                }
                if let Some(mode) = spec2.restore_mode() {
                    tree.chmod_at(rel, mode).map_err(|e| at("chmod", e))?;
                }
                let t = Instant::now();
                tree.syncfs().map_err(|e| at("sync", e))?;
                synced = t.elapsed();
                if parent
                    .stat(Path::new(&target_name))
                    .map_err(|e| at("inspect", e))?
                    .is_some_and(|m| m.kind == Kind::Dir)
                {
                    return Err(Error::Refused(format!(
                        "{} is a directory but the backup holds a single file",
                        target.display()
                    )));
                }
                // rename(2) replaces whatever is at the name, a symlink
                // included, without following it.
                tree.rename(rel, &parent, Path::new(&target_name), RenameFlags::empty())
                    .map_err(|e| at("replace", e))?;
            }
            SourceKind::Dir => {
                tree.set_mode(root_mode & 0o1777)
                    .map_err(|e| at("chmod", e))?;
                tree.set_mtime(root_mtime)
                    .map_err(|e| at("set times of", e))?;
                if let Some(owner) = spec2.owner {
                    safefs::chown_tree(&tree, owner.uid, owner.gid).map_err(|e| at("chown", e))?;
                }
                if let Some(mode) = spec2.restore_mode() {
                    tree.set_mode(mode).map_err(|e| at("chmod", e))?;
                }
                let t = Instant::now();
                tree.syncfs().map_err(|e| at("sync", e))?;
                synced = t.elapsed();
                switch_dir(&staging, &parent, &target_name, target)?;
            }
        }
        parent.sync().map_err(|e| at("sync the directory of", e))?;
        Ok(synced)
    })
    .await
    .map_err(|e| Error::Refused(format!("restore task failed: {e}")))??;
    Ok((files, synced))
}

/// Extracts one shared block into a fresh directory of its own (so that
/// nothing the data object or another block created can redirect it), checks
/// that it holds exactly `<ulid>/`, and moves that into the new tree.
#[allow(clippy::too_many_arguments)]
async fn restore_block(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    block: &BlockEntry,
    keys: &Keys,
    staging: &Dir,
    tree: &Dir,
    target: &Path,
    reporting: &Reporting<'_>,
) -> Result<u64> {
    let tmp_name = PathBuf::from(format!(".rehost-block-{}", block.ulid));
    let tmp_path = staging.path().join(&tmp_name);
    let io_err = |what: &str, e: io::Error| Error::io(format!("{what} {}", tmp_path.display()), e);
    let tmp = staging
        .create_dir(&tmp_name, 0o700)
        .map_err(|e| io_err("create", e))?;
    let opts = ExtractOptions {
        preserve_owner: nix::unistd::geteuid().is_root(),
        final_root: Some(target.to_path_buf()),
        progress: reporting.progress.clone(),
    };
    let into = tmp.try_clone().map_err(|e| io_err("open", e))?;
    let stats = unpack_block(
        store,
        manifest,
        block,
        keys,
        Some(into),
        opts,
        reporting.timings,
    )
    .await?;
    let names = tmp.entries().map_err(|e| io_err("read", e))?;
    let ulid = Path::new(&block.ulid);
    let is_dir = tmp
        .stat(ulid)
        .map_err(|e| io_err("read", e))?
        .is_some_and(|m| m.kind == Kind::Dir);
    if names.len() != 1 || !is_dir {
        return Err(Error::Mismatch {
            state: manifest.state.clone(),
            id: manifest.id.clone(),
            detail: format!(
                "block {} does not hold exactly the directory {}/",
                block.ulid, block.ulid
            ),
        });
    }
    tmp.rename(ulid, tree, ulid, RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| io_err("move the block out of", e))?;
    staging
        .remove_dir(&tmp_name)
        .map_err(|e| io_err("remove", e))?;
    Ok(stats.files)
}

/// The one file a single-file backup extracts to.
fn single_file(tree: &Dir) -> Result<OsString> {
    let read = |e| Error::io(format!("read {}", tree.path().display()), e);
    let names = tree.entries().map_err(read)?;
    if let [one] = names.as_slice() {
        if tree
            .stat(Path::new(one))
            .map_err(read)?
            .is_some_and(|m| m.kind == Kind::File)
        {
            return Ok(one.clone());
        }
    }
    Err(Error::Refused(
        "a single-file backup must extract to exactly one regular file".into(),
    ))
}

/// Puts `<staging>/tree` in place of `target_name` in `parent`. Afterwards
/// `<staging>/tree` holds whatever was there before (or nothing), for the
/// caller to remove.
fn switch_dir(staging: &Dir, parent: &Dir, target_name: &OsStr, target: &Path) -> Result<()> {
    let io_err = |what: &str, e: io::Error| Error::io(format!("{what} {}", target.display()), e);
    let name = Path::new(target_name);
    let existing = parent.stat(name).map_err(|e| io_err("inspect", e))?;
    let flags = match existing {
        Some(m) if m.kind == Kind::Dir => RenameFlags::RENAME_EXCHANGE,
        Some(_) => {
            return Err(Error::Refused(format!(
                "{} is not a directory but the backup holds one",
                target.display()
            )))
        }
        None => RenameFlags::RENAME_NOREPLACE,
    };
    staging
        .rename(Path::new(TREE), parent, name, flags)
        .map_err(|e| io_err("switch", e))
}

/// Empties the staging directory through its descriptor and removes it, if
/// its name in `parent` is still the directory we created (another user may
/// have renamed it away: then only an empty directory is left to them).
fn discard_staging(parent: &Dir, name: &Path, staging: &Dir, ident: Ident) -> io::Result<()> {
    staging.clear()?;
    if parent.holds(name, ident)? {
        parent.remove_dir(name)
    } else {
        tracing::warn!(
            path = %staging.path().display(),
            "the staging directory was renamed by someone else; leaving it, empty, where they put it"
        );
        Ok(())
    }
}

/// [`is_missing_or_empty`] for a target path, as `restore: if-missing` sees it
/// (a missing parent directory counts as missing).
pub fn target_is_missing_or_empty(target: &Path) -> Result<bool> {
    let inspect = |e| Error::io(format!("inspect {}", target.display()), e);
    let name = target
        .file_name()
        .ok_or_else(|| Error::Refused(format!("{} names no file", target.display())))?;
    match Dir::open(&fsutil::parent_dir(target)) {
        Ok(parent) => is_missing_or_empty(&parent, name).map_err(inspect),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(inspect(e)),
    }
}

/// Whether a target counts as absent for `restore: if-missing`. An empty file or
/// directory counts as absent: provisioning commonly pre-creates them with the
/// right owner (`touch acme.json && chmod 600`, `install -d /srv/prometheus`).
fn is_missing_or_empty(parent: &Dir, name: &OsStr) -> io::Result<bool> {
    let rel = Path::new(name);
    Ok(match parent.stat(rel)? {
        None => true,
        Some(m) if m.kind == Kind::Dir => parent.open_dir(rel)?.entries()?.is_empty(),
        Some(m) if m.kind == Kind::File => m.size == 0,
        Some(_) => false,
    })
}

/// Removes staging directories left by a run that crashed (never following
/// a symlink another user may have put under such a name).
fn remove_leftovers(parent: &Dir, name: &str) -> Result<()> {
    let prefix = format!(".rehost-staging-{name}-");
    let entries = parent
        .entries()
        .map_err(|e| Error::io(format!("read {}", parent.path().display()), e))?;
    for entry in entries {
        if entry.to_string_lossy().starts_with(&prefix) {
            let path = parent.path().join(&entry);
            tracing::info!(path = %path.display(), "removing what an interrupted restore left");
            parent
                .remove(Path::new(&entry))
                .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
        }
    }
    Ok(())
}

/// Refuses to start when the archive cannot fit: better than filling the disk
/// that the running services also write to.
fn check_space(dir: &Dir, needed: u64) -> Result<()> {
    let available = dir
        .available_bytes()
        .map_err(|e| Error::io(format!("statfs {}", dir.path().display()), e))?;
    if needed > available {
        return Err(Error::Refused(format!(
            "restoring needs {needed} bytes but {} has only {available} available",
            dir.path().display()
        )));
    }
    Ok(())
}
