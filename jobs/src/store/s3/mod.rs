//! S3 store through aws-sdk-s3. Built by hand rather than from the AWS
//! environment loader, so that stray `AWS_*` variables on a host (a CA bundle,
//! an endpoint override, a profile) cannot silently change where backups go.
//! Request checksums are sent only when an operation requires them: several
//! S3-compatible stores reject the newer default checksum headers.
//!
//! One file per concern: [`client`] builds the SDK client, [`credentials`]
//! reads the access key, [`errors`] classifies SDK errors, [`list`] holds the
//! listing strategies and [`upload`] the single and multipart uploads.

mod client;
mod credentials;
mod errors;
mod list;
mod upload;

use async_trait::async_trait;
use aws_sdk_s3::Client;

use super::{ByteStream, ObjectInfo, ObjectStore, PutBody, StoreError};
use errors::chain_text;

/// An S3 timestamp (`LastModified`) as a UTC time; `None` if out of range.
fn time_of(t: &aws_sdk_s3::primitives::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
    /// Aborts of multipart uploads whose `put` was dropped ([`upload`]).
    cleanups: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list_all(prefix).await
    }

    async fn list_with_hint(
        &self,
        prefix: &str,
        earlier: &[&str],
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list_hinted(prefix, earlier).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let full = self.full_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                etag: out.e_tag().map(str::to_string),
                modified: out.last_modified().and_then(time_of),
            })),
            Err(e) => match self.classify("head", key, e) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.get_object(key, None).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        let last = offset.saturating_add(len.max(1) - 1);
        self.get_object(key, Some(format!("bytes={offset}-{last}")))
            .await
    }

    async fn put(&self, key: &str, body: PutBody) -> Result<u64, StoreError> {
        self.put_streamed(key, body).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("delete", key, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn settle(&self) {
        // Each abort is bounded by ABORT_TIMEOUT itself; a poisoned list only
        // means a panicked pusher, whose handles are still in it.
        let pending = match self.cleanups.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for abort in pending {
            if let Err(e) = abort.await {
                tracing::warn!(store = %self.url, error = %e, "a multipart upload abort task failed");
            }
        }
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}

impl S3Store {
    /// The object, or the `range` (an HTTP Range value) of it, as a stream.
    async fn get_object(&self, key: &str, range: Option<String>) -> Result<ByteStream, StoreError> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_range(range)
            .send()
            .await
            .map_err(|e| self.classify("get", key, e))?;
        let ctx = (self.url.clone(), key.to_string());
        let stream = futures::stream::try_unfold((out.body, ctx), |(mut body, ctx)| async move {
            match body.next().await {
                None => Ok(None),
                Some(Ok(bytes)) => Ok(Some((bytes, (body, ctx)))),
                Some(Err(e)) => Err(StoreError::Request {
                    op: "get",
                    url: ctx.0.clone(),
                    key: ctx.1.clone(),
                    message: chain_text(&e),
                }),
            }
        });
        Ok(Box::pin(stream))
    }
}
