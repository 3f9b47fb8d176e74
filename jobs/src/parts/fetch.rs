//! The restore side: fetches the parts of one object with a few ranged GETs
//! at once, checks each against its sha256, inflates it (a plain part while
//! its bytes arrive, [`Inflating`]; a part of an age object once fetched, on
//! the blocking pool, after decrypting it), and hands the tar bytes on in
//! order. Memory is bounded by the parts in flight, whatever the object's
//! size: `streams` parts, each holding one buffer (a plain part its tar; a
//! part of an age object its stored bytes, and while it decodes, one per
//! core, two more), and two decoded parts downstream (the channel's and the
//! extractor's).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::x25519;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

use super::decrypt::decrypt_range;
use super::inflate::{Inflater, Inflating, Refused};
use super::pool::{Pool, Pooled};
use super::{Layout, Placed};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{self, ObjectStore};

/// Tar bytes a restore keeps in flight: with 4 MiB parts, 5 streams. On the
/// 4.8 GiB scale set (2 cores, Garage on the same host) 5 streams restored in
/// 15.9-17 s, 6 in 17.4-17.9 s with 4 MiB more peak RSS; 4 took 20-21.5 s
/// (then with every part decoded after its fetch).
const IN_FLIGHT_TAR: u64 = 20 * 1024 * 1024;
/// Ranged GETs in flight for one object.
pub const MAX_STREAMS: usize = 5;
const MIN_STREAMS: usize = 2;

/// Permits to decode parts of age objects, as many as there are cores (and no more than
/// `streams`): decoding more at once is no faster, and each part decoding
/// holds its inflated buffer beside its fetched one. Fetched parts wait for a
/// permit with one buffer, so the pool's high-water mark is `streams` parts
/// plus one buffer per core, not two per stream.
pub(crate) fn decode_permits(streams: usize) -> Arc<Semaphore> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cores.clamp(1, streams.max(1))))
}

/// Busy time per stage, summed over threads, for the `restore timings` line.
#[derive(Default, Debug)]
pub struct Timings {
    fetch: AtomicU64,
    check: AtomicU64,
    decrypt: AtomicU64,
    inflate: AtomicU64,
    /// The extracting thread waiting for the next part.
    wait: AtomicU64,
    /// The extracting thread: parsing the tar stream and writing files.
    extract: AtomicU64,
    parts: AtomicU64,
    streams: AtomicU64,
}

