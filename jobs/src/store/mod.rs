//! The one storage interface. Everything above it (backup, restore, verify,
//! retention, pull) is written against [`ObjectStore`], so S3 and a local
//! directory are interchangeable and a test can wrap a store to inject faults.
//!
//! Keys are relative to the store's root (the `s3://bucket/prefix` or the
//! `file://` directory), use `/` as separator and never contain `..`, empty
//! segments or a leading `/` ([`check_key`]).

mod error;
mod fs;
mod location;
mod s3;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;

pub use error::StoreError;
pub use fs::FsStore;
pub use location::{CredentialSource, S3Settings, StoreLocation};
pub use s3::S3Store;

/// A stream of object bytes, as returned by [`ObjectStore::get`].
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// The body of a [`ObjectStore::put`]: chunks of any size, produced as the data
/// is generated. A producer error aborts the upload, so no object is created.
pub type PutBody = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What a listing or `head` says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// ETag (S3) or a size+mtime tag (directory store); opaque, for change detection.
    pub etag: Option<String>,
    /// When the store last wrote it (S3 `LastModified`, a file's mtime): the
    /// store's clock, not the writing machine's.
    pub modified: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// The same listing as [`list`](Self::list), given the keys an earlier
    /// listing of `prefix` returned (sorted): a store may use them to list
    /// parts of the key space at once. Whatever `earlier` holds (stale, wrong,
    /// empty), the result is exactly what `list` returns now.
    async fn list_with_hint(
        &self,
        prefix: &str,
        earlier: &[&str],
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let _ = earlier;
        self.list(prefix).await
    }
    /// The distinct "folders" right below `prefix` (`<prefix><name>/`),
    /// sorted: S3's delimiter listing. The default lists every key.
    async fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(prefix)?;
                let (name, _) = rest.split_once('/')?;
                Some(format!("{prefix}{name}/"))
            })
            .collect();
        out.dedup();
        Ok(out)
    }
    /// The object's metadata, or `None` if it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// Streams the object's bytes; [`StoreError::NotFound`] if it does not exist.
    async fn get(&self, key: &str) -> Result<ByteStream, StoreError>;
    /// Streams `len` (> 0) bytes of the object from `offset`: a ranged GET.
    /// A shorter object gives fewer bytes; callers count. The default reads
    /// the object from its start and skips (for stores that wrap another).
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        Ok(slice(self.get(key).await?, offset, len))
    }
    /// Stores `body` under `key`, replacing any object there, and returns the
    /// number of bytes stored. The object becomes visible only once complete.
    async fn put(&self, key: &str, body: PutBody) -> Result<u64, StoreError>;
    /// Deletes the object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Waits (bounded) for the clean-up requests that dropped `put`s left
    /// behind: a `put` future dropped mid-way (a cancelled backup) cannot
    /// await its own clean-up, so the S3 store sends the abort of its
    /// multipart upload from a task that this waits for.
    async fn settle(&self) {}
    /// `s3://bucket/prefix` or `file:///dir`, for messages.
    fn url(&self) -> String;
}

/// Opens the store a configuration names. Reads credentials, but makes no request.
pub fn open(location: &StoreLocation) -> Result<Arc<dyn ObjectStore>, StoreError> {
    Ok(match location {
        StoreLocation::S3(settings) => Arc::new(S3Store::new(settings)?),
        StoreLocation::File(root) => Arc::new(FsStore::new(root.clone())),
    })
}

/// A one-chunk body, for small objects such as manifests.
pub fn body_from_bytes(bytes: Bytes) -> PutBody {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

/// Attempts of a read whose body breaks off mid-stream: the SDK retries a
/// request only until its response headers arrive, so a connection cut during
/// a manifest's body or a restore's part would otherwise fail a whole backup
/// or restore.
const BODY_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled before each later one.
const BODY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// The re-read policy of [`get_small`] and [`get_range_to`].
struct Rereads<'a> {
    key: &'a str,
    offset: u64,
    attempt: u32,
}

impl<'a> Rereads<'a> {
    fn new(key: &'a str, offset: u64) -> Self {
        Rereads {
            key,
            offset,
            attempt: 1,
        }
    }

