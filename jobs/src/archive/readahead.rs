//! Reading ahead of the archiver. The tar writer reads files one at a time,
//! in walk order; on a cold page cache (a host's first backup after a
//! reboot, or a large tree) each small file is a synchronous disk read, so
//! the backup waits on one read at a time. A second thread walks the same
//! tree in the same order a bounded window ahead and asks the kernel to start
//! reading the beginning of each file (`posix_fadvise(WILLNEED)`), so that
//! the disk has many reads queued. It only hints: it never reads content into
//! memory, and anything it cannot open it skips (the archiver reports it).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};

use super::walk::walk;

/// Walk entries the hints may run ahead of the archiver.
const WINDOW: u64 = 512;
/// Bytes hinted per file: what the archiver reads first; the kernel's own
/// sequential read-ahead takes over for the rest of a large file.
const HINT_BYTES: u64 = 1024 * 1024;

#[derive(Default)]
struct Shared {
    /// Walk entries the archiver has reached.
    visited: AtomicU64,
    stop: AtomicBool,
}

pub struct ReadAhead {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts hinting the files below `root`. Without a thread (the system
    /// refused one), it does nothing.
    pub fn start(root: &Path) -> Self {
        let shared = Arc::new(Shared::default());
        let (s, root) = (Arc::clone(&shared), root.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || hint_all(&root, &s))
            .ok();
        ReadAhead { shared, thread }
    }

    /// The archiver reached its next walk entry.
    pub fn visited(&self) {
        self.shared.visited.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hint_all(root: &Path, shared: &Shared) {
    let mut issued = 0u64;
    let _ = walk(root, &mut |e| {
        issued += 1;
        while issued > shared.visited.load(Ordering::Relaxed) + WINDOW {
            if shared.stop.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("stopped"));
            }
            std::thread::park_timeout(Duration::from_millis(1));
        }
        if shared.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped"));
        }
        if e.meta.is_file() && e.meta.len() > 0 {
            if let Ok(f) = File::open(e.abs) {
                let len = e.meta.len().min(HINT_BYTES) as i64;
                // A hint: its failure changes nothing.
                let _ = posix_fadvise(&f, 0, len, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
            }
        }
        Ok(())
    });
}