impl Timings {
    pub(crate) fn add(&self, stage: Stage, took: Duration) {
        let slot = match stage {
            Stage::Fetch => &self.fetch,
            Stage::Check => &self.check,
            Stage::Decrypt => &self.decrypt,
            Stage::Inflate => &self.inflate,
            Stage::Wait => &self.wait,
            Stage::Extract => &self.extract,
        };
        slot.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// `key=seconds` pairs, then the part count and streams.
    pub fn summary(&self) -> String {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        let extract = (s(&self.extract) - s(&self.wait)).max(0.0);
        format!(
            "fetch={:.2} check={:.2} decrypt={:.2} inflate={:.2} extract={:.2} wait={:.2} parts={} streams={}",
            s(&self.fetch),
            s(&self.check),
            s(&self.decrypt),
            s(&self.inflate),
            extract,
            s(&self.wait),
            self.parts.load(Ordering::Relaxed),
            self.streams.load(Ordering::Relaxed),
        )
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Stage {
    Fetch,
    Check,
    Decrypt,
    Inflate,
    Wait,
    Extract,
}

/// What decoding a part needs besides its bytes.
#[derive(Clone)]
pub(crate) struct Decoding {
    /// `None` for a plain object.
    pub identities: Option<Arc<[x25519::Identity]>>,
    pub layout: Layout,
    pub timings: Arc<Timings>,
    /// Names the object in mismatch errors: `(state, id, key)`.
    pub names: Arc<(String, String, String)>,
    /// At most this many parts in flight (several objects restored at once
    /// share [`MAX_STREAMS`]).
    pub max_streams: usize,
    /// Buffers for the fetched and the inflated bytes.
    pub pool: Arc<Pool>,
    /// Parts decoded at once ([`decode_permits`]).
    pub decodes: Arc<Semaphore>,
    /// Told of each part's stored bytes once they are fetched.
    pub progress: Option<Arc<Progress>>,
}

impl Decoding {
    /// The error of a part that is not what the manifest says.
    fn refused(&self, p: &Placed, why: Refused) -> Error {
        let want = p.tar.1 - p.tar.0;
        self.mismatch(
            p,
            match why {
                Refused::Sha256(sha256) => {
                    format!("sha256 is {sha256}, the manifest says {}", p.sha256)
                }
                Refused::Corrupt(e) => format!("its gzip members are corrupt or truncated: {e}"),
                Refused::Size(None) => {
                    format!("it inflates to more than {want} bytes, the manifest says {want}")
                }
                Refused::Size(Some(got)) => {
                    format!("it inflates to {got} bytes, the manifest says {want}")
                }
            },
        )
    }

    fn mismatch(&self, p: &Placed, detail: String) -> Error {
        let (state, id, key) = &*self.names;
        Error::Mismatch {
            state: state.clone(),
            id: id.clone(),
            detail: format!(
                "{key}, part {} (bytes {}-{}): {detail}",
                p.n, p.stored.0, p.stored.1
            ),
        }
    }
}

/// Sends the tar bytes of `placed`, in order, to `tx`. On failure the
/// receiver gets an error item (so a reader stops) and the cause is returned.
/// A receiver that went away (the extraction failed) ends it quietly: the
/// extraction's error is the one to report.
pub(crate) async fn fetch_parts(
    store: &dyn ObjectStore,
    key: &str,
    placed: Vec<Placed>,
    how: Decoding,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> Result<()> {
    let result = run(store, key, placed, &how, &tx).await;
    if let Err(e) = &result {
        let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
    }
    result
}

async fn run(
    store: &dyn ObjectStore,
    key: &str,
    placed: Vec<Placed>,
    how: &Decoding,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<()> {
    let largest = placed.iter().map(|p| p.tar.1 - p.tar.0).max().unwrap_or(1);
    let streams = ((IN_FLIGHT_TAR / largest.max(1)) as usize)
        .min(how.max_streams)
        .max(MIN_STREAMS);
    how.timings
        .parts
        .fetch_add(placed.len() as u64, Ordering::Relaxed);
    how.timings
        .streams
        .fetch_max(streams as u64, Ordering::Relaxed);
    let mut placed = placed.into_iter();
    let Some(first) = placed.next() else {
        return Ok(());
    };
    // The first part alone: in an age object its checked bytes begin with
    // the header that every other part is decrypted with.
    let (tar, header) = part(store, key, first, None, how).await?;
    if tx.send(Ok(tar)).await.is_err() {
        return Ok(());
    }
    // At most `streams` parts are held here, fetching, decoding or done and
    // waiting for room in the channel. The fetches go on while a finished
    // part waits for the extractor: with `buffered`, a part waiting to be
    // sent stopped every fetch behind it (nothing polled them), and the
    // extractor then waited for parts that had not moved.
    let mut in_flight = futures::stream::FuturesOrdered::new();
    let mut ready: VecDeque<Bytes> = VecDeque::new();
    loop {
        while in_flight.len() + ready.len() < streams {
            match placed.next() {
                Some(p) => in_flight.push_back(part(store, key, p, header.clone(), how)),
                None => break,
            }
        }
        if ready.is_empty() && in_flight.is_empty() {
            return Ok(());
        }
        tokio::select! {
            permit = tx.reserve(), if !ready.is_empty() => {
                let Ok(permit) = permit else {
                    return Ok(());
                };
                if let Some(tar) = ready.pop_front() {
                    permit.send(Ok(tar));
                }
            }
            done = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(done) = done {
                    ready.push_back(done?.0);
                }
            }
        }
    }
}

type Header = Option<Arc<[u8]>>;

async fn part(
    store: &dyn ObjectStore,
    key: &str,
    p: Placed,
    header: Header,
    how: &Decoding,
) -> Result<(Bytes, Header)> {
    match (&how.identities, how.layout.age) {
        (Some(ids), Some(payload)) => {
            encrypted(store, key, p, header, Arc::clone(ids), payload, how).await
        }
        _ => Ok((plain(store, key, &p, how).await?, None)),
    }
}

/// A plain part, hashed and inflated as its bytes arrive ([`Inflating`]).
async fn plain(store: &dyn ObjectStore, key: &str, p: &Placed, how: &Decoding) -> Result<Bytes> {
    let started = Instant::now();
    let mut sink = Inflating::new(&how.pool, p);
    let len = p.stored.1 - p.stored.0;
    store::get_range_to(store, key, p.stored.0, len, &mut sink).await?;
    how.timings.add(Stage::Check, sink.check);
    how.timings.add(Stage::Inflate, sink.inflate);
    how.timings.add(
        Stage::Fetch,
        started.elapsed().saturating_sub(sink.check + sink.inflate),
    );
    if let Some(progress) = &how.progress {
        progress.add_bytes(len);
    }
    sink.finish(p).map_err(|refused| how.refused(p, refused))
}

/// A part of an age object: fetched whole (age decrypts it through a
/// seekable reader over its range), then checked, decrypted and inflated on
/// the blocking pool.
async fn encrypted(
    store: &dyn ObjectStore,
    key: &str,
    p: Placed,
    header: Header,
    ids: Arc<[x25519::Identity]>,
    payload: u64,
    how: &Decoding,
) -> Result<(Bytes, Header)> {
    let started = Instant::now();
    let mut stored = how.pool.take((p.stored.1 - p.stored.0) as usize);
    store::get_range_into(store, key, p.stored.0, stored.as_mut()).await?;
    how.timings.add(Stage::Fetch, started.elapsed());
    if let Some(progress) = &how.progress {
        progress.add_bytes(p.stored.1 - p.stored.0);
    }
    let permit = Arc::clone(&how.decodes)
        .acquire_owned()
        .await
        .map_err(|e| Error::Refused(format!("part decoding stopped: {e}")))?;
    let how = how.clone();
    tokio::task::spawn_blocking(move || {
        let decoded = decode(&p, stored, header, &ids, payload, &how);
        drop(permit);
        decoded
    })
    .await
    .map_err(|e| Error::Refused(format!("part decoding task failed: {e}")))?
}

/// Checks, decrypts and inflates one fetched part of an age object.
fn decode(
    p: &Placed,
    stored: Pooled,
    header: Header,
    ids: &[x25519::Identity],
    payload: u64,
    how: &Decoding,
) -> Result<(Bytes, Header)> {
    let stored = stored.as_ref();
    let t = Instant::now();
    let sha256 = hex::encode(Sha256::digest(stored));
    how.timings.add(Stage::Check, t.elapsed());
    if sha256 != p.sha256 {
        return Err(how.refused(p, Refused::Sha256(sha256)));
    }
    let header = match header {
        Some(h) => h,
        None => Arc::from(stored.get(..payload as usize).ok_or_else(|| {
            how.mismatch(p, "the first part does not hold the age header".into())
        })?),
    };
    let t = Instant::now();
    let mut gz = how.pool.take((p.gz.1 - p.gz.0) as usize);
    decrypt_range(&header, p, stored, ids, gz.as_mut()).map_err(|e| {
        let (state, id, key) = &*how.names;
        Error::Encryption(format!(
            "{key} of backup {id} of {state}, part {}: {e}",
            p.n
        ))
    })?;
    how.timings.add(Stage::Decrypt, t.elapsed());
    let t = Instant::now();
    let mut tar = Inflater::new(&how.pool, (p.tar.1 - p.tar.0) as usize);
    tar.write(gz.as_ref());
    drop(gz);
    let tar = tar.finish().map_err(|refused| how.refused(p, refused))?;
    how.timings.add(Stage::Inflate, t.elapsed());
    Ok((tar, Some(header)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Serves one object; every ranged GET takes `delay`.
    struct Slow {
        object: Vec<u8>,
        delay: Duration,
    }

    #[async_trait::async_trait]
    impl ObjectStore for Slow {
        async fn list(&self, _: &str) -> Result<Vec<store::ObjectInfo>, store::StoreError> {
            Ok(Vec::new())
        }
        async fn head(&self, _: &str) -> Result<Option<store::ObjectInfo>, store::StoreError> {
            Ok(None)
        }
        async fn get(&self, _: &str) -> Result<store::ByteStream, store::StoreError> {
            let body = Bytes::from(self.object.clone());
            Ok(Box::pin(futures::stream::once(async move { Ok(body) })))
        }
        async fn get_range(
            &self,
            _: &str,
            offset: u64,
            len: u64,
        ) -> Result<store::ByteStream, store::StoreError> {
            tokio::time::sleep(self.delay).await;
            let (a, b) = (offset as usize, (offset + len) as usize);
            let body = Bytes::copy_from_slice(&self.object[a..b]);
            Ok(Box::pin(futures::stream::once(async move { Ok(body) })))
        }
        async fn put(&self, _: &str, _: store::PutBody) -> Result<u64, store::StoreError> {
            Ok(0)
        }
        async fn delete(&self, _: &str) -> Result<(), store::StoreError> {
            Ok(())
        }
        fn url(&self) -> String {
            "file:///slow".into()
        }
    }

    /// A plain object of `n` parts, each one gzip member of 1,000 bytes.
    fn plain_object(n: u8) -> (Vec<u8>, Vec<Placed>) {
        let (mut object, mut placed) = (Vec::new(), Vec::new());
        for i in 0..n {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&[i; 1000]).unwrap();
            let gz = gz.finish().unwrap();
            let at = object.len() as u64;
            let end = at + gz.len() as u64;
            placed.push(Placed {
                n: i as usize,
                gz: (at, end),
                tar: (1000 * u64::from(i), 1000 * u64::from(i + 1)),
                stored: (at, end),
                sha256: hex::encode(Sha256::digest(&gz)),
            });
            object.extend_from_slice(&gz);
        }
        (object, placed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetches_go_on_while_a_finished_part_waits_for_the_extractor() {
        let (object, placed) = plain_object(12);
        let size = object.len() as u64;
        let store = Slow {
            object,
            delay: Duration::from_millis(20),
        };
        let progress = Arc::new(Progress::new());
        let streams = 4;
        let how = Decoding {
            identities: None,
            layout: Layout { age: None, size },
            timings: Arc::default(),
            names: Arc::new(("s".into(), "id".into(), "k".into())),
            max_streams: streams,
            pool: Pool::new(3 * streams + 2),
            decodes: decode_permits(streams),
            progress: Some(Arc::clone(&progress)),
        };
        let part_bytes: Vec<u64> = placed.iter().map(|p| p.stored.1 - p.stored.0).collect();
        let (tx, mut rx) = mpsc::channel(1);
        let fetch = fetch_parts(&store, "k", placed, how, tx);
        let extractor = async {
            // The extractor takes the first part, then stalls: the channel
            // holds the second, and the fetcher its `streams` parts. All of
            // them must be fetched while it stalls, not one.
            let first = rx.recv().await.unwrap().unwrap();
            assert_eq!(&first[..], &[0u8; 1000][..]);
            let want: u64 = part_bytes[..2 + streams].iter().sum();
            let mut fetched = 0;
            for _ in 0..500 {
                fetched = progress.snapshot().bytes;
                if fetched >= want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(fetched, want, "parts fetched while the extractor stalled");
            let mut i = 1u8;
            while let Some(tar) = rx.recv().await {
                assert_eq!(&tar.unwrap()[..], &[i; 1000][..], "part {i} in order");
                i += 1;
            }
            assert_eq!(i, 12);
        };
        let (fetched, ()) = tokio::join!(fetch, extractor);
        fetched.unwrap();
    }
}
