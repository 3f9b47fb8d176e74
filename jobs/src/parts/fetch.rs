//! The restore side: fetches the parts of one object with a few ranged GETs
//! at once, checks each against its sha256, decrypts and inflates it on the
//! blocking pool, and hands the tar bytes on in order. Memory is bounded by
//! the parts in flight, whatever the object's size: `streams` parts, each
//! holding one buffer (its stored bytes while fetched, its tar once decoded),
//! a second one (third when decrypted) for each part decoding (one per core),
//! and two decoded parts downstream (the channel's and the extractor's).

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::x25519;
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

use super::pool::{Pool, Pooled};
use super::{Layout, Placed};
use crate::encryption;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{self, ObjectStore};

/// Tar bytes a restore keeps in flight: with 4 MiB parts, 4 streams. More
/// only adds threads competing for the cores that checking, inflating and
/// writing need.
const IN_FLIGHT_TAR: u64 = 16 * 1024 * 1024;
/// Ranged GETs in flight for one object.
pub const MAX_STREAMS: usize = 4;
const MIN_STREAMS: usize = 2;

/// Permits to decode parts, as many as there are cores (and no more than
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
        let decoded = decode(&p, stored, header, &how);
        drop(permit);
        decoded
    })
    .await
    .map_err(|e| Error::Refused(format!("part decoding task failed: {e}")))?
}

/// Checks, decrypts and inflates one fetched part.
fn decode(p: &Placed, stored: Pooled, header: Header, how: &Decoding) -> Result<(Bytes, Header)> {
    let stored = stored.as_ref();
    let t = Instant::now();
    let sha256 = hex::encode(Sha256::digest(stored));
    how.timings.add(Stage::Check, t.elapsed());
    if sha256 != p.sha256 {
        return Err(how.mismatch(
            p,
            format!("sha256 is {sha256}, the manifest says {}", p.sha256),
        ));
    }
    let (gz, header): (Gz<'_>, Header) = match (&how.identities, how.layout.age) {
        (Some(ids), Some(payload)) => {
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
            (Gz::Decrypted(gz), Some(header))
        }
        _ => (Gz::Stored(stored), None),
    };
    let gz = gz.as_ref();
    let t = Instant::now();
    let want = (p.tar.1 - p.tar.0) as usize;
    // One byte of room more than declared, to notice a part that holds more.
    let mut tar = how.pool.take(want + 1);
    let got = read_full(&mut MultiGzDecoder::new(gz), tar.as_mut())
        .map_err(|e| how.mismatch(p, format!("its gzip members are corrupt or truncated: {e}")))?;
    how.timings.add(Stage::Inflate, t.elapsed());
    if got != want {
        let holds = if got > want {
            format!("more than {want}")
        } else {
            got.to_string()
        };
        return Err(how.mismatch(
            p,
            format!("it inflates to {holds} bytes, the manifest says {want}"),
        ));
    }
    tar.set_len(want);
    Ok((Bytes::from_owner(tar), header))
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// A part's gzip bytes: the stored bytes themselves, or their plaintext.
enum Gz<'a> {
    Stored(&'a [u8]),
    Decrypted(Pooled),
}

impl AsRef<[u8]> for Gz<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Gz::Stored(b) => b,
            Gz::Decrypted(p) => p.as_ref(),
        }
    }
}

/// Fills `gz` with the gzip bytes of part `p` from its stored range, through
/// age's own seekable reader over a view that holds the header and that range.
fn decrypt_range(
    header: &Arc<[u8]>,
    p: &Placed,
    stored: &[u8],
    ids: &[x25519::Identity],
    gz: &mut [u8],
) -> io::Result<()> {
    let view = RangeView {
        header,
        start: p.stored.0,
        data: stored,
        pos: 0,
    };
    let mut plain = encryption::decrypt(view, ids)?;
    let (a, b) = p.gz;
    if a > 0 {
        let lead = Layout::lead_in(a);
        plain.seek(SeekFrom::Start(lead))?;
        io::copy(&mut (&mut plain).take(a - lead), &mut io::sink())?;
    }
    if gz.len() as u64 != b - a {
        return Err(io::Error::other("the part's buffer is not its size"));
    }
    plain.read_exact(gz)
}

