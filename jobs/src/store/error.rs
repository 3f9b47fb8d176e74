//! Storage errors, classified so that the CLI can tell "storage unreachable"
//! (exit 3) from a data problem. Messages never contain credentials.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connection refused, DNS failure, timeout: the store could not be reached.
    #[error("storage {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The store answered but refused: bad credentials, missing bucket, no permission.
    #[error("storage {url} refused access: {message}")]
    Denied { url: String, message: String },
    #[error("object {key} does not exist in {url}")]
    NotFound { url: String, key: String },
    #[error("{op} {key} in {url} failed: {message}")]
    Request {
        op: &'static str,
        url: String,
        key: String,
        message: String,
    },
    #[error("{op} {path} failed: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("invalid object key {key}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("object {key} is larger than {limit} bytes")]
    TooLarge { key: String, limit: u64 },
    /// The data being uploaded could not be produced; the upload was abandoned.
    #[error("upload of {key} abandoned: {source}")]
    BodyFailed { key: String, source: io::Error },
    #[error("storage configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Whether this error means the store could not be used at all (exit code 3),
    /// as opposed to a problem with one object.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable { .. } | StoreError::Denied { .. } | StoreError::Config(_)
        )
    }
}
