//! Parallel gzip as a sequence of independent members. A multi-member gzip
//! stream is still plain gzip (`gzip -d`, `tar xzf` and every decoder read it),
//! so the backup stays restorable by hand, while each member can be compressed
//! on its own core. Chunks that do not compress (already-compressed or random
//! data) are stored instead of deflated: deflating them costs the most CPU and
//! gains nothing.
//!
//! Memory is bounded: at most `2 * workers + 2` chunks are in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Uncompressed bytes per gzip member.
pub const CHUNK: usize = 1024 * 1024;
/// Deflate level for compressible chunks: the fastest level. Backups of many
/// small text files are bound by compression speed; level 1 keeps most of the
/// size reduction at a fraction of gzip -6's cost.
pub const LEVEL: u32 = 1;
/// A chunk is stored uncompressed when samples of it shrink by less than this.
const MIN_SAVING: f64 = 0.10;
const SAMPLE: usize = 16 * 1024;

type Job = (u64, Vec<u8>);
/// A member and the length of the chunk it holds.
type Done = (u64, io::Result<(Vec<u8>, u64)>);

/// Receives the compressed members, in order, each with the number of
/// uncompressed bytes it holds.
pub type MemberSink = Box<dyn FnMut(Vec<u8>, u64) -> io::Result<()> + Send>;

/// Totals of a finished stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct GzipTotals {
    pub uncompressed: u64,
    pub compressed: u64,
}

/// A `Write` that compresses what it is given on worker threads.
pub struct ParallelGzWriter {
    buf: Vec<u8>,
    next_seq: u64,
    uncompressed: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    collector: Option<JoinHandle<io::Result<u64>>>,
}

impl ParallelGzWriter {
    pub fn new(workers: usize, sink: MemberSink) -> io::Result<Self> {
        let workers = workers.max(1);
        let (job_tx, job_rx) = sync_channel::<Job>(workers);
        let (done_tx, done_rx) = sync_channel::<Done>(workers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || worker(&job_rx, &done_tx))?,
            );
        }
        drop(done_tx);
        let collector = std::thread::Builder::new()
            .name("gzip-collect".into())
            .spawn(move || collect(done_rx, sink))?;
        Ok(ParallelGzWriter {
            buf: Vec::with_capacity(CHUNK),
            next_seq: 0,
            uncompressed: 0,
            jobs: Some(job_tx),
            workers: handles,
            collector: Some(collector),
        })
    }

    fn dispatch(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = match &self.jobs {
            Some(tx) => tx.send((self.next_seq, chunk)).is_ok(),
            None => false,
        };
        self.next_seq += 1;
        if sent {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the compression pipeline stopped",
            ))
        }
    }

    /// Flushes the last chunk, waits for every member to reach the sink and
    /// returns the totals, or the first error of any stage.
    pub fn finish(mut self) -> io::Result<GzipTotals> {
        let dispatched = self.dispatch();
        let compressed = self.shutdown();
        let compressed = compressed?;
        dispatched?;
        Ok(GzipTotals {
            uncompressed: self.uncompressed,
            compressed,
        })
    }

    fn shutdown(&mut self) -> io::Result<u64> {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.collector.take() {
            Some(c) => c
                .join()
                .map_err(|_| io::Error::other("the gzip collector thread panicked"))?,
            None => Ok(0),
        }
    }
}

impl Drop for ParallelGzWriter {
    fn drop(&mut self) {
        // Joining makes sure no thread outlives the writer, even on error paths.
        let _ = self.shutdown();
    }
}

impl Write for ParallelGzWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.uncompressed += n as u64;
        if self.buf.len() == CHUNK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, done: &SyncSender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, chunk)) = job else { return };
        let member = compress_member(&chunk).map(|m| (m, chunk.len() as u64));
        if done.send((seq, member)).is_err() {
            return;
        }
    }
}

