//! S3 store through aws-sdk-s3. Built by hand rather than from the AWS
//! environment loader, so that stray `AWS_*` variables on a host (a CA bundle,
//! an endpoint override, a profile) cannot silently change where backups go.
//! Request checksums are sent only when an operation requires them: several
//! S3-compatible stores reject the newer default checksum headers.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::task::JoinSet;

use super::{check_key, ByteStream, CredentialSource, ObjectInfo, ObjectStore, PutBody};
use super::{S3Settings, StoreError};

/// Parts of a multipart upload. S3 needs at least 5 MiB for all parts but the
/// last; 8 MiB keeps request overhead low while memory stays bounded.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once. Memory held by an upload is about
/// `(PART_UPLOADS + 1) * PART_SIZE`.
pub const PART_UPLOADS: usize = 2;
/// Producer chunks are gzip members of about 1 MiB.
const PART_SLACK: usize = 2 * 1024 * 1024;

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
}

impl S3Store {
    pub fn new(settings: &S3Settings) -> Result<Self, StoreError> {
        let credentials = load_credentials(&settings.credentials)?;
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let url = if settings.prefix.is_empty() {
            format!("s3://{}", settings.bucket)
        } else {
            format!("s3://{}/{}", settings.bucket, settings.prefix)
        };
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            url,
        })
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(self.join(key))
    }

    fn join(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }

    fn classify<E>(&self, op: &'static str, key: &str, err: SdkError<E, RawResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(&self.url, op, key, err)
    }
}

/// Listing pages fetched one after the other before the rest of a listing is
/// split into ranges: most listings end within them (1,000 keys a page).
const SEQUENTIAL_PAGES: usize = 3;
/// Key ranges listed at once after that.
const RANGES: usize = 4;
/// Keys in a full listing page (the S3 default and maximum).
const PAGE_KEYS: usize = 1000;
/// Key ranges listed at once when an earlier listing says where the keys are.
const HINTED_RANGES: usize = 8;

/// Where a listing request starts.
enum From {
    Start,
    Token(String),
    /// The first key greater than this one.
    After(String),
}

/// A part of a listing: the keys in `[lo, hi)` (unbounded where `None`).
struct ListRange {
    /// Where its first request starts.
    from: From,
    lo: Option<String>,
    hi: Option<String>,
    /// How many keys the range held before, when an earlier listing says.
    expected: Option<usize>,
}

impl ListRange {
    /// The half-open ranges that `bounds` (sorted) cut a listing into: the
    /// first listed from `first`, each other from just below its bound;
    /// `expected(i)` is what range `i` is expected to hold.
    fn between(
        first: From,
        bounds: &[String],
        expected: impl Fn(usize) -> Option<usize>,
    ) -> Vec<ListRange> {
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        ranges.push(ListRange {
            from: first,
            lo: None,
            hi: bounds.first().cloned(),
            expected: expected(0),
        });
        for (i, bound) in bounds.iter().enumerate() {
            ranges.push(ListRange {
                from: From::After(just_before(bound)),
                lo: Some(bound.clone()),
                hi: bounds.get(i + 1).cloned(),
                expected: expected(i + 1),
            });
        }
        ranges
    }
}

struct Page {
    objects: Vec<ObjectInfo>,
    /// Common prefixes, when asked for with a delimiter.
    prefixes: Vec<String>,
    next: Option<String>,
}