    /// Whether to read again after `e`, once the backoff has passed: only a
    /// request that broke off, and at most [`BODY_ATTEMPTS`] reads in all.
    async fn again(&mut self, e: &StoreError) -> bool {
        if !matches!(e, StoreError::Request { .. }) || self.attempt >= BODY_ATTEMPTS {
            return false;
        }
        tracing::warn!(key = self.key, offset = self.offset, attempt = self.attempt, error = %e, "a read broke off; reading it again");
        tokio::time::sleep(BODY_BACKOFF * 2u32.pow(self.attempt - 1)).await;
        self.attempt += 1;
        true
    }
}

/// Reads a whole (small) object into memory, refusing more than `limit` bytes.
/// A body that breaks off is read again from the start ([`Rereads`]).
pub async fn get_small(
    store: &dyn ObjectStore,
    key: &str,
    limit: usize,
) -> Result<Vec<u8>, StoreError> {
    let mut rereads = Rereads::new(key, 0);
    loop {
        let stream = store.get(key).await?;
        let e = match read_capped(stream, key, limit).await {
            Ok(bytes) => return Ok(bytes),
            Err(e) => e,
        };
        if !rereads.again(&e).await {
            return Err(e);
        }
    }
}

/// Where the bytes of a ranged read go, chunk by chunk as they arrive
/// ([`get_range_to`]).
pub trait RangeSink {
    /// Forgets every byte taken so far: the read broke off and the range is
    /// read again from its start.
    fn restart(&mut self);
    /// The next bytes of the range.
    fn take(&mut self, chunk: &[u8]);
}

/// Fills a buffer from its start.
struct Fill<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl RangeSink for Fill<'_> {
    fn restart(&mut self) {
        self.at = 0;
    }

    fn take(&mut self, chunk: &[u8]) {
        self.buf[self.at..self.at + chunk.len()].copy_from_slice(chunk);
        self.at += chunk.len();
    }
}

/// Fills `buf` with the bytes of `key` from `offset` ([`get_range_to`]).
pub async fn get_range_into(
    store: &dyn ObjectStore,
    key: &str,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), StoreError> {
    let len = buf.len() as u64;
    get_range_to(store, key, offset, len, &mut Fill { buf, at: 0 }).await
}

/// Hands the `len` bytes of `key` from `offset` to `sink` as they arrive,
/// reading again ([`Rereads`], after [`RangeSink::restart`]) when the
/// request fails or its body breaks off: a part of a restore is small enough
/// to fetch again, and a long restore should not fail on one dropped
/// connection. Fewer or more bytes than `len` is an error; `sink` never
/// takes more than `len`.
pub async fn get_range_to(
    store: &dyn ObjectStore,
    key: &str,
    offset: u64,
    len: u64,
    sink: &mut (dyn RangeSink + Send),
) -> Result<(), StoreError> {
    let mut rereads = Rereads::new(key, offset);
    loop {
        let got = match store.get_range(key, offset, len).await {
            Ok(stream) => feed(stream, len, sink).await,
            Err(e) => Err(e),
        };
        let e = match got {
            Ok(n) if n == len => return Ok(()),
            Ok(n) => {
                return Err(StoreError::Request {
                    op: "get",
                    url: store.url(),
                    key: key.to_string(),
                    message: format!(
                        "bytes {offset}-{} asked, {n} received: the object is not the size its manifest says",
                        offset + len,
                    ),
                })
            }
            Err(e) => e,
        };
        if !rereads.again(&e).await {
            return Err(e);
        }
        sink.restart();
    }
}

/// Hands `stream` to `sink`, at most `len` bytes; returns the bytes the
/// stream held (more than `len` are counted, not handed on).
async fn feed(
    mut stream: ByteStream,
    len: u64,
    sink: &mut (dyn RangeSink + Send),
) -> Result<u64, StoreError> {
    use futures::StreamExt;
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = len.saturating_sub(total);
        let n = (chunk.len() as u64).min(room) as usize;
        if n > 0 {
            sink.take(&chunk[..n]);
        }
        total += chunk.len() as u64;
    }
    Ok(total)
}

/// `len` bytes of `stream` from `offset`.
fn slice(stream: ByteStream, offset: u64, len: u64) -> ByteStream {
    use futures::StreamExt;
    let state = (stream, offset, len);
    Box::pin(futures::stream::unfold(
        state,
        |(mut stream, mut skip, mut left)| async move {
            while left > 0 {
                match stream.next().await? {
                    Err(e) => return Some((Err(e), (stream, 0, 0))),
                    Ok(mut b) => {
                        let dropped = skip.min(b.len() as u64);
                        skip -= dropped;
                        let _ = b.split_to(dropped as usize);
                        if b.is_empty() {
                            continue;
                        }
                        let keep = left.min(b.len() as u64);
                        left -= keep;
                        b.truncate(keep as usize);
                        return Some((Ok(b), (stream, skip, left)));
                    }
                }
            }
            None
        },
    ))
}

