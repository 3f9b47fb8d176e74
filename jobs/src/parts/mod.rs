//! The part index of an archive object: which byte ranges of the stored object
//! can be fetched, checked and decoded on their own, so that a restore reads
//! one object with several ranged GETs at once instead of one long stream.
//!
//! The parallel compressor already cuts the tar stream into independent gzip
//! members ([`crate::archive::ParallelGzWriter`]); a part is a run of
//! consecutive members. The manifest lists, per part, the length of its
//! members in the gzip stream, the length of tar they inflate to, and the
//! sha256 of the stored bytes that hold it. Offsets are the running sums, so
//! parts cannot overlap or leave gaps, and the object stays one plain
//! multi-member gzip (or one age file around it): `tar xzf` and
//! `age -d | tar xzf` still restore it by hand.
//!
//! Encrypted objects: age encrypts in 64 KiB chunks, each authenticated with
//! its index, so a part's stored range is the run of whole chunks around its
//! members (neighbouring parts share a chunk at their border), starting one
//! byte early so that a decoder never seeks to a chunk boundary (age's reader
//! would then look at the end of the whole file, which a ranged read does not
//! have). The sha256 covers that ciphertext range, never the plaintext: a
//! manifest, stored in the clear, must not let anyone confirm a guess of the
//! content.
//!
//! Backups made before the index existed have none and restore sequentially.

mod build;
mod decrypt;
mod fetch;
mod inflate;
mod pool;

pub(crate) use build::{part_target, IndexBuilder, SharedHasher};
pub use fetch::Timings;
pub(crate) use fetch::{decode_permits, fetch_parts, Decoding, Stage, MAX_STREAMS};
pub(crate) use pool::Pool;

use serde::{Deserialize, Serialize};

/// Plaintext bytes per age STREAM chunk.
pub const AGE_CHUNK: u64 = 64 * 1024;
/// Stored bytes per full age chunk: the plaintext and its Poly1305 tag.
pub const AGE_CHUNK_STORED: u64 = AGE_CHUNK + 16;
/// More parts than any object needs ([`part_target`] aims at 4,096).
pub const MAX_PARTS: usize = 16_384;
/// Bounds what a restore holds in memory for one part.
pub const MAX_PART_TAR: u64 = 64 * 1024 * 1024;

/// The index of one stored object (data object or block).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartIndex {
    /// age objects: the length of the header and payload nonce, where the
    /// first chunk begins; 0 for plain objects.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payload_offset: u64,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Bytes of the gzip stream (whole members).
    pub gz: u64,
    /// Bytes of tar they inflate to.
    pub tar: u64,
    /// Of the stored bytes [`Placed::stored`].
    pub sha256: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A part with its place in the gzip stream, the tar stream and the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Position in the index, from 0.
    pub n: usize,
    pub gz: (u64, u64),
    pub tar: (u64, u64),
    /// The stored byte range to fetch, `[start, end)`.
    pub stored: (u64, u64),
    pub sha256: String,
}

/// How gzip offsets map to stored bytes in one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `Some(payload_offset)` for an age object.
    pub age: Option<u64>,
    /// The stored object's size.
    pub size: u64,
}

impl Layout {
    /// The gzip stream's length: the object itself, or the age plaintext.
    pub fn gz_len(&self) -> Option<u64> {
        match self.age {
            None => Some(self.size),
            Some(payload) => {
                let ct = self.size.checked_sub(payload)?;
                let chunks = ct.div_ceil(AGE_CHUNK_STORED);
                // Every chunk, the last included, holds at least one byte.
                let pt = ct.checked_sub(chunks * 16)?;
                (chunks > 0 && pt > (chunks - 1) * AGE_CHUNK).then_some(pt)
            }
        }
    }

    /// Where a decoder of the part starting at gzip offset `a` positions
    /// itself: one byte before it (two when that byte starts a chunk), so
    /// that it never seeks to a chunk boundary. See the module comment.
    pub fn lead_in(a: u64) -> u64 {
        match a {
            0 => 0,
            1 => 0,
            a if (a - 1) % AGE_CHUNK == 0 => a - 2,
            a => a - 1,
        }
    }

    /// The stored byte where the part that begins at gzip offset `a` begins.
    pub fn stored_start(&self, a: u64) -> u64 {
        match self.age {
            None => a,
            Some(_) if a == 0 => 0,
            Some(payload) => payload + Self::lead_in(a) / AGE_CHUNK * AGE_CHUNK_STORED,
        }
    }

    /// The stored byte just after the part that ends at gzip offset `b`
    /// (`b > 0`), not clamped to the object's size.
    pub fn stored_end(&self, b: u64) -> u64 {
        match self.age {
            None => b,
            Some(payload) => payload + ((b - 1) / AGE_CHUNK + 1) * AGE_CHUNK_STORED,
        }
    }
}

