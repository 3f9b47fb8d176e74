//! Safe extraction of a backup archive into a fresh staging directory.
//!
//! Invariants, whatever the archive holds:
//! - nothing is written outside the staging directory: absolute paths, `..`,
//!   entries below a symlink, and links pointing outside the target are refused;
//!   and every entry is created relative to the staging directory's descriptor
//!   ([`Dir`]) with no symlink followed, so even another process that renames
//!   the staging directory or plants symlinks meanwhile cannot redirect a write;
//! - only regular files, directories, symlinks and hard links to files of the
//!   same archive are accepted: device nodes and FIFOs are refused;
//! - setuid/setgid bits are dropped (a restore running as root must not plant
//!   privileged binaries from a bucket);
//! - directory modes and mtimes are applied last, so read-only directories and
//!   child writes cannot interfere.
//!
//! The same code validates archives without writing anything ([`Sink::Check`]),
//! which is what `verify` uses.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tar::{Archive, EntryType};

use crate::progress::Progress;
use crate::safefs::Dir;

use super::direct::{self, DirectBuf};
use super::writers::{self, FileMeta, WriterPool, SMALL_FILE};
use super::ArchiveError;

/// Where extracted entries go.
pub enum Sink<'a> {
    /// Into this (existing, empty) directory.
    Dir(&'a Dir),
    /// Nowhere: parse and validate every entry and read all data.
    Check,
}

pub struct ExtractOptions {
    /// Restore numeric owners from the archive (only possible as root).
    pub preserve_owner: bool,
    /// The final location the staging directory will be renamed to. Absolute
    /// symlink targets are accepted only if they point inside it.
    pub final_root: Option<PathBuf>,
    /// Told of each regular file extracted (or checked).
    pub progress: Option<Arc<Progress>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
}

/// Extracts every entry of the tar stream `reader` and returns the reader
/// positioned just after the end-of-archive marker.
pub fn extract<R: Read>(
    reader: R,
    sink: Sink<'_>,
    opts: &ExtractOptions,
) -> Result<(ExtractStats, R), ArchiveError> {
    let mut archive = Archive::new(reader);
    let pool = match sink {
        Sink::Dir(root) => Some(WriterPool::new(Arc::new(
            root.try_clone()
                .map_err(|e| ArchiveError::write(root.path(), e))?,
        ))?),
        Sink::Check => None,
    };
    let mut state = State {
        sink,
        opts,
        pool,
        stats: ExtractStats::default(),
        symlinks: HashSet::new(),
        seen: Seen::default(),
        known_dirs: HashSet::new(),
        dirs: Vec::new(),
        direct: None,
    };
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        state.entry(&mut entry)?;
    }
    if let Some(pool) = state.pool.take() {
        pool.finish()?;
    }
    state.finish_dirs()?;
    Ok((state.stats, archive.into_inner()))
}

/// The non-directory entries extracted so far, by a 64-bit keyed hash of
/// their path rather than the path itself: a restore of a million files
/// keeps 16 bytes per entry, not a path and its allocation. The hash keys are
/// random per run, so the one-in-tens-of-millions chance that two paths of
/// one archive collide (which would refuse the archive as holding an entry
/// twice) does not repeat on the next attempt.
#[derive(Default)]
struct Seen {
    keys: std::collections::hash_map::RandomState,
    entries: std::collections::HashMap<u64, bool>,
}

impl Seen {
    fn key(&self, rel: &Path) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hash_one(rel)
    }

    fn contains(&self, rel: &Path) -> bool {
        self.entries.contains_key(&self.key(rel))
    }

    fn is_file(&self, rel: &Path) -> bool {
        self.entries.get(&self.key(rel)) == Some(&true)
    }

    fn insert(&mut self, rel: &Path, file: bool) {
        let key = self.key(rel);
        self.entries.insert(key, file);
    }
}

struct DirMeta {
    rel: PathBuf,
    mode: u32,
    mtime: i64,
    owner: Option<(u32, u32)>,
}

struct State<'a, 'o> {
    sink: Sink<'a>,
    opts: &'o ExtractOptions,
    /// Writes small files in parallel (only when extracting into a directory).
    pool: Option<WriterPool>,
    stats: ExtractStats,
    symlinks: HashSet<PathBuf>,
    /// Every entry but directories, and whether it is a file.
    seen: Seen,
    /// Directories already created, so that each is made once, not per file.
    known_dirs: HashSet<PathBuf>,
    dirs: Vec<DirMeta>,
    /// The buffer large files are written from, made at the first one.
    direct: Option<DirectBuf>,
}

/// Longest file name (one path component) Linux filesystems accept.
const MAX_NAME: usize = 255;

