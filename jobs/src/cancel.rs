//! Cancellation of long-running work, blocking work included.
//!
//! Invariants:
//! - Blocking work (walks, reads of file content, SQLite copies) checks the
//!   token between files and between chunks with [`check`], so a cancelled
//!   backup stops within one chunk's work, not at the end of a 2 GiB file.
//! - The async side never drops a blocking task it started: it awaits it, so
//!   whatever that task holds (the entry's lock, a snapshot) is released only
//!   once it has really stopped, and a retry never overlaps it.
//! - A cancelled operation fails with [`crate::Error::Cancelled`]; the I/O
//!   error that carries a cancellation ([`io_cancelled`]) becomes that error
//!   wherever the library turns I/O errors into its own.

use std::future::Future;
use std::io;

pub use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The cause inside the `io::Error` of cancelled blocking work.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// `Err` once `token` is cancelled. Not `ErrorKind::Interrupted`: `io::copy`
/// and `read_exact` retry that kind, which would loop instead of stopping.
pub fn check(token: &CancellationToken) -> io::Result<()> {
    if token.is_cancelled() {
        Err(io::Error::other(Cancelled))
    } else {
        Ok(())
    }
}

/// True when `e` carries a cancellation from [`check`].
pub fn io_cancelled(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}

/// Runs `fut` unless `token` is cancelled first. Only for futures that own no
/// blocking work: dropping them stops them.
pub async fn unless_cancelled<T, E: Into<Error>>(
    token: &CancellationToken,
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    tokio::select! {
        biased;
        _ = token.cancelled() => Err(Error::Cancelled),
        r = fut => r.map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_check_is_recognized_through_io_errors() {
        let token = CancellationToken::new();
        assert!(check(&token).is_ok());
        token.cancel();
        let e = check(&token).unwrap_err();
        assert!(io_cancelled(&e));
        assert!(!io_cancelled(&io::Error::other("disk on fire")));
        assert!(matches!(Error::io("read x", e), Error::Cancelled));
    }
}
