//! Reads a backup's data object with every check its manifest allows: size and
//! sha256 of the object, age decryption when it is encrypted, a cap on
//! decompressed bytes, safe extraction, and the entry counts. Shared by
//! `restore` (into a staging directory) and `verify` (into nothing).

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use age::x25519;

use flate2::read::MultiGzDecoder;
use futures::future::BoxFuture;
use futures::StreamExt;

use crate::archive::{self, CappedReader, ExtractOptions, ExtractStats, HashingReader, Sink};
use crate::bridge::{ChannelReader, StreamReader};
use crate::encryption::{self, Encryption};
use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::{BlockEntry, Manifest};
use crate::parts::{self, Decoding, PartIndex, Stage, Timings};
use crate::progress::CountingReader;
use crate::safefs::Dir;
use crate::store::ObjectStore;

/// What one archive object must hold, from its manifest.
struct Expected {
    key: String,
    size: u64,
    sha256: String,
    tar_bytes: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    /// Absent in backups made before part indexes: read in one stream.
    index: Option<PartIndex>,
    /// Ranged GETs in flight at most.
    streams: usize,
}

/// How a backup's objects are read.
#[derive(Clone)]
pub(crate) enum Keys {
    /// Not encrypted.
    Plain,
    /// age files, decrypted with these identities.
    Age(Arc<[x25519::Identity]>),
    /// age files without the identity to open them (a verify on a host that
    /// only backs up): only the stored bytes' size and sha256 are checked.
    StoredOnly,
}

impl Keys {
    /// The keys for `manifest`'s backup. `need_plaintext` (restore) makes a
    /// missing identity file an error; otherwise (verify) it means
    /// [`Keys::StoredOnly`].
    pub(crate) fn for_backup(
        manifest: &Manifest,
        encryption: Option<&Encryption>,
        need_plaintext: bool,
    ) -> Result<Keys> {
        if manifest.encryption.is_none() {
            return Ok(Keys::Plain);
        }
        match encryption {
            Some(e) if e.identity_file().is_some() => {
                Ok(Keys::Age(Arc::from(e.identities()?.into_boxed_slice())))
            }
            _ if !need_plaintext => Ok(Keys::StoredOnly),
            _ => Err(Error::Encryption(format!(
                "backup {} of {} is encrypted with age; restoring it needs the identity file \
                 (storage.encryption.identity_file)",
                manifest.id, manifest.state
            ))),
        }
    }
}

/// The backup's data object. `None` validates only; `Some(dir)` extracts into
/// the existing empty `dir`, relative to its descriptor.
pub(crate) async fn unpack(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    keys: &Keys,
    into: Option<Dir>,
    opts: ExtractOptions,
    timings: &Arc<Timings>,
) -> Result<ExtractStats> {
    let data = manifest
        .data()
        .ok_or_else(|| Error::Refused(format!("backup {} lists no data object", manifest.id)))?;
    let expected = Expected {
        key: layout::object_key(&manifest.host, &manifest.state, &manifest.id, &data.name),
        size: data.size,
        sha256: data.sha256.clone(),
        tar_bytes: manifest.tar_bytes,
        files: manifest.files,
        dirs: manifest.dirs,
        symlinks: manifest.symlinks,
        index: data.index.clone(),
        streams: parts::MAX_STREAMS,
    };
    Reading {
        store,
        manifest,
        keys,
        timings,
    }
    .object(expected, into, opts)
    .await
}

/// One shared block object of a format-2 backup, same checks as the data
/// object; `Some(dir)` extracts `<ulid>/…` into the existing empty `dir`.
pub(crate) async fn unpack_block(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    block: &BlockEntry,
    keys: &Keys,
    into: Option<Dir>,
    opts: ExtractOptions,
    timings: &Arc<Timings>,
) -> Result<ExtractStats> {
    let expected = Expected {
        key: layout::block_key(&manifest.host, &manifest.state, &manifest.block_name(block)),
        size: block.size,
        sha256: block.sha256.clone(),
        tar_bytes: block.tar_bytes,
        files: block.files,
        dirs: block.dirs,
        symlinks: 0,
        index: block.index.clone(),
        // Blocks are restored a few at once: they share the streams.
        streams: parts::MAX_STREAMS / BLOCKS_AT_ONCE,
    };
    Reading {
        store,
        manifest,
        keys,
        timings,
    }
    .object(expected, into, opts)
    .await
}