/// Turns an archive path into a relative path made of plain components only.
pub fn safe_relative(raw: &[u8]) -> Result<PathBuf, ArchiveError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.contains(&0) {
        return Err(ArchiveError::Hostile {
            path: shown(),
            reason: "contains a NUL byte".into(),
        });
    }
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            // No Linux filesystem holds such a name, so no backup of ours
            // does; refusing it here keeps `verify` and `restore` agreeing.
            Component::Normal(n) if n.len() > MAX_NAME => {
                return Err(ArchiveError::Hostile {
                    path: shown(),
                    reason: format!("has a name longer than {MAX_NAME} bytes"),
                })
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Hostile {
                    path: shown(),
                    reason: "is an absolute path".into(),
                })
            }
            Component::ParentDir => {
                return Err(ArchiveError::Hostile {
                    path: shown(),
                    reason: "contains `..`".into(),
                })
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(ArchiveError::Hostile {
            path: shown(),
            reason: "names no file".into(),
        });
    }
    Ok(out)
}

/// Whether a symlink at `rel` with `target` stays inside the root, resolving
/// lexically (entries below symlinks are refused separately, so lexical
/// resolution matches what the filesystem will do).
fn link_stays_inside(rel: &Path, target: &Path, final_root: Option<&Path>) -> bool {
    if target.is_absolute() {
        return match final_root.and_then(|root| target.strip_prefix(root).ok()) {
            Some(inner) => never_climbs_above(0, inner),
            None => false,
        };
    }
    // The link resolves from its own directory, `depth` levels below the root.
    let depth = rel.components().count().saturating_sub(1);
    never_climbs_above(depth, target)
}

/// Walks `path` from `depth` levels below the root; false if it ever goes
/// above the root or holds anything but plain names, `.` and `..`.
fn never_climbs_above(depth: usize, path: &Path) -> bool {
    let mut depth = depth as i64;
    for c in path.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Copies entry data, telling read failures (a corrupt archive) from write
/// failures (a full disk), which need different messages.
fn copy_entry<R: Read, W: io::Write>(
    entry: &mut R,
    out: &mut W,
    path: &Path,
) -> Result<u64, ArchiveError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::Read(e)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| ArchiveError::write(path, e))?;
        total += n as u64;
    }
}

