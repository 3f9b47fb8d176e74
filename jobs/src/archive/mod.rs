//! Streaming archives: a source becomes a plain tar stream, compressed as a
//! multi-member gzip, hashed on the way out; on the way in, the object is
//! hashed, size-capped, decompressed and safely extracted. Nothing holds a whole
//! archive in memory or on disk.

mod direct;
mod extract;
mod gzip;
mod io;
mod readahead;
mod walk;
mod write;
mod writers;

pub use extract::{extract, safe_relative, ExtractOptions, ExtractStats, Sink};
pub use gzip::{compress_member, GzipTotals, MemberSink, ParallelGzWriter, CHUNK};
pub use io::{CappedReader, HashingReader};
pub use walk::{scan, scan_until, source_kind, walk, SourceKind, SourceScan, WalkEntry};
pub use write::{write_tar, write_tar_with, Entry, EntryFilter, TarOptions, WriteStats};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive is malformed or truncated.
    #[error("the archive is corrupt or truncated: {0}")]
    Read(#[source] std::io::Error),
    /// The archive tries something a backup of ours never contains.
    #[error("refused archive entry {path:?}: it {reason}")]
    Hostile { path: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    pub(crate) fn write(path: &Path, source: std::io::Error) -> Self {
        ArchiveError::Write {
            path: path.display().to_string(),
            source,
        }
    }
}