impl S3Store {
    /// One ListObjectsV2 request; keys are full keys.
    async fn list_page(
        &self,
        prefix: &str,
        full_prefix: &str,
        from: &From,
        delimiter: Option<&str>,
        max_keys: Option<usize>,
    ) -> Result<Page, StoreError> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_max_keys(max_keys.and_then(|n| i32::try_from(n).ok()));
        req = match from {
            From::Start => req,
            From::Token(t) => req.continuation_token(t),
            From::After(k) => req.start_after(k),
        };
        let out = req
            .send()
            .await
            .map_err(|e| self.classify("list", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(str::to_string),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_string))
            .collect();
        let next = match (out.is_truncated(), out.next_continuation_token()) {
            (Some(true), Some(t)) => Some(t.to_string()),
            _ => None,
        };
        Ok(Page {
            objects,
            prefixes,
            next,
        })
    }

    /// Lists key ranges at once; their keys, in range order.
    async fn list_ranges(
        &self,
        prefix: &str,
        full_prefix: &str,
        ranges: Vec<ListRange>,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let lists = futures::future::try_join_all(
            ranges
                .into_iter()
                .map(|range| self.list_range(prefix, full_prefix, range)),
        )
        .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// Length of the store's prefix in a full key.
    fn strip_len(&self) -> usize {
        if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        }
    }

    /// The keys of `range`. With an expected count, pages are sized to end
    /// just past the range instead of listing up to a page beyond it.
    async fn list_range(
        &self,
        prefix: &str,
        full_prefix: &str,
        range: ListRange,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let ListRange {
            mut from,
            lo,
            hi,
            expected,
        } = range;
        let mut out = Vec::new();
        loop {
            // One key more than expected, to see the key that ends the range;
            // once past the count (keys were added), whole pages again.
            let max_keys = expected
                .and_then(|n| n.checked_sub(out.len()))
                .filter(|&left| left > 0)
                .map(|left| (left + 1).min(PAGE_KEYS));
            let page = self
                .list_page(prefix, full_prefix, &from, None, max_keys)
                .await?;
            for o in page.objects {
                if hi.as_deref().is_some_and(|hi| o.key.as_str() >= hi) {
                    return Ok(out);
                }
                if lo.as_deref().is_none_or(|lo| o.key.as_str() >= lo) {
                    out.push(o);
                }
            }
            match page.next {
                Some(token) => from = From::Token(token),
                None => return Ok(out),
            }
        }
    }
}

/// Up to `ranges - 1` bounds taken evenly from the sorted common prefixes
/// `prefixes`; none when there are too few to split on.
fn split_points(prefixes: &[String], ranges: usize) -> Vec<String> {
    if prefixes.len() < 2 || ranges < 2 {
        return Vec::new();
    }
    let ranges = ranges.min(prefixes.len());
    let mut bounds: Vec<String> = (1..ranges)
        .map(|i| prefixes[i * prefixes.len() / ranges].clone())
        .collect();
    bounds.dedup();
    bounds
}

/// The ranges of a listing that an earlier one (`earlier`, sorted) says
/// holds these keys: each range's first key (none for the first range) and
/// how many keys it held. As few ranges as fit in `max_ranges` with the same
/// number of pages each, where a range's last page also has to show the key
/// that starts the next range.
fn hinted_ranges<'a>(
    earlier: &[&'a str],
    max_ranges: usize,
    page: usize,
) -> Vec<(Option<&'a str>, usize)> {
    let per_page = page.saturating_sub(1).max(1);
    let pages = earlier.len().div_ceil(per_page);
    let ranges = pages.div_ceil(pages.div_ceil(max_ranges.max(1)).max(1));
    let per_range = earlier.len().div_ceil(ranges.max(1)).max(1);
    earlier
        .chunks(per_range)
        .enumerate()
        .map(|(i, chunk)| (chunk.first().copied().filter(|_| i > 0), chunk.len()))
        .collect()
}

/// A key that sorts before `bound` and after nothing `bound` starts: the
/// `start-after` of the range that begins at `bound` (keys below `bound`
/// that it lets through are dropped by the range's lower bound).
fn just_before(bound: &str) -> String {
    let mut s = bound.to_string();
    s.pop();
    s
}

/// Relative, sorted keys.
fn finish(mut keys: Vec<ObjectInfo>, strip: usize) -> Vec<ObjectInfo> {
    keys.retain_mut(|o| match o.key.get(strip..) {
        Some(rel) => {
            o.key = rel.to_string();
            true
        }
        None => false,
    });
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    keys
}

type RawResponse = aws_sdk_s3::config::http::HttpResponse;

fn classify<E>(url: &str, op: &'static str, key: &str, err: SdkError<E, RawResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let url = url.to_string();
    let message = chain_text(&err);
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            StoreError::Unreachable { url, message }
        }
        _ => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let code = err.code().unwrap_or_default();
            match (code, status) {
                ("NoSuchBucket", _) => StoreError::Denied {
                    url,
                    message: "the bucket does not exist".into(),
                },
                ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch", _)
                | (_, Some(401 | 403)) => StoreError::Denied { url, message },
                ("NoSuchKey" | "NotFound", _) | (_, Some(404)) => StoreError::NotFound {
                    url,
                    key: key.to_string(),
                },
                // The SDK retried these with backoff already: a store that
                // still answers 5xx is down for this run (exit 3), like one
                // that cannot be reached.
                (_, Some(status @ 500..=599)) => StoreError::Unreachable {
                    url,
                    message: format!("{op} {key}: HTTP {status} after retries: {message}"),
                },
                _ => StoreError::Request {
                    op,
                    url,
                    key: key.to_string(),
                    message,
                },
            }
        }
    }
}