/// Prometheus blocks read at once. Each fetches its parts with streams of
/// its own, so this bounds the memory too.
const BLOCKS_AT_ONCE: usize = 3;

/// Awaits every one of `runs` (one per block), [`BLOCKS_AT_ONCE`] at a time,
/// even after one failed, so that no extraction is still writing when the
/// caller cleans up; then the first error, or every result. The futures are
/// made and boxed by the caller: a stream's closure over borrowed data makes
/// the caller's future not provably `Send`.
pub(crate) async fn each_block<T>(runs: Vec<BoxFuture<'_, Result<T>>>) -> Result<Vec<T>> {
    let results: Vec<Result<T>> = futures::stream::iter(runs)
        .buffer_unordered(BLOCKS_AT_ONCE)
        .collect()
        .await;
    results.into_iter().collect()
}

/// What reading any object of one backup needs.
struct Reading<'a> {
    store: &'a dyn ObjectStore,
    manifest: &'a Manifest,
    keys: &'a Keys,
    timings: &'a Arc<Timings>,
}

impl Reading<'_> {
    async fn object(
        &self,
        mut data: Expected,
        into: Option<Dir>,
        opts: ExtractOptions,
    ) -> Result<ExtractStats> {
        match (data.index.take(), self.keys) {
            (Some(index), Keys::Plain | Keys::Age(_)) => {
                self.in_parts(data, &index, into, opts).await
            }
            _ => self.in_one_stream(data, into, opts).await,
        }
    }

    /// Errors of `key` not matching the manifest.
    fn mismatch(&self, key: &str) -> impl Fn(String) -> Error + Send + 'static {
        let (state, id, key) = (
            self.manifest.state.clone(),
            self.manifest.id.clone(),
            key.to_string(),
        );
        move |detail| Error::Mismatch {
            state: state.clone(),
            id: id.clone(),
            detail: format!("{key}: {detail}"),
        }
    }

    /// An object without a part index (or only its stored bytes): one GET,
    /// read in order, the whole object's sha256 checked at the end.
    async fn in_one_stream(
        &self,
        data: Expected,
        into: Option<Dir>,
        opts: ExtractOptions,
    ) -> Result<ExtractStats> {
        let started = Instant::now();
        let stream = self.store.get(&data.key).await?;
        let reader = CountingReader {
            inner: StreamReader::spawn(stream),
            progress: opts.progress.clone(),
        };
        let mismatch = self.mismatch(&data.key);
        let id = self.manifest.id.clone();
        let keys = self.keys.clone();
        let timings = Arc::clone(self.timings);
        tokio::task::spawn_blocking(move || {
            let mut hashing = HashingReader::new(reader, data.size);
            let plain: Box<dyn Read + '_> = match &keys {
                Keys::Plain => Box::new(&mut hashing),
                Keys::Age(ids) => {
                    Box::new(encryption::decrypt(&mut hashing, ids).map_err(|e| {
                        Error::Encryption(format!("{} of backup {id}: {e}", data.key))
                    })?)
                }
                Keys::StoredOnly => {
                    let (sha256, size) = hashing.finish().map_err(archive::ArchiveError::Read)?;
                    check_stored(&data, &sha256, size).map_err(&mismatch)?;
                    return Ok(ExtractStats::default());
                }
            };
            let stats =
                extract_checked(MultiGzDecoder::new(plain), &into, &opts, &data, &mismatch)?;
            let (sha256, size) = hashing.finish().map_err(archive::ArchiveError::Read)?;
            check_stored(&data, &sha256, size).map_err(&mismatch)?;
            timings.add(Stage::Extract, started.elapsed());
            Ok(stats)
        })
        .await
        .map_err(|e| Error::Refused(format!("extraction task failed: {e}")))?
    }

    /// An object with a part index: its parts fetched, checked (each against
    /// its own sha256, which together cover every stored byte), decrypted
    /// and inflated several at a time, and extracted in order.
    async fn in_parts(
        &self,
        data: Expected,
        index: &PartIndex,
        into: Option<Dir>,
        opts: ExtractOptions,
    ) -> Result<ExtractStats> {
        let layout = self.manifest.layout_of(index, data.size);
        let how = Decoding {
            identities: match self.keys {
                Keys::Age(ids) => Some(Arc::clone(ids)),
                _ => None,
            },
            layout,
            timings: Arc::clone(self.timings),
            names: Arc::new((
                self.manifest.state.clone(),
                self.manifest.id.clone(),
                data.key.clone(),
            )),
            max_streams: data.streams,
            // A plain part in flight holds one buffer (its tar), a part of
            // an age object up to three (stored, decrypted, inflated); two
            // inflated parts wait for the extractor.
            pool: parts::Pool::new(3 * data.streams + 2),
            decodes: parts::decode_permits(data.streams),
            progress: opts.progress.clone(),
        };
        let placed = index.placed(layout);
        let key = data.key.clone();
        // One part waits while the extractor works on another: the parts
        // being fetched and decoded are the read-ahead.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mismatch = self.mismatch(&data.key);
        let timings = Arc::clone(self.timings);
        let extract = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut reader = ChannelReader::new(rx);
            let stats = extract_checked(&mut reader, &into, &opts, &data, &mismatch);
            timings.add(Stage::Wait, reader.waited());
            timings.add(Stage::Extract, started.elapsed());
            stats
        });
        let fetch = parts::fetch_parts(self.store, &key, placed, how, tx);
        let (fetched, extracted) = tokio::join!(fetch, extract);
        // A failed fetch makes the extraction fail too; the fetch says why.
        fetched?;
        extracted.map_err(|e| Error::Refused(format!("extraction task failed: {e}")))?
    }
}

