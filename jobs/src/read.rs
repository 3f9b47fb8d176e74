//! Filling a buffer from a reader that may hand out fewer bytes per call
//! than asked for (a gzip decoder, the tar reader at part borders).

use std::io::{self, Read};

/// Reads until `buf` is full or the reader ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
