//! Content pull: `s3://bucket/prefix/` (or any [`ObjectStore`]) → a local
//! directory `dest`, which a web server such as nginx serves while we write.
//!
//! How readers are protected — **each file is replaced by an atomic rename**,
//! not by switching a whole release directory. A changed object is streamed to
//! a hidden temporary `.<name>.rehost-pull-<random>` in the file's own
//! directory and renamed over the old file, so a reader opens either the old
//! file or the new one, never half of one. We chose this over a release
//! directory + symlink swap because `dest` stays a plain directory (nginx
//! `root`, bind mounts and `delete_removed` keep working on it), a pull costs
//! only the changed bytes on disk, and nothing has to hard-link a 20,000-file
//! tree for a one-file change. The price: during a pull a reader may see some
//! files already new and others still old; no single file is ever mixed.
//!
//! Invariants:
//! - Nothing is written outside `dest`: every key passes [`check_key`] plus a
//!   refusal of control characters and of our temporary-name marker, and every
//!   parent directory is checked to be a real directory (not a symlink or a
//!   file) before a file is created in it. Refused keys are reported; the rest
//!   of the pull still happens, and the run ends with an error naming them.
//! - A no-op pull makes one listing and no GET: the local index
//!   (`<dest parent>/.rehost-pull-<name>.json`, outside `dest` so that it is
//!   never served) records each key's size and ETag and the local file's size
//!   and mtime; a locally deleted or modified file is fetched again.
//! - Temporaries left by a killed run are removed by the next run.
//! - Deletions (`delete_removed`) match `s3cmd sync --delete-removed`: local
//!   files that are not in the source are deleted, and directories emptied by
//!   that are removed. An empty source never empties `dest` unless
//!   `allow_empty` says so.
//! - Durability: files are not fsynced one by one (that would make a full pull
//!   several times slower than rclone); one `syncfs` at the end precedes the
//!   index write, so the index never claims content a crash could lose.
//! - Every filesystem step (scan, temporaries, renames, deletions, the index
//!   and the lock) is relative to the descriptors of `dest` and of its parent
//!   ([`Dir`]), following no symlink below them: a pull run by root, or a
//!   symlink planted while it runs, cannot write outside `dest`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::RenameFlags;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::StateLock;
use crate::progress::Progress;
use crate::safefs::{Dir, Kind};
use crate::store::{check_key, ObjectInfo, ObjectStore, StoreError};

/// Marker in the names of our temporaries; keys containing it are refused.
pub const TMP_MARKER: &str = ".rehost-pull-";
/// Downloaded bytes are written to disk in blocks of about this size.
const WRITE_BLOCK: usize = 1024 * 1024;
const INDEX_VERSION: u32 = 1;
/// Refused keys named in the final error (the log names all of them).
const SHOWN_PROBLEMS: usize = 10;

/// One `pull:` entry, validated.
#[derive(Clone, Debug)]
pub struct PullSpec {
    pub name: String,
    pub dest: PathBuf,
    pub delete_removed: bool,
    pub allow_empty: bool,
    pub concurrency: usize,
    /// Counts the bytes and files downloaded; its totals are the plan's.
    pub progress: Option<Arc<Progress>>,
}

/// What a pull did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullOutcome {
    /// Objects in the source, directory markers excluded.
    pub listed: usize,
    pub unchanged: usize,
    pub downloaded: usize,
    /// Bytes downloaded (in a dry run: that would be downloaded).
    pub bytes: u64,
    pub deleted: usize,
    /// Keys refused (unsafe or conflicting), with the reason.
    pub refused: Vec<(String, String)>,
}

/// `<dest parent>/.rehost-pull-<name>.json`
pub fn index_path(dest: &Path, name: &str) -> PathBuf {
    fsutil::parent_dir(dest).join(index_name(name))
}

