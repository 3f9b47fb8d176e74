//! `backup`: source → tar → parallel gzip → (age) → sha256 → multipart upload,
//! then the manifest, last. No temporary file of the archive exists anywhere,
//! and memory is bounded by the pipeline's queues whatever the source size.
//! An unchanged source (same fingerprint and encryption as the newest complete
//! backup) uploads nothing.
//!
//! `kind: sqlite` takes the same path with consistent copies of the databases
//! standing in for the live files ([`crate::sqlite`]); `kind: prometheus` has
//! its own, block by block ([`crate::prometheus`]). `kind: acme` archives a
//! copy of acme.json that was checked to be Traefik's ([`crate::acme`]).

use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::archive::{self, Entry, ParallelGzWriter, SourceKind, SourceScan, TarOptions};
use crate::bridge;
use crate::cancel::{unless_cancelled, CancellationToken};
use crate::catalog::{self, Selector};
use crate::encryption::Encryption;
use crate::error::{Error, Result};
use crate::layout;
use crate::lock::StateLock;
use crate::manifest::{EncryptionInfo, Manifest, ObjectEntry, SourceInfo, FORMAT};
use crate::parts::{IndexBuilder, PartIndex, SharedHasher};
use crate::progress::Progress;
use crate::state::{StateKind, StateSpec};
use crate::store::{body_from_bytes, ObjectStore, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupOutcome {
    Uploaded {
        id: String,
        files: u64,
        /// Bytes of file content archived.
        bytes: u64,
        /// Bytes uploaded (compressed archive + manifest).
        uploaded: u64,
        /// `kind: prometheus`: blocks uploaded by this backup, and blocks it
        /// references that earlier backups uploaded.
        new_blocks: u64,
        reused_blocks: u64,
    },
    /// The source has not changed since this backup; nothing was uploaded.
    Unchanged { id: String },
    /// `--dry-run`: what a real run would upload.
    WouldUpload { files: u64, bytes: u64 },
}

impl BackupOutcome {
    pub fn uploaded_bytes(&self) -> u64 {
        match self {
            BackupOutcome::Uploaded { uploaded, .. } => *uploaded,
            _ => 0,
        }
    }
}

/// Compression threads: one per core.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

pub async fn backup(
    store: &dyn ObjectStore,
    host: &str,
    spec: &StateSpec,
    dry_run: bool,
) -> Result<BackupOutcome> {
    backup_until(store, host, spec, dry_run, &CancellationToken::new(), None).await
}

/// [`backup`], stopping with [`Error::Cancelled`] soon after `cancel` is
/// cancelled: blocking work checks it between files and chunks and is
/// awaited (never left running), requests to the store are dropped, and an
/// upload under way is aborted. The entry's lock is shared with the blocking
/// tasks, so it is released only when the last of them has ended, even if
/// this future is dropped. `progress` counts the file content archived and
/// the files; its totals are the scan's (a Prometheus backup has none).
pub async fn backup_until(
    store: &dyn ObjectStore,
    host: &str,
    spec: &StateSpec,
    dry_run: bool,
    cancel: &CancellationToken,
    progress: Option<Arc<Progress>>,
) -> Result<BackupOutcome> {
    if let StateKind::Prometheus { api } = &spec.kind {
        return crate::prometheus::backup(store, host, spec, api, dry_run, cancel, progress).await;
    }
    let lock = Arc::new(if dry_run {
        None
    } else {
        Some(StateLock::acquire(&spec.path, &spec.name, false)?)
    });
    let (path, held, token) = (spec.path.clone(), Arc::clone(&lock), cancel.clone());
    let scan: SourceScan = tokio::task::spawn_blocking(move || {
        let _held = held;
        archive::scan_until(&path, &token)
    })
    .await
    .map_err(|e| Error::Refused(format!("scan task failed: {e}")))?
    .map_err(|e| Error::io(format!("read source {}", spec.path.display()), e))?;
    // The scan already walked the source: its sizes are the totals, at no
    // extra cost (the SQLite copies standing in for live files may differ
    // a little).
    if let Some(p) = &progress {
        p.set_totals(scan.bytes, scan.files);
    }

    // kind: acme: read and checked once, before anything else is decided,
    // so that a broken file fails the backup even when it looks unchanged,
    // and the archive holds exactly the bytes that were checked. Read after
    // the scan: if Traefik rewrites the file in between, the fingerprint is
    // the older one and the next backup sees a change.
    let acme = match &spec.kind {
        StateKind::Acme => {
            let path = spec.path.clone();
            let snapshot = tokio::task::spawn_blocking(move || crate::acme::snapshot(&path))
                .await
                .map_err(|e| Error::Refused(format!("acme.json read task failed: {e}")))??;
            tracing::debug!(
                state = %spec.name,
                certificates = snapshot.summary.certificates(),
                "acme.json checked"
            );
            Some(snapshot)
        }
        _ => None,
    };

    let recipients = spec.encryption.as_deref().map(|e| e.digest());
    let backups = unless_cancelled(cancel, catalog::list(store, host, &spec.name)).await?;
    let based_on = catalog::select(&backups, &Selector::Latest).map(|b| b.id.clone());
    if let Some(id) = &based_on {
        let latest =
            unless_cancelled(cancel, catalog::load_manifest(store, host, &spec.name, id)).await?;
        // Switching encryption on (or to other keys) is a change too, and a
        // new generation's first backup is always made: until it has one of
        // its own, a late backup of the generation it took over would be
        // what a restore picks.
        if latest.source.fingerprint == scan.fingerprint
            && latest.recipients() == recipients
            && latest.generation == spec.generation
        {
            return Ok(BackupOutcome::Unchanged { id: latest.id });
        }
    }
    if dry_run {
        return Ok(BackupOutcome::WouldUpload {
            files: scan.files,
            bytes: scan.bytes,
        });
    }

    let filter: Option<Filter> = match &spec.kind {
        StateKind::Sqlite { databases } => {
            let patterns: Vec<String> = if databases.is_empty() {
                crate::sqlite::DEFAULT_DATABASES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                databases.clone()
            };
            let (path, held, token) = (spec.path.clone(), Arc::clone(&lock), cancel.clone());
            let copies = tokio::task::spawn_blocking(move || {
                let _held = held;
                crate::sqlite::copy_databases_until(&path, &patterns, &token)
            })
            .await
            .map_err(|e| Error::Refused(format!("database copy task failed: {e}")))??;
            if copies.count() == 0 {
                tracing::warn!(state = %spec.name, path = %spec.path.display(), "no SQLite database matched; backing up the files only");
            }
            // The copies (and their temporary directory) live as long as the filter.
            Some(Box::new(move |rel: &Path, meta: &Metadata| {
                copies.entry(rel, meta)
            }))
        }
        StateKind::Acme => acme.map(|snapshot| -> Filter {
            // The source is the one file: its checked copy stands in for it.
            Box::new(move |_: &Path, meta: &Metadata| {
                if meta.is_file() {
                    Entry::Replace(snapshot.copy().to_path_buf())
                } else {
                    Entry::Keep
                }
            })
        }),
        _ => None,
    };

    let id = layout::next_backup_id(&backups, spec.generation.as_deref(), Utc::now());
    let created = Utc::now();
    let data_name = layout::data_name(spec.encryption.is_some());
    let data_key = layout::object_key(host, &spec.name, &id, data_name);
    let tree = Tree {
        root: spec.path.clone(),
        prefix: None,
        filter,
        encryption: spec.encryption.clone(),
        cancel: cancel.clone(),
        _lock: Arc::clone(&lock),
        part_tar: crate::parts::part_target(scan.bytes),
        progress,
    };
    let produced = upload_tree(store, &data_key, tree, &spec.name, &id).await?;

    let (kind, root_meta) = archive::source_kind(&spec.path)
        .map_err(|e| Error::io(format!("read source {}", spec.path.display()), e))?;
    let source = SourceInfo {
        path: spec.path.display().to_string(),
        kind,
        fingerprint: scan.fingerprint,
        root_mode: root_meta.mode() & 0o7777,
        root_mtime: root_meta.mtime(),
    };
    let (files, bytes, stored) = (produced.stats.files, produced.stats.bytes, produced.stored);
    let manifest = new_manifest(host, spec, &id, created, source, produced, based_on);
    if kind == SourceKind::File && manifest.files != 1 {
        return Err(Error::Refused(format!(
            "{} disappeared while it was backed up",
            spec.path.display()
        )));
    }
    let manifest_len = unless_cancelled(cancel, put_manifest(store, &manifest)).await?;
    Ok(BackupOutcome::Uploaded {
        id,
        files,
        bytes,
        uploaded: stored + manifest_len,
        new_blocks: 0,
        reused_blocks: 0,
    })
}

/// The manifest (format 1, no blocks) of backup `id` of `spec`, whose data
/// object is `data`.
pub(crate) fn new_manifest(
    host: &str,
    spec: &StateSpec,
    id: &str,
    created: DateTime<Utc>,
    source: SourceInfo,
    data: Produced,
    based_on: Option<String>,
) -> Manifest {
    let encryption = spec.encryption.as_deref().map(|e| EncryptionInfo {
        scheme: crate::encryption::SCHEME.to_string(),
        recipients: e.digest().to_string(),
    });
    Manifest {
        format: FORMAT,
        id: id.to_string(),
        host: host.to_string(),
        state: spec.name.clone(),
        created,
        rehost_version: env!("CARGO_PKG_VERSION").to_string(),
        source,
        files: data.stats.files,
        dirs: data.stats.dirs,
        symlinks: data.stats.symlinks,
        tar_bytes: data.tar_bytes,
        objects: vec![ObjectEntry {
            name: layout::data_name(encryption.is_some()).to_string(),
            size: data.stored,
            sha256: data.sha256,
            index: data.index,
        }],
        blocks: Vec::new(),
        encryption,
        generation: spec.generation.clone(),
        based_on,
    }
}

/// Uploads the manifest, the last object of a backup; returns its size.
pub(crate) async fn put_manifest(store: &dyn ObjectStore, manifest: &Manifest) -> Result<u64> {
    let json = manifest.to_json();
    let len = json.len() as u64;
    let key = layout::object_key(
        &manifest.host,
        &manifest.state,
        &manifest.id,
        layout::MANIFEST,
    );
    store.put(&key, body_from_bytes(Bytes::from(json))).await?;
    Ok(len)
}

/// Decides per entry what goes into an archive; runs on the archiving thread.
pub(crate) type Filter = Box<dyn Fn(&Path, &Metadata) -> Entry + Send>;

/// What one archive object holds.
pub(crate) struct Tree {
    pub root: PathBuf,
    /// See [`TarOptions::prefix`].
    pub prefix: Option<PathBuf>,
    pub filter: Option<Filter>,
    /// Encrypt the archive to these recipients.
    pub encryption: Option<Arc<Encryption>>,
    /// Stops the archiving (between files and chunks) and the upload.
    pub cancel: CancellationToken,
    /// The entry's lock, held by the archiving thread until it has ended.
    pub _lock: Arc<Option<StateLock>>,
    /// Tar bytes per part of the object's index ([`crate::parts::part_target`]).
    pub part_tar: u64,
    /// Told of the file content and the files as they are archived.
    pub progress: Option<Arc<Progress>>,
}

/// Archives `tree` into the object `key` while it is uploaded.
pub(crate) async fn upload_tree(
    store: &dyn ObjectStore,
    key: &str,
    tree: Tree,
    state: &str,
    id: &str,
) -> Result<Produced> {
    let (tx, body) = bridge::put_channel();
    let cancel = tree.cancel.clone();
    let producer = tokio::task::spawn_blocking(move || produce(&tree, tx));
    // On cancellation the upload is dropped (a stalled store may never read
    // the body again), which ends the producer's sends, and the producer is
    // awaited: it stops at its next check whatever it is reading.
    let upload = async {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            put = store.put(key, body) => Some(put),
        }
    };
    let (put, produced) = tokio::join!(upload, producer);
    let produced = produced.map_err(|e| Error::Refused(format!("archive task failed: {e}")))?;
    let Some(put) = put else {
        // The dropped upload's clean-up (a multipart abort) is part of this run.
        store.settle().await;
        return Err(Error::Cancelled);
    };
    // Whichever side failed first explains the other: an upload abandoned
    // because the archive failed reports the archive's error, and vice versa.
    match (produced, put) {
        (Ok(p), Ok(stored)) if stored == p.stored => Ok(p),
        (Ok(p), Ok(stored)) => Err(Error::Mismatch {
            state: state.to_string(),
            id: id.to_string(),
            detail: format!(
                "the store kept {stored} bytes of the {} sent to {key}",
                p.stored
            ),
        }),
        (Err(e), Err(StoreError::BodyFailed { .. })) | (Err(e), Ok(_)) => Err(e),
        (_, Err(e)) => Err(e.into()),
    }
}

