//! The library's error type. Each variant keeps its cause; the CLI adds context
//! ("backup acme") and picks the exit code from [`Error::is_storage_unavailable`].

use std::io;

use crate::archive::ArchiveError;
use crate::manifest::ManifestError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The data does not match what its manifest declares.
    #[error("backup {id} of {state} does not match its manifest: {detail}")]
    Mismatch {
        state: String,
        id: String,
        detail: String,
    },
    /// A SQLite database could not be copied consistently.
    #[error("SQLite database {path}: {detail}")]
    Database { path: String, detail: String },
    /// A `kind: acme` file that is not a readable Traefik acme.json.
    #[error("{path} is not a usable Traefik acme.json: {detail}")]
    Acme { path: String, detail: String },
    /// Prometheus' admin API did not give a snapshot.
    #[error("Prometheus at {api}: {detail}")]
    Prometheus { api: String, detail: String },
    /// Encryption settings, identity file or an age object that cannot be used.
    #[error("encryption: {0}")]
    Encryption(String),
    /// The operation was refused before anything changed.
    #[error("{0}")]
    Refused(String),
    /// The operation was cancelled (a timeout, a shutdown) and stopped.
    #[error("cancelled")]
    Cancelled,
    /// The operation did what it could, but some items were refused or failed.
    #[error("{what}: {detail}")]
    Incomplete { what: String, detail: String },
    /// A newer generation of the host began on another machine (or this
    /// machine has none while the host has generations): this machine must
    /// not write (exit code 4).
    #[error("{0}; nothing written")]
    Superseded(Box<crate::generation::Superseded>),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        if crate::cancel::io_cancelled(&source) {
            return Error::Cancelled;
        }
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// True when a newer generation took the host over (exit code 4).
    pub fn is_superseded(&self) -> bool {
        matches!(self, Error::Superseded(_))
    }

    /// True when the store could not be used at all (exit code 3).
    pub fn is_storage_unavailable(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_unavailable())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
