//! Filesystem primitives that make writes crash-safe: every file that matters is
//! written to a temporary name in its final directory, fsynced, renamed, and the
//! directory fsynced, so a crash at any instant leaves either the old or the new
//! content, never half of it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use rand::Rng;

/// A short random suffix for temporary and staging names.
pub fn random_suffix() -> String {
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// Writes `bytes` to `path` atomically with permissions `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        random_suffix()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed `mode`; the caller asked for exactly this one.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fsync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

/// Flushes every dirty page of the filesystem holding `path`: one call instead of
/// an fsync per restored file, which matters for trees of many small files.
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    nix::unistd::syncfs(&f).map_err(io::Error::from)
}

/// Atomically swaps two existing paths (files or directories) with
/// `renameat2(RENAME_EXCHANGE)`: readers see the old tree or the new one, never
/// a moment where the target is missing.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(io::Error::from)
}

/// Renames `from` to `to`, failing if `to` appeared in the meantime.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}

/// Removes a file or a directory tree; a path that is already gone is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a target counts as absent for `restore: if-missing`. An empty file or
/// directory counts as absent: provisioning commonly pre-creates them with the
/// right owner (`touch acme.json && chmod 600`, `install -d /srv/prometheus`).
pub fn is_missing_or_empty(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => Ok(fs::read_dir(path)?.next().is_none()),
        Ok(m) if m.is_file() => Ok(m.len() == 0),
        Ok(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn exchange_swaps_directories() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(a.join("x"), "from a").unwrap();
        fs::write(b.join("y"), "from b").unwrap();
        exchange(&a, &b).unwrap();
        assert!(a.join("y").exists());
        assert!(b.join("x").exists());
    }

    #[test]
    fn emptiness_counts_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        assert!(is_missing_or_empty(&f).unwrap());
        fs::write(&f, "").unwrap();
        assert!(is_missing_or_empty(&f).unwrap());
        fs::write(&f, "x").unwrap();
        assert!(!is_missing_or_empty(&f).unwrap());
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        assert!(is_missing_or_empty(&d).unwrap());
        fs::write(d.join("z"), "").unwrap();
        assert!(!is_missing_or_empty(&d).unwrap());
    }
}
