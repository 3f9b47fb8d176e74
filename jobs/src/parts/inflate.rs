//! A plain part decoded while it arrives: each chunk of the GET's body is
//! hashed and inflated straight into the part's tar buffer, so that a plain
//! part never holds its stored bytes in a buffer of their own. That is one
//! buffer less per part in flight (which is what lets a restore keep more
//! GETs in flight in the same memory) and one copy less of every byte.
//!
//! Nothing decoded is handed on before the whole stored range matched its
//! sha256 ([`Inflating::finish`]): inflating bytes not yet checked is safe
//! (the output is bounded by the buffer, the decoder is memory-safe), and a
//! part whose hash differs is refused whatever it inflated to.
//!
//! The inflating itself ([`Inflater`]: into a buffer of the declared size,
//! refusing any other size) is also that of the parts of age objects, which
//! are inflated once decrypted.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::write::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::pool::{Pool, Pooled};
use super::Placed;
use crate::store::RangeSink;

/// The tar buffer a part inflates into, and whether it was offered more
/// than it holds.
struct Out {
    tar: Option<Pooled>,
    at: usize,
    more: bool,
    /// Bytes the decoder handed on: what the tests check inflating stops at.
    #[cfg(test)]
    offered: usize,
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        #[cfg(test)]
        {
            self.offered += b.len();
        }
        if let Some(tar) = &mut self.tar {
            let room = &mut tar.as_mut()[self.at..];
            let n = room.len().min(b.len());
            room[..n].copy_from_slice(&b[..n]);
            self.at += n;
            if n < b.len() {
                // The rest is dropped and only noted: the part is refused at
                // the end, once its hash says whether it is corrupt or lying.
                // The error stops the decoder inside the write it came from,
                // which may hold a whole part's members (an age part's).
                self.more = true;
                return Err(io::Error::other("more than the declared size"));
            }
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a part is refused ([`Inflater::finish`], [`Inflating::finish`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Sha256(String),
    Corrupt(String),
    /// It inflates to more (`None`) or fewer bytes than the manifest says.
    Size(Option<usize>),
}

/// Gzip members inflated into a tar buffer of the size the manifest
/// declares: the one inflater of both kinds of part (a plain part's stored
/// bytes as they arrive, [`Inflating`]; an age part's once decrypted).
pub(crate) struct Inflater {
    gz: MultiGzDecoder<Out>,
    want: usize,
    /// The first error of the decoder: after it, nothing more is inflated.
    broken: Option<io::Error>,
}

impl Inflater {
    /// Inflates into a buffer of `pool` that holds `want` bytes.
    pub(crate) fn new(pool: &std::sync::Arc<Pool>, want: usize) -> Self {
        Inflater::with_buffer(Some(pool.take(want)), want)
    }

    fn with_buffer(tar: Option<Pooled>, want: usize) -> Self {
        Inflater {
            gz: MultiGzDecoder::new(Out {
                tar,
                at: 0,
                more: false,
                #[cfg(test)]
                offered: 0,
            }),
            want,
            broken: None,
        }
    }

    /// Inflates the next bytes of the members. Once they inflated to more
    /// than the buffer holds, or turned out corrupt, the part is refused
    /// whatever follows, so nothing more is inflated: a part that inflates
    /// to gigabytes (a gzip bomb) costs no more than its first buffer.
    pub(crate) fn write(&mut self, gz: &[u8]) {
        if !self.refused() {
            let wrote = self.gz.write_all(gz);
            self.keep(wrote);
        }
    }

    /// Whether the part is refused whatever follows.
    fn refused(&self) -> bool {
        self.broken.is_some() || self.gz.get_ref().more
    }

    /// Keeps the decoder's error; an overflow is refused for its size, not
    /// as corrupt.
    fn keep(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            if !self.gz.get_ref().more {
                self.broken = Some(e);
            }
        }
    }

    /// Starts again from the first member, into the same buffer.
    fn restart(&mut self) {
        let tar = self.gz.get_mut().tar.take();
        *self = Inflater::with_buffer(tar, self.want);
    }

    /// The tar bytes, once every member was written: refused if the members
    /// are corrupt or truncated, or inflate to another length than `want`.
    pub(crate) fn finish(mut self) -> Result<Bytes, Refused> {
        // The decoder hands on its last bytes only when finished: they may
        // be the ones that overflow.
        if !self.refused() {
            let finished = self.gz.try_finish();
            self.keep(finished);
        }
        if self.gz.get_ref().more {
            return Err(Refused::Size(None));
        }
        if let Some(e) = self.broken {
            return Err(Refused::Corrupt(e.to_string()));
        }
        let out = self
            .gz
            .finish()
            .map_err(|e| Refused::Corrupt(e.to_string()))?;
        if out.at != self.want {
            return Err(Refused::Size(Some(out.at)));
        }
        match out.tar {
            Some(tar) => Ok(Bytes::from_owner(tar)),
            None => Err(Refused::Corrupt("its buffer was lost".into())),
        }
    }
}

/// The [`RangeSink`] of a plain part: its stored bytes hashed and inflated.
pub(crate) struct Inflating {
    tar: Inflater,
    hasher: Sha256,
    /// Time spent hashing and inflating, for the `restore timings` line.
    pub check: Duration,
    pub inflate: Duration,
}

impl Inflating {
    /// Inflates part `p` into a buffer of `pool`.
    pub(crate) fn new(pool: &std::sync::Arc<Pool>, p: &Placed) -> Self {
        Inflating {
            tar: Inflater::new(pool, (p.tar.1 - p.tar.0) as usize),
            hasher: Sha256::new(),
            check: Duration::ZERO,
            inflate: Duration::ZERO,
        }
    }

    /// The part's tar bytes, once every stored byte was taken: refused if
    /// the stored bytes are not those of the manifest, then as
    /// [`Inflater::finish`] refuses.
    pub(crate) fn finish(self, p: &Placed) -> Result<Bytes, Refused> {
        let sha256 = hex::encode(self.hasher.finalize());
        if sha256 != p.sha256 {
            return Err(Refused::Sha256(sha256));
        }
        self.tar.finish()
    }
}

impl RangeSink for Inflating {
    fn restart(&mut self) {
        self.tar.restart();
        self.hasher = Sha256::new();
    }

    fn take(&mut self, chunk: &[u8]) {
        let t = Instant::now();
        self.hasher.update(chunk);
        let hashed = Instant::now();
        self.check += hashed - t;
        self.tar.write(chunk);
        self.inflate += hashed.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    /// `members` gzip members, each of `size` bytes of one value.
    fn gz(members: &[(u8, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(v, size) in members {
            let mut e = GzEncoder::new(Vec::new(), Compression::fast());
            e.write_all(&vec![v; size]).unwrap();
            out.extend(e.finish().unwrap());
        }
        out
    }

    fn placed(stored: &[u8], tar: u64) -> Placed {
        Placed {
            n: 0,
            gz: (0, stored.len() as u64),
            tar: (0, tar),
            stored: (0, stored.len() as u64),
            sha256: hex::encode(Sha256::digest(stored)),
        }
    }

    fn inflate(stored: &[u8], p: &Placed, step: usize) -> Result<Bytes, Refused> {
        let mut s = Inflating::new(&Pool::new(2), p);
        for c in stored.chunks(step) {
            s.take(c);
        }
        s.finish(p)
    }

    #[test]
    fn members_inflate_in_chunks_of_any_size() {
        let stored = gz(&[(1, 70_000), (2, 5), (3, 200_000)]);
        let p = placed(&stored, 270_005);
        for step in [1, 7, 4096, stored.len()] {
            let tar = inflate(&stored, &p, step).unwrap();
            assert_eq!(tar.len(), 270_005, "step {step}");
            assert!(tar[..70_000].iter().all(|&b| b == 1));
            assert_eq!(&tar[70_000..70_005], &[2; 5]);
            assert!(tar[70_005..].iter().all(|&b| b == 3));
        }
    }

    #[test]
    fn a_restart_forgets_what_came_before() {
        let stored = gz(&[(9, 100_000)]);
        let p = placed(&stored, 100_000);
        let mut s = Inflating::new(&Pool::new(2), &p);
        // Half a body, then garbage: the read broke off.
        s.take(&stored[..stored.len() / 2]);
        s.take(b"garbage");
        s.restart();
        s.take(&stored);
        let tar = s.finish(&p).unwrap();
        assert!(tar.iter().all(|&b| b == 9));
    }

    #[test]
    fn parts_that_are_not_what_the_manifest_says_are_refused() {
        let stored = gz(&[(1, 1000), (2, 1000)]);
        // Another sha256.
        let mut p = placed(&stored, 2000);
        p.sha256 = "00".repeat(32);
        assert!(matches!(inflate(&stored, &p, 100), Err(Refused::Sha256(_))));
        // Cut inside its last member (the manifest hashed the cut bytes).
        let cut = &stored[..stored.len() - 3];
        let p = placed(cut, 2000);
        assert!(matches!(inflate(cut, &p, 100), Err(Refused::Corrupt(_))));
        // Not gzip at all.
        let junk = vec![7u8; 500];
        let p = placed(&junk, 500);
        assert!(matches!(inflate(&junk, &p, 100), Err(Refused::Corrupt(_))));
        // More and fewer tar bytes than declared.
        let p = placed(&stored, 1999);
        assert_eq!(inflate(&stored, &p, 100).unwrap_err(), Refused::Size(None));
        let p = placed(&stored, 2001);
        assert_eq!(
            inflate(&stored, &p, 100).unwrap_err(),
            Refused::Size(Some(2000))
        );
    }

    #[test]
    fn a_part_that_inflates_past_its_size_is_not_inflated_further() {
        // 100,000 bytes declared as 1,000, then bytes that are not gzip:
        // once the buffer overflowed the decoder is fed nothing more, so the
        // garbage never reaches it and the part is refused for its size.
        let mut stored = gz(&[(1, 100_000)]);
        stored.extend_from_slice(b"not gzip at all, never inflated");
        let p = placed(&stored, 1000);
        assert_eq!(inflate(&stored, &p, 64).unwrap_err(), Refused::Size(None));
    }

    #[test]
    fn a_part_written_whole_stops_inflating_where_its_buffer_ends() {
        // An age part's members reach the inflater in one write: 64 MiB of
        // zeros (64 KiB of gzip) declared as 1,000 bytes must not be
        // inflated to the end of that write.
        let stored = gz(&[(0, 64 << 20)]);
        let mut tar = Inflater::new(&Pool::new(2), 1000);
        tar.write(&stored);
        let offered = tar.gz.get_ref().offered;
        assert!(offered < 1 << 20, "inflated {offered} bytes for 1,000");
        assert_eq!(tar.finish().unwrap_err(), Refused::Size(None));
    }

    #[test]
    fn a_part_written_whole_inflates_like_one_that_arrives_in_chunks() {
        let stored = gz(&[(4, 300_000), (5, 1)]);
        let mut tar = Inflater::new(&Pool::new(2), 300_001);
        tar.write(&stored);
        let tar = tar.finish().unwrap();
        assert!(tar[..300_000].iter().all(|&b| b == 4));
        assert_eq!(tar[300_000], 5);
        // Fewer bytes than declared, and members cut short.
        let mut short = Inflater::new(&Pool::new(2), 300_002);
        short.write(&stored);
        assert_eq!(short.finish().unwrap_err(), Refused::Size(Some(300_001)));
        let mut cut = Inflater::new(&Pool::new(2), 300_001);
        cut.write(&stored[..stored.len() - 4]);
        assert!(matches!(cut.finish(), Err(Refused::Corrupt(_))));
    }
}