fn index_name(name: &str) -> String {
    format!(".rehost-pull-{name}.json")
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Index {
    version: u32,
    entries: BTreeMap<String, IndexEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IndexEntry {
    size: u64,
    etag: Option<String>,
    local_size: u64,
    local_mtime: i64,
    local_mtime_nsec: i64,
}

/// A regular file found in `dest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LocalFile {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// What is in `dest` now.
#[derive(Debug, Default)]
struct Local {
    /// Regular files by key-like relative path (UTF-8 names only).
    files: BTreeMap<String, LocalFile>,
    /// Directories, by relative path.
    dirs: BTreeSet<String>,
    /// Everything else that is not a file or directory (symlinks, sockets,
    /// non-UTF-8 names), by relative path: never a valid place to write through.
    others: BTreeSet<PathBuf>,
    /// Temporaries left by an interrupted run.
    temps: Vec<PathBuf>,
}

/// The pure decision of a pull.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    download: Vec<ObjectInfo>,
    unchanged: Vec<String>,
    /// Relative paths to delete.
    delete: Vec<PathBuf>,
    refused: Vec<(String, String)>,
    listed: usize,
}

/// Why a key cannot become a file under `dest`, if it cannot.
fn refuse_reason(key: &str) -> Option<String> {
    if let Err(StoreError::InvalidKey { reason, .. }) = check_key(key) {
        return Some(reason);
    }
    if check_key(key).is_err() {
        return Some("invalid key".into());
    }
    if key.chars().any(char::is_control) {
        return Some("contains a control character".into());
    }
    if key.contains(TMP_MARKER) {
        return Some(format!("contains {TMP_MARKER:?}, reserved for temporaries"));
    }
    if key.split('/').any(|s| s.len() > 255) {
        return Some("has a path segment longer than 255 bytes".into());
    }
    None
}

/// Proper ancestors of a key: `a/b/c` → `a`, `a/b`.
fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices('/').map(move |(i, _)| &key[..i])
}

fn plan(listing: Vec<ObjectInfo>, index: &Index, local: &Local, spec: &PullSpec) -> Plan {
    let mut out = Plan::default();
    let mut valid: BTreeMap<String, ObjectInfo> = BTreeMap::new();
    for obj in listing {
        // Directory markers (`images/`) carry no content; s3cmd skips them too.
        if obj.key.ends_with('/') {
            continue;
        }
        out.listed += 1;
        match refuse_reason(&obj.key) {
            Some(reason) => out.refused.push((obj.key, reason)),
            None => {
                valid.insert(obj.key.clone(), obj);
            }
        }
    }
    // What will be deleted locally: files not in the source (and, as for
    // s3cmd, other non-directory entries), only with `delete_removed`.
    let mut delete: BTreeSet<PathBuf> = BTreeSet::new();
    if spec.delete_removed {
        for rel in local.files.keys() {
            if !valid.contains_key(rel) {
                delete.insert(PathBuf::from(rel));
            }
        }
        for rel in &local.others {
            let keyed = rel.to_str().is_some_and(|k| valid.contains_key(k));
            if !keyed {
                delete.insert(rel.clone());
            }
        }
    }
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for key in valid.keys() {
        // `a` and `a/b` cannot both be files.
        if let Some(parent) = ancestors(key).find(|a| valid.contains_key(*a)) {
            conflicts.push((
                key.clone(),
                format!("conflict: {parent:?} is also an object, so it cannot be a directory"),
            ));
            continue;
        }
        // A local file, symlink or other non-directory in the way stays unless deleted.
        let blocked = ancestors(key).find(|a| {
            let p = Path::new(a);
            (local.files.contains_key(*a) || local.others.contains(p)) && !delete.contains(p)
        });
        if let Some(a) = blocked {
            conflicts.push((
                key.clone(),
                format!("conflict: local {a:?} is not a directory"),
            ));
            continue;
        }
        if local.dirs.contains(key.as_str()) {
            // The directory goes away only if everything below it is deleted.
            let prefix = format!("{key}/");
            let stays = local
                .files
                .keys()
                .filter(|f| f.starts_with(&prefix))
                .any(|f| !delete.contains(Path::new(f)))
                || local
                    .others
                    .iter()
                    .filter(|o| o.starts_with(key))
                    .any(|o| !delete.contains(o));
            if stays || !spec.delete_removed {
                conflicts.push((
                    key.clone(),
                    format!("conflict: local {key:?} is a directory"),
                ));
                continue;
            }
        }
    }
    for (key, _) in &conflicts {
        valid.remove(key);
    }
    out.refused.extend(conflicts);
    for (key, obj) in valid {
        let here = local.files.get(&key);
        let known = index.entries.get(&key);
        let same = match (here, known) {
            (Some(f), Some(e)) => {
                obj.etag.is_some()
                    && e.etag == obj.etag
                    && e.size == obj.size
                    && e.local_size == f.size
                    && e.local_mtime == f.mtime
                    && e.local_mtime_nsec == f.mtime_nsec
            }
            _ => false,
        };
        if same {
            out.unchanged.push(key);
        } else {
            out.download.push(obj);
        }
    }
    out.delete = delete.into_iter().collect();
    out
}

