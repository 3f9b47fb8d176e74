//! Where a store lives, as the validated configuration describes it. Pure data:
//! building a client from it (I/O, credentials) happens in [`super::open`].

use std::fmt;
use std::path::PathBuf;

/// A store named by the `storage:` section of the configuration.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `s3://bucket/prefix` on AWS or any S3-compatible service.
    S3(S3Settings),
    /// `file:///path`: a local directory, for trying rehost out and for tests.
    File(PathBuf),
}

/// Connection settings of an S3-compatible store.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Custom endpoint such as `http://127.0.0.1:3900`; `None` means AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub credentials: CredentialSource,
}

/// Where the access key comes from. The secret itself is never stored here,
/// so that printing a configuration can never print a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`.
    Environment,
    /// A shared-credentials INI file (`[profile]` sections with
    /// `aws_access_key_id` / `aws_secret_access_key` / `aws_session_token`).
    File { path: PathBuf, profile: String },
}

impl StoreLocation {
    /// A URL for humans and logs (never contains credentials).
    pub fn display_url(&self) -> String {
        match self {
            StoreLocation::S3(s) if s.prefix.is_empty() => format!("s3://{}", s.bucket),
            StoreLocation::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
            StoreLocation::File(p) => format!("file://{}", p.display()),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_url())
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials)
            .finish()
    }
}
