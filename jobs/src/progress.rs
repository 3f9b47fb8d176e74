//! How far a running job is, as counters the job adds to where it already
//! counts (a chunk read, a part fetched, a file written) and that someone
//! else reads: the agent draws them as a progress bar on a terminal. The
//! jobs know nothing of terminals; a job given no [`Progress`] counts
//! nothing.
//!
//! Every update is one relaxed atomic add, made per chunk or per file and
//! never per byte, so reporting costs nothing measurable on the data path.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one job run. Totals are set once the job knows them (a
/// backup after its scan, a restore or verify from the manifest, a pull from
/// its plan); some jobs never know them (a Prometheus backup).
#[derive(Debug)]
pub struct Progress {
    /// Bytes done: file content archived (backup), stored bytes fetched
    /// (restore, verify), bytes downloaded (pull).
    bytes: AtomicU64,
    /// Files done: archived, extracted (or checked), downloaded.
    files: AtomicU64,
    /// `UNKNOWN` until [`Progress::set_totals`].
    total_bytes: AtomicU64,
    total_files: AtomicU64,
}

/// What [`Progress::snapshot`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub bytes: u64,
    pub files: u64,
    /// `(bytes, files)` the job will have done, when it knows.
    pub totals: Option<(u64, u64)>,
}

const UNKNOWN: u64 = u64::MAX;

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(UNKNOWN),
            total_files: AtomicU64::new(UNKNOWN),
        }
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_files(&self, n: u64) {
        self.files.fetch_add(n, Ordering::Relaxed);
    }

    /// What the job will have done once it finishes.
    pub fn set_totals(&self, bytes: u64, files: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The counters now. Read without a lock: the totals and the counts may
    /// be a moment apart, which a display does not mind.
    pub fn snapshot(&self) -> Snapshot {
        let (tb, tf) = (
            self.total_bytes.load(Ordering::Relaxed),
            self.total_files.load(Ordering::Relaxed),
        );
        Snapshot {
            bytes: self.bytes.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            totals: (tb != UNKNOWN && tf != UNKNOWN).then_some((tb, tf)),
        }
    }
}

/// Adds what passes through a reader to a job's byte count: one add per
/// `read` call (a chunk), none without a [`Progress`].
pub(crate) struct CountingReader<R> {
    pub inner: R,
    pub progress: Option<std::sync::Arc<Progress>>,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = &self.progress {
            p.add_bytes(n as u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_unknown_until_set() {
        let p = Progress::new();
        p.add_bytes(10);
        p.add_files(2);
        assert_eq!(
            p.snapshot(),
            Snapshot {
                bytes: 10,
                files: 2,
                totals: None
            }
        );
        p.set_totals(100, 7);
        assert_eq!(p.snapshot().totals, Some((100, 7)));
        // Default is "nothing known" too.
        assert_eq!(Progress::default().snapshot().totals, None);
    }
}