/// Walks `dest` without following symlinks.
fn scan(dest: Option<&Dir>) -> io::Result<Local> {
    let mut local = Local::default();
    let Some(dest) = dest else {
        return Ok(local);
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = match dest.open_dir(&rel_dir) {
            Ok(d) => d,
            // Removed (or replaced by something else) since it was listed.
            Err(e) if !rel_dir.as_os_str().is_empty() && e.kind() == io::ErrorKind::NotFound => {
                continue
            }
            Err(e) => return Err(e),
        };
        for name in dir.entries()? {
            let rel = rel_dir.join(&name);
            if name
                .as_bytes()
                .windows(TMP_MARKER.len())
                .any(|w| w == TMP_MARKER.as_bytes())
            {
                local.temps.push(rel);
                continue;
            }
            let Some(meta) = dir.stat(Path::new(&name))? else {
                continue;
            };
            let Some(text) = rel.to_str().map(str::to_string) else {
                if meta.kind == Kind::Dir {
                    // A directory with a non-UTF-8 name can hold no key; look
                    // inside only to let `delete_removed` empty it.
                    stack.push(rel.clone());
                }
                local.others.insert(rel);
                continue;
            };
            if meta.kind == Kind::Dir {
                local.dirs.insert(text);
                stack.push(rel);
            } else if meta.kind == Kind::File {
                local.files.insert(
                    text,
                    LocalFile {
                        size: meta.size,
                        mtime: meta.mtime,
                        mtime_nsec: meta.mtime_nsec,
                    },
                );
            } else {
                local.others.insert(rel);
            }
        }
    }
    Ok(local)
}

fn load_index(parent: Option<&Dir>, name: &str) -> Index {
    let path = parent.map_or_else(|| PathBuf::from(name), |p| p.path().join(name));
    let read = || -> io::Result<Vec<u8>> {
        let parent = parent.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let mut bytes = Vec::new();
        parent.open_file(Path::new(name))?.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => match serde_json::from_slice::<Index>(&bytes) {
            Ok(index) if index.version == INDEX_VERSION => index,
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "pull index unreadable; every object will be fetched again");
                Index::default()
            }
        },
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot read pull index; every object will be fetched again");
            }
            Index::default()
        }
    }
}

