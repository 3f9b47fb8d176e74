//! `kind: acme`: Traefik's `acme.json`, understood rather than copied.
//!
//! Traefik rewrites the file in place (truncate, then write), so a crash or a
//! full disk can leave it empty or cut short; restored on a rebuilt VM, such
//! a file makes Traefik start over with Let's Encrypt (and its rate limits).
//! A backup therefore reads the file once, checks that it is Traefik's JSON
//! with every certificate and key readable ([`parse`]), and archives exactly
//! the bytes it checked ([`snapshot`]); a file that fails is not uploaded and
//! the newest good backup stays the newest. [`metrics`] exports each
//! certificate's expiry.
//!
//! The layout (Traefik v2 and v3): an object of resolvers, each
//! `{"Account": {...} | null, "Certificates": [...] | null}`, each certificate
//! `{"domain": {"main", "sans"}, "certificate": base64(PEM chain), "key":
//! base64(PEM key), "Store"}`. Traefik v1's single-resolver layout is refused.

pub mod metrics;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::safefs::Dir;

/// Far above any real acme.json (a few KiB per certificate): a bigger file is
/// something else, and is not read into memory.
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// What a valid acme.json holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every resolver, by name, with its certificates (none is valid: an
    /// account whose first certificate is still pending).
    pub resolvers: BTreeMap<String, Vec<Certificate>>,
}

impl Summary {
    pub fn certificates(&self) -> usize {
        self.resolvers.values().map(Vec::len).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// `domain.main`.
    pub domain: String,
    pub sans: Vec<String>,
    /// The leaf certificate's notAfter, Unix seconds.
    pub not_after: i64,
}

#[derive(Deserialize)]
struct RawResolver {
    #[serde(rename = "Account")]
    account: Option<serde_json::Value>,
    #[serde(rename = "Certificates")]
    certificates: Option<Vec<RawCertificate>>,
}

#[derive(Deserialize)]
struct RawCertificate {
    domain: Option<RawDomain>,
    certificate: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize)]
struct RawDomain {
    main: Option<String>,
    #[serde(default)]
    sans: Option<Vec<String>>,
}

fn invalid(path: &Path, detail: impl Into<String>) -> Error {
    Error::Acme {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Checks that `bytes` (read from `path`, named in errors) is a Traefik
/// acme.json whose every certificate and key decode.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Summary> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            path,
            "the file is empty: Traefik has not written it yet, or it was cut short",
        ));
    }
    let top: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| {
            let what = if e.is_eof() {
                "the JSON ends early (a file cut short?)"
            } else {
                "not JSON"
            };
            invalid(path, format!("{what}: {e}"))
        })?;
    if top.contains_key("DomainsCertificate") {
        return Err(invalid(
            path,
            "this is Traefik v1's layout (`DomainsCertificate`); kind: acme reads Traefik v2 and v3 files",
        ));
    }
    if top.is_empty() {
        return Err(invalid(
            path,
            "holds no ACME resolver (`{}`): Traefik has not registered an account yet",
        ));
    }
    let mut summary = Summary::default();
    for (name, value) in top {
        let raw: RawResolver = serde_json::from_value(value).map_err(|e| {
            invalid(
                path,
                format!(
                    "resolver `{name}` is not Traefik's {{\"Account\", \"Certificates\"}}: {e}"
                ),
            )
        })?;
        if raw
            .account
            .as_ref()
            .is_some_and(|a| !(a.is_object() || a.is_null()))
        {
            return Err(invalid(
                path,
                format!("resolver `{name}`: `Account` is not an object"),
            ));
        }
        let mut certs = Vec::new();
        for (i, c) in raw.certificates.unwrap_or_default().into_iter().enumerate() {
            certs.push(certificate(path, &name, i, c)?);
        }
        summary.resolvers.insert(name, certs);
    }
    Ok(summary)
}

