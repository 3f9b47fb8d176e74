//! Reads a backup's data object with every check its manifest allows: size and
//! sha256 of the object, a cap on decompressed bytes, safe extraction, and the
//! entry counts. Shared by `restore` (into a staging directory) and `verify`
//! (into nothing).

use std::io;
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;

use crate::archive::{self, CappedReader, ExtractOptions, ExtractStats, HashingReader, Sink};
use crate::bridge::StreamReader;
use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::Manifest;
use crate::store::ObjectStore;

/// `None` validates only; `Some(dir)` extracts into the existing empty `dir`.
pub(crate) async fn unpack(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    into: Option<PathBuf>,
    opts: ExtractOptions,
) -> Result<ExtractStats> {
    let data = manifest
        .data()
        .ok_or_else(|| Error::Refused(format!("backup {} lists no data object", manifest.id)))?
        .clone();
    let key = layout::object_key(&manifest.host, &manifest.state, &manifest.id, &data.name);
    let stream = store.get(&key).await?;
    let reader = StreamReader::spawn(stream);
    let m = manifest.clone();
    tokio::task::spawn_blocking(move || {
        let hashing = HashingReader::new(reader, data.size);
        let capped = CappedReader::new(MultiGzDecoder::new(hashing), m.tar_bytes);
        let sink = match &into {
            Some(dir) => Sink::Dir(dir),
            None => Sink::Check,
        };
        let (stats, mut capped) = archive::extract(capped, sink, &opts)?;
        // Whatever follows the end-of-archive marker (block padding) must still
        // decompress cleanly and be counted.
        io::copy(&mut capped, &mut io::sink()).map_err(archive::ArchiveError::Read)?;
        let tar_bytes = capped.count();
        let hashing = capped.into_inner().into_inner();
        let (sha256, size) = hashing
            .finish()
            .map_err(archive::ArchiveError::Read)?;
        let mismatch = |detail: String| Error::Mismatch {
            state: m.state.clone(),
            id: m.id.clone(),
            detail,
        };
        if size != data.size {
            return Err(mismatch(format!("{size} bytes stored, {} declared", data.size)));
        }
        if sha256 != data.sha256 {
            return Err(mismatch(format!(
                "sha256 is {sha256}, the manifest says {}",
                data.sha256
            )));
        }
        if tar_bytes != m.tar_bytes {
            return Err(mismatch(format!(
                "the archive holds {tar_bytes} bytes, the manifest says {}",
                m.tar_bytes
            )));
        }
        if stats.files != m.files || stats.dirs != m.dirs || stats.symlinks != m.symlinks {
            return Err(mismatch(format!(
                "the archive holds {} files, {} directories, {} symlinks; the manifest says {}, {}, {}",
                stats.files, stats.dirs, stats.symlinks, m.files, m.dirs, m.symlinks
            )));
        }
        Ok(stats)
    })
    .await
    .map_err(|e| Error::Refused(format!("extraction task failed: {e}")))?
}