pub(crate) struct Produced {
    pub stats: archive::WriteStats,
    pub tar_bytes: u64,
    /// Bytes sent to the store: the gzip stream, or the age file around it.
    pub stored: u64,
    /// Of the bytes sent.
    pub sha256: String,
    /// Where a restore can cut the object into parts.
    pub index: Option<PartIndex>,
}

/// Runs on a blocking thread: archives the source into the upload channel,
/// hashing the stored bytes exactly as they are sent, and indexing the parts.
fn produce(tree: &Tree, tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) -> Result<Produced> {
    let path = &tree.root;
    let result = (|| {
        let out = Arc::new(Mutex::new(Some(Output::new(
            tree.encryption.as_deref(),
            tx.clone(),
            tree.part_tar,
        )?)));
        let sink_out = Arc::clone(&out);
        let sink = Box::new(move |member: Vec<u8>, plain: u64| match sink_out.lock() {
            Ok(mut guard) => match guard.as_mut() {
                Some(out) => out.write_member(member, plain),
                None => Err(std::io::Error::other("the archive was already finished")),
            },
            Err(_) => Err(std::io::Error::other("archive output poisoned")),
        });
        let gz = ParallelGzWriter::new(workers(), sink)?;
        let opts = TarOptions {
            prefix: tree.prefix.as_deref(),
            filter: tree
                .filter
                .as_deref()
                .map(|f| f as archive::EntryFilter<'_>),
            cancel: Some(&tree.cancel),
            read_ahead: true,
            progress: tree.progress.as_deref(),
        };
        let (gz, stats) = archive::write_tar_with(path, gz, &opts)?;
        let totals = gz.finish()?;
        let finished = out
            .lock()
            .map_err(|_| std::io::Error::other("archive output poisoned"))?
            .take()
            .ok_or_else(|| std::io::Error::other("the archive was already finished"))?
            .finish()?;
        Ok::<_, std::io::Error>((stats, totals, finished))
    })();
    match result {
        Ok((stats, totals, (sent, index))) => Ok(Produced {
            stats,
            tar_bytes: totals.uncompressed,
            stored: sent.count,
            sha256: hex::encode(sent.hasher.finalize()),
            index,
        }),
        Err(e) => {
            // Tell the upload to abort rather than complete a truncated object.
            // (A cancelled upload was dropped: this send fails at once.)
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            Err(Error::io(format!("archive {}", path.display()), e))
        }
    }
}

/// Where the gzip members go: straight into the upload, or through age
/// first; and the index of the parts they make up.
struct Output {
    to: To,
    index: IndexBuilder,
}

enum To {
    Plain(Sent),
    Age(age::stream::StreamWriter<Sent>),
}

impl Output {
    fn new(encryption: Option<&Encryption>, tx: Sender, part_tar: u64) -> std::io::Result<Self> {
        let ranges = SharedHasher::default();
        // Opens the first part's range before the age header goes out.
        let mut index = IndexBuilder::new(part_tar, Arc::clone(&ranges));
        let sent = Sent {
            tx,
            hasher: Sha256::new(),
            count: 0,
            ranges,
        };
        let to = match encryption {
            None => To::Plain(sent),
            Some(e) => {
                let w = e.encrypt_to(sent)?;
                index.set_age();
                To::Age(w)
            }
        };
        Ok(Output { to, index })
    }

    fn write_member(&mut self, member: Vec<u8>, plain: u64) -> std::io::Result<()> {
        // Before the bytes: a part that ends here must have its range set
        // before the stream passes it.
        self.index.member(member.len() as u64, plain);
        match &mut self.to {
            To::Plain(sent) => sent.send(member),
            To::Age(w) => w.write_all(&member),
        }
    }

    /// Ends the age stream (its last chunk and tag) and returns what was
    /// sent, with the index.
    fn finish(self) -> std::io::Result<(Sent, Option<PartIndex>)> {
        let sent = match self.to {
            To::Plain(sent) => sent,
            To::Age(w) => w.finish()?,
        };
        Ok((sent, self.index.finish()))
    }
}

type Sender = tokio::sync::mpsc::Sender<std::io::Result<Bytes>>;

/// The upload channel's end, hashing and counting what goes through it.
struct Sent {
    tx: Sender,
    hasher: Sha256,
    count: u64,
    /// The parts' stored ranges.
    ranges: SharedHasher,
}

impl Sent {
    fn send(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.hasher.update(&bytes);
        self.ranges
            .lock()
            .map_err(|_| std::io::Error::other("part index poisoned"))?
            .update(&bytes);
        self.count += bytes.len() as u64;
        self.tx
            .blocking_send(Ok(Bytes::from(bytes)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for Sent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.send(buf.to_vec())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
