//! The manifest: the last object of a backup, and the only proof that it is
//! complete. It declares every object's size and sha256, which restore and
//! verify enforce while streaming, so a manifest is also treated as untrusted
//! input: it must name itself correctly and stay within sane bounds.
//!
//! Format 1 describes one data object. Format 2 (Prometheus) adds `blocks`:
//! shared, immutable objects under `<host>/<state>/blocks/` that several
//! backups reference, each with its own size, sha256 and archive size.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::SourceKind;
use crate::layout;
use crate::parts::{Layout, PartIndex};

pub const FORMAT: u32 = 1;
/// A manifest that references shared block objects.
pub const FORMAT_BLOCKS: u32 = 2;
/// Far more blocks than a TSDB has (a year of 2 h blocks is 4,380).
pub const MAX_BLOCKS: usize = 100_000;
/// Manifests are small (a part index of 4,096 parts is about 600 KiB);
/// anything larger is not one of ours.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

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
    /// Format 2: the shared block objects this backup consists of, besides
    /// its data object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockEntry>,
    /// Set when the data object and the blocks are age files; absent in
    /// backups made without `storage.encryption`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
    /// The generation of the host that made it ([`crate::generation`]);
    /// absent in backups of a host without generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// The newest complete backup when this one began (what a restore on
    /// the machine that made it would have given back), if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub based_on: Option<String>,
}

/// How a backup's objects are encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// Always `age`.
    pub scheme: String,
    /// [`crate::encryption::Encryption::digest`] of the recipient set.
    pub recipients: String,
}

