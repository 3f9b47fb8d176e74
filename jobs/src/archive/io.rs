//! Readers that enforce what a manifest declares while data streams through:
//! the object's sha256 and size, and a cap on decompressed bytes (gzip bombs).

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// Hashes and counts what is read, and fails as soon as more than `limit`
/// bytes arrive.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Reads whatever is left (a decoder may stop before the end), then returns
    /// the hex sha256 and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(format!(
                "the object is larger than the {} bytes its manifest declares",
                self.limit
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Fails once more than `limit` bytes have been read through it.
pub struct CappedReader<R> {
    inner: R,
    count: u64,
    limit: u64,
}

impl<R: Read> CappedReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        CappedReader {
            inner,
            count: 0,
            limit,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(format!(
                "the archive expands beyond the {} bytes its manifest declares",
                self.limit
            )));
        }
        Ok(n)
    }
}
