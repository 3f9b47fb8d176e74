//! Parallel file creation for restores. On real disks creating a file costs
//! far more than writing a small one (journal, inode and directory updates),
//! and those costs overlap well across threads, so small files read from the
//! archive are handed to a few writer threads. Large files are written by the
//! reading thread directly, so memory stays bounded by the queue.
//!
//! Invariants: a job's parent directory exists before it is queued; files are
//! created relative to the staging directory's descriptor with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and no symlink followed on the way
//! ([`Dir::create_file`]), never through anything already there; the first
//! error stops the pool and is returned by the next call.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use filetime::FileTime;

use super::ArchiveError;
use crate::safefs::Dir;

/// Files up to this size are queued; larger ones are streamed by the caller.
pub const SMALL_FILE: u64 = 256 * 1024;
const WRITERS: usize = 4;
const QUEUE: usize = 32;

/// Metadata applied to a created file.
#[derive(Clone, Copy)]
pub struct FileMeta {
    pub mode: u32,
    pub mtime: i64,
    pub owner: Option<(u32, u32)>,
}

/// Creates `rel` below `root` exclusively, following no symlink.
pub fn create(root: &Dir, rel: &Path) -> Result<File, ArchiveError> {
    root.create_file(rel, 0o600)
        .map_err(|e| ArchiveError::write(&root.path().join(rel), e))
}

/// Owner, mode and mtime, in that order: chown clears setuid-like bits.
pub fn apply_meta(f: &File, path: &Path, meta: FileMeta) -> Result<(), ArchiveError> {
    if let Some((uid, gid)) = meta.owner {
        std::os::unix::fs::fchown(f, Some(uid), Some(gid))
            .map_err(|e| ArchiveError::write(path, e))?;
    }
    f.set_permissions(fs::Permissions::from_mode(meta.mode))
        .map_err(|e| ArchiveError::write(path, e))?;
    let t = FileTime::from_unix_time(meta.mtime, 0);
    filetime::set_file_handle_times(f, Some(t), Some(t)).map_err(|e| ArchiveError::write(path, e))
}

struct Job {
    /// Relative to the pool's root.
    rel: PathBuf,
    data: Vec<u8>,
    meta: FileMeta,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<usize>,
    idle: Condvar,
    failed: AtomicBool,
    error: Mutex<Option<ArchiveError>>,
}

impl Shared {
    fn fail(&self, e: ArchiveError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn take_error(&self) -> Result<(), ArchiveError> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.error.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e),
            None => Err(ArchiveError::Write {
                path: String::new(),
                source: std::io::Error::other("a file writer failed"),
            }),
        }
    }
}

pub struct WriterPool {
    jobs: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl WriterPool {
    /// Writers creating files below `root`.
    pub fn new(root: Arc<Dir>) -> Result<Self, ArchiveError> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::with_capacity(WRITERS);
        for i in 0..WRITERS {
            let (rx, shared, root) = (Arc::clone(&rx), Arc::clone(&shared), Arc::clone(&root));
            let spawned = std::thread::Builder::new()
                .name(format!("restore-writer-{i}"))
                .spawn(move || writer(&root, &rx, &shared))
                .map_err(|e| ArchiveError::write(Path::new("<writer thread>"), e))?;
            threads.push(spawned);
        }
        Ok(WriterPool {
            jobs: Some(tx),
            threads,
            shared,
        })
    }

    /// Queues the file `rel` (below the pool's root); returns an earlier
    /// writer's error instead, if any.
    pub fn submit(&self, rel: PathBuf, data: Vec<u8>, meta: FileMeta) -> Result<(), ArchiveError> {
        self.shared.take_error()?;
        if let Ok(mut n) = self.shared.pending.lock() {
            *n += 1;
        }
        let sent = self
            .jobs
            .as_ref()
            .map(|tx| tx.send(Job { rel, data, meta }).is_ok());
        if sent != Some(true) {
            self.shared.take_error()?;
            return Err(ArchiveError::Write {
                path: String::new(),
                source: std::io::Error::other("the file writers stopped"),
            });
        }
        Ok(())
    }

    /// Waits until every queued file is written (before a hard link to one).
    pub fn wait_idle(&self) -> Result<(), ArchiveError> {
        if let Ok(mut n) = self.shared.pending.lock() {
            while *n > 0 {
                n = match self.shared.idle.wait(n) {
                    Ok(n) => n,
                    Err(_) => break,
                };
            }
        }
        self.shared.take_error()
    }

    /// Writes everything queued, stops the threads, returns the first error.
    pub fn finish(mut self) -> Result<(), ArchiveError> {
        self.stop();
        self.shared.take_error()
    }

    fn stop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for WriterPool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer(root: &Dir, jobs: &Mutex<Receiver<Job>>, shared: &Shared) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // After a failure, drain the queue without writing: the restore is lost.
        if !shared.failed.load(Ordering::SeqCst) {
            let path = root.path().join(&job.rel);
            let written = create(root, &job.rel).and_then(|mut f| {
                f.write_all(&job.data)
                    .map_err(|e| ArchiveError::write(&path, e))?;
                apply_meta(&f, &path, job.meta)
            });
            if let Err(e) = written {
                shared.fail(e);
            }
        }
        if let Ok(mut n) = shared.pending.lock() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shared.idle.notify_all();
            }
        }
    }
}
