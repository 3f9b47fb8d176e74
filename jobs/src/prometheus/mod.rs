//! `kind: prometheus`: a consistent TSDB backup that uploads each block once.
//!
//! Prometheus writes a snapshot on request (`POST
//! /api/v1/admin/tsdb/snapshot`): hard links of its immutable blocks, plus the
//! head (recent samples) written as one more block, in
//! `<data dir>/snapshots/<name>/`. A backup then stores:
//!
//! - `<host>/<state>/<id>/data.tar.gz`: whatever the snapshot holds besides
//!   blocks (normally nothing). Uploaded first, so that a backup in progress is
//!   visible to retention as an incomplete backup;
//! - `<host>/<state>/blocks/<ULID>.tar.gz` for each block no earlier backup
//!   stored: a plain gzip of a tar of `<ULID>/…` (an age file of it, with a
//!   name that says to which keys, under `storage.encryption`);
//! - the manifest (format 2), last, listing every block the backup consists
//!   of with its size and sha256, uploaded now or earlier.
//!
//! A block already in the store is reused when a complete manifest lists it
//! and the stored object has the size that manifest records. The store's put
//! is atomic per object, so an object that exists is whole; the sha256 comes
//! from a manifest, which is written only after the object's upload finished
//! and was hashed as it was sent. An object that no manifest lists (a backup
//! that died before its manifest) is uploaded again: nothing references it,
//! and the state's lock keeps a concurrent backup of this host away.
//!
//! The snapshot directory is removed when the backup ends, whatever the
//! outcome. Restoring puts every block (and the data object's content) into a
//! fresh directory: a data directory Prometheus starts on.

mod api;
mod blocks;

pub use blocks::{plan, referenced, BlockAction};

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::archive::Entry;
use crate::backup::{new_manifest, put_manifest, upload_tree, BackupOutcome, Filter, Tree};
use crate::cancel::{unless_cancelled, CancellationToken};
use crate::catalog;
use crate::error::{Error, Result};
use crate::layout::{self, BackupRef};
use crate::lock::StateLock;
use crate::manifest::{BlockEntry, Manifest, SourceInfo, FORMAT_BLOCKS};
use crate::progress::Progress;
use crate::state::StateSpec;
use crate::store::{ObjectInfo, ObjectStore};

/// Manifests read at once when collecting what earlier backups stored.
const MANIFEST_READS: usize = 8;

/// The longest a backup may take from choosing the stored blocks it reuses
/// to writing its manifest: half of [`crate::retention::BLOCK_GRACE`], so
/// that a prune on another machine (a generation that took over while this
/// backup ran) never deletes a block this backup is about to reference.
pub const MAX_REUSE_AGE: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

fn humanize(d: std::time::Duration) -> String {
    format!("{} h", d.as_secs() / 3600)
}

pub(crate) async fn backup(
    store: &dyn ObjectStore,
    host: &str,
    spec: &StateSpec,
    api_url: &str,
    dry_run: bool,
    cancel: &CancellationToken,
    progress: Option<Arc<Progress>>,
) -> Result<BackupOutcome> {
    if dry_run {
        return dry_run_estimate(store, host, spec).await;
    }
    let lock = Arc::new(Some(StateLock::acquire(&spec.path, &spec.name, false)?));
    let name = unless_cancelled(cancel, api::snapshot(api_url)).await?;
    let snapshot = Snapshot(spec.path.join("snapshots").join(&name));
    if !snapshot.0.is_dir() {
        return Err(Error::Refused(format!(
            "Prometheus made snapshot {name}, but {} does not exist: is `path` the directory \
             Prometheus stores its data in (--storage.tsdb.path)?",
            snapshot.0.display()
        )));
    }
    tracing::debug!(snapshot = %snapshot.0.display(), "snapshot taken");
    upload_snapshot(store, host, spec, &snapshot.0, cancel, &lock, progress).await
}

/// Removes the snapshot directory when the backup ends, however it ends.
struct Snapshot(PathBuf);

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "could not remove the Prometheus snapshot");
            }
        }
    }
}

