//! The backup side: cuts the member sequence into parts and hashes each
//! part's stored range while the bytes go out, so the index costs no second
//! read of anything.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::{Layout, Part, PartIndex, MAX_PARTS};

/// Parts aimed at per object: few enough for a small manifest.
const TARGET_PARTS: u64 = 4096;
/// Big enough that each ranged GET is worth its round trip.
const MIN_PART_TAR: u64 = 4 * 1024 * 1024;
/// Small enough that a restore holding a few parts stays in its memory bound.
const MAX_TARGET_TAR: u64 = 32 * 1024 * 1024;

/// Tar bytes per part for a source of `source_bytes`.
pub(crate) fn part_target(source_bytes: u64) -> u64 {
    source_bytes
        .div_ceil(TARGET_PARTS)
        .next_power_of_two()
        .clamp(MIN_PART_TAR, MAX_TARGET_TAR)
}

/// sha256 of byte ranges of a stream, fed in order; ranges may overlap and
/// their ends may be set after they were opened, as long as it happens before
/// the stream passes them.
#[derive(Default)]
pub(crate) struct RangeHasher {
    pos: u64,
    open: VecDeque<Range>,
    done: Vec<String>,
}

struct Range {
    start: u64,
    end: Option<u64>,
    hasher: Sha256,
}

impl RangeHasher {
    /// Bytes fed so far.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    fn open(&mut self, start: u64) {
        self.open.push_back(Range {
            start,
            end: None,
            hasher: Sha256::new(),
        });
    }

    /// Ends the newest range at `end`.
    fn close(&mut self, end: u64) {
        if let Some(r) = self.open.back_mut() {
            r.end = Some(end);
        }
        self.retire();
    }

    fn discard_newest(&mut self) {
        self.open.pop_back();
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let (a, b) = (self.pos, self.pos + bytes.len() as u64);
        for r in &mut self.open {
            let lo = a.max(r.start);
            let hi = b.min(r.end.unwrap_or(u64::MAX));
            if lo < hi {
                r.hasher
                    .update(&bytes[(lo - a) as usize..(hi - a) as usize]);
            }
        }
        self.pos = b;
        self.retire();
    }

    fn retire(&mut self) {
        while self
            .open
            .front()
            .is_some_and(|r| r.end.is_some_and(|e| e <= self.pos))
        {
            if let Some(r) = self.open.pop_front() {
                self.done.push(hex::encode(r.hasher.finalize()));
            }
        }
    }

    /// Ends every range still open at the end of the stream.
    fn finish(mut self) -> Vec<String> {
        for r in &mut self.open {
            r.end = Some(r.end.map_or(self.pos, |e| e.min(self.pos)));
        }
        self.retire();
        self.done
    }
}

/// Shared between the member sink (which decides the parts) and the end of
/// the upload channel (which sees the stored bytes).
pub(crate) type SharedHasher = Arc<Mutex<RangeHasher>>;

/// Builds the index of one object from the members going into it.
pub(crate) struct IndexBuilder {
    layout: Layout,
    target: u64,
    /// Gzip bytes of every member so far.
    gz: u64,
    /// Gzip and tar bytes of the part being filled.
    current: (u64, u64),
    closed: Vec<(u64, u64)>,
    hasher: SharedHasher,
}

impl IndexBuilder {
    /// A builder whose first range opens at byte 0: call before anything
    /// reaches `hasher`. The age payload offset is set by [`Self::set_age`]
    /// once the header is out.
    pub(crate) fn new(target: u64, hasher: SharedHasher) -> Self {
        lock(&hasher).open(0);
        IndexBuilder {
            layout: Layout {
                age: None,
                size: u64::MAX,
            },
            target,
            gz: 0,
            current: (0, 0),
            closed: Vec::new(),
            hasher,
        }
    }

    /// The object is an age file whose payload begins where the stream is now.
    pub(crate) fn set_age(&mut self) {
        self.layout.age = Some(lock(&self.hasher).position());
    }

    /// Call before the member's bytes are written.
    pub(crate) fn member(&mut self, gz: u64, tar: u64) {
        self.gz += gz;
        self.current.0 += gz;
        self.current.1 += tar;
        if self.current.1 >= self.target {
            let mut h = lock(&self.hasher);
            h.close(self.layout.stored_end(self.gz));
            h.open(self.layout.stored_start(self.gz));
            self.closed.push(std::mem::take(&mut self.current));
        }
    }

