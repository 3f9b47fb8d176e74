//! `backup`: source → tar → parallel gzip → sha256 → multipart upload, then the
//! manifest, last. No temporary file of the archive exists anywhere, and memory
//! is bounded by the pipeline's queues whatever the source size. An unchanged
//! source (same fingerprint as the newest complete backup) uploads nothing.

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::archive::{self, ParallelGzWriter, SourceKind, SourceScan};
use crate::bridge;
use crate::catalog::{self, Selector};
use crate::error::{Error, Result};
use crate::layout;
use crate::lock::StateLock;
use crate::manifest::{Manifest, ObjectEntry, SourceInfo, FORMAT};
use crate::state::StateSpec;
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
    let _lock = if dry_run {
        None
    } else {
        Some(StateLock::acquire(&spec.path, &spec.name, false)?)
    };
    let path = spec.path.clone();
    let scan: SourceScan = tokio::task::spawn_blocking(move || archive::scan(&path))
        .await
        .map_err(|e| Error::Refused(format!("scan task failed: {e}")))?
        .map_err(|e| Error::io(format!("read source {}", spec.path.display()), e))?;

    if let Some(latest) = catalog::find(store, host, &spec.name, &Selector::Latest).await? {
        if latest.source.fingerprint == scan.fingerprint {
            return Ok(BackupOutcome::Unchanged { id: latest.id });
        }
    }
    if dry_run {
        return Ok(BackupOutcome::WouldUpload {
            files: scan.files,
            bytes: scan.bytes,
        });
    }

    let id = layout::new_backup_id(Utc::now());
    let created = Utc::now();
    let data_key = layout::object_key(host, &spec.name, &id, layout::DATA);
    let (tx, body) = bridge::put_channel();
    let path = spec.path.clone();
    let producer = tokio::task::spawn_blocking(move || produce(&path, tx));
    let (put, produced) = tokio::join!(store.put(&data_key, body), producer);
    let produced = produced.map_err(|e| Error::Refused(format!("archive task failed: {e}")))?;
    // Whichever side failed first explains the other: an upload abandoned
    // because the archive failed reports the archive's error, and vice versa.
    let produced = match (produced, put) {
        (Ok(p), Ok(stored)) if stored == p.compressed => p,
        (Ok(p), Ok(stored)) => {
            return Err(Error::Mismatch {
                state: spec.name.clone(),
                id,
                detail: format!("the store kept {stored} bytes of the {} sent", p.compressed),
            })
        }
        (Err(e), Err(StoreError::BodyFailed { .. })) | (Err(e), Ok(_)) => return Err(e),
        (_, Err(e)) => return Err(e.into()),
    };

    let (kind, root_meta) = archive::source_kind(&spec.path)
        .map_err(|e| Error::io(format!("read source {}", spec.path.display()), e))?;
    let manifest = Manifest {
        format: FORMAT,
        id: id.clone(),
        host: host.to_string(),
        state: spec.name.clone(),
        created,
        rehost_version: env!("CARGO_PKG_VERSION").to_string(),
        source: SourceInfo {
            path: spec.path.display().to_string(),
            kind,
            fingerprint: scan.fingerprint,
            root_mode: root_meta.mode() & 0o7777,
            root_mtime: root_meta.mtime(),
        },
        files: produced.stats.files,
        dirs: produced.stats.dirs,
        symlinks: produced.stats.symlinks,
        tar_bytes: produced.tar_bytes,
        objects: vec![ObjectEntry {
            name: layout::DATA.to_string(),
            size: produced.compressed,
            sha256: produced.sha256,
        }],
    };
    if kind == SourceKind::File && manifest.files != 1 {
        return Err(Error::Refused(format!(
            "{} disappeared while it was backed up",
            spec.path.display()
        )));
    }
    let json = manifest.to_json();
    let manifest_len = json.len() as u64;
    let manifest_key = layout::object_key(host, &spec.name, &id, layout::MANIFEST);
    store
        .put(&manifest_key, body_from_bytes(Bytes::from(json)))
        .await?;
    Ok(BackupOutcome::Uploaded {
        id,
        files: produced.stats.files,
        bytes: produced.stats.bytes,
        uploaded: produced.compressed + manifest_len,
    })
}

struct Produced {
    stats: archive::WriteStats,
    tar_bytes: u64,
    compressed: u64,
    sha256: String,
}

/// Runs on a blocking thread: archives the source into the upload channel,
/// hashing the compressed bytes exactly as they are sent.
fn produce(
    path: &std::path::Path,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<Produced> {
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let sink_hasher = Arc::clone(&hasher);
    let sink_tx = tx.clone();
    let sink = Box::new(move |member: Vec<u8>| {
        if let Ok(mut h) = sink_hasher.lock() {
            h.update(&member);
        }
        sink_tx
            .blocking_send(Ok(Bytes::from(member)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    });
    let result = (|| {
        let gz = ParallelGzWriter::new(workers(), sink)?;
        let (gz, stats) = archive::write_tar(path, gz)?;
        let totals = gz.finish()?;
        Ok::<_, std::io::Error>((stats, totals))
    })();
    match result {
        Ok((stats, totals)) => {
            let sha256 = match hasher.lock() {
                Ok(h) => hex::encode(h.clone().finalize()),
                Err(_) => return Err(Error::Refused("hasher poisoned".into())),
            };
            Ok(Produced {
                stats,
                tar_bytes: totals.uncompressed,
                compressed: totals.compressed,
                sha256,
            })
        }
        Err(e) => {
            // Tell the upload to abort rather than complete a truncated object.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            Err(Error::io(format!("archive {}", path.display()), e))
        }
    }
}
