//! One run at a time per state entry: `backup` and `restore` of the same entry
//! (from the daemon, a manual run, or boot) must not interleave, or a backup
//! could read a tree while a restore swaps it. The lock is an `flock` on
//! `<parent>/.rehost-<name>.lock`, released when the process ends, even on
//! `kill -9`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::fsutil;

pub struct StateLock {
    _lock: Option<Flock<File>>,
}

pub fn lock_path(target: &Path, name: &str) -> PathBuf {
    fsutil::parent_dir(target).join(format!(".rehost-{name}.lock"))
}

impl StateLock {
    /// Takes the lock or fails at once if another run holds it. When the
    /// parent directory is not writable (backing up a path owned by someone
    /// else, read-only), the run proceeds unlocked: it cannot be raced by a
    /// restore, which needs that same write access.
    pub fn acquire(target: &Path, name: &str, required: bool) -> Result<Self> {
        let path = lock_path(target, name);
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e)
                if !required
                    && matches!(
                        e.kind(),
                        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                    ) =>
            {
                return Ok(StateLock { _lock: None });
            }
            Err(e) => return Err(Error::io(format!("open lock file {}", path.display()), e)),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StateLock { _lock: Some(lock) }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Refused(format!(
                "another rehost run is working on state `{name}` (lock {} is held)",
                path.display()
            ))),
            Err((_, errno)) => Err(Error::io(
                format!("lock {}", path.display()),
                io::Error::from(errno),
            )),
        }
    }
}
