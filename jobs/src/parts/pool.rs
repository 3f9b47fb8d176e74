//! Reused part buffers. A restore moves gigabytes through a few buffers of a
//! few MiB each; allocating every one afresh makes the kernel fault in and
//! zero each 4 KiB page again, which cost about a third of a restore's CPU.
//! Buffers stay initialized (full length) and are handed out as a length to
//! use, so taking one costs neither a page fault nor a memset.

use std::sync::{Arc, Mutex};

/// Buffer sizes are rounded up to this, so that parts of slightly different
/// sizes reuse the same buffers.
const GRAIN: usize = 256 * 1024;
const SLACK: usize = 64 * 1024;

pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Free buffers kept at most; more are released.
    keep: usize,
}

impl Pool {
    pub(crate) fn new(keep: usize) -> Arc<Self> {
        Arc::new(Pool {
            free: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// A buffer of at least `len` bytes, `len` of them in use.
    pub(crate) fn take(self: &Arc<Self>, len: usize) -> Pooled {
        let reused = self.free.lock().ok().and_then(|mut free| {
            let i = free.iter().position(|b| b.len() >= len)?;
            Some(free.swap_remove(i))
        });
        let buf = reused.unwrap_or_else(|| vec![0u8; (len + SLACK).next_multiple_of(GRAIN)]);
        Pooled {
            buf,
            len,
            pool: Arc::clone(self),
        }
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(buf);
            }
        }
    }
}

/// A buffer of the pool, returned to it when dropped.
pub(crate) struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<Pool>,
}

impl Pooled {
    /// The bytes in use.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len());
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let pool = Pool::new(1);
        let mut a = pool.take(10);
        a.as_mut().copy_from_slice(b"0123456789");
        let ptr = a.as_ref().as_ptr();
        drop(a);
        let b = pool.take(GRAIN - SLACK);
        assert_eq!(b.as_ref().as_ptr(), ptr, "the freed buffer is reused");
        assert_eq!(b.as_ref().len(), GRAIN - SLACK);
        let c = pool.take(3 * GRAIN);
        assert!(c.as_ref().as_ptr() != ptr);
        drop((b, c));
        assert_eq!(pool.free.lock().unwrap().len(), 1);
    }
}
