//! `file://` store: objects are files under a root directory. Meant for trying
//! rehost out and for tests, but held to the same contract as S3: a `put` is
//! invisible until complete (temp file + fsync + rename), listings skip
//! temporaries, and no key can name a path outside the root.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check_key, ByteStream, ObjectInfo, ObjectStore, PutBody, StoreError};
use crate::fsutil;

/// Temporaries carry this marker so that listings never show a partial object.
const TMP_MARKER: &str = ".rehost-tmp-";
const READ_CHUNK: usize = 256 * 1024;

pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: PathBuf) -> Self {
        FsStore { root }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn io_err(&self, op: &'static str, path: &Path, source: io::Error) -> StoreError {
        if op == "list" && source.kind() == io::ErrorKind::NotFound && path == self.root {
            return StoreError::Unreachable {
                url: self.url(),
                message: "the directory does not exist".into(),
            };
        }
        StoreError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    /// Up to `len` bytes of the object from `offset`.
    async fn read_from(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        use tokio::io::AsyncSeekExt;
        let path = self.path_of(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    url: self.url(),
                    key: key.to_string(),
                })
            }
            Err(e) => return Err(self.io_err("get", &path, e)),
        };
        let shown = path.display().to_string();
        let mut file = file;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| self.io_err("seek", &path, e))?;
        }
        let file = file.take(len);
        let stream = futures::stream::try_unfold((file, shown), |(mut file, shown)| async move {
            let mut buf = vec![0u8; READ_CHUNK];
            let n = file.read(&mut buf).await.map_err(|source| StoreError::Io {
                op: "read",
                path: shown.clone(),
                source,
            })?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), (file, shown))))
        });
        Ok(Box::pin(stream))
    }
}

fn etag_of(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{:x}-{:x}.{:x}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir != root => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.contains(TMP_MARKER) {
            continue;
        }
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let Some(key) = rel.to_str() else { continue };
            out.push(ObjectInfo {
                key: key.to_string(),
                size: meta.len(),
                etag: Some(etag_of(&meta)),
                modified: meta.modified().ok().map(DateTime::<Utc>::from),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let root = self.root.clone();
        // Walk only the deepest directory the prefix names completely.
        let start = match prefix.rfind('/') {
            Some(i) => {
                check_key(&prefix[..i])?;
                root.join(&prefix[..i])
            }
            None => root.clone(),
        };
        let prefix = prefix.to_string();
        let walked = tokio::task::spawn_blocking(move || {
            if !root.is_dir() {
                return Err((root.clone(), io::Error::from(io::ErrorKind::NotFound)));
            }
            let mut out = Vec::new();
            walk(&root, &start, &mut out).map_err(|e| (start.clone(), e))?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Config(format!("listing task failed: {e}")))?;
        let mut out = walked.map_err(|(path, e)| self.io_err("list", &path, e))?;
        out.retain(|o| o.key.starts_with(&prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: m.len(),
                etag: Some(etag_of(&m)),
                modified: m.modified().ok().map(DateTime::<Utc>::from),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err("head", &path, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.read_from(key, 0, u64::MAX).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        self.read_from(key, offset, len).await
    }

    async fn put(&self, key: &str, mut body: PutBody) -> Result<u64, StoreError> {
        let path = self.path_of(key)?;
        let dir = fsutil::parent_dir(&path);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| self.io_err("create directory", &dir, e))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{file_name}{TMP_MARKER}{}",
            fsutil::random_suffix()
        ));
        let result: Result<u64, StoreError> = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| self.io_err("create", &tmp, e))?;
            let mut total = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|source| StoreError::BodyFailed {
                    key: key.to_string(),
                    source,
                })?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| self.io_err("write", &tmp, e))?;
                total += chunk.len() as u64;
            }
            file.sync_all()
                .await
                .map_err(|e| self.io_err("fsync", &tmp, e))?;
            drop(file);
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| self.io_err("rename", &path, e))?;
            let d = dir.clone();
            tokio::task::spawn_blocking(move || fsutil::fsync_dir(&d))
                .await
                .map_err(|e| StoreError::Config(format!("fsync task failed: {e}")))?
                .map_err(|e| self.io_err("fsync", &dir, e))?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io_err("delete", &path, e)),
        }
        // Leave no empty directories behind, up to (not including) the root.
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) {
                break;
            }
            if tokio::fs::remove_dir(&d).await.is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
