//! Decrypting one part of an age object on its own: age's seekable reader
//! over a view holding only the object's header and the part's stored range
//! (see the module documentation of [`super`] for how parts sit on age's
//! chunks).

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use age::x25519;

use super::{Layout, Placed};
use crate::encryption;

/// Fills `gz` with the gzip bytes of part `p` from its stored range, through
/// age's own seekable reader over a view that holds the header and that range.
pub(crate) fn decrypt_range(
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
    use sha2::{Digest, Sha256};
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
