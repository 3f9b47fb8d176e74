//! Root-safe filesystem work: every step of a restore, a pull, a lock or a
//! metrics write goes through a [`Dir`], a directory file descriptor, and
//! names things relative to it. This is the one place where the rule "never
//! follow a path another user can change" is enforced.
//!
//! Why: cloud-init makes `/srv` `root:rehost 0775` and `/srv/acme` owned by
//! `rehost`, and `rehost boot` restores as root. A path such as
//! `/srv/acme/.rehost-staging-acme-1234/x` is resolved again by the kernel at
//! every call, so a `rehost` process that swaps one of its components for a
//! symlink between two calls makes root write, chmod or chown anywhere.
//!
//! Invariants:
//! - Opening a directory by path ([`Dir::open`], [`Dir::open_or_create`])
//!   walks it from `/` (or the working directory) one component at a time
//!   with `O_NOFOLLOW|O_DIRECTORY`. A symlink on the way is followed only
//!   when it lies in a directory that no one but root or the running user can
//!   write (its owner is one of them and it has no group/other write bit):
//!   such a link is the administrator's choice (`/var/run -> /run`), and its
//!   target is walked by the same rule. A symlink in a directory another
//!   user can write is refused. So nothing is assumed about the ancestors of
//!   a target: `/srv` may be group-writable, `/srv/acme` owned by another
//!   user, and the walk still never lands outside the real path.
//! - Below a `Dir`, paths are relative, made of plain names only, and are
//!   resolved with `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`, or (kernels
//!   before 5.6, or a seccomp filter that hides `openat2`) one component at a
//!   time with `O_NOFOLLOW`: no symlink is ever followed below a `Dir`.
//! - Files are created `O_CREAT|O_EXCL|O_NOFOLLOW` (locks: `O_CREAT|O_NOFOLLOW`
//!   and refused unless a regular file); directories with `mkdirat` and then
//!   opened `O_NOFOLLOW`; modes, owners and times are set through the opened
//!   descriptor (`fchmod`, `fchown`, `futimens`) or with `AT_SYMLINK_NOFOLLOW`;
//!   renames are `renameat2` between descriptors; removal is `unlinkat` below
//!   descriptors opened `O_NOFOLLOW`, so a recursive remove never leaves the
//!   tree it was given.
//! - What another user who can write a directory can still do (rename an
//!   entry we created away, put a symlink in its place) can only make an
//!   operation fail or act on the renamed object itself, never on anything
//!   outside the directory we hold.
//!
//! Why nix and not cap-std or rustix: nix (already a dependency) exposes every
//! call needed, `openat2` with `RESOLVE_*`, `renameat2` with `RENAME_EXCHANGE`
//! and `RENAME_NOREPLACE`, `fchownat(AT_SYMLINK_NOFOLLOW)`, `syncfs`,
//! `fstatvfs`, without `unsafe` in this crate. cap-std gives the same
//! "beneath a directory" guarantee but has no exchange rename, chown or
//! syncfs, so nix would still be needed beside it, with a second view of the
//! same descriptors and a larger dependency tree; rustix would duplicate nix.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{
    openat, openat2, readlinkat, renameat2, AtFlags, OFlag, OpenHow, RenameFlags, ResolveFlag,
    AT_FDCWD,
};
use nix::sys::stat::{
    fchmod, fstat, fstatat, futimens, mkdirat, utimensat, FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Longest chain of trusted symlinks followed while opening a path (as the kernel's).
const MAX_SYMLINKS: usize = 40;

/// A temporary of [`Dir::write_atomic`] older than this was left by a process
/// that died before its rename; a live writer renames within milliseconds.
const STALE_TEMP: Duration = Duration::from_secs(60);

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// For the directories a path walk only passes through: search permission
/// is enough, as for the kernel's own walk.
fn path_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

#[cfg(test)]
thread_local! {
    /// Tests of the component-by-component path, as on kernels without openat2.
    static HIDE_OPENAT2: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn openat2_hidden() -> bool {
    #[cfg(test)]
    if HIDE_OPENAT2.with(std::cell::Cell::get) {
        return true;
    }
    false
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// An open directory: everything is done relative to it. `path` is where it
/// was when opened, for messages only; the descriptor stays on the same
/// directory whatever happens to that path afterwards.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The identity of a filesystem object, to check that a name still refers to
/// what we created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident {
    dev: u64,
    ino: u64,
}

impl Ident {
    fn of(st: &FileStat) -> Ident {
        Ident {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// What kind of object a name refers to (never following a symlink).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// `lstat` of an entry, the fields rehost looks at.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub uid: u32,
    pub mode: u32,
    pub ident: Ident,
}

impl Meta {
    fn of(st: &FileStat) -> Meta {
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let kind = if fmt == SFlag::S_IFREG {
            Kind::File
        } else if fmt == SFlag::S_IFDIR {
            Kind::Dir
        } else if fmt == SFlag::S_IFLNK {
            Kind::Symlink
        } else {
            Kind::Other
        };
        Meta {
            kind,
            size: st.st_size.max(0) as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
            ident: Ident::of(st),
        }
    }
}

/// Checks that `rel` is a relative path of plain names and gives them.
fn plain_names(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ))
            }
        }
    }
    Ok(names)
}

