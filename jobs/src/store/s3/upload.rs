//! Uploads: a body that fits in one part is one PUT; a larger one is a
//! multipart upload with a bounded number of parts in flight.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::task::JoinSet;

use aws_sdk_s3::Client;

use super::errors::classify;
use super::S3Store;
use crate::store::{PutBody, StoreError};

/// Parts of a multipart upload. S3 needs at least 5 MiB for all parts but the
/// last; 8 MiB keeps request overhead low while memory stays bounded.
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once. Memory held by an upload is about
/// `(PART_UPLOADS + 1) * PART_SIZE`.
pub(super) const PART_UPLOADS: usize = 2;
/// Producer chunks are gzip members of about 1 MiB.
const PART_SLACK: usize = 2 * 1024 * 1024;
/// S3 takes at most 10,000 parts per upload: with parts of `PART_SIZE` only
/// that would end an object at 80 GiB. Every `PARTS_PER_SIZE` parts the size
/// doubles (S3 allows parts of different sizes), so 10,000 parts hold
/// 484 GiB; the buffers grow with the object only past its first 15.6 GiB.
const PARTS_PER_SIZE: i32 = 2000;

/// The size of multipart part `number` (from 1).
fn part_size(number: i32) -> usize {
    PART_SIZE << ((number - 1).max(0) / PARTS_PER_SIZE).min(6)
}

/// Pulls chunks from `body` until at least `size` bytes are buffered or the
/// body ends. Returns the buffered bytes and whether the body ended.
async fn fill_part(
    body: &mut PutBody,
    key: &str,
    size: usize,
) -> Result<(Bytes, bool), StoreError> {
    // Room for one more producer chunk past the part size, so the buffer is
    // never reallocated (a doubling would briefly hold two copies).
    let mut buf = BytesMut::with_capacity(size + PART_SLACK);
    while buf.len() < size {
        match body.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(source)) => {
                return Err(StoreError::BodyFailed {
                    key: key.to_string(),
                    source,
                })
            }
            None => return Ok((buf.freeze(), true)),
        }
    }
    Ok((buf.freeze(), false))
}

/// Longest an abort of a multipart upload is waited for.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A multipart upload neither completed nor aborted yet. Dropped while
/// `upload_id` is still set (the `put` future was dropped), it sends the abort
/// from a task of the store's [`S3Store::cleanups`], which
/// [`ObjectStore::settle`](crate::store::ObjectStore::settle) waits for.
struct PendingUpload<'a> {
    store: &'a S3Store,
    full: String,
    upload_id: Option<String>,
}

impl Drop for PendingUpload<'_> {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %self.full, "multipart upload left behind: no runtime to abort it");
            return;
        };
        let (client, bucket, full) = (
            self.store.client.clone(),
            self.store.bucket.clone(),
            std::mem::take(&mut self.full),
        );
        let abort = runtime.spawn(abort_upload(client, bucket, full, id));
        match self.store.cleanups.lock() {
            Ok(mut list) => list.push(abort),
            Err(poisoned) => poisoned.into_inner().push(abort),
        }
    }
}

/// Sends AbortMultipartUpload, bounded by [`ABORT_TIMEOUT`]; a failure is
/// logged (a leftover upload is invisible, but holds space until it expires).
async fn abort_upload(client: Client, bucket: String, full: String, upload_id: String) {
    let sent = tokio::time::timeout(
        ABORT_TIMEOUT,
        client
            .abort_multipart_upload()
            .bucket(&bucket)
            .key(&full)
            .upload_id(&upload_id)
            .send(),
    )
    .await;
    match sent {
        Ok(Ok(_)) => tracing::debug!(key = %full, "multipart upload aborted"),
        Ok(Err(e)) => {
            tracing::warn!(key = %full, error = %super::errors::chain_text(&e), "could not abort the multipart upload")
        }
        Err(_) => tracing::warn!(key = %full, "aborting the multipart upload timed out"),
    }
}

impl S3Store {
    /// [`ObjectStore::put`](crate::store::ObjectStore::put).
    pub(super) async fn put_streamed(
        &self,
        key: &str,
        mut body: PutBody,
    ) -> Result<u64, StoreError> {
        let full = self.full_key(key)?;
        let (first, ended) = fill_part(&mut body, key, part_size(1)).await?;
        if ended {
            let len = first.len() as u64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .content_length(len as i64)
                .body(SdkByteStream::from(first))
                .send()
                .await
                .map_err(|e| self.classify("put", key, e))?;
            return Ok(len);
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.classify("put", key, e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(StoreError::Request {
                op: "put",
                url: self.url.clone(),
                key: key.to_string(),
                message: "the store returned no multipart upload id".into(),
            });
        };
        // From here on the upload exists: it is completed or aborted on every
        // path, a dropped future included (S3 keeps the parts of an upload
        // never aborted, and bills them, unless a lifecycle rule expires them).
        let mut pending = PendingUpload {
            store: self,
            full: full.clone(),
            upload_id: Some(upload_id.clone()),
        };
        let result = self
            .upload_parts(key, &full, &upload_id, first, &mut body)
            .await;
        match result {
            Ok(total) => {
                pending.upload_id = None;
                Ok(total)
            }
            Err(e) => {
                if let Some(id) = pending.upload_id.take() {
                    abort_upload(self.client.clone(), self.bucket.clone(), full, id).await;
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut PutBody,
    ) -> Result<u64, StoreError> {
        let mut tasks: JoinSet<Result<CompletedPart, StoreError>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut total = 0u64;
        let mut next: Option<Bytes> = Some(first);
        let mut ended = false;
        let mut number = 0i32;
        loop {
            while tasks.len() < PART_UPLOADS {
                let Some(part) = next.take() else { break };
                if part.is_empty() {
                    break;
                }
                number += 1;
                total += part.len() as u64;
                let client = self.client.clone();
                let (bucket, full, upload_id) =
                    (self.bucket.clone(), full.to_string(), upload_id.to_string());
                let (url, task_key) = (self.url.clone(), key.to_string());
                let n = number;
                tasks.spawn(async move {
                    let len = part.len() as i64;
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(n)
                        .content_length(len)
                        .body(SdkByteStream::from(part))
                        .send()
                        .await
                        .map_err(|e| classify(&url, "put", &task_key, e))?;
                    Ok(CompletedPart::builder()
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .part_number(n)
                        .build())
                });
                if !ended {
                    let (part, end) = fill_part(body, key, part_size(number + 1)).await?;
                    next = Some(part);
                    ended = end;
                }
            }
            match tasks.join_next().await {
                Some(joined) => {
                    let part = joined.map_err(|e| StoreError::Request {
                        op: "put",
                        url: self.url.clone(),
                        key: key.to_string(),
                        message: format!("part upload task failed: {e}"),
                    })??;
                    done.push(part);
                }
                None => break,
            }
        }
        done.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.classify("put", key, e))?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_parts_hold_far_more_than_eighty_gib() {
        assert_eq!(part_size(1), PART_SIZE);
        assert_eq!(part_size(PARTS_PER_SIZE), PART_SIZE);
        assert_eq!(part_size(PARTS_PER_SIZE + 1), 2 * PART_SIZE);
        let total: u64 = (1..=10_000).map(|n| part_size(n) as u64).sum();
        assert_eq!(total, 2000 * 248 * 1024 * 1024);
        assert!(total > 480 << 30);
        // Every part but the last is at least S3's 5 MiB.
        assert!((1..=10_000).all(|n| part_size(n) >= 5 << 20));
    }
}
