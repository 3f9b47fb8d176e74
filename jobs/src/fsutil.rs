//! Filesystem primitives that make writes crash-safe: every file that matters is
//! written to a temporary name in its final directory, fsynced, renamed, and the
//! directory fsynced, so a crash at any instant leaves either the old or the new
//! content, never half of it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use rand::Rng;

/// A short random suffix for temporary and staging names.
pub fn random_suffix() -> String {
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// A temporary of [`write_atomic`] older than this was left by a process that
/// died before its rename; a live writer renames within milliseconds.
const STALE_TEMP: Duration = Duration::from_secs(60);

/// Writes `bytes` to `path` atomically with permissions `mode`. Temporaries
/// that an earlier writer of the same path left when it was killed are
/// removed first, so a crash never leaves litter that accumulates (in a
/// node_exporter textfile directory, say).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temp_prefix = format!(".{}.tmp-", name.to_string_lossy());
    remove_stale_temps(&dir, &temp_prefix);
    let tmp = dir.join(format!("{temp_prefix}{}", random_suffix()));
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

/// Best effort: a temporary that cannot be removed now is tried again on the
/// next write, and never stands in the way of this one.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .is_some_and(|suffix| {
                suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
            })
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMP);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
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
