//! A deterministic walk of a backup source. The fingerprint and the tar writer
//! both use it, so "unchanged" means exactly "the archive would hold the same
//! entries with the same metadata". Entries come in byte order of their names;
//! symlinks are never followed; the root itself is not an entry (its mode and
//! mtime go into the manifest).

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cancel::{self, CancellationToken};

/// What a source path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A single regular file, stored as one entry named after the file.
    File,
    /// A directory, stored as the entries below it.
    Dir,
}

/// One entry of the walk: its path relative to the archive root, and where it is.
pub struct WalkEntry<'a> {
    pub rel: &'a Path,
    pub abs: &'a Path,
    pub meta: &'a Metadata,
}

/// Looks at the source root: its kind and metadata. Refuses anything but a file
/// or a directory (a symlink root would back up whatever it points to today).
pub fn source_kind(root: &Path) -> io::Result<(SourceKind, Metadata)> {
    let meta = fs::symlink_metadata(root)?;
    if meta.is_dir() {
        Ok((SourceKind::Dir, meta))
    } else if meta.is_file() {
        Ok((SourceKind::File, meta))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is neither a regular file nor a directory",
                root.display()
            ),
        ))
    }
}

/// Calls `visit` for every entry of the source, parents before children.
pub fn walk(root: &Path, visit: &mut dyn FnMut(WalkEntry<'_>) -> io::Result<()>) -> io::Result<()> {
    let (kind, meta) = source_kind(root)?;
    match kind {
        SourceKind::File => {
            let name = root.file_name().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "source has no file name")
            })?;
            visit(WalkEntry {
                rel: Path::new(name),
                abs: root,
                meta: &meta,
            })
        }
        SourceKind::Dir => walk_dir(root, &mut PathBuf::new(), visit),
    }
}

fn walk_dir(
    dir: &Path,
    rel: &mut PathBuf,
    visit: &mut dyn FnMut(WalkEntry<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let abs = dir.join(&name);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            // Deleted between readdir and stat: it is not part of this backup.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("stat {}: {e}", abs.display()),
                ))
            }
        };
        rel.push(&name);
        visit(WalkEntry {
            rel,
            abs: &abs,
            meta: &meta,
        })?;
        if meta.is_dir() {
            walk_dir(&abs, rel, visit)?;
        }
        rel.pop();
    }
    Ok(())
}

/// What a scan of the source found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceScan {
    /// sha256 over every entry's name, type, mode, owner, size, mtime, ctime and
    /// link target. ctime is included because it changes on every write and
    /// cannot be set back by a program, so a rewrite that restores the mtime is
    /// still noticed.
    pub fingerprint: String,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
}

/// Walks the source once, without reading file contents.
pub fn scan(root: &Path) -> io::Result<SourceScan> {
    scan_until(root, &CancellationToken::new())
}

/// [`scan`], stopping between entries once `cancel` is cancelled.
pub fn scan_until(root: &Path, cancel: &CancellationToken) -> io::Result<SourceScan> {
    let mut hasher = Sha256::new();
    let mut out = SourceScan::default();
    let (_, root_meta) = source_kind(root)?;
    hash_meta(&mut hasher, b"", &root_meta, None);
    walk(root, &mut |e| {
        cancel::check(cancel)?;
        let target = if e.meta.file_type().is_symlink() {
            out.symlinks += 1;
            Some(fs::read_link(e.abs)?)
        } else {
            if e.meta.is_dir() {
                out.dirs += 1;
            } else if e.meta.is_file() {
                out.files += 1;
                out.bytes += e.meta.len();
            }
            None
        };
        hash_meta(
            &mut hasher,
            e.rel.as_os_str().as_bytes(),
            e.meta,
            target.as_deref(),
        );
        Ok(())
    })?;
    out.fingerprint = hex::encode(hasher.finalize());
    Ok(out)
}

fn hash_meta(h: &mut Sha256, rel: &[u8], m: &Metadata, target: Option<&Path>) {
    h.update((rel.len() as u64).to_le_bytes());
    h.update(rel);
    for v in [
        u64::from(m.mode()),
        u64::from(m.uid()),
        u64::from(m.gid()),
        m.len(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
    if let Some(t) = target {
        let t = t.as_os_str().as_bytes();
        h.update((t.len() as u64).to_le_bytes());
        h.update(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_content_and_names_only_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        fs::create_dir_all(root.join("b")).unwrap();
        fs::write(root.join("a"), "one").unwrap();
        fs::write(root.join("b/c"), "two").unwrap();
        let first = scan(&root).unwrap();
        assert_eq!((first.files, first.dirs, first.bytes), (2, 1, 6));
        assert_eq!(scan(&root).unwrap(), first, "same tree, same fingerprint");
        fs::write(root.join("b/c"), "TWO").unwrap();
        assert_ne!(scan(&root).unwrap().fingerprint, first.fingerprint);
    }

    #[test]
    fn walk_is_sorted_and_parents_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("z/y")).unwrap();
        fs::write(root.join("z/y/x"), "").unwrap();
        fs::write(root.join("a"), "").unwrap();
        std::os::unix::fs::symlink("a", root.join("m")).unwrap();
        let mut seen = Vec::new();
        walk(root, &mut |e| {
            seen.push(e.rel.to_string_lossy().into_owned());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["a", "m", "z", "z/y", "z/y/x"]);
    }
}