/// Pulls the whole `store` (its root is the source prefix) into `spec.dest`.
pub async fn pull(store: &dyn ObjectStore, spec: &PullSpec, dry_run: bool) -> Result<PullOutcome> {
    let dest = spec.dest.clone();
    let parent_path = fsutil::parent_dir(&dest);
    let open = |path: &Path| -> Result<Option<Dir>> {
        let opened = if dry_run {
            Dir::open(path)
        } else {
            Dir::open_or_create(path, 0o755)
        };
        match opened {
            Ok(d) => Ok(Some(d)),
            Err(e) if dry_run && e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("open {}", path.display()), e)),
        }
    };
    let parent = open(&parent_path)?;
    let dest_dir = open(&dest)?.map(Arc::new);
    let _lock = match &parent {
        Some(p) => Some(StateLock::acquire_in(
            p,
            &format!("pull-{}", spec.name),
            !dry_run,
        )?),
        None => None,
    };
    let index_file = index_path(&dest, &spec.name);
    // The listing waits on the network, the scan on the disk: on a
    // 20,000-file site doing them one after the other was most of a no-op
    // pull. The index comes first: its keys let the store list the source in
    // concurrent ranges from the first request.
    let scan_dest = dest_dir.clone();
    let scan_task = tokio::task::spawn_blocking(move || scan(scan_dest.as_deref()));
    let index_parent = match &parent {
        Some(p) => Some(
            p.try_clone()
                .map_err(|e| Error::io("open the index directory", e))?,
        ),
        None => None,
    };
    let index_key = index_name(&spec.name);
    let index = tokio::task::spawn_blocking(move || load_index(index_parent.as_ref(), &index_key))
        .await
        .map_err(|e| Error::io("index task", io::Error::other(e)))?;
    let earlier: Vec<&str> = index.entries.keys().map(String::as_str).collect();
    let listing = store.list_with_hint("", &earlier).await;
    let scanned = scan_task.await;
    let listing = listing?;
    let local = scanned
        .map_err(|e| Error::io("scan task", io::Error::other(e)))?
        .map_err(|e| Error::io(format!("scan {}", dest.display()), e))?;
    let plan = plan(listing, &index, &local, spec);

    let sources = plan.download.len() + plan.unchanged.len();
    if sources == 0 && spec.delete_removed && !spec.allow_empty && !plan.delete.is_empty() {
        return Err(Error::Refused(format!(
            "source {} has no usable objects; refusing to empty {} (set allow_empty: true to allow it)",
            store.url(),
            dest.display()
        )));
    }
    for (key, reason) in &plan.refused {
        tracing::warn!(pull = %spec.name, key = %key.escape_debug(), reason = %reason, "object refused");
    }
    let mut outcome = PullOutcome {
        listed: plan.listed,
        unchanged: plan.unchanged.len(),
        downloaded: plan.download.len(),
        bytes: plan.download.iter().map(|o| o.size).sum(),
        deleted: plan.delete.len(),
        refused: plan.refused.clone(),
    };
    let (Some(dest_dir), Some(parent)) = (dest_dir, parent) else {
        // Only a dry run gets here without them.
        return Ok(outcome);
    };
    if dry_run {
        return Ok(outcome);
    }
    if let Some(p) = &spec.progress {
        p.set_totals(outcome.bytes, plan.download.len() as u64);
    }

    // Leftovers of a killed run, then deletions (before downloads, as s3cmd
    // does by default: a file may have to make room for a directory).
    for rel in &local.temps {
        let _ = dest_dir.remove(rel);
    }
    let deletes = plan.delete.clone();
    // Directories a killed run emptied but did not get to remove: no source
    // key lives below them. Only empty ones go (see `delete_all`).
    let stale_dirs: Vec<PathBuf> = if spec.delete_removed {
        let keep: BTreeSet<&str> = plan
            .download
            .iter()
            .map(|o| o.key.as_str())
            .chain(plan.unchanged.iter().map(String::as_str))
            .flat_map(ancestors)
            .collect();
        local
            .dirs
            .iter()
            .filter(|d| !keep.contains(d.as_str()))
            .map(PathBuf::from)
            .collect()
    } else {
        Vec::new()
    };
    let del_dest = Arc::clone(&dest_dir);
    tokio::task::spawn_blocking(move || delete_all(&del_dest, &deletes, &stale_dirs))
        .await
        .map_err(|e| Error::io("delete task", io::Error::other(e)))?
        .map_err(|e| Error::io(format!("delete in {}", dest.display()), e))?;

    let mut entries: BTreeMap<String, IndexEntry> = BTreeMap::new();
    for key in &plan.unchanged {
        if let Some(e) = index.entries.get(key) {
            entries.insert(key.clone(), e.clone());
        }
    }
    let concurrency = spec.concurrency.max(1);
    let mut results = futures::stream::iter(plan.download.iter().cloned())
        .map(|obj| {
            let dest = Arc::clone(&dest_dir);
            async move {
                let r = download(store, &dest, &obj, spec.progress.as_deref()).await;
                (obj, r)
            }
        })
        .buffer_unordered(concurrency);
    let mut failures: Vec<(String, Error)> = Vec::new();
    let mut bytes = 0u64;
    let mut downloaded = 0usize;
    while let Some((obj, result)) = results.next().await {
        match result {
            Ok(entry) => {
                bytes += entry.local_size;
                downloaded += 1;
                if let Some(p) = &spec.progress {
                    p.add_files(1);
                }
                entries.insert(obj.key, entry);
            }
            Err(e) => {
                tracing::warn!(pull = %spec.name, key = %obj.key, error = %e, "download failed");
                failures.push((obj.key, e));
            }
        }
    }
    drop(results);
    outcome.downloaded = downloaded;
    outcome.bytes = bytes;

    // Nothing on disk changed (a no-op pull): the index already says all this,
    // and there is nothing to make durable.
    let touched = downloaded > 0 || !plan.delete.is_empty() || !local.temps.is_empty();
    if touched || entries != index.entries || index.version != INDEX_VERSION {
        let sync_dest = Arc::clone(&dest_dir);
        let index_bytes = serde_json::to_vec(&Index {
            version: INDEX_VERSION,
            entries,
        })
        .map_err(|e| Error::io("encode pull index", io::Error::other(e)))?;
        let idx = index_name(&spec.name);
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            sync_dest.syncfs()?;
            parent.write_atomic(idx.as_ref(), &index_bytes, 0o600)
        })
        .await
        .map_err(|e| Error::io("index task", io::Error::other(e)))?
        .map_err(|e| Error::io(format!("write {}", index_file.display()), e))?;
    }

    if let Some(pos) = failures
        .iter()
        .position(|(_, e)| e.is_storage_unavailable())
    {
        return Err(failures.swap_remove(pos).1);
    }
    if !failures.is_empty() || !outcome.refused.is_empty() {
        let mut problems: Vec<String> = outcome
            .refused
            .iter()
            .map(|(k, r)| format!("{:?}: {r}", k))
            .collect();
        problems.extend(failures.iter().map(|(k, e)| format!("{k:?}: {e}")));
        let total = problems.len();
        problems.truncate(SHOWN_PROBLEMS);
        let more = if total > SHOWN_PROBLEMS {
            format!("; and {} more (see the log)", total - SHOWN_PROBLEMS)
        } else {
            String::new()
        };
        return Err(Error::Incomplete {
            what: format!(
                "pull {} into {}: {downloaded} downloaded, {} deleted, but {total} objects were not applied",
                spec.name,
                dest.display(),
                outcome.deleted
            ),
            detail: format!("{}{more}", problems.join("; ")),
        });
    }
    Ok(outcome)
}

