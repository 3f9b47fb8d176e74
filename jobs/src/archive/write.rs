//! Writes a source as a plain tar stream (GNU format: long names, numeric
//! owners, second-precision mtimes) into any `Write`, normally a
//! [`super::gzip::ParallelGzWriter`]. Nothing is buffered beyond one read.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::readahead::ReadAhead;
use super::walk::{walk, WalkEntry};
use crate::cancel::{self, CancellationToken};
use crate::progress::Progress;

/// What went into the archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Regular file content bytes.
    pub bytes: u64,
    /// Files whose size changed while they were read: their entry is padded or
    /// cut to the size seen at stat time, as GNU tar does, and a warning logged.
    pub changed: Vec<PathBuf>,
    /// Sockets, FIFOs and device nodes, which a backup cannot carry.
    pub skipped: Vec<PathBuf>,
}

/// Archives `root` into `out` and returns `out` (with the tar end marker written).
pub fn write_tar<W: Write>(root: &Path, out: W) -> io::Result<(W, WriteStats)> {
    write_tar_with(root, out, &TarOptions::default())
}

/// What [`write_tar_with`] does with one entry of the walk.
pub enum Entry {
    Keep,
    /// Leave the entry (and, for a directory, everything below it) out.
    Skip,
    /// Archive this file's content under the entry's name, with the entry's
    /// mode, owner and mtime: a consistent copy stands in for a live file.
    Replace(PathBuf),
}

/// Decides, from its relative path and metadata, what happens to an entry.
pub type EntryFilter<'a> = &'a dyn Fn(&Path, &std::fs::Metadata) -> Entry;

#[derive(Default)]
pub struct TarOptions<'a> {
    /// Names every entry below this directory, which becomes an entry itself
    /// (with the root's metadata), so that `tar xf` recreates it.
    pub prefix: Option<&'a Path>,
    pub filter: Option<EntryFilter<'a>>,
    /// Stop (with an error [`crate::cancel::io_cancelled`] recognizes) between
    /// entries and between chunks of a file once this is cancelled.
    pub cancel: Option<&'a CancellationToken>,
    /// Hint the kernel to read files ahead of the archiver ([`ReadAhead`]).
    pub read_ahead: bool,
    /// Counts file content as it is read (one add per read) and files as
    /// they are archived.
    pub progress: Option<&'a Progress>,
}

/// [`write_tar`] with a name prefix and a per-entry filter.
pub fn write_tar_with<W: Write>(
    root: &Path,
    out: W,
    opts: &TarOptions<'_>,
) -> io::Result<(W, WriteStats)> {
    let mut builder = Builder::new(out);
    let mut stats = WriteStats::default();
    if let Some(prefix) = opts.prefix {
        let meta = std::fs::symlink_metadata(root)?;
        let mut h = header_for(&meta, EntryType::Directory);
        builder.append_data(&mut h, prefix, io::empty())?;
        stats.dirs += 1;
    }
    let mut skipped: Vec<PathBuf> = Vec::new();
    let ahead = opts.read_ahead.then(|| ReadAhead::start(root));
    walk(root, &mut |e| {
        if let Some(a) = &ahead {
            a.visited();
        }
        if let Some(token) = opts.cancel {
            cancel::check(token)?;
        }
        if skipped.iter().any(|s| e.rel.starts_with(s)) {
            return Ok(());
        }
        let entry = match opts.filter {
            Some(f) => f(e.rel, e.meta),
            None => Entry::Keep,
        };
        let replacement = match entry {
            Entry::Keep => None,
            Entry::Replace(with) => Some(with),
            Entry::Skip => {
                if e.meta.is_dir() {
                    skipped.push(e.rel.to_path_buf());
                }
                return Ok(());
            }
        };
        let name = match opts.prefix {
            Some(p) => p.join(e.rel),
            None => e.rel.to_path_buf(),
        };
        let named = WalkEntry {
            rel: &name,
            abs: e.abs,
            meta: e.meta,
        };
        append(
            &mut builder,
            &named,
            replacement.as_deref(),
            opts,
            &mut stats,
        )
    })?;
    let out = builder.into_inner()?;
    Ok((out, stats))
}

fn header_for(meta: &std::fs::Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn append<W: Write>(
    b: &mut Builder<W>,
    e: &WalkEntry<'_>,
    replacement: Option<&Path>,
    opts: &TarOptions<'_>,
    stats: &mut WriteStats,
) -> io::Result<()> {
    let cancel = opts.cancel;
    let ft = e.meta.file_type();
    let with_path =
        |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", e.abs.display()));
    if ft.is_dir() {
        let mut h = header_for(e.meta, EntryType::Directory);
        b.append_data(&mut h, e.rel, io::empty())
            .map_err(with_path)?;
        stats.dirs += 1;
    } else if ft.is_symlink() {
        let target = std::fs::read_link(e.abs).map_err(with_path)?;
        let mut h = header_for(e.meta, EntryType::Symlink);
        b.append_link(&mut h, e.rel, &target).map_err(with_path)?;
        stats.symlinks += 1;
    } else if ft.is_file() {
        let (file, size) = match replacement {
            // A stand-in is ours and complete: its own size is the entry's.
            Some(copy) => {
                let f = File::open(copy).map_err(with_path)?;
                let size = f.metadata().map_err(with_path)?.len();
                (f, size)
            }
            None => match File::open(e.abs) {
                Ok(f) => (f, e.meta.len()),
                // Removed since the walk saw it: not part of this backup.
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(with_path(err)),
            },
        };
        let mut h = header_for(e.meta, EntryType::Regular);
        h.set_size(size);
        let mut reader = ExactSize {
            inner: file.take(size),
            left: size,
            short: false,
            cancel,
            progress: opts.progress,
        };
        b.append_data(&mut h, e.rel, &mut reader).map_err(|err| {
            // Kept as is, so that the caller still sees a cancellation.
            if cancel::io_cancelled(&err) {
                err
            } else {
                with_path(err)
            }
        })?;
        if reader.short
            || reader
                .inner
                .into_inner()
                .read(&mut [0u8; 1])
                .map(|n| n > 0)
                .unwrap_or(false)
        {
            tracing::warn!(path = %e.abs.display(), "file changed while it was read; archived at its earlier size");
            stats.changed.push(e.abs.to_path_buf());
        }
        stats.files += 1;
        stats.bytes += size;
        if let Some(p) = opts.progress {
            p.add_files(1);
        }
    } else {
        tracing::warn!(path = %e.abs.display(), "not a file, directory or symlink; skipped");
        stats.skipped.push(e.abs.to_path_buf());
    }
    Ok(())
}

/// Yields exactly `left` bytes: the file's, then zeros if it shrank meanwhile,
/// because a tar header announces the size before the data follows.
struct ExactSize<'a> {
    inner: io::Take<File>,
    left: u64,
    short: bool,
    /// Checked before every read: a 2 GiB file stops within one chunk.
    cancel: Option<&'a CancellationToken>,
    /// Told of every chunk read, so that a large file's progress shows.
    progress: Option<&'a Progress>,
}

impl Read for ExactSize<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if let Some(token) = self.cancel {
            cancel::check(token)?;
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        if let Some(p) = self.progress {
            p.add_bytes(n as u64);
        }
        Ok(n)
    }
}