/// The error and its causes as one line ("dispatch failure: io error: …:
/// Connection refused"), skipping levels that repeat the one before.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Reads the access key from the environment or a shared-credentials file. The
/// values go straight into the SDK's `Credentials`, whose `Debug` redacts them.
fn load_credentials(source: &CredentialSource) -> Result<Credentials, StoreError> {
    let (id, secret, token) = match source {
        CredentialSource::Environment => {
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
            else {
                return Err(StoreError::Config(
                    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     or storage.credentials_file"
                        .into(),
                ));
            };
            (id, secret, var("AWS_SESSION_TOKEN"))
        }
        CredentialSource::File { path, profile } => read_credentials_file(path, profile)?,
    };
    Ok(Credentials::new(id, secret, token, None, "rehost"))
}

type KeyTriple = (String, String, Option<String>);

fn read_credentials_file(path: &Path, profile: &str) -> Result<KeyTriple, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StoreError::Config(format!(
            "cannot read credentials file {}: {e}",
            path.display()
        ))
    })?;
    parse_credentials(&text, profile)
        .map_err(|what| StoreError::Config(format!("credentials file {}: {what}", path.display())))
}

/// Parses the INI format of `~/.aws/credentials`. Error texts name keys and
/// lines, never values.
fn parse_credentials(text: &str, profile: &str) -> Result<KeyTriple, String> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut found = false;
    let mut in_profile = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = section.trim();
            let name = name.strip_prefix("profile ").unwrap_or(name).trim();
            in_profile = name == profile;
            found |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not `key = value`", n + 1));
        };
        let value = value.trim().to_string();
        match key.trim() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    if !found {
        return Err(format!("no [{profile}] section"));
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id, secret, token)),
        _ => Err(format!(
            "section [{profile}] needs aws_access_key_id and aws_secret_access_key"
        )),
    }
}

