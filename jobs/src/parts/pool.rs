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
            // The smallest buffer that fits, so that a small part does not
            // take the buffer a large one needs next.
            let fits = (0..free.len())
                .filter(|&i| free[i].len() >= len)
                .min_by_key(|&i| free[i].len());
            match fits {
                Some(i) => Some(free.swap_remove(i)),
                None => {
                    // None fits: a new one is allocated. Release the
                    // smallest free one for it, so that what the pool holds
                    // follows the parts in flight instead of adding up every
                    // size it has seen.
                    if let Some(i) = (0..free.len()).min_by_key(|&i| free[i].len()) {
                        free.swap_remove(i);
                    }
                    None
                }
            }
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

    #[test]
    fn the_smallest_fitting_buffer_is_taken_and_a_miss_releases_one() {
        let pool = Pool::new(4);
        let small = pool.take(GRAIN - SLACK);
        let large = pool.take(4 * GRAIN);
        let large_ptr = large.as_ref().as_ptr();
        drop((small, large));
        // A small part takes the small buffer, not the large one.
        let a = pool.take(10);
        assert_eq!(a.as_ref().len(), 10);
        let b = pool.take(4 * GRAIN - SLACK);
        assert_eq!(b.as_ref().as_ptr(), large_ptr);
        drop((a, b));
        assert_eq!(pool.free.lock().unwrap().len(), 2);
        // Nothing free fits 8 grains: the smallest free buffer is released
        // instead of being kept beside the new one.
        let c = pool.take(8 * GRAIN);
        {
            let free = pool.free.lock().unwrap();
            assert_eq!(free.len(), 1);
            assert!(free[0].len() >= 4 * GRAIN);
        }
        drop(c);
        assert_eq!(pool.free.lock().unwrap().len(), 2);
    }
}
