//! SDK errors → [`StoreError`]: not found, unavailable (exit 3), or a request
//! error, with the cause chain as one line.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::store::StoreError;

pub(super) type RawResponse = aws_sdk_s3::config::http::HttpResponse;

pub(super) fn classify<E>(
    url: &str,
    op: &'static str,
    key: &str,
    err: SdkError<E, RawResponse>,
) -> StoreError
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
pub(super) fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
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