/// Pulls chunks from `body` until at least `PART_SIZE` bytes are buffered or the
/// body ends. Returns the buffered bytes and whether the body ended.
async fn fill_part(body: &mut PutBody, key: &str) -> Result<(Bytes, bool), StoreError> {
    // Room for one more producer chunk past the part size, so the buffer is
    // never reallocated (a doubling would briefly hold two copies).
    let mut buf = BytesMut::with_capacity(PART_SIZE + PART_SLACK);
    while buf.len() < PART_SIZE {
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

#[async_trait]
impl ObjectStore for S3Store {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let full_prefix = self.join(prefix);
        let mut keys = Vec::new();
        let mut from = From::Start;
        for _ in 0..SEQUENTIAL_PAGES {
            let page = self
                .list_page(prefix, &full_prefix, &from, None, None)
                .await?;
            keys.extend(page.objects);
            match page.next {
                Some(token) => from = From::Token(token),
                None => return Ok(finish(keys, self.strip_len())),
            }
        }
        // A large listing: the rest is split into key ranges at the next
        // level of the key names, listed at once. Ranges are half-open
        // [bound, next bound), so they neither overlap nor leave a gap.
        let last = keys.last().map(|o| o.key.clone()).unwrap_or_default();
        let mut after = self
            .list_page(
                prefix,
                &full_prefix,
                &From::After(last.clone()),
                Some("/"),
                None,
            )
            .await?
            .prefixes;
        // The prefix holding `last` sorts before it: the first range has the
        // rest of it.
        after.retain(|p| *p > last);
        let bounds = split_points(&after, RANGES);
        let ranges = ListRange::between(from, &bounds, |_| None);
        keys.extend(self.list_ranges(prefix, &full_prefix, ranges).await?);
        Ok(finish(keys, self.strip_len()))
    }

    async fn list_with_hint(
        &self,
        prefix: &str,
        earlier: &[&str],
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut hint: Vec<&str> = earlier
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        if !hint.is_sorted() {
            hint.sort_unstable();
        }
        hint.dedup();
        let starts = hinted_ranges(&hint, HINTED_RANGES, PAGE_KEYS);
        if starts.len() < 2 {
            return self.list(prefix).await;
        }
        // Ranges are half-open [start, next start): whatever was added or
        // removed since, every key falls in exactly one of them.
        let bounds: Vec<String> = starts
            .iter()
            .filter_map(|&(start, _)| start.map(|k| self.join(k)))
            .collect();
        let ranges = ListRange::between(From::Start, &bounds, |i| {
            starts.get(i).map(|&(_, expected)| expected)
        });
        let keys = self.list_ranges(prefix, &self.join(prefix), ranges).await?;
        Ok(finish(keys, self.strip_len()))
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
            })),
            Err(e) => match self.classify("head", key, e) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
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

    async fn put(&self, key: &str, mut body: PutBody) -> Result<u64, StoreError> {
        let full = self.full_key(key)?;
        let (first, ended) = fill_part(&mut body, key).await?;
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
        let result = self
            .upload_parts(key, &full, &upload_id, first, &mut body)
            .await;
        match result {
            Ok(total) => Ok(total),
            Err(e) => {
                // Best effort: a leftover upload is invisible and stores expire them,
                // but it holds space until then.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
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

    fn url(&self) -> String {
        self.url.clone()
    }
}

impl S3Store {
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
                    let (part, end) = fill_part(body, key).await?;
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
    fn listing_ranges_split_evenly_at_prefixes() {
        let p: Vec<String> = (0..10).map(|i| format!("a/d{i}/")).collect();
        assert_eq!(split_points(&p, 4), ["a/d2/", "a/d5/", "a/d7/"]);
        assert_eq!(split_points(&p[..2], 4), ["a/d1/"]);
        assert!(
            split_points(&p[..1], 4).is_empty(),
            "one prefix: nothing to split"
        );
        assert!(split_points(&[], 4).is_empty());
        // The start-after of a range sorts before every key of the range.
        for b in &p {
            let before = just_before(b);
            assert!(before.as_str() < b.as_str() && b.starts_with(&before));
        }
        let keys = ["p/b", "p/a", "x"]
            .map(|k| ObjectInfo {
                key: k.into(),
                size: 0,
                etag: None,
            })
            .to_vec();
        let rel: Vec<String> = finish(keys, 2).into_iter().map(|o| o.key).collect();
        assert_eq!(
            rel,
            ["a", "b"],
            "sorted, and a key shorter than the prefix dropped"
        );
    }

    #[test]
    fn hinted_ranges_fill_their_pages() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("k{i:05}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let r = hinted_ranges(&keys, 8, 1000);
        // 21 pages' worth: 7 ranges of 3 pages rather than 8 with a page
        // each mostly empty.
        assert_eq!(r.len(), 7);
        assert_eq!(r[0], (None, 2858));
        assert_eq!(r[1], (Some("k02858"), 2858));
        assert_eq!(r[6], (Some("k17148"), 2852));
        assert_eq!(r.iter().map(|&(_, n)| n).sum::<usize>(), keys.len());
        let r = hinted_ranges(&keys[..2000], 8, 1000);
        assert_eq!(
            r,
            [(None, 667), (Some("k00667"), 667), (Some("k01334"), 666)]
        );
        assert_eq!(hinted_ranges(&keys[..999], 8, 1000), [(None, 999)]);
        assert!(hinted_ranges(&[], 8, 1000).is_empty());
        assert_eq!(
            hinted_ranges(&keys[..5], 2, 1),
            [(None, 3), (Some("k00003"), 2)]
        );
    }

    #[test]
    fn credentials_file_profiles() {
        let text = "# comment\n[default]\naws_access_key_id = AK1\naws_secret_access_key=SK1\n\n\
                    [profile backup]\naws_access_key_id = AK2\naws_secret_access_key = SK2\n\
                    aws_session_token = T2\n";
        assert_eq!(
            parse_credentials(text, "default").unwrap(),
            ("AK1".into(), "SK1".into(), None)
        );
        assert_eq!(
            parse_credentials(text, "backup").unwrap(),
            ("AK2".into(), "SK2".into(), Some("T2".into()))
        );
        let err = parse_credentials(text, "nope").unwrap_err();
        assert!(err.contains("[nope]"));
        let err = parse_credentials("[default]\naws_access_key_id = AK\n", "default").unwrap_err();
        assert!(err.contains("aws_secret_access_key"));
        assert!(!err.contains("AK"), "error must not echo values: {err}");
    }
}
