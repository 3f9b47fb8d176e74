//! One run at a time per state entry: `backup` and `restore` of the same entry
//! (from the daemon, a manual run, or boot) must not interleave, or a backup
//! could read a tree while a restore swaps it. The lock is an `flock` on
//! `<parent>/.rehost-<name>.lock`, released when the process ends, even on
//! `kill -9`.
//!
//! The parent may be writable by another user (`/srv/acme` belongs to
//! `rehost`, restore runs as root), so the lock file is opened relative to the
//! parent's descriptor with `O_CREAT|O_NOFOLLOW` and refused unless it is a
//! regular file: a planted symlink makes the run fail, never makes root create
//! or truncate a file elsewhere. Mutual exclusion holds between runs that see
//! the same lock file; a user who can write the parent can always delete it,
//! which only that user's own runs could suffer from.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::safefs::Dir;

pub struct StateLock {
    _lock: Option<Flock<File>>,
}

pub fn lock_path(target: &Path, name: &str) -> PathBuf {
    fsutil::parent_dir(target).join(lock_name(name))
}

fn lock_name(name: &str) -> OsString {
    OsString::from(format!(".rehost-{name}.lock"))
}

impl StateLock {
    /// Takes the lock or fails at once if another run holds it. When the
    /// parent directory is not writable (backing up a path owned by someone
    /// else, read-only), the run proceeds unlocked: it cannot be raced by a
    /// restore, which needs that same write access.
    pub fn acquire(target: &Path, name: &str, required: bool) -> Result<Self> {
        let parent = fsutil::parent_dir(target);
        let dir =
            Dir::open(&parent).map_err(|e| Error::io(format!("open {}", parent.display()), e))?;
        Self::acquire_in(&dir, name, required)
    }

    /// [`StateLock::acquire`] for a target in the already open `parent`.
    pub fn acquire_in(parent: &Dir, name: &str, required: bool) -> Result<Self> {
        let file_name = lock_name(name);
        let path = parent.path().join(&file_name);
        let file = match parent.open_lock(&file_name, 0o600) {
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