/// Extracts the tar stream `tar` (into `into`, or nowhere), reads what follows
/// the end-of-archive marker, and checks the tar length and entry counts
/// against the manifest.
fn extract_checked<R: Read>(
    tar: R,
    into: &Option<Dir>,
    opts: &ExtractOptions,
    data: &Expected,
    mismatch: &dyn Fn(String) -> Error,
) -> Result<ExtractStats> {
    let capped = CappedReader::new(tar, data.tar_bytes);
    let sink = match into {
        Some(dir) => Sink::Dir(dir),
        None => Sink::Check,
    };
    let (stats, mut capped) = archive::extract(capped, sink, opts)?;
    // Whatever follows the end-of-archive marker (block padding) must still
    // decompress cleanly and be counted.
    io::copy(&mut capped, &mut io::sink()).map_err(archive::ArchiveError::Read)?;
    let tar_bytes = capped.count();
    if tar_bytes != data.tar_bytes {
        return Err(mismatch(format!(
            "the archive holds {tar_bytes} bytes, the manifest says {}",
            data.tar_bytes
        )));
    }
    if stats.files != data.files || stats.dirs != data.dirs || stats.symlinks != data.symlinks {
        return Err(mismatch(format!(
            "the archive holds {} files, {} directories, {} symlinks; the manifest says {}, {}, {}",
            stats.files, stats.dirs, stats.symlinks, data.files, data.dirs, data.symlinks
        )));
    }
    Ok(stats)
}

/// The stored object's size and sha256 against the manifest.
fn check_stored(data: &Expected, sha256: &str, size: u64) -> Result<(), String> {
    if size != data.size {
        return Err(format!("{size} bytes stored, {} declared", data.size));
    }
    if sha256 != data.sha256 {
        return Err(format!(
            "sha256 is {sha256}, the manifest says {}",
            data.sha256
        ));
    }
    Ok(())
}