impl PartIndex {
    /// Checks the index of an object of `layout` holding `tar_bytes` of tar:
    /// the parts must add up to exactly the object and the tar stream, and
    /// none may be larger than a restore holds in memory.
    pub fn check(&self, layout: Layout, tar_bytes: u64) -> Result<(), String> {
        if self.parts.is_empty() || self.parts.len() > MAX_PARTS {
            return Err(format!(
                "its part index lists {} parts (1 to {MAX_PARTS} allowed)",
                self.parts.len()
            ));
        }
        match layout.age {
            Some(p) if p == 0 || p >= layout.size => {
                return Err("the part index places the age payload outside the object".into())
            }
            None if self.payload_offset != 0 => {
                return Err(
                    "the part index has an age payload offset, but the object is not encrypted"
                        .into(),
                )
            }
            _ => {}
        }
        let (mut gz, mut tar) = (0u64, 0u64);
        for (n, p) in self.parts.iter().enumerate() {
            if p.gz == 0 || p.tar > MAX_PART_TAR || p.gz > MAX_PART_TAR + MAX_PART_TAR / 8 {
                return Err(format!(
                    "part {n} of the index declares {} gzip and {} tar bytes \
                     (at most {MAX_PART_TAR} each)",
                    p.gz, p.tar
                ));
            }
            if !crate::manifest::is_sha256(&p.sha256) {
                return Err(format!("the checksum of part {n} is not a sha256"));
            }
            gz = gz.checked_add(p.gz).ok_or("the part sizes overflow")?;
            tar = tar.checked_add(p.tar).ok_or("the part sizes overflow")?;
        }
        if Some(gz) != layout.gz_len() {
            return Err(format!(
                "its parts hold {gz} gzip bytes, which is not what the {}-byte object holds",
                layout.size
            ));
        }
        if tar != tar_bytes {
            return Err(format!(
                "its parts inflate to {tar} bytes, the manifest says {tar_bytes}"
            ));
        }
        Ok(())
    }

    /// The parts with their places, in order. Call after [`Self::check`].
    pub fn placed(&self, layout: Layout) -> Vec<Placed> {
        let (mut gz, mut tar) = (0u64, 0u64);
        self.parts
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let placed = Placed {
                    n,
                    gz: (gz, gz + p.gz),
                    tar: (tar, tar + p.tar),
                    stored: (
                        layout.stored_start(gz),
                        layout.stored_end(gz + p.gz).min(layout.size),
                    ),
                    sha256: p.sha256.clone(),
                };
                gz += p.gz;
                tar += p.tar;
                placed
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(gz: u64, tar: u64) -> Part {
        Part {
            gz,
            tar,
            sha256: "a".repeat(64),
        }
    }

    #[test]
    fn age_layout_matches_the_stream_format() {
        // 3 full chunks and one of 10 bytes after a 100-byte header.
        let pt = 3 * AGE_CHUNK + 10;
        let size = 100 + 3 * AGE_CHUNK_STORED + 10 + 16;
        let l = Layout {
            age: Some(100),
            size,
        };
        assert_eq!(l.gz_len(), Some(pt));
        // A plaintext of whole chunks has no empty last chunk.
        let l2 = Layout {
            age: Some(100),
            size: 100 + 2 * AGE_CHUNK_STORED,
        };
        assert_eq!(l2.gz_len(), Some(2 * AGE_CHUNK));
        // A last chunk of nothing but a tag is not one age writes.
        let l3 = Layout {
            age: Some(100),
            size: 100 + AGE_CHUNK_STORED + 16,
        };
        assert_eq!(l3.gz_len(), None);
        // Parts: the first starts at 0 (the header), the others one byte
        // early (two when that byte opens a chunk), all end on chunk ends.
        assert_eq!(l.stored_start(0), 0);
        assert_eq!(l.stored_start(5), 100);
        assert_eq!(l.stored_start(AGE_CHUNK + 5), 100 + AGE_CHUNK_STORED);
        assert_eq!(l.stored_start(AGE_CHUNK), 100);
        assert_eq!(l.stored_start(AGE_CHUNK + 1), 100);
        assert_eq!(l.stored_start(AGE_CHUNK + 2), 100 + AGE_CHUNK_STORED);
        assert_eq!(l.stored_end(AGE_CHUNK), 100 + AGE_CHUNK_STORED);
        assert_eq!(l.stored_end(AGE_CHUNK + 1), 100 + 2 * AGE_CHUNK_STORED);
        for a in [
            1,
            2,
            AGE_CHUNK,
            AGE_CHUNK + 1,
            AGE_CHUNK + 2,
            5 * AGE_CHUNK + 1,
        ] {
            let t = Layout::lead_in(a);
            assert!(t < a && (t == 0 || t % AGE_CHUNK != 0), "{a} -> {t}");
        }
    }

    #[test]
    fn an_index_must_add_up_to_its_object() {
        let plain = Layout {
            age: None,
            size: 300,
        };
        let ok = PartIndex {
            payload_offset: 0,
            parts: vec![part(100, 1000), part(200, 24)],
        };
        ok.check(plain, 1024).unwrap();
        let placed = ok.placed(plain);
        assert_eq!(placed[1].gz, (100, 300));
        assert_eq!(placed[1].tar, (1000, 1024));
        assert_eq!(placed[1].stored, (100, 300));
        type Mutation = Box<dyn Fn(&mut PartIndex)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("gzip bytes", Box::new(|i| i.parts[0].gz = 99)),
            ("inflate to", Box::new(|i| i.parts[0].tar = 999)),
            ("lists 0 parts", Box::new(|i| i.parts.clear())),
            ("at most", Box::new(|i| i.parts[0].tar = MAX_PART_TAR + 1)),
            ("at most", Box::new(|i| i.parts[0].gz = 0)),
            ("not a sha256", Box::new(|i| i.parts[1].sha256 = "x".into())),
            ("not encrypted", Box::new(|i| i.payload_offset = 10)),
        ];
        for (want, mutate) in cases {
            let mut i = ok.clone();
            mutate(&mut i);
            let err = i.check(plain, 1024).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let aged = Layout {
            age: Some(300),
            size: 300,
        };
        let err = ok.check(aged, 1024).unwrap_err();
        assert!(err.contains("outside the object"), "{err}");
    }
}