/// An age file of which only the header and one range are at hand. Reads
/// elsewhere find nothing, which age reports as a truncated file.
struct RangeView<'a> {
    header: &'a [u8],
    start: u64,
    data: &'a [u8],
    pos: u64,
}

impl Read for RangeView<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (from, offset) = if self.pos < self.header.len() as u64 {
            (self.header, self.pos)
        } else if self.pos >= self.start && self.pos - self.start < self.data.len() as u64 {
            (self.data, self.pos - self.start)
        } else {
            return Ok(0);
        };
        let avail = &from[offset as usize..];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeView<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "seek before the start")
            })?,
            SeekFrom::End(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the end of a ranged read is unknown",
                ))
            }
        };
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::build::{IndexBuilder, SharedHasher};
    use crate::parts::PartIndex;
    use std::io::Write;

    /// An age file of `plain`, cut into parts at `cuts` (gzip offsets), with
    /// its index, built the way a backup builds it.
    fn age_object(plain: &[u8], cuts: &[u64]) -> (Vec<u8>, PartIndex, x25519::Identity) {
        let id = x25519::Identity::generate();
        let h: SharedHasher = Arc::default();
        // Target 0: every member closes a part.
        let mut b = IndexBuilder::new(0, Arc::clone(&h));
        struct Out(SharedHasher, Vec<u8>);
        impl Write for Out {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().update(buf);
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let enc = age::Encryptor::with_recipients(std::iter::once(
            &id.to_public() as &dyn age::Recipient
        ))
        .unwrap();
        let mut w = enc.wrap_output(Out(Arc::clone(&h), Vec::new())).unwrap();
        b.set_age();
        let mut bounds = cuts.to_vec();
        bounds.push(plain.len() as u64);
        let mut at = 0u64;
        for end in bounds {
            b.member(end - at, end - at);
            w.write_all(&plain[at as usize..end as usize]).unwrap();
            at = end;
        }
        let out = w.finish().unwrap();
        (out.1, b.finish().unwrap(), id)
    }

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

    #[test]
    fn every_part_of_an_age_file_decrypts_on_its_own() {
        let plain: Vec<u8> = (0..(5 * crate::parts::AGE_CHUNK as usize + 777))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let c = crate::parts::AGE_CHUNK;
        // Borders inside a chunk, on a chunk, one and two bytes after one.
        let cuts = [10, c - 1, c, c + 1, 2 * c + 2, 4 * c + 1];
        let (object, index, id) = age_object(&plain, &cuts);
        let layout = Layout {
            age: Some(index.payload_offset),
            size: object.len() as u64,
        };
        index.check(layout, plain.len() as u64).unwrap();
        let header: Arc<[u8]> = Arc::from(&object[..index.payload_offset as usize]);
        let ids = [id];
        for p in index.placed(layout) {
            let (s, e) = p.stored;
            let range = &object[s as usize..e as usize];
            assert_eq!(hex::encode(Sha256::digest(range)), p.sha256, "part {}", p.n);
            let mut gz = vec![0u8; (p.gz.1 - p.gz.0) as usize];
            decrypt_range(&header, &p, range, &ids, &mut gz).unwrap();
            assert_eq!(gz, &plain[p.gz.0 as usize..p.gz.1 as usize], "part {}", p.n);
            // One byte missing at the end is a truncated file, not less data.
            let short = &range[..range.len() - 1];
            assert!(decrypt_range(&header, &p, short, &ids, &mut gz).is_err());
        }
        // Another key opens nothing.
        let other = [x25519::Identity::generate()];
        let p = &index.placed(layout)[2];
        let range = &object[p.stored.0 as usize..p.stored.1 as usize];
        let mut gz = vec![0u8; (p.gz.1 - p.gz.0) as usize];
        assert!(decrypt_range(&header, p, range, &other, &mut gz).is_err());
    }
}