/// Whether a symlink found in the directory `st` can be trusted: only root
/// or the running user can have put it there.
fn trusted_dir(st: &FileStat) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    (st.st_uid == 0 || st.st_uid == euid) && st.st_mode & 0o022 == 0
}

fn timespec(secs: i64) -> TimeSpec {
    TimeSpec::new(secs, 0)
}

impl Dir {
    /// Opens the directory `path`, walking it component by component without
    /// following a symlink another user could have planted (see the module
    /// header).
    pub fn open(path: &Path) -> io::Result<Dir> {
        walk(path, None)
    }

    /// Like [`Dir::open`], creating missing directories with `mode` (minus the
    /// umask), as `mkdir -p` does.
    pub fn open_or_create(path: &Path, mode: u32) -> io::Result<Dir> {
        walk(path, Some(mode))
    }

    /// Where this directory was when opened (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another descriptor of the same directory (for another thread).
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Opens `rel` below this directory with `flags`, following no symlink
    /// at all, not even as the last component.
    fn open_beneath(&self, rel: &Path, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        let names = plain_names(rel)?;
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if names.is_empty() {
            return openat(self.fd.as_fd(), ".", flags, Mode::from_bits_truncate(mode))
                .map_err(errno);
        }
        let mut how = OpenHow::new().flags(flags).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        if flags.contains(OFlag::O_CREAT) {
            how = how.mode(Mode::from_bits_truncate(mode));
        }
        let tried = if openat2_hidden() {
            Err(Errno::ENOSYS)
        } else {
            openat2(self.fd.as_fd(), rel, how)
        };
        match tried {
            Err(Errno::ENOSYS) => {}
            other => return other.map_err(errno),
        }
        // No openat2: the same guarantee, one component at a time.
        let (last, parents) = names
            .split_last()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut held: Option<OwnedFd> = None;
        for name in parents {
            let at = held.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            held = Some(openat(at, *name, dir_flags(), Mode::empty()).map_err(errno)?);
        }
        let at = held.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        openat(at, *last, flags, Mode::from_bits_truncate(mode)).map_err(errno)
    }

    /// Runs `f` with the directory holding `rel` and `rel`'s last name.
    fn at_parent<T>(
        &self,
        rel: &Path,
        f: impl FnOnce(BorrowedFd<'_>, &OsStr) -> nix::Result<T>,
    ) -> io::Result<T> {
        let names = plain_names(rel)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
        };
        if parents.is_empty() {
            return f(self.fd.as_fd(), last).map_err(errno);
        }
        let parent: PathBuf = parents.iter().collect();
        let fd = self.open_beneath(&parent, dir_flags(), 0)?;
        f(fd.as_fd(), last).map_err(errno)
    }

    /// The directory `rel` below this one (`""`: this one again).
    pub fn open_dir(&self, rel: &Path) -> io::Result<Dir> {
        let fd = self.open_beneath(rel, dir_flags(), 0)?;
        Ok(Dir {
            fd,
            path: self.path.join(rel),
        })
    }