/// The block directories of `dir`, sorted.
fn block_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        let name = entry.file_name();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let Some(name) = name.to_str() {
            if is_dir && layout::is_ulid(name) {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `progress` counts what is archived, without totals: measuring the
/// snapshot first would read its directories once more for a display.
async fn upload_snapshot(
    store: &dyn ObjectStore,
    host: &str,
    spec: &StateSpec,
    snapshot: &Path,
    cancel: &CancellationToken,
    lock: &Arc<Option<StateLock>>,
    progress: Option<Arc<Progress>>,
) -> Result<BackupOutcome> {
    let ulids = block_dirs(snapshot)?;
    let prefix = layout::state_prefix(host, &spec.name);
    let earlier = layout::group(
        &prefix,
        &unless_cancelled(cancel, store.list(&prefix)).await?,
    );
    let based_on = catalog::select(&earlier, &catalog::Selector::Latest).map(|b| b.id.clone());
    let id = layout::next_backup_id(&earlier, spec.generation.as_deref(), Utc::now());
    let created = Utc::now();

    let skip: HashSet<PathBuf> = ulids.iter().map(PathBuf::from).collect();
    let filter: Filter = Box::new(move |rel: &Path, _: &Metadata| {
        if skip.contains(rel) {
            Entry::Skip
        } else {
            Entry::Keep
        }
    });
    let data_name = layout::data_name(spec.encryption.is_some());
    let recipients = spec.encryption.as_deref().map(|e| e.digest());
    let data_key = layout::object_key(host, &spec.name, &id, data_name);
    let data = upload_tree(
        store,
        &data_key,
        Tree {
            root: snapshot.to_path_buf(),
            prefix: None,
            filter: Some(filter),
            encryption: spec.encryption.clone(),
            cancel: cancel.clone(),
            _lock: Arc::clone(lock),
            part_tar: crate::parts::part_target(0),
            progress: progress.clone(),
        },
        &spec.name,
        &id,
    )
    .await?;
    let mut uploaded = data.stored;
    let mut files = data.stats.files;
    let mut bytes = data.stats.bytes;

    // Read after the data object exists: a prune that starts from now on sees
    // this backup in progress and leaves every block alone.
    let listed = std::time::Instant::now();
    let listing = unless_cancelled(cancel, store.list(&prefix)).await?;
    let known = unless_cancelled(cancel, known_blocks(store, host, &spec.name, &listing)).await?;
    let stored = stored_blocks(&prefix, &listing);

    let mut entries = Vec::with_capacity(ulids.len());
    let (mut new_blocks, mut reused_blocks) = (0, 0);
    for (ulid, action) in plan(&ulids, &known, &stored, recipients) {
        match action {
            BlockAction::Reuse(entry) => {
                reused_blocks += 1;
                entries.push(entry);
            }
            BlockAction::Upload => {
                // An object no manifest vouches for may hold the usual name:
                // a leftover that a prune elsewhere may be deleting right
                // now. Never upload over it; use a name of this upload's own.
                let usual = layout::block_name(&ulid, recipients);
                let object = stored
                    .contains_key(usual.as_str())
                    .then(|| layout::unique_block_name(&ulid, recipients));
                let name = object.clone().unwrap_or(usual);
                let key = layout::block_key(host, &spec.name, &name);
                let tree = Tree {
                    root: snapshot.join(&ulid),
                    prefix: Some(PathBuf::from(&ulid)),
                    filter: None,
                    encryption: spec.encryption.clone(),
                    cancel: cancel.clone(),
                    _lock: Arc::clone(lock),
                    part_tar: crate::parts::part_target(0),
                    progress: progress.clone(),
                };
                let p = upload_tree(store, &key, tree, &spec.name, &id).await?;
                if p.stats.symlinks != 0 {
                    return Err(Error::Refused(format!(
                        "block {ulid} holds symbolic links, which a Prometheus block never does"
                    )));
                }
                tracing::debug!(block = %ulid, size = p.stored, "block uploaded");
                new_blocks += 1;
                uploaded += p.stored;
                files += p.stats.files;
                bytes += p.stats.bytes;
                entries.push(BlockEntry {
                    ulid,
                    size: p.stored,
                    sha256: p.sha256,
                    tar_bytes: p.tar_bytes,
                    files: p.stats.files,
                    dirs: p.stats.dirs,
                    object,
                    index: p.index,
                });
            }
        }
    }

    // Prune deletes a block only once it has been unreferenced for
    // `retention::BLOCK_GRACE`; a manifest written within `MAX_REUSE_AGE` of
    // the listing that vouched for its blocks is therefore seen by that prune.
    if reused_blocks > 0 && listed.elapsed() > MAX_REUSE_AGE {
        return Err(Error::Refused(format!(
            "the backup took longer than {} since it chose which stored blocks to reuse, \
             so a prune may have deleted them meanwhile; no manifest written (the next backup \
             starts afresh)",
            humanize(MAX_REUSE_AGE)
        )));
    }
    // A prune elsewhere could have removed a reused block since the listing.
    if reused_blocks > 0 {
        let relisted = unless_cancelled(cancel, store.list(&prefix)).await?;
        let now = stored_blocks(&prefix, &relisted);
        let name = |b: &BlockEntry| match &b.object {
            Some(o) => o.clone(),
            None => layout::block_name(&b.ulid, recipients),
        };
        if let Some(gone) = entries
            .iter()
            .find(|b| now.get(name(b).as_str()) != Some(&b.size))
        {
            return Err(Error::Refused(format!(
                "block {} disappeared from the store during the backup (a concurrent prune?); \
                 the next backup uploads it again",
                gone.ulid
            )));
        }
    }

    let meta = std::fs::symlink_metadata(&spec.path)
        .map_err(|e| Error::io(format!("read source {}", spec.path.display()), e))?;
    let source = SourceInfo {
        path: spec.path.display().to_string(),
        kind: crate::archive::SourceKind::Dir,
        fingerprint: fingerprint(&data.sha256, &entries),
        root_mode: meta.mode() & 0o7777,
        root_mtime: meta.mtime(),
    };
    let mut manifest = new_manifest(host, spec, &id, created, source, data, based_on);
    manifest.format = FORMAT_BLOCKS;
    manifest.blocks = entries;
    uploaded += unless_cancelled(cancel, put_manifest(store, &manifest)).await?;
    Ok(BackupOutcome::Uploaded {
        id,
        files,
        bytes,
        uploaded,
        new_blocks,
        reused_blocks,
    })
}

/// What a backup consists of, as one hash. The head block gets a new ULID in
/// every snapshot, so two backups of a live Prometheus never compare equal and
/// the files kind's "unchanged, nothing uploaded" never applies.
fn fingerprint(data_sha256: &str, blocks: &[BlockEntry]) -> String {
    let mut h = Sha256::new();
    h.update(data_sha256.as_bytes());
    for b in blocks {
        h.update(b.ulid.as_bytes());
        h.update(b.sha256.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `--dry-run` takes no snapshot (it would write into the data directory):
/// the blocks on disk that the store lacks are what a backup would upload, plus
/// the head.
async fn dry_run_estimate(
    store: &dyn ObjectStore,
    host: &str,
    spec: &StateSpec,
) -> Result<BackupOutcome> {
    let on_disk = block_dirs(&spec.path)?;
    let prefix = layout::state_prefix(host, &spec.name);
    let listing = store.list(&prefix).await?;
    let known = known_blocks(store, host, &spec.name, &listing).await?;
    let stored = stored_blocks(&prefix, &listing);
    let (mut files, mut bytes) = (0, 0);
    let recipients = spec.encryption.as_deref().map(|e| e.digest());
    for (ulid, action) in plan(&on_disk, &known, &stored, recipients) {
        if matches!(action, BlockAction::Upload) {
            let dir = spec.path.join(&ulid);
            crate::archive::walk(&dir, &mut |e| {
                if e.meta.is_file() {
                    files += 1;
                    bytes += e.meta.len();
                }
                Ok(())
            })
            .map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        }
    }
    Ok(BackupOutcome::WouldUpload { files, bytes })
}

/// Block objects in a listing of the state's prefix, by name, with their sizes.
pub(crate) fn stored_blocks<'a>(prefix: &str, listing: &'a [ObjectInfo]) -> HashMap<&'a str, u64> {
    listing
        .iter()
        .filter_map(|o| layout::block_of_key(prefix, &o.key).map(|u| (u, o.size)))
        .collect()
}

/// Every block object that a complete backup's manifest lists, by name,
/// newest manifest first wins. An unreadable store is an error; a manifest that does not
/// parse only contributes nothing (its blocks are then uploaded again).
async fn known_blocks(
    store: &dyn ObjectStore,
    host: &str,
    state: &str,
    listing: &[ObjectInfo],
) -> Result<HashMap<String, BlockEntry>> {
    let prefix = layout::state_prefix(host, state);
    let backups = layout::group(&prefix, listing);
    let manifests = complete_manifests(store, host, state, &backups).await?;
    let mut known = HashMap::new();
    for m in manifests.into_iter().flatten() {
        for b in &m.blocks {
            known.entry(m.block_name(b)).or_insert_with(|| b.clone());
        }
    }
    Ok(known)
}

/// The manifests of the complete backups among `backups`, newest first;
/// `None` for one that does not parse (logged).
pub(crate) async fn complete_manifests(
    store: &dyn ObjectStore,
    host: &str,
    state: &str,
    backups: &[BackupRef],
) -> Result<Vec<Option<Manifest>>> {
    let ids: Vec<&str> = backups
        .iter()
        .rev()
        .filter(|b| b.complete)
        .map(|b| b.id.as_str())
        .collect();
    // Futures made up front: a closure inside the stream would make the
    // caller's future fail to be `Send` (rust-lang/rust#102211).
    let reads: Vec<_> = ids
        .into_iter()
        .map(|id| catalog::load_manifest(store, host, state, id))
        .collect();
    let loaded: Vec<Result<Manifest>> = futures::stream::iter(reads)
        .buffered(MANIFEST_READS)
        .collect()
        .await;
    let mut out = Vec::with_capacity(loaded.len());
    for m in loaded {
        match m {
            Ok(m) => out.push(Some(m)),
            Err(Error::Manifest(e)) => {
                tracing::warn!(state, error = %e, "ignoring an invalid manifest");
                out.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
