//! The manifest: the last object of a backup, and the only proof that it is
//! complete. It declares every object's size and sha256, which restore and
//! verify enforce while streaming, so a manifest is also treated as untrusted
//! input: it must name itself correctly and stay within sane bounds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::SourceKind;
use crate::layout;

pub const FORMAT: u32 = 1;
/// Manifests are small; anything larger is not one of ours.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub host: String,
    pub state: String,
    pub created: DateTime<Utc>,
    pub rehost_version: String,
    pub source: SourceInfo,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Size of the uncompressed tar stream: the cap for decompression.
    pub tar_bytes: u64,
    pub objects: Vec<ObjectEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The path backed up, for humans (lossy for non-UTF-8 paths).
    pub path: String,
    pub kind: SourceKind,
    /// See [`crate::archive::SourceScan::fingerprint`].
    pub fingerprint: String,
    /// Mode and mtime of the root directory, which is not an archive entry.
    pub root_mode: u32,
    pub root_mtime: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Object name inside the backup's folder, e.g. `data.tar.gz`.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[error("manifest of backup {id} is invalid: {reason}")]
pub struct ManifestError {
    pub id: String,
    pub reason: String,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks a manifest read from `<host>/<state>/<id>/manifest.json`.
    pub fn parse(bytes: &[u8], host: &str, state: &str, id: &str) -> Result<Self, ManifestError> {
        let bad = |reason: String| ManifestError {
            id: id.to_string(),
            reason,
        };
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if m.format != FORMAT {
            return Err(bad(format!(
                "format {} is not supported by this rehost (it reads format {FORMAT})",
                m.format
            )));
        }
        if m.id != id || m.host != host || m.state != state {
            return Err(bad(format!(
                "it describes {}/{}/{}, not the backup it is stored in",
                m.host, m.state, m.id
            )));
        }
        let data = m
            .data()
            .ok_or_else(|| bad(format!("it lists no {}", layout::DATA)))?;
        if data.sha256.len() != 64 || !data.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the data checksum is not a sha256".into()));
        }
        if m.source.kind == SourceKind::File && m.files != 1 {
            return Err(bad("a single-file backup must hold exactly one file".into()));
        }
        Ok(m)
    }

    /// The data object's entry.
    pub fn data(&self) -> Option<&ObjectEntry> {
        self.objects.iter().find(|o| o.name == layout::DATA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            id: "20261123T101500Z-abcd".into(),
            host: "web-1".into(),
            state: "acme".into(),
            created: Utc::now(),
            rehost_version: "test".into(),
            source: SourceInfo {
                path: "/srv/acme/acme.json".into(),
                kind: SourceKind::File,
                fingerprint: "f".repeat(64),
                root_mode: 0o600,
                root_mtime: 0,
            },
            files: 1,
            dirs: 0,
            symlinks: 0,
            tar_bytes: 2048,
            objects: vec![ObjectEntry {
                name: layout::DATA.into(),
                size: 100,
                sha256: "a".repeat(64),
            }],
        }
    }

    #[test]
    fn round_trip_and_identity_checks() {
        let m = sample();
        let json = m.to_json();
        assert_eq!(Manifest::parse(&json, "web-1", "acme", &m.id).unwrap(), m);
        let err = Manifest::parse(&json, "web-2", "acme", &m.id).unwrap_err();
        assert!(err.to_string().contains("not the backup it is stored in"));
        let mut future = m.clone();
        future.format = 99;
        assert!(Manifest::parse(&future.to_json(), "web-1", "acme", &m.id).is_err());
        assert!(Manifest::parse(b"{not json", "web-1", "acme", &m.id).is_err());
    }
}