    /// Creates the directory `rel` (its parent must exist) with exactly
    /// `mode`, and opens it. Fails if anything is already there.
    pub fn create_dir(&self, rel: &Path, mode: u32) -> io::Result<Dir> {
        self.at_parent(rel, |at, name| mkdirat(at, name, Mode::S_IRWXU))?;
        let dir = self.open_dir(rel)?;
        // Between mkdirat and open, whoever can write this directory could
        // have put another directory under the name; only we can have made
        // one that we own.
        if dir.meta()?.uid != nix::unistd::geteuid().as_raw() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} was replaced by another user's directory as it was created",
                    dir.path.display()
                ),
            ));
        }
        // Created 0700 and narrowed or widened only through the descriptor,
        // so no one else can enter it before it has its final mode.
        fchmod(dir.fd.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)?;
        Ok(dir)
    }

    /// `mkdir -p rel` below this directory: every existing component must be
    /// a real directory; new ones get `mode` minus the umask.
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> io::Result<Dir> {
        let names = plain_names(rel)?;
        let mut cur = self.try_clone()?;
        for name in names {
            let fd = match openat(cur.fd.as_fd(), name, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(cur.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(errno(e)),
                    }
                    openat(cur.fd.as_fd(), name, dir_flags(), Mode::empty()).map_err(errno)?
                }
                Err(e) => return Err(errno(e)),
            };
            cur = Dir {
                fd,
                path: cur.path.join(name),
            };
        }
        Ok(cur)
    }

    /// Creates the regular file `rel` for writing; fails if anything (a
    /// symlink included) is already there.
    pub fn create_file(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let fd = self.open_beneath(rel, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, mode)?;
        Ok(File::from(fd))
    }

    /// Opens the regular file `rel` for reading; anything else (a symlink, a
    /// FIFO that would block) is refused.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let fd = self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0)?;
        regular(fd, &self.path.join(rel))
    }

    /// Opens (creating it if needed) the lock file `name` for `flock`. A
    /// symlink or anything but a regular file in its place is refused.
    pub fn open_lock(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let fd = self.open_beneath(
            Path::new(name),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NONBLOCK,
            mode,
        )?;
        regular(fd, &self.path.join(name))
    }

    /// `lstat` of `rel`; `None` if nothing is there.
    pub fn stat(&self, rel: &Path) -> io::Result<Option<Meta>> {
        match self.at_parent(rel, |at, name| {
            fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        }) {
            Ok(st) => Ok(Some(Meta::of(&st))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `fstat` of this directory.
    pub fn meta(&self) -> io::Result<Meta> {
        Ok(Meta::of(&fstat(self.fd.as_fd()).map_err(errno)?))
    }

    /// The names in this directory (`.` and `..` excluded), unsorted.
    pub fn entries(&self) -> io::Result<Vec<OsString>> {
        let mut d = nix::dir::Dir::openat(self.fd.as_fd(), ".", dir_flags(), Mode::empty())
            .map_err(errno)?;
        let mut out = Vec::new();
        for entry in d.iter() {
            let entry = entry.map_err(errno)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(out)
    }

    /// Renames `from` (below this directory) to `to` below `to_dir`; `flags`
    /// may ask for an exchange or forbid replacing.
    pub fn rename(
        &self,
        from: &Path,
        to_dir: &Dir,
        to: &Path,
        flags: RenameFlags,
    ) -> io::Result<()> {
        self.at_parent(from, |from_at, from_name| {
            to_dir
                .at_parent(to, |to_at, to_name| {
                    renameat2(from_at, from_name, to_at, to_name, flags)
                })
                .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))
        })
    }

    /// Creates the symlink `rel` holding `target` (never resolved here).
    pub fn symlink(&self, target: &Path, rel: &Path) -> io::Result<()> {
        self.at_parent(rel, |at, name| symlinkat(target, at, name))
    }

    /// Hard-links the existing `from` (not followed if a symlink) as `to`.
    pub fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.at_parent(from, |from_at, from_name| {
            self.at_parent(to, |to_at, to_name| {
                linkat(from_at, from_name, to_at, to_name, AtFlags::empty())
            })
            .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))
        })
    }

    /// Changes the owner of `rel` itself (a symlink is not followed).
    pub fn chown_at(&self, rel: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.at_parent(rel, |at, name| {
            fchownat(
                at,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    /// Sets atime and mtime of `rel` itself (a symlink is not followed).
    pub fn set_mtime_at(&self, rel: &Path, mtime: i64) -> io::Result<()> {
        let t = timespec(mtime);
        self.at_parent(rel, |at, name| {
            utimensat(at, name, &t, &t, UtimensatFlags::NoFollowSymlink)
        })
    }

    /// Sets the mode of the regular file or directory `rel`, through a
    /// descriptor (Linux has no `lchmod`).
    pub fn chmod_at(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let fd = match self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0) {
            // A write-only file, restored unprivileged: opening it for
            // writing (without O_TRUNC) changes nothing either.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                self.open_beneath(rel, OFlag::O_WRONLY | OFlag::O_NONBLOCK, 0)?
            }
            other => other?,
        };
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)
    }

    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        fchmod(self.fd.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)
    }

    pub fn set_owner(&self, uid: u32, gid: u32) -> io::Result<()> {
        fchown(
            self.fd.as_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .map_err(errno)
    }

    pub fn set_mtime(&self, mtime: i64) -> io::Result<()> {
        let t = timespec(mtime);
        futimens(self.fd.as_fd(), &t, &t).map_err(errno)
    }

    /// Removes the entry `rel`: a file or symlink, or a directory with
    /// everything below it, never following a symlink. Already gone is fine.
    pub fn remove(&self, rel: &Path) -> io::Result<()> {
        let names = plain_names(rel)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
        };
        let parent = if parents.is_empty() {
            self.try_clone()?
        } else {
            match self.open_dir(&parents.iter().collect::<PathBuf>()) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        parent.remove_name(last)
    }

    fn remove_name(&self, name: &OsStr) -> io::Result<()> {
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
            Err(e) => return Err(errno(e)),
        }
        let sub = match self.open_dir(Path::new(name)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        sub.clear()?;
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// Removes everything in this directory, keeping the directory.
    pub fn clear(&self) -> io::Result<()> {
        for name in self.entries()? {
            self.remove_name(&name)?;
        }
        Ok(())
    }

    /// Removes the empty directory `rel`.
    pub fn remove_dir(&self, rel: &Path) -> io::Result<()> {
        self.at_parent(rel, |at, name| unlinkat(at, name, UnlinkatFlags::RemoveDir))
    }

    /// Whether `rel` is still the object `ident` (not replaced or renamed away).
    pub fn holds(&self, rel: &Path, ident: Ident) -> io::Result<bool> {
        Ok(self.stat(rel)?.is_some_and(|m| m.ident == ident))
    }

    /// Makes renames and creations in this directory durable.
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(errno)
    }

    /// Flushes every dirty page of this directory's filesystem: one call
    /// instead of an fsync per restored file.
    pub fn syncfs(&self) -> io::Result<()> {
        nix::unistd::syncfs(self.fd.as_fd()).map_err(errno)
    }

    /// Bytes available to unprivileged users on this directory's filesystem.
    pub fn available_bytes(&self) -> io::Result<u64> {
        let st = nix::sys::statvfs::fstatvfs(self.fd.as_fd()).map_err(errno)?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Writes `bytes` to `name` atomically with exactly `mode`: an exclusive
    /// temporary in this directory, fsynced, renamed over `name` (a symlink
    /// there is replaced, never followed), the directory fsynced. Temporaries
    /// a killed writer of the same name left are removed first.
    pub fn write_atomic(&self, name: &OsStr, bytes: &[u8], mode: u32) -> io::Result<()> {
        if name.is_empty() || name.as_bytes().contains(&b'/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name",
            ));
        }
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        self.remove_stale_temps(&prefix);
        let tmp = PathBuf::from(format!("{prefix}{}", crate::fsutil::random_suffix()));
        let result = (|| {
            let mut f = self.create_file(&tmp, mode)?;
            f.write_all(bytes)?;
            // The umask may have narrowed `mode`; the caller asked for exactly this one.
            fchmod(f.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)?;
            f.sync_all()?;
            drop(f);
            self.rename(&tmp, self, Path::new(name), RenameFlags::empty())?;
            self.sync()
        })();
        if result.is_err() {
            let _ = unlinkat(self.fd.as_fd(), &tmp, UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Best effort: a temporary that cannot be removed now is tried again on
    /// the next write, and never stands in the way of this one.
    fn remove_stale_temps(&self, prefix: &str) {
        let Ok(names) = self.entries() else {
            return;
        };
        let now = SystemTime::now();
        for name in names {
            let ours = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .is_some_and(|suffix| {
                    suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
                });
            if !ours {
                continue;
            }
            let stale = self.stat(Path::new(&name)).ok().flatten().is_some_and(|m| {
                let modified = UNIX_EPOCH + Duration::from_secs(m.mtime.max(0) as u64);
                now.duration_since(modified)
                    .is_ok_and(|age| age > STALE_TEMP)
            });
            if stale {
                let _ = unlinkat(
                    self.fd.as_fd(),
                    name.as_os_str(),
                    UnlinkatFlags::NoRemoveDir,
                );
            }
        }
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The descriptor as a `File` if it is a regular file.
fn regular(fd: OwnedFd, path: &Path) -> io::Result<File> {
    let st = fstat(fd.as_fd()).map_err(errno)?;
    if Meta::of(&st).kind != Kind::File {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(File::from(fd))
}

/// Opens `path` from `/` (or the working directory), one component at a time
/// (see the module header for which symlinks are followed).
fn walk(path: &Path, create: Option<u32>) -> io::Result<Dir> {
    let refuse = |msg: String| io::Error::other(msg);
    let start = if path.is_absolute() { "/" } else { "." };
    let root = openat(AT_FDCWD, start, path_flags(), Mode::empty()).map_err(errno)?;
    // The directories walked so far: `..` goes back to the one we came
    // from, as the kernel's does.
    let mut stack: Vec<OwnedFd> = vec![root];
    let mut todo: std::collections::VecDeque<OsString> = std::collections::VecDeque::new();
    fn push_front(todo: &mut std::collections::VecDeque<OsString>, p: &Path) {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push_front(n.to_os_string()),
                Component::ParentDir => todo.push_front(OsString::from("..")),
                _ => {}
            }
        }
    }
    push_front(&mut todo, path);
    let mut links = 0usize;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let cur = stack
            .last()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let opened = match openat(cur.as_fd(), name.as_os_str(), path_flags(), Mode::empty()) {
            Err(Errno::ENOENT) if create.is_some() => {
                let mode = Mode::from_bits_truncate(create.unwrap_or(0o755));
                match mkdirat(cur.as_fd(), name.as_os_str(), mode) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(errno(e)),
                }
                openat(cur.as_fd(), name.as_os_str(), path_flags(), Mode::empty())
            }
            other => other,
        };
        match opened {
            Ok(fd) => stack.push(fd),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                let st = fstatat(cur.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(errno)?;
                if Meta::of(&st).kind != Kind::Symlink {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!(
                            "{}: {} is not a directory",
                            path.display(),
                            name.to_string_lossy()
                        ),
                    ));
                }
                let dir_st = fstat(cur.as_fd()).map_err(errno)?;
                if !trusted_dir(&dir_st) {
                    return Err(refuse(format!(
                        "{}: {} is a symlink in a directory that another user can write \
                         (owner uid {}, mode {:o}); refusing to follow it",
                        path.display(),
                        name.to_string_lossy(),
                        dir_st.st_uid,
                        dir_st.st_mode & 0o7777
                    )));
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(errno(Errno::ELOOP));
                }
                let target =
                    PathBuf::from(readlinkat(cur.as_fd(), name.as_os_str()).map_err(errno)?);
                if target.is_absolute() {
                    stack.truncate(1);
                    let root = openat(AT_FDCWD, "/", path_flags(), Mode::empty()).map_err(errno)?;
                    stack[0] = root;
                }
                push_front(&mut todo, &target);
            }
            Err(e) => return Err(errno(e)),
        }
    }
    let walked = stack
        .pop()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    // Reopened through its own descriptor (`.` is no path anyone can
    // change) for listing, fsync and fchmod. A directory we may only
    // search stays an `O_PATH` descriptor: enough to open a lock file in it.
    let fd = match openat(walked.as_fd(), ".", dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::EACCES) => walked,
        Err(e) => return Err(errno(e)),
    };
    Ok(Dir {
        fd,
        path: path.to_path_buf(),
    })
}