/// Deletes `rels` under `dest`, then the directories this left empty.
fn delete_all(dest: &Dir, rels: &[PathBuf], stale_dirs: &[PathBuf]) -> io::Result<()> {
    let mut dirs: BTreeSet<PathBuf> = stale_dirs.iter().cloned().collect();
    for rel in rels {
        dest.remove(rel)?;
        let mut up = rel.parent();
        while let Some(d) = up.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            up = d.parent();
        }
    }
    // Deepest first, so that a parent is tried after its children.
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        // Not empty (something else lives there) is fine.
        let _ = dest.remove_dir(&d);
    }
    Ok(())
}

/// Creates the parents of `rel` under `dest` and opens the last one,
/// refusing to go through anything that is not a real directory (a symlink
/// could point outside `dest`): see [`Dir::create_dir_all`].
fn prepare_parent(dest: &Dir, rel: &str) -> io::Result<Dir> {
    let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
    dest.create_dir_all(Path::new(parent), 0o777)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ENOTDIR) | Some(nix::libc::ELOOP) => io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not a directory", dest.path().join(parent).display()),
            ),
            _ => e,
        })
}

/// A file being downloaded: a hidden temporary in its final directory.
struct Partial {
    file: fs::File,
    dir: Dir,
    tmp: PathBuf,
    name: PathBuf,
}