fn certificate(path: &Path, resolver: &str, i: usize, c: RawCertificate) -> Result<Certificate> {
    let domain = c
        .domain
        .as_ref()
        .and_then(|d| d.main.clone())
        .filter(|m| !m.is_empty());
    let at = match &domain {
        Some(d) => format!("resolver `{resolver}`, certificate {i} ({d})"),
        None => format!("resolver `{resolver}`, certificate {i}"),
    };
    let bad = |detail: String| invalid(path, format!("{at}: {detail}"));
    let domain = domain.ok_or_else(|| bad("no `domain.main`".into()))?;
    let sans = c.domain.and_then(|d| d.sans).unwrap_or_default();
    let pem = decode_base64(c.certificate.as_deref(), "certificate").map_err(bad)?;
    // Every certificate of the chain must parse: a cut-off intermediate is
    // as broken as a cut-off leaf.
    let chain = x509_cert::Certificate::load_pem_chain(&pem)
        .map_err(|e| bad(format!("`certificate` is not a PEM certificate chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad("`certificate` holds no certificate".into()))?;
    let not_after = leaf
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs();
    let key = decode_base64(c.key.as_deref(), "key").map_err(bad)?;
    let (label, der) = x509_cert::der::pem::decode_vec(&key)
        .map_err(|e| bad(format!("`key` is not a PEM private key: {e}")))?;
    if !label.ends_with("PRIVATE KEY") || der.is_empty() {
        return Err(bad(format!("`key` is a PEM `{label}`, not a private key")));
    }
    Ok(Certificate {
        domain,
        sans,
        not_after: i64::try_from(not_after).unwrap_or(i64::MAX),
    })
}

fn decode_base64(value: Option<&str>, field: &str) -> std::result::Result<Vec<u8>, String> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("no `{field}`"))?;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| format!("`{field}` is not base64: {e}"))
}

/// Reads `path` (a regular file, at most [`MAX_FILE_BYTES`]) and parses it.
/// The path is walked from `/` without following any symlink ([`Dir`]):
/// `boot` reads the restored file as root, in a directory the unprivileged
/// user owns.
pub fn read(path: &Path) -> Result<(Vec<u8>, Summary)> {
    let io_err = |e: std::io::Error| Error::io(format!("read {}", path.display()), e);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(invalid(path, "is not a file path"));
    };
    let mut file = Dir::open(parent)
        .and_then(|dir| dir.open_file(Path::new(name)))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => invalid(
                path,
                "is (or lies below) a symlink; kind: acme reads Traefik's acme.json itself",
            ),
            _ if e.kind() == std::io::ErrorKind::InvalidInput => invalid(
                path,
                "is not a regular file; kind: acme backs up Traefik's acme.json file",
            ),
            _ => io_err(e),
        })?;
    let meta = file.metadata().map_err(io_err)?;
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES) as usize);
    (&mut file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(invalid(
            path,
            format!(
                "is larger than {} MiB: not an acme.json",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let summary = parse(path, &bytes)?;
    Ok((bytes, summary))
}

/// The bytes of acme.json that were checked, in a private file (0600 in a
/// 0700 temporary directory, removed on drop): the archive takes them
/// instead of the live file, which Traefik may rewrite meanwhile.
#[derive(Debug)]
pub struct Snapshot {
    _dir: tempfile::TempDir,
    copy: PathBuf,
    pub summary: Summary,
}

impl Snapshot {
    /// The private copy; it exists as long as the snapshot. (A method, so
    /// that a closure using it holds the whole snapshot, its directory
    /// included, not just this path.)
    pub fn copy(&self) -> &Path {
        &self.copy
    }
}

/// Reads and checks `path`, and keeps the checked bytes for the archive.
pub fn snapshot(path: &Path) -> Result<Snapshot> {
    let (bytes, summary) = read(path)?;
    let dir = tempfile::Builder::new()
        .prefix(".rehost-acme-")
        .tempdir()
        .map_err(|e| Error::io("create a temporary directory for the acme.json copy", e))?;
    // tempfile makes the directory 0700; the key material stays private.
    let copy = dir.path().join("acme.json");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&copy)
        .map_err(|e| Error::io(format!("write {}", copy.display()), e))?;
    f.write_all(&bytes)
        .map_err(|e| Error::io(format!("write {}", copy.display()), e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("write {}", copy.display()), e))?;
    drop::<File>(f);
    Ok(Snapshot {
        _dir: dir,
        copy,
        summary,
    })
}

#[cfg(test)]
mod tests;
