//! `restore`: newest complete backup (or the one asked for) → checks while
//! streaming → staging directory next to the target → owners and modes fixed →
//! one `syncfs` → atomic switch. Until the switch the target is untouched; a
//! corrupt, truncated or hostile archive leaves it exactly as it was, and a
//! crash leaves only a `.rehost-staging-*` directory that the next run removes.
//!
//! Directories are switched with `renameat2(RENAME_EXCHANGE)`, so readers see
//! the old tree or the new one, never a missing target.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;

use crate::archive::{ExtractOptions, SourceKind};
use crate::catalog::{self, Selector};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::StateLock;
use crate::manifest::{BlockEntry, Manifest};
use crate::state::{Owner, StateSpec};
use crate::store::ObjectStore;
use crate::unpack::{unpack, unpack_block, Keys};

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
    let missing = fsutil::is_missing_or_empty(target)
        .map_err(|e| Error::io(format!("inspect {}", target.display()), e))?;
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

    let parent = fsutil::parent_dir(target);
    fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    let _lock = StateLock::acquire(target, &spec.name, true)?;
    remove_leftovers(&parent, &spec.name)?;
    check_space(&parent, manifest.total_tar_bytes())?;

    let staging = parent.join(format!(
        ".rehost-staging-{}-{}",
        spec.name,
        fsutil::random_suffix()
    ));
    fs::create_dir(&staging).map_err(|e| Error::io(format!("create {}", staging.display()), e))?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod {}", staging.display()), e))?;
    let result = restore_into(store, spec, &manifest, &keys, &staging).await;
    // On success the staging path holds the previous content (or nothing).
    let cleanup = fsutil::remove_any(&staging);
    let stats = result?;
    if let Err(e) = cleanup {
        tracing::warn!(path = %staging.display(), error = %e, "could not remove the previous content");
    }
    Ok(RestoreOutcome::Restored {
        id: manifest.id,
        files: stats,
        bytes,
    })
}

async fn restore_into(
    store: &dyn ObjectStore,
    spec: &StateSpec,
    manifest: &Manifest,
    keys: &Keys,
    staging: &Path,
) -> Result<u64> {
    let target = &spec.path;
    let opts = ExtractOptions {
        preserve_owner: nix::unistd::geteuid().is_root(),
        final_root: match manifest.source.kind {
            SourceKind::Dir => Some(target.clone()),
            SourceKind::File => None,
        },
    };
    let mut files = unpack(store, manifest, keys, Some(staging.to_path_buf()), opts)
        .await?
        .files;
    for block in &manifest.blocks {
        files += restore_block(store, manifest, block, keys, staging, target).await?;
    }
    let st = staging.to_path_buf();
    let spec2 = spec.clone();
    let kind = manifest.source.kind;
    let (root_mode, root_mtime) = (manifest.source.root_mode, manifest.source.root_mtime);
    tokio::task::spawn_blocking(move || {
        let new_root = match kind {
            SourceKind::File => single_file(&st)?,
            SourceKind::Dir => {
                set_root_meta(&st, root_mode & 0o1777, root_mtime)?;
                st.clone()
            }
        };
        if let Some(owner) = spec2.owner {
            chown_tree(&new_root, owner)?;
        }
        if let Some(mode) = spec2.mode {
            fs::set_permissions(&new_root, fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(format!("chmod {}", new_root.display()), e))?;
        }
        fsutil::sync_filesystem(&st).map_err(|e| Error::io(format!("sync {}", st.display()), e))?;
        switch(kind, &new_root, &st, &spec2.path)
    })
    .await
    .map_err(|e| Error::Refused(format!("restore task failed: {e}")))??;
    Ok(files)
}