    /// The index, once every stored byte went through the hasher. `None`
    /// when the object needs more parts than a manifest lists.
    pub(crate) fn finish(mut self) -> Option<PartIndex> {
        let sums = {
            let mut h = lock(&self.hasher);
            if self.current.0 > 0 {
                let end = h.position();
                h.close(end);
                self.closed.push(self.current);
            } else {
                // Opened after the last part, which nothing followed.
                h.discard_newest();
            }
            std::mem::take(&mut *h).finish()
        };
        if self.closed.len() > MAX_PARTS || sums.len() != self.closed.len() {
            return None;
        }
        Some(PartIndex {
            payload_offset: self.layout.age.unwrap_or(0),
            parts: self
                .closed
                .into_iter()
                .zip(sums)
                .map(|((gz, tar), sha256)| Part { gz, tar, sha256 })
                .collect(),
        })
    }
}

/// A poisoned lock only means another thread panicked mid-update; the
/// backup fails through that thread's error, the hashes are never used.
fn lock(h: &SharedHasher) -> std::sync::MutexGuard<'_, RangeHasher> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::{AGE_CHUNK, AGE_CHUNK_STORED};

    #[test]
    fn targets_grow_with_the_source_within_bounds() {
        assert_eq!(part_target(0), MIN_PART_TAR);
        assert_eq!(part_target(4 << 30), MIN_PART_TAR);
        assert_eq!(part_target(64 << 30), 16 << 20);
        assert_eq!(part_target(1 << 50), MAX_TARGET_TAR);
    }

    #[test]
    fn plain_parts_hash_their_members() {
        let h: SharedHasher = Arc::default();
        let mut b = IndexBuilder::new(10, Arc::clone(&h));
        let members: [(&[u8], u64); 4] = [(b"aaaa", 6), (b"bb", 6), (b"ccc", 3), (b"d", 2)];
        for (m, tar) in members {
            b.member(m.len() as u64, tar);
            h.lock().unwrap().update(m);
        }
        let index = b.finish().unwrap();
        let sha = |d: &[u8]| hex::encode(Sha256::digest(d));
        assert_eq!(
            index.parts,
            vec![
                Part {
                    gz: 6,
                    tar: 12,
                    sha256: sha(b"aaaabb")
                },
                Part {
                    gz: 4,
                    tar: 5,
                    sha256: sha(b"cccd")
                },
            ]
        );
        let layout = Layout {
            age: None,
            size: 10,
        };
        index.check(layout, 17).unwrap();
    }

    #[test]
    fn age_parts_hash_whole_chunks_around_their_members() {
        // A fake "age" stream: a 7-byte header, then chunks of AGE_CHUNK_STORED
        // stored bytes per AGE_CHUNK plaintext bytes, written as a real age
        // writer does: a chunk leaves only once the next byte is known.
        let h: SharedHasher = Arc::default();
        let mut b = IndexBuilder::new(AGE_CHUNK, Arc::clone(&h));
        let header = [9u8; 7];
        h.lock().unwrap().update(&header);
        b.set_age();
        let members = [AGE_CHUNK / 2 + 1, AGE_CHUNK, 3, AGE_CHUNK * 2];
        let total_pt: u64 = members.iter().sum();
        let stored_of = |pt: u64| -> Vec<u8> {
            // Chunk k's stored bytes are all k.
            let chunks = pt.div_ceil(AGE_CHUNK);
            (0..chunks)
                .flat_map(|k| {
                    let len = if k + 1 == chunks {
                        pt - k * AGE_CHUNK + 16
                    } else {
                        AGE_CHUNK_STORED
                    };
                    std::iter::repeat_n(k as u8, len as usize)
                })
                .collect()
        };
        let all = stored_of(total_pt);
        let mut sent = 0usize;
        let mut pt = 0u64;
        for m in members {
            b.member(m, m);
            pt += m;
            // Full chunks before the one holding the last written byte leave.
            let ready = ((pt - 1) / AGE_CHUNK * AGE_CHUNK_STORED) as usize;
            h.lock().unwrap().update(&all[sent..ready]);
            sent = ready;
        }
        h.lock().unwrap().update(&all[sent..]);
        let index = b.finish().unwrap();
        let size = 7 + all.len() as u64;
        let layout = Layout { age: Some(7), size };
        index.check(layout, total_pt).unwrap();
        let mut stream = header.to_vec();
        stream.extend_from_slice(&all);
        for p in index.placed(layout) {
            let (s, e) = p.stored;
            assert_eq!(
                p.sha256,
                hex::encode(Sha256::digest(&stream[s as usize..e as usize])),
                "part {}",
                p.n
            );
        }
        assert_eq!(index.placed(layout).last().unwrap().stored.1, size);
    }
}