/// Changes the owner of `dir` and of everything below it, through
/// descriptors and `AT_SYMLINK_NOFOLLOW` (symlinks themselves are chowned).
pub fn chown_tree(dir: &Dir, uid: u32, gid: u32) -> io::Result<()> {
    dir.set_owner(uid, gid)?;
    for name in dir.entries()? {
        let rel = Path::new(&name);
        dir.chown_at(rel, uid, gid)?;
        if dir.stat(rel)?.is_some_and(|m| m.kind == Kind::Dir) {
            chown_tree(&dir.open_dir(rel)?, uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tree() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        (t, d)
    }

    #[test]
    fn symlinked_components_below_a_dir_are_refused() {
        symlinks_refused();
    }

    #[test]
    fn symlinked_components_are_refused_without_openat2_too() {
        HIDE_OPENAT2.with(|h| h.set(true));
        symlinks_refused();
        a_renamed_directory_is_still_the_one_written();
    }

    fn symlinks_refused() {
        let (t, d) = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), t.path().join("flink")).unwrap();
        assert!(d.open_dir(Path::new("link")).is_err());
        assert!(d.create_file(Path::new("link/x"), 0o600).is_err());
        assert!(d.create_file(Path::new("flink"), 0o600).is_err());
        assert!(d.create_dir_all(Path::new("link/a/b"), 0o755).is_err());
        assert!(d.create_dir(Path::new("link/a"), 0o755).is_err());
        assert!(d.open_file(Path::new("flink")).is_err());
        assert!(d.symlink(Path::new("/etc"), Path::new("link/s")).is_err());
        assert!(d.chmod_at(Path::new("link"), 0o777).is_err());
        assert!(d.open_lock(OsStr::new("flink"), 0o600).is_err());
        d.write_atomic(OsStr::new("flink"), b"x", 0o644).unwrap();
        // `..` and absolute paths are not relative names.
        assert!(d.open_dir(Path::new("../")).is_err());
        assert!(d.create_file(Path::new("/tmp/x"), 0o600).is_err());
        assert!(d.create_dir_all(Path::new("real/../../x"), 0o755).is_err());
        // Nothing was created outside, and the planted symlink was replaced,
        // not written through.
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(fs::symlink_metadata(t.path().join("flink"))
            .unwrap()
            .is_file());
    }

    #[test]
    fn a_planted_lock_symlink_creates_nothing() {
        let (t, d) = tree();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("created-by-root");
        std::os::unix::fs::symlink(&victim, t.path().join(".rehost-acme.lock")).unwrap();
        let e = d
            .open_lock(OsStr::new(".rehost-acme.lock"), 0o600)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ELOOP), "{e}");
        assert!(!victim.exists());
        fs::create_dir(t.path().join("dir.lock")).unwrap();
        assert!(d.open_lock(OsStr::new("dir.lock"), 0o600).is_err());
        let f = d.open_lock(OsStr::new("ok.lock"), 0o600).unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn modes_owners_and_times_go_through_descriptors() {
        let (t, d) = tree();
        let sub = d.create_dir(Path::new("staging"), 0o711).unwrap();
        assert_eq!(
            fs::metadata(t.path().join("staging")).unwrap().mode() & 0o7777,
            0o711
        );
        assert!(
            sub.create_file(Path::new("a/f"), 0o600).is_err(),
            "a missing parent is not created by create_file"
        );
        let nested = sub.create_dir_all(Path::new("a/b"), 0o755).unwrap();
        nested
            .create_file(Path::new("f"), 0o640)
            .unwrap()
            .write_all(b"hi")
            .unwrap();
        sub.chmod_at(Path::new("a/b/f"), 0o604).unwrap();
        sub.set_mtime_at(Path::new("a/b/f"), 1_600_000_000).unwrap();
        sub.symlink(Path::new("b/f"), Path::new("a/l")).unwrap();
        let meta = fs::metadata(t.path().join("staging/a/b/f")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o604);
        assert_eq!(meta.mtime(), 1_600_000_000);
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        // Chowning to ourselves works unprivileged; as root, to someone else too.
        let (to_uid, to_gid) = if uid == 0 { (65534, 65534) } else { (uid, gid) };
        chown_tree(&sub, to_uid, to_gid).unwrap();
        for p in [
            "staging",
            "staging/a",
            "staging/a/b",
            "staging/a/b/f",
            "staging/a/l",
        ] {
            let m = fs::symlink_metadata(t.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (to_uid, to_gid), "{p}");
        }
        sub.set_mode(0o750).unwrap();
        sub.set_mtime(1_500_000_000).unwrap();
        let m = fs::metadata(t.path().join("staging")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o750, 1_500_000_000));
    }

    #[test]
    fn a_renamed_directory_is_still_the_one_written() {
        let (t, d) = tree();
        let staging = d.create_dir(Path::new("staging"), 0o700).unwrap();
        let ident = d.stat(Path::new("staging")).unwrap().unwrap().ident;
        // Another user moves it away and puts a symlink in its place.
        let outside = tempfile::tempdir().unwrap();
        fs::rename(t.path().join("staging"), t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("staging")).unwrap();
        staging.create_file(Path::new("x"), 0o600).unwrap();
        assert!(t.path().join("moved/x").exists());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!d.holds(Path::new("staging"), ident).unwrap());
        assert!(d.holds(Path::new("moved"), ident).unwrap());
    }

    #[test]
    fn remove_never_follows_symlinks() {
        let (t, d) = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "x").unwrap();
        fs::create_dir_all(t.path().join("gone/sub")).unwrap();
        fs::write(t.path().join("gone/sub/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("gone/sub/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("top-link")).unwrap();
        d.remove(Path::new("gone")).unwrap();
        d.remove(Path::new("top-link")).unwrap();
        d.remove(Path::new("never-there")).unwrap();
        assert_eq!(d.entries().unwrap().len(), 0);
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn open_walks_trusted_symlinks_only() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("real")).unwrap();
        fs::write(t.path().join("real/f"), "x").unwrap();
        std::os::unix::fs::symlink("real", t.path().join("alias")).unwrap();
        // Our own 0700 temp dir: a symlink in it is trusted.
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let d = Dir::open(&t.path().join("alias")).unwrap();
        assert!(d.open_file(Path::new("f")).is_ok());
        let d = Dir::open(&t.path().join("real/../alias/./")).unwrap();
        assert!(d.stat(Path::new("f")).unwrap().is_some());
        // Group-writable: someone else could have planted it.
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o770)).unwrap();
        let e = Dir::open(&t.path().join("alias")).unwrap_err();
        assert!(e.to_string().contains("refusing to follow"), "{e}");
        assert!(Dir::open(&t.path().join("real")).is_ok());
        let e = Dir::open(&t.path().join("real/f")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotADirectory);
        // mkdir -p.
        let made = Dir::open_or_create(&t.path().join("new/deeper"), 0o755).unwrap();
        assert!(made.meta().unwrap().kind == Kind::Dir);
        assert!(t.path().join("new/deeper").is_dir());
    }

    #[test]
    fn rename_exchange_and_noreplace_between_descriptors() {
        let (t, d) = tree();
        fs::create_dir(t.path().join("a")).unwrap();
        fs::create_dir(t.path().join("b")).unwrap();
        fs::write(t.path().join("a/x"), "").unwrap();
        d.rename(
            Path::new("a"),
            &d,
            Path::new("b"),
            RenameFlags::RENAME_EXCHANGE,
        )
        .unwrap();
        assert!(t.path().join("b/x").exists());
        let e = d
            .rename(
                Path::new("a"),
                &d,
                Path::new("b"),
                RenameFlags::RENAME_NOREPLACE,
            )
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let sub = d.open_dir(Path::new("b")).unwrap();
        sub.rename(
            Path::new("x"),
            &d,
            Path::new("y"),
            RenameFlags::RENAME_NOREPLACE,
        )
        .unwrap();
        assert!(t.path().join("y").exists());
    }

    #[test]
    fn write_atomic_replaces_sets_mode_and_removes_stale_temporaries() {
        let (t, d) = tree();
        let stale = t.path().join(".m.prom.tmp-0badf00d");
        let fresh = t.path().join(".m.prom.tmp-12345678");
        fs::write(&stale, "half").unwrap();
        fs::write(&fresh, "half").unwrap();
        filetime::set_file_mtime(&stale, filetime::FileTime::from_unix_time(1_700_000_000, 0))
            .unwrap();
        d.write_atomic(OsStr::new("m.prom"), b"one", 0o600).unwrap();
        d.write_atomic(OsStr::new("m.prom"), b"two", 0o644).unwrap();
        assert_eq!(fs::read(t.path().join("m.prom")).unwrap(), b"two");
        assert_eq!(
            fs::metadata(t.path().join("m.prom")).unwrap().mode() & 0o777,
            0o644
        );
        assert!(!stale.exists() && fresh.exists());
        assert!(d.write_atomic(OsStr::new("a/b"), b"", 0o644).is_err());
    }
}