impl Partial {
    fn create(dest: &Dir, key: &str) -> io::Result<Self> {
        let dir = prepare_parent(dest, key)?;
        let name = key.rsplit('/').next().unwrap_or(key);
        let tmp = PathBuf::from(format!(".{name}{TMP_MARKER}{}", fsutil::random_suffix()));
        let file = dir.create_file(&tmp, 0o644)?;
        Ok(Partial {
            file,
            dir,
            tmp,
            name: PathBuf::from(name),
        })
    }

    /// Renames the finished file into place; returns its metadata.
    fn commit(self) -> io::Result<fs::Metadata> {
        let meta = self.file.metadata()?;
        drop(self.file);
        let rename = || {
            self.dir
                .rename(&self.tmp, &self.dir, &self.name, RenameFlags::empty())
        };
        let mut renamed = rename();
        if matches!(&renamed, Err(e) if e.kind() == io::ErrorKind::IsADirectory) {
            // An empty directory where the object goes: s3cmd replaces it too.
            if self.dir.remove_dir(&self.name).is_ok() {
                renamed = rename();
            }
        }
        if let Err(e) = renamed {
            let _ = self.dir.remove(&self.tmp);
            return Err(e);
        }
        Ok(meta)
    }

    /// Commits the file if it holds exactly `expected` bytes. A body shorter
    /// or longer than listed (the object changed meanwhile, or a proxy cut
    /// it) must not replace a good file.
    fn finish(self, expected: u64) -> io::Result<fs::Metadata> {
        let written = self.file.metadata()?.len();
        if written != expected {
            self.abandon();
            return Err(io::Error::other(format!(
                "got {written} bytes, the listing said {expected}"
            )));
        }
        self.commit()
    }