impl State<'_, '_> {
    fn hostile(rel: &Path, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Hostile {
            path: rel.display().to_string(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let rel = safe_relative(&entry.path_bytes())?;
        if rel.ancestors().skip(1).any(|a| self.symlinks.contains(a)) {
            return Err(Self::hostile(&rel, "lies below a symlink of the archive"));
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(ArchiveError::Read)? & 0o1777;
        let mtime = header.mtime().map_err(ArchiveError::Read)? as i64;
        let owner = if self.opts.preserve_owner {
            Some((
                header.uid().map_err(ArchiveError::Read)? as u32,
                header.gid().map_err(ArchiveError::Read)? as u32,
            ))
        } else {
            None
        };
        if kind != EntryType::Directory && self.seen.contains(&rel) {
            return Err(Self::hostile(&rel, "appears twice in the archive"));
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                self.file(entry, &rel, mode, mtime, owner)?;
            }
            EntryType::Directory => {
                if self.seen.is_file(&rel) {
                    return Err(Self::hostile(&rel, "is both a file and a directory"));
                }
                self.mkdirs(&rel)?;
                self.dirs.push(DirMeta {
                    rel,
                    mode,
                    mtime,
                    owner,
                });
                self.stats.dirs += 1;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::hostile(&rel, "symlink without a target"))?;
                let target = PathBuf::from(OsStr::from_bytes(&target));
                if target.as_os_str().is_empty()
                    || !link_stays_inside(&rel, &target, self.opts.final_root.as_deref())
                {
                    return Err(Self::hostile(
                        &rel,
                        format!(
                            "is a symlink pointing outside the target ({})",
                            target.display()
                        ),
                    ));
                }
                if let Sink::Dir(root) = self.sink {
                    self.mkparents(&rel)?;
                    let path = root.path().join(&rel);
                    root.symlink(&target, &rel)
                        .map_err(|e| ArchiveError::write(&path, e))?;
                    if let Some((uid, gid)) = owner {
                        root.chown_at(&rel, uid, gid)
                            .map_err(|e| ArchiveError::write(&path, e))?;
                    }
                    root.set_mtime_at(&rel, mtime)
                        .map_err(|e| ArchiveError::write(&path, e))?;
                }
                self.seen.insert(&rel, false);
                self.symlinks.insert(rel);
                self.stats.symlinks += 1;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::hostile(&rel, "hard link without a target"))?;
                let target = safe_relative(&target).map_err(|_| {
                    Self::hostile(&rel, "is a hard link pointing outside the target")
                })?;
                if !self.seen.is_file(&target) {
                    return Err(Self::hostile(
                        &rel,
                        "is a hard link to something that is not a file of this archive",
                    ));
                }
                if let Sink::Dir(root) = self.sink {
                    self.mkparents(&rel)?;
                    if let Some(pool) = &self.pool {
                        pool.wait_idle()?;
                    }
                    let path = root.path().join(&rel);
                    root.hard_link(&target, &rel)
                        .map_err(|e| ArchiveError::write(&path, e))?;
                }
                self.seen.insert(&rel, true);
                self.stats.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block => {
                return Err(Self::hostile(&rel, "is a device node"))
            }
            EntryType::Fifo => return Err(Self::hostile(&rel, "is a FIFO")),
            other => {
                return Err(Self::hostile(
                    &rel,
                    format!("has unsupported entry type {:?}", other.as_byte() as char),
                ))
            }
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        mode: u32,
        mtime: i64,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ArchiveError> {
        let meta = FileMeta { mode, mtime, owner };
        let size = match self.sink {
            Sink::Check => io::copy(entry, &mut io::sink()).map_err(ArchiveError::Read)?,
            Sink::Dir(root) => {
                self.mkparents(rel)?;
                let path = root.path().join(rel);
                match &self.pool {
                    Some(pool) if entry.size() <= SMALL_FILE => {
                        let mut data = Vec::with_capacity(entry.size() as usize);
                        let n = copy_entry(entry, &mut data, &path)?;
                        pool.submit(rel.to_path_buf(), data, meta)?;
                        n
                    }
                    _ => {
                        let f = writers::create(root, rel)?;
                        let buf = self.direct.get_or_insert_with(DirectBuf::new);
                        let n = direct::copy(entry, &f, &path, buf)?;
                        writers::apply_meta(&f, &path, meta)?;
                        n
                    }
                }
            }
        };
        self.seen.insert(rel, true);
        self.stats.files += 1;
        self.stats.bytes += size;
        if let Some(p) = &self.opts.progress {
            p.add_files(1);
        }
        Ok(())
    }

    fn mkparents(&mut self, rel: &Path) -> Result<(), ArchiveError> {
        match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => self.mkdirs(p),
            _ => Ok(()),
        }
    }

    fn mkdirs(&mut self, rel: &Path) -> Result<(), ArchiveError> {
        if self.seen.is_file(rel) {
            return Err(Self::hostile(rel, "is both a file and a directory"));
        }
        if !self.known_dirs.insert(rel.to_path_buf()) {
            return Ok(());
        }
        if let Sink::Dir(root) = self.sink {
            // Parents were checked not to be symlinks of the archive, and
            // `create_dir_all` follows none anyway: this cannot leave `root`.
            root.create_dir_all(rel, 0o755)
                .map_err(|e| ArchiveError::write(&root.path().join(rel), e))?;
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let Sink::Dir(root) = self.sink else {
            return Ok(());
        };
        // Deepest first, so setting a parent's mtime is not undone by a child.
        self.dirs
            .sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
        for d in &self.dirs {
            let path = root.path().join(&d.rel);
            let write = |e| ArchiveError::write(&path, e);
            let dir = root.open_dir(&d.rel).map_err(write)?;
            if let Some((uid, gid)) = d.owner {
                dir.set_owner(uid, gid).map_err(write)?;
            }
            dir.set_mode(d.mode).map_err(write)?;
            dir.set_mtime(d.mtime).map_err(write)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_sanitized() {
        assert_eq!(safe_relative(b"./a/b").unwrap(), PathBuf::from("a/b"));
        let longest = format!("d/{}", "n".repeat(255));
        assert_eq!(
            safe_relative(longest.as_bytes()).unwrap(),
            PathBuf::from(&longest)
        );
        for bad in [
            &b"/etc/passwd"[..],
            b"a/../../x",
            b"..",
            b"",
            b"./",
            b"a\0b",
            "n".repeat(256).as_bytes(),
        ] {
            assert!(
                safe_relative(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn symlink_targets_are_resolved_lexically() {
        let inside = |rel: &str, t: &str| link_stays_inside(Path::new(rel), Path::new(t), None);
        assert!(inside("a", "b"));
        assert!(inside("d/a", "../b"));
        assert!(inside("d/e/a", "../../b"));
        assert!(!inside("a", "../b"));
        assert!(!inside("d/a", "../../b"));
        assert!(!inside("d/a", "/etc/passwd"));
        assert!(!inside("a", "x/../../y"));
        let root = Some(Path::new("/srv/www"));
        assert!(link_stays_inside(
            Path::new("a"),
            Path::new("/srv/www/x"),
            root
        ));
        assert!(!link_stays_inside(
            Path::new("a"),
            Path::new("/srv/wwwx"),
            root
        ));
        assert!(!link_stays_inside(
            Path::new("a"),
            Path::new("/srv/www/../etc"),
            root
        ));
    }
}