async fn read_capped(
    mut stream: ByteStream,
    key: &str,
    limit: usize,
) -> Result<Vec<u8>, StoreError> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(StoreError::TooLarge {
                key: key.to_string(),
                limit: limit as u64,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Rejects keys that could escape the store's root or that S3 and a directory
/// would treat differently.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidKey {
            key: key.escape_debug().to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("starts with /");
    }
    if key.contains('\0') {
        return bad("contains a NUL byte");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("has an empty path segment"),
            "." | ".." => return bad("has a . or .. segment"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Serves `hello`, but the first `cuts` bodies break off after `hel`.
    struct Cutting {
        cuts: AtomicU32,
        gets: AtomicU32,
    }

    #[async_trait]
    impl ObjectStore for Cutting {
        async fn list(&self, _: &str) -> Result<Vec<ObjectInfo>, StoreError> {
            Ok(Vec::new())
        }
        async fn head(&self, _: &str) -> Result<Option<ObjectInfo>, StoreError> {
            Ok(None)
        }
        async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let cut = self
                .cuts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let tail = if cut {
                Err(StoreError::Request {
                    op: "get",
                    url: "s3://b".into(),
                    key: key.into(),
                    message: "connection closed before message completed".into(),
                })
            } else {
                Ok(Bytes::from_static(b"lo"))
            };
            let chunks = vec![Ok(Bytes::from_static(b"hel")), tail];
            Ok(Box::pin(futures::stream::iter(chunks)))
        }
        async fn put(&self, _: &str, _: PutBody) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn url(&self) -> String {
            "s3://b".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_range_cut_mid_body_is_read_again_and_a_short_one_is_refused() {
        let store = Cutting {
            cuts: AtomicU32::new(2),
            gets: AtomicU32::new(0),
        };
        let mut buf = [0u8; 3];
        get_range_into(&store, "k", 1, &mut buf).await.unwrap();
        assert_eq!(&buf, b"ell");
        assert_eq!(store.gets.load(Ordering::SeqCst), 3);

        let store = Cutting {
            cuts: AtomicU32::new(10),
            gets: AtomicU32::new(0),
        };
        let err = get_range_into(&store, "k", 1, &mut buf).await.unwrap_err();
        assert!(err.to_string().contains("connection closed"), "{err}");
        assert_eq!(store.gets.load(Ordering::SeqCst), BODY_ATTEMPTS);

        // An object shorter than the manifest says is an answer: no second read.
        let store = Cutting {
            cuts: AtomicU32::new(0),
            gets: AtomicU32::new(0),
        };
        let mut long = [0u8; 10];
        let err = get_range_into(&store, "k", 0, &mut long).await.unwrap_err();
        assert!(err.to_string().contains("5 received"), "{err}");
        assert_eq!(store.gets.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_object_cut_mid_body_is_read_again() {
        let store = Cutting {
            cuts: AtomicU32::new(2),
            gets: AtomicU32::new(0),
        };
        assert_eq!(get_small(&store, "k", 100).await.unwrap(), b"hello");
        assert_eq!(store.gets.load(Ordering::SeqCst), 3);

        let store = Cutting {
            cuts: AtomicU32::new(10),
            gets: AtomicU32::new(0),
        };
        let err = get_small(&store, "k", 100).await.unwrap_err();
        assert!(err.to_string().contains("connection closed"), "{err}");
        assert_eq!(store.gets.load(Ordering::SeqCst), BODY_ATTEMPTS);

        // Too large is an answer, not a transient failure: no second read.
        let store = Cutting {
            cuts: AtomicU32::new(0),
            gets: AtomicU32::new(0),
        };
        assert!(matches!(
            get_small(&store, "k", 3).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert_eq!(store.gets.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn keys_that_could_escape_are_refused() {
        for key in [
            "",
            "/abs",
            "a/../b",
            "..",
            "a//b",
            "a/./b",
            "a\0b",
            "trailing/",
        ] {
            assert!(check_key(key).is_err(), "{key:?} should be refused");
        }
        check_key("web-1/acme/20261123T101500Z-abcd/data.tar.gz").unwrap();
        check_key("unicode/é/文件").unwrap();
    }
}