    fn abandon(self) {
        drop(self.file);
        let _ = self.dir.remove(&self.tmp);
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Streams one object into place. Small objects cost one blocking call.
/// `progress` is told of each chunk as it arrives.
async fn download(
    store: &dyn ObjectStore,
    dest: &Arc<Dir>,
    obj: &ObjectInfo,
    progress: Option<&Progress>,
) -> Result<IndexEntry> {
    let mut stream = store.get(&obj.key).await?;
    let what = || format!("write {}", dest.path().join(&obj.key).display());
    let mut partial: Option<Partial> = None;
    let mut buf: Vec<u8> = Vec::new();
    let result: Result<fs::Metadata> = async {
        loop {
            let chunk = stream.next().await.transpose()?;
            let end = chunk.is_none();
            if let Some(c) = chunk {
                if let Some(p) = progress {
                    p.add_bytes(c.len() as u64);
                }
                buf.extend_from_slice(&c);
            }
            if buf.len() < WRITE_BLOCK && !end {
                continue;
            }
            let data = std::mem::take(&mut buf);
            let (d, k) = (Arc::clone(dest), obj.key.clone());
            let current = partial.take();
            let expected = obj.size;
            if end && current.is_none() {
                // The whole object arrived at once (most web content): one
                // blocking call creates, writes, checks and renames it.
                return blocking(move || {
                    let mut p = Partial::create(&d, &k)?;
                    if let Err(e) = p.file.write_all(&data) {
                        p.abandon();
                        return Err(e);
                    }
                    p.finish(expected)
                })
                .await
                .map_err(|e| Error::io(what(), e));
            }
            let p = blocking(move || {
                let mut p = match current {
                    Some(p) => p,
                    None => Partial::create(&d, &k)?,
                };
                if let Err(e) = p.file.write_all(&data) {
                    p.abandon();
                    return Err(e);
                }
                Ok(p)
            })
            .await
            .map_err(|e| Error::io(what(), e))?;
            if end {
                return blocking(move || p.finish(expected))
                    .await
                    .map_err(|e| Error::io(what(), e));
            }
            partial = Some(p);
        }
    }
    .await;
    if result.is_err() {
        if let Some(p) = partial.take() {
            let _ = blocking(move || {
                p.abandon();
                Ok(())
            })
            .await;
        }
    }
    let meta = result?;
    Ok(IndexEntry {
        size: obj.size,
        etag: obj.etag.clone(),
        local_size: meta.len(),
        local_mtime: meta.mtime(),
        local_mtime_nsec: meta.mtime_nsec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64, etag: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            etag: Some(etag.into()),
            modified: None,
        }
    }

    fn spec(delete_removed: bool) -> PullSpec {
        PullSpec {
            name: "t".into(),
            dest: "/srv/www".into(),
            progress: None,
            delete_removed,
            allow_empty: false,
            concurrency: 4,
        }
    }

    fn file(size: u64) -> LocalFile {
        LocalFile {
            size,
            mtime: 1,
            mtime_nsec: 2,
        }
    }

    #[test]
    fn hostile_keys_are_refused() {
        for key in [
            "../x",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\nb",
            "x/.y.rehost-pull-1234",
            "nul\0byte",
            "tab\tname",
            "del\u{7f}",
        ] {
            assert!(refuse_reason(key).is_some(), "{key:?}");
        }
        // Longer than a file name may be, or than a key may be.
        let long_segment = format!("dir/{}", "n".repeat(256));
        assert!(refuse_reason(&long_segment).unwrap().contains("255 bytes"));
        let long_key = vec!["d"; 600].join("/");
        assert!(refuse_reason(&long_key).unwrap().contains("1024"));
        assert!(refuse_reason(&format!("dir/{}", "n".repeat(255))).is_none());
        assert!(refuse_reason("img/é 1.png").is_none());
    }

    #[test]
    fn unchanged_needs_index_and_local_file_to_agree() {
        let mut index = Index::default();
        let entry = IndexEntry {
            size: 3,
            etag: Some("e".into()),
            local_size: 3,
            local_mtime: 1,
            local_mtime_nsec: 2,
        };
        for k in ["same", "touched", "gone", "changed"] {
            index.entries.insert(k.into(), entry.clone());
        }
        let mut local = Local::default();
        local.files.insert("same".into(), file(3));
        local.files.insert("touched".into(), file(4));
        local.files.insert("changed".into(), file(3));
        local.files.insert("extra".into(), file(1));
        let listing = vec![
            obj("same", 3, "e"),
            obj("touched", 3, "e"),
            obj("gone", 3, "e"),
            obj("changed", 3, "f"),
            obj("new", 1, "n"),
            obj("dir/", 0, "d"),
        ];
        let p = plan(listing.clone(), &index, &local, &spec(true));
        assert_eq!(p.unchanged, vec!["same".to_string()]);
        let keys: Vec<&str> = p.download.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["changed", "gone", "new", "touched"]);
        assert_eq!(p.delete, vec![PathBuf::from("extra")]);
        assert_eq!(p.listed, 5);
        let p = plan(listing, &index, &local, &spec(false));
        assert!(p.delete.is_empty());
    }

    #[test]
    fn file_and_directory_conflicts_are_reported() {
        let mut local = Local::default();
        local.files.insert("page".into(), file(1));
        local.dirs.insert("old".into());
        local.files.insert("old/x".into(), file(1));
        let listing = vec![
            obj("a", 1, "1"),
            obj("a/b", 1, "2"),
            obj("page/sub", 1, "3"),
            obj("old", 1, "4"),
        ];
        let p = plan(listing.clone(), &Index::default(), &local, &spec(false));
        let refused: Vec<&str> = p.refused.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(refused, ["a/b", "old", "page/sub"]);
        // With deletions, local obstacles go away first.
        let p = plan(listing, &Index::default(), &local, &spec(true));
        let refused: Vec<&str> = p.refused.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(refused, ["a/b"]);
    }

    #[test]
    fn parents_never_go_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let dest = Dir::open(dir.path()).unwrap();
        assert!(prepare_parent(&dest, "link/x").is_err());
        assert!(prepare_parent(&dest, "link/y/z").is_err());
        assert!(prepare_parent(&dest, "a/b/c").is_ok());
        assert!(dir.path().join("a/b").is_dir());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