/// One Prometheus block, stored once as `<host>/<state>/blocks/<ulid>.tar.gz`:
/// a gzip of a tar whose entries are `<ulid>/…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub ulid: String,
    /// Of the stored object.
    pub size: u64,
    pub sha256: String,
    /// Of the uncompressed tar: the decompression cap.
    pub tar_bytes: u64,
    pub files: u64,
    pub dirs: u64,
    /// The object's name in `blocks/` when it is not the usual one
    /// ([`layout::block_name`]): a block uploaded again under a name of its
    /// own ([`layout::unique_block_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// See [`ObjectEntry::index`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<PartIndex>,
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
    /// The parts a restore fetches in parallel ([`crate::parts`]); absent
    /// in backups made before rehost wrote it, which restore in one stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<PartIndex>,
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
        if m.format != FORMAT && m.format != FORMAT_BLOCKS {
            return Err(bad(format!(
                "format {} is not supported by this rehost (it reads formats {FORMAT} and {FORMAT_BLOCKS})",
                m.format
            )));
        }
        if m.id != id || m.host != host || m.state != state {
            return Err(bad(format!(
                "it describes {}/{}/{}, not the backup it is stored in",
                m.host, m.state, m.id
            )));
        }
        let by_id = layout::parse_generation_backup(id).map(|(g, _, _)| g);
        if m.generation.as_deref() != by_id {
            return Err(bad(format!(
                "its generation {:?} is not the one its id names",
                m.generation
                    .as_deref()
                    .unwrap_or("")
                    .escape_debug()
                    .to_string()
            )));
        }
        let data = m
            .data()
            .ok_or_else(|| bad(format!("it lists no {}", m.data_name())))?;
        if let Some(enc) = &m.encryption {
            if enc.scheme != crate::encryption::SCHEME {
                return Err(bad(format!(
                    "encryption scheme {:?} is not supported (only {})",
                    enc.scheme.escape_debug().to_string(),
                    crate::encryption::SCHEME
                )));
            }
            if !is_sha256(&enc.recipients) {
                return Err(bad("the recipient digest is not a sha256".into()));
            }
        }
        if !is_sha256(&data.sha256) {
            return Err(bad("the data checksum is not a sha256".into()));
        }
        if let Some(index) = &data.index {
            index
                .check(m.layout_of(index, data.size), m.tar_bytes)
                .map_err(|e| bad(format!("{}: {e}", data.name)))?;
        }
        if m.source.kind == SourceKind::File && m.files != 1 {
            return Err(bad("a single-file backup must hold exactly one file".into()));
        }
        m.check_blocks().map_err(bad)?;
        Ok(m)
    }

    fn check_blocks(&self) -> Result<(), String> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        if self.format != FORMAT_BLOCKS {
            return Err(format!("format {} cannot list blocks", self.format));
        }
        if self.source.kind != SourceKind::Dir {
            return Err("only a directory backup can list blocks".into());
        }
        if self.blocks.len() > MAX_BLOCKS {
            return Err(format!("it lists more than {MAX_BLOCKS} blocks"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut total = self.tar_bytes;
        for b in &self.blocks {
            if !layout::is_ulid(&b.ulid) {
                return Err(format!(
                    "block {:?} is not a ULID",
                    b.ulid.escape_debug().to_string()
                ));
            }
            if !seen.insert(b.ulid.as_str()) {
                return Err(format!("block {} is listed twice", b.ulid));
            }
            if !is_sha256(&b.sha256) {
                return Err(format!("the checksum of block {} is not a sha256", b.ulid));
            }
            if b.dirs == 0 {
                return Err(format!("block {} declares no directory", b.ulid));
            }
            if let Some(object) = &b.object {
                let key = format!("{}/{object}", layout::BLOCKS);
                let ok = layout::block_of_key("", &key) == Some(object.as_str())
                    && layout::block_ulid(object) == b.ulid
                    && object.ends_with(".age") == self.encryption.is_some();
                if !ok {
                    return Err(format!(
                        "block {} names the object {:?}, which is not one of its names",
                        b.ulid,
                        object.escape_debug().to_string()
                    ));
                }
            }
            if let Some(index) = &b.index {
                index
                    .check(self.layout_of(index, b.size), b.tar_bytes)
                    .map_err(|e| format!("block {}: {e}", b.ulid))?;
            }
            total = total
                .checked_add(b.tar_bytes)
                .ok_or_else(|| "the declared sizes overflow".to_string())?;
        }
        Ok(())
    }

    /// Bytes the restored tree takes, data object and blocks together.
    pub fn total_tar_bytes(&self) -> u64 {
        self.blocks
            .iter()
            .fold(self.tar_bytes, |t, b| t.saturating_add(b.tar_bytes))
    }

    /// Files of the data object and of every block.
    pub fn total_files(&self) -> u64 {
        self.blocks
            .iter()
            .fold(self.files, |t, b| t.saturating_add(b.files))
    }

    /// Bytes a restore downloads.
    pub fn total_size(&self) -> u64 {
        let data = self.data().map(|d| d.size).unwrap_or(0);
        self.blocks
            .iter()
            .fold(data, |t, b| t.saturating_add(b.size))
    }

    /// Where the parts of an object of this backup lie in its `size` bytes.
    pub fn layout_of(&self, index: &PartIndex, size: u64) -> Layout {
        Layout {
            age: self.encryption.is_some().then_some(index.payload_offset),
            size,
        }
    }

    /// The data object's entry.
    pub fn data(&self) -> Option<&ObjectEntry> {
        let name = self.data_name();
        self.objects.iter().find(|o| o.name == name)
    }

    /// `data.tar.gz`, or `data.tar.gz.age` in an encrypted backup.
    pub fn data_name(&self) -> &'static str {
        layout::data_name(self.encryption.is_some())
    }

    /// The recipient digest of an encrypted backup.
    pub fn recipients(&self) -> Option<&str> {
        self.encryption.as_ref().map(|e| e.recipients.as_str())
    }

    /// The name of `block`'s object in `blocks/`.
    pub fn block_name(&self, block: &BlockEntry) -> String {
        match &block.object {
            Some(object) => object.clone(),
            None => layout::block_name(&block.ulid, self.recipients()),
        }
    }
}

pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
pub(crate) mod tests {
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
                index: None,
            }],
            blocks: vec![],
            encryption: None,
            generation: None,
            based_on: None,
        }
    }

    fn with_blocks() -> Manifest {
        let mut m = sample();
        m.format = FORMAT_BLOCKS;
        m.source.kind = SourceKind::Dir;
        m.files = 0;
        m.blocks = vec![BlockEntry {
            ulid: "01HZX3Q7W8J9K0M1N2P3R4S5T6".into(),
            size: 1000,
            sha256: "b".repeat(64),
            tar_bytes: 4096,
            files: 4,
            dirs: 2,
            object: None,
            index: None,
        }];
        m
    }

    #[test]
    fn format_2_lists_blocks_and_format_1_still_parses() {
        let m = with_blocks();
        let json = m.to_json();
        assert_eq!(Manifest::parse(&json, "web-1", "acme", &m.id).unwrap(), m);
        assert_eq!(m.total_tar_bytes(), 2048 + 4096);
        assert_eq!(m.total_size(), 100 + 1000);
        // A format-1 manifest has no `blocks` key at all.
        let v1 = sample();
        let text = String::from_utf8(v1.to_json()).unwrap();
        assert!(!text.contains("blocks"), "{text}");
        assert!(Manifest::parse(text.as_bytes(), "web-1", "acme", &v1.id).is_ok());
    }

    #[test]
    fn hostile_block_lists_are_refused() {
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "not a ULID",
                Box::new(|m| m.blocks[0].ulid = "../../etc".into()),
            ),
            (
                "not a ULID",
                Box::new(|m| m.blocks[0].ulid = "01hzx3q7w8j9k0m1n2p3r4s5t6".into()),
            ),
            (
                "not a ULID",
                Box::new(|m| m.blocks[0].ulid = "01HZX3Q7W8J9K0M1N2P3R4S5TU".into()),
            ),
            (
                "listed twice",
                Box::new(|m| m.blocks.push(m.blocks[0].clone())),
            ),
            (
                "not a sha256",
                Box::new(|m| m.blocks[0].sha256 = "zz".into()),
            ),
            ("no directory", Box::new(|m| m.blocks[0].dirs = 0)),
            ("overflow", Box::new(|m| m.blocks[0].tar_bytes = u64::MAX)),
            ("cannot list blocks", Box::new(|m| m.format = FORMAT)),
            (
                "only a directory",
                Box::new(|m| {
                    m.source.kind = SourceKind::File;
                    m.files = 1;
                }),
            ),
        ];
        for (want, mutate) in cases {
            let mut m = with_blocks();
            mutate(&mut m);
            let err = Manifest::parse(&m.to_json(), "web-1", "acme", &m.id)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn encrypted_manifests_name_their_objects_and_are_checked() {
        let mut m = sample();
        m.encryption = Some(EncryptionInfo {
            scheme: "age".into(),
            recipients: "d".repeat(64),
        });
        // The plain data object does not count in an encrypted backup.
        let err = Manifest::parse(&m.to_json(), "web-1", "acme", &m.id).unwrap_err();
        assert!(
            err.to_string().contains("lists no data.tar.gz.age"),
            "{err}"
        );
        m.objects[0].name = layout::DATA_AGE.into();
        assert_eq!(
            Manifest::parse(&m.to_json(), "web-1", "acme", &m.id).unwrap(),
            m
        );
        let b = with_blocks().blocks[0].clone();
        assert_eq!(
            m.block_name(&b),
            format!("{}.{}.tar.gz.age", b.ulid, "d".repeat(16))
        );
        let mut other = m.clone();
        other.encryption.as_mut().unwrap().scheme = "rot13".into();
        let err = Manifest::parse(&other.to_json(), "web-1", "acme", &m.id).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        let mut other = m.clone();
        other.encryption.as_mut().unwrap().recipients = "../x".into();
        let err = Manifest::parse(&other.to_json(), "web-1", "acme", &m.id).unwrap_err();
        assert!(err.to_string().contains("not a sha256"), "{err}");
        // A plain manifest serializes without the key.
        let plain = String::from_utf8(sample().to_json()).unwrap();
        assert!(!plain.contains("encryption"), "{plain}");
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