/// Extracts one shared block into a fresh directory of its own (so that
/// nothing the data object or another block created can redirect it), checks
/// that it holds exactly `<ulid>/`, and moves that into the staging directory.
async fn restore_block(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    block: &BlockEntry,
    keys: &Keys,
    staging: &Path,
    target: &Path,
) -> Result<u64> {
    let tmp = staging.join(format!(".rehost-block-{}", block.ulid));
    fs::create_dir(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let opts = ExtractOptions {
        preserve_owner: nix::unistd::geteuid().is_root(),
        final_root: Some(target.to_path_buf()),
    };
    let stats = unpack_block(store, manifest, block, keys, Some(tmp.clone()), opts).await?;
    let names: Vec<_> = fs::read_dir(&tmp)
        .map_err(|e| Error::io(format!("read {}", tmp.display()), e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| Error::io(format!("read {}", tmp.display()), e))?;
    let dir = tmp.join(&block.ulid);
    let is_dir = fs::symlink_metadata(&dir)
        .map(|m| m.is_dir())
        .unwrap_or(false);
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
    let to = staging.join(&block.ulid);
    fsutil::rename_noreplace(&dir, &to)
        .map_err(|e| Error::io(format!("move block into {}", to.display()), e))?;
    fs::remove_dir(&tmp).map_err(|e| Error::io(format!("remove {}", tmp.display()), e))?;
    Ok(stats.files)
}

/// The one file a single-file backup extracts to.
fn single_file(staging: &Path) -> Result<PathBuf> {
    let mut entries =
        fs::read_dir(staging).map_err(|e| Error::io(format!("read {}", staging.display()), e))?;
    let first = entries
        .next()
        .transpose()
        .map_err(|e| Error::io("read staging", e))?;
    match (first, entries.next()) {
        (Some(e), None) if e.file_type().map(|t| t.is_file()).unwrap_or(false) => Ok(e.path()),
        _ => Err(Error::Refused(
            "a single-file backup must extract to exactly one regular file".into(),
        )),
    }
}

fn set_root_meta(root: &Path, mode: u32, mtime: i64) -> Result<()> {
    fs::set_permissions(root, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", root.display()), e))?;
    let t = FileTime::from_unix_time(mtime, 0);
    filetime::set_file_times(root, t, t)
        .map_err(|e| Error::io(format!("set times of {}", root.display()), e))
}

fn chown_tree(root: &Path, owner: Owner) -> Result<()> {
    let chown = |p: &Path| {
        std::os::unix::fs::lchown(p, Some(owner.uid), Some(owner.gid))
            .map_err(|e| Error::io(format!("chown {}", p.display()), e))
    };
    chown(root)?;
    if fs::symlink_metadata(root)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        crate::archive::walk(root, &mut |e| {
            std::os::unix::fs::lchown(e.abs, Some(owner.uid), Some(owner.gid))
        })
        .map_err(|e| Error::io(format!("chown below {}", root.display()), e))?;
    }
    Ok(())
}

/// Puts `new_root` in place of `target`. Afterwards `staging` holds whatever
/// was there before (or nothing), for the caller to remove.
fn switch(kind: SourceKind, new_root: &Path, staging: &Path, target: &Path) -> Result<()> {
    let parent = fsutil::parent_dir(target);
    let existing = fs::symlink_metadata(target).ok();
    let io_err = |what: &str, e: io::Error| Error::io(format!("{what} {}", target.display()), e);
    match (kind, existing) {
        (SourceKind::File, Some(m)) if m.is_dir() => {
            return Err(Error::Refused(format!(
                "{} is a directory but the backup holds a single file",
                target.display()
            )))
        }
        (SourceKind::File, _) => fs::rename(new_root, target).map_err(|e| io_err("replace", e))?,
        (SourceKind::Dir, Some(m)) if m.is_dir() => {
            fsutil::exchange(staging, target).map_err(|e| io_err("switch", e))?
        }
        (SourceKind::Dir, Some(_)) => {
            return Err(Error::Refused(format!(
                "{} is not a directory but the backup holds one",
                target.display()
            )))
        }
        (SourceKind::Dir, None) => {
            fsutil::rename_noreplace(staging, target).map_err(|e| io_err("create", e))?
        }
    }
    fsutil::fsync_dir(&parent).map_err(|e| Error::io(format!("sync {}", parent.display()), e))
}

/// Removes staging directories left by a run that crashed.
fn remove_leftovers(parent: &Path, name: &str) -> Result<()> {
    let prefix = format!(".rehost-staging-{name}-");
    let entries =
        fs::read_dir(parent).map_err(|e| Error::io(format!("read {}", parent.display()), e))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if file_name.to_string_lossy().starts_with(&prefix) {
            tracing::info!(path = %entry.path().display(), "removing what an interrupted restore left");
            fsutil::remove_any(&entry.path())
                .map_err(|e| Error::io(format!("remove {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

/// Refuses to start when the archive cannot fit: better than filling the disk
/// that the running services also write to.
fn check_space(dir: &Path, needed: u64) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io(format!("statfs {}", dir.display()), io::Error::from(e)))?;
    let available = st.blocks_available() as u64 * st.fragment_size() as u64;
    if needed > available {
        return Err(Error::Refused(format!(
            "restoring needs {needed} bytes but {} has only {available} available",
            dir.display()
        )));
    }
    Ok(())
}
