//! Small path helpers, and crash-safe writes by path for callers that hold no
//! [`Dir`]: every file that matters is written to a temporary name in its
//! final directory, fsynced, renamed, and the directory fsynced, so a crash at
//! any instant leaves either the old or the new content, never half of it.
//! Anything that works in a directory another user can write goes through
//! [`crate::safefs`] (which [`write_atomic`] does too).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::safefs::Dir;

/// A short random suffix for temporary and staging names.
pub fn random_suffix() -> String {
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// Writes `bytes` to `path` atomically with permissions `mode`, relative to
/// the descriptor of `path`'s directory (see [`Dir::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Dir::open(&parent_dir(path))?.write_atomic(name, bytes, mode)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename or creation inside `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_removes_temporaries_a_killed_writer_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rehost-backup-acme.prom");
        let stale = dir.path().join(".rehost-backup-acme.prom.tmp-0badf00d");
        let fresh = dir.path().join(".rehost-backup-acme.prom.tmp-12345678");
        let other = dir.path().join(".other.prom.tmp-0badf00d");
        for f in [&stale, &fresh, &other] {
            fs::write(f, "half").unwrap();
        }
        let old = filetime::FileTime::from_unix_time(1_700_000_000, 0);
        filetime::set_file_mtime(&stale, old).unwrap();
        filetime::set_file_mtime(&other, old).unwrap();
        write_atomic(&p, b"x", 0o644).unwrap();
        assert!(!stale.exists(), "a stale temporary of this file stays");
        // A recent one may belong to a writer still at work; another file's
        // temporaries are that file's business.
        assert!(fresh.exists() && other.exists());
    }
}