fn collect(done: Receiver<Done>, mut sink: MemberSink) -> io::Result<u64> {
    let mut pending: BTreeMap<u64, (Vec<u8>, u64)> = BTreeMap::new();
    let mut next = 0u64;
    let mut total = 0u64;
    for (seq, member) in done {
        pending.insert(seq, member?);
        while let Some((member, plain)) = pending.remove(&next) {
            total += member.len() as u64;
            sink(member, plain)?;
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("a compressed chunk went missing"));
    }
    Ok(total)
}

/// One complete gzip member holding `chunk`.
pub fn compress_member(chunk: &[u8]) -> io::Result<Vec<u8>> {
    let level = if looks_incompressible(chunk) {
        0
    } else {
        LEVEL
    };
    let mut enc = GzEncoder::new(
        Vec::with_capacity(chunk.len() / 2 + 64),
        Compression::new(level),
    );
    enc.write_all(chunk)?;
    enc.finish()
}

/// Deflates three small samples (start, middle, end); the chunk counts as
/// incompressible only if none of them shrinks noticeably.
fn looks_incompressible(chunk: &[u8]) -> bool {
    if chunk.len() < 4 * SAMPLE {
        return false;
    }
    let starts = [0, chunk.len() / 2, chunk.len() - SAMPLE];
    starts.iter().all(|&s| {
        let sample = &chunk[s..s + SAMPLE];
        let mut enc = GzEncoder::new(Vec::with_capacity(SAMPLE + 64), Compression::new(1));
        let out = enc.write_all(sample).and_then(|_| enc.finish());
        match out {
            Ok(out) => (out.len() as f64) > (SAMPLE as f64) * (1.0 - MIN_SAVING),
            Err(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use rand::RngCore;
    use std::io::Read;

    fn roundtrip(data: &[u8], workers: usize) -> (Vec<u8>, GzipTotals) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink_out = Arc::clone(&out);
        let mut w = ParallelGzWriter::new(
            workers,
            Box::new(move |m, _| {
                sink_out.lock().unwrap().extend_from_slice(&m);
                Ok(())
            }),
        )
        .unwrap();
        // Odd write sizes exercise chunk boundaries.
        for piece in data.chunks(77_777) {
            w.write_all(piece).unwrap();
        }
        let totals = w.finish().unwrap();
        let gz = out.lock().unwrap().clone();
        (gz, totals)
    }

    #[test]
    fn members_decode_in_order_as_one_stream() {
        let mut data = Vec::new();
        for i in 0..400_000u32 {
            data.extend_from_slice(format!("line {i} of some log text\n").as_bytes());
        }
        let mut random = vec![0u8; 3 * CHUNK + 5];
        rand::thread_rng().fill_bytes(&mut random);
        data.extend_from_slice(&random);
        let (gz, totals) = roundtrip(&data, 3);
        assert_eq!(totals.uncompressed, data.len() as u64);
        assert_eq!(totals.compressed, gz.len() as u64);
        let mut back = Vec::new();
        MultiGzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // Text compresses, random data is stored with little overhead.
        assert!(gz.len() < data.len() - 5 * CHUNK);
    }

    #[test]
    fn random_chunks_are_stored_not_deflated() {
        let mut random = vec![0u8; CHUNK];
        rand::thread_rng().fill_bytes(&mut random);
        assert!(looks_incompressible(&random));
        assert!(!looks_incompressible(&vec![b'a'; CHUNK]));
        let member = compress_member(&random).unwrap();
        assert!(member.len() < CHUNK + CHUNK / 100);
    }

    #[test]
    fn a_failing_sink_fails_the_writer() {
        let mut w =
            ParallelGzWriter::new(2, Box::new(|_, _| Err(io::Error::other("upload stopped"))))
                .unwrap();
        let data = vec![7u8; 8 * CHUNK];
        let wrote = w.write_all(&data);
        let finished = w.finish();
        assert!(wrote.is_err() || finished.is_err());
        if let Err(e) = finished {
            assert!(
                e.to_string().contains("upload stopped") || e.kind() == io::ErrorKind::BrokenPipe
            );
        }
    }

    #[test]
    fn empty_input_is_an_empty_stream() {
        let (gz, totals) = roundtrip(&[], 2);
        assert!(gz.is_empty());
        assert_eq!(totals.uncompressed, 0);
    }
}
