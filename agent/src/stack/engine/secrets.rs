//! A service's `secrets:` and `configs:` as the container gets them, and
//! their digests for the config hash.
//!
//! Compose's way, applied through the Engine API:
//! - a `file:` source with the default owner and mode is bind-mounted
//!   read-only at its target (the container sees the host file);
//! - anything else (a variable, inline `content:`, or a file with `uid`,
//!   `gid` or `mode`) is copied into the created container before it starts,
//!   as a tar entry with that owner and mode.
//!
//! Invariants:
//! - content is never logged, never put in a label, an image or an error:
//!   messages name the secret and its source file, not what it holds;
//!   copied content's `Debug` leaves it out;
//! - the config hash takes a sha256 digest of each content (so that a
//!   change recreates the services that use it), and nothing else of it;
//! - a copied content is read whole, so it is capped at [`MAX_COPIED`] (a
//!   secret is a few bytes; a larger file is refused, not truncated).

use std::io::Read;

use anyhow::Context as _;
use bollard::models::{Mount, MountTypeEnum};
use sha2::{Digest, Sha256};

use crate::stack::model::{Project, SecretMount, SecretSource, Service};

/// Largest content copied into a container (bind-mounted files have no cap).
pub(crate) const MAX_COPIED: u64 = 1 << 20;

/// One file copied into a container before it starts.
#[derive(Clone)]
pub(crate) struct CopiedFile {
    /// Absolute path in the container.
    pub target: String,
    /// Never printed: the `Debug` below leaves it out.
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl std::fmt::Debug for CopiedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CopiedFile({} <redacted>)", self.target)
    }
}

/// What a service's secrets and configs become.
#[derive(Clone, Debug, Default)]
pub(crate) struct Material {
    /// `(target, sha256 hex of the content)`, in the service's order.
    pub digests: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub copies: Vec<CopiedFile>,
}

/// Reads what `service` needs (blocking file reads: secrets are small).
pub(crate) fn material(project: &Project, service: &Service) -> anyhow::Result<Material> {
    let mut out = Material::default();
    for m in &service.secrets {
        let source = project.secrets.get(&m.source).with_context(|| {
            format!("service `{}`: `{}` is not declared", service.name, m.source)
        })?;
        let copied = copies(source, m);
        match source {
            SecretSource::File(path) => {
                let open = || {
                    let what = || {
                        format!(
                            "service `{}`: read `{}` from {}",
                            service.name,
                            m.source,
                            path.display()
                        )
                    };
                    let f = std::fs::File::open(path).with_context(what)?;
                    // A device or a pipe would never end (and is no secret file).
                    if !f.metadata().with_context(what)?.is_file() {
                        anyhow::bail!("{}: not a regular file", what());
                    }
                    Ok(f)
                };
                if copied {
                    let mut content = Vec::new();
                    open()?
                        .take(MAX_COPIED + 1)
                        .read_to_end(&mut content)
                        .with_context(|| format!("read {}", path.display()))?;
                    if content.len() as u64 > MAX_COPIED {
                        anyhow::bail!(
                            "service `{}`: {} (`{}`) is larger than {} KiB, too large to copy into the container; drop uid/gid/mode to have it bind-mounted",
                            service.name,
                            path.display(),
                            m.source,
                            MAX_COPIED >> 10
                        );
                    }
                    out.digests.push((m.target.clone(), digest(&content)));
                    out.copies.push(copied_file(m, content));
                } else {
                    let mut h = Sha256::new();
                    std::io::copy(&mut open()?, &mut h)
                        .with_context(|| format!("read {}", path.display()))?;
                    out.digests
                        .push((m.target.clone(), hex::encode(h.finalize())));
                    out.mounts.push(Mount {
                        target: Some(m.target.clone()),
                        source: Some(path.to_string_lossy().into_owned()),
                        typ: Some(MountTypeEnum::BIND),
                        read_only: Some(true),
                        ..Default::default()
                    });
                }
            }
            SecretSource::Environment { value, .. } => {
                out.digests
                    .push((m.target.clone(), digest(value.0.as_bytes())));
                out.copies.push(copied_file(m, value.0.as_bytes().to_vec()));
            }
            SecretSource::Content(text) => {
                out.digests
                    .push((m.target.clone(), digest(text.as_bytes())));
                out.copies.push(copied_file(m, text.as_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Whether `m` is copied rather than bind-mounted (see the module header).
fn copies(source: &SecretSource, m: &SecretMount) -> bool {
    let plain_file = matches!(source, SecretSource::File(_));
    !(plain_file && m.uid.is_none() && m.gid.is_none() && m.mode == 0o444)
}

fn copied_file(m: &SecretMount, content: Vec<u8>) -> CopiedFile {
    CopiedFile {
        target: m.target.clone(),
        content,
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
        mode: m.mode,
    }
}

fn digest(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// A tar (in memory: at most a few files of at most [`MAX_COPIED`]) of
/// `files`, with paths relative to `/`, for the Engine's archive upload.
pub(crate) fn tar(files: &[CopiedFile]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for f in files {
        let bytes = f.content.as_slice();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(f.mode);
        header.set_uid(u64::from(f.uid));
        header.set_gid(u64::from(f.gid));
        header.set_mtime(0);
        tar.append_data(&mut header, f.target.trim_start_matches('/'), bytes)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::engine::spec::tests::{project, service};
    use crate::stack::model::Redacted;

    #[test]
    fn files_are_bound_and_variables_copied_with_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.txt");
        std::fs::write(&file, "from-file").unwrap();
        let mut s = service("web");
        s.secrets = vec![
            SecretMount {
                source: "secrets.db".into(),
                target: "/run/secrets/db".into(),
                uid: None,
                gid: None,
                mode: 0o444,
            },
            SecretMount {
                source: "secrets.token".into(),
                target: "/run/secrets/token".into(),
                uid: Some(1000),
                gid: None,
                mode: 0o400,
            },
        ];
        let mut p = project("site", vec![s.clone()]);
        p.secrets
            .insert("secrets.db".into(), SecretSource::File(file.clone()));
        p.secrets.insert(
            "secrets.token".into(),
            SecretSource::Environment {
                variable: "TOKEN".into(),
                value: Redacted("t\u{ff}k".into()),
            },
        );
        let m = material(&p, &s).unwrap();
        assert_eq!(m.mounts.len(), 1);
        assert_eq!(m.mounts[0].read_only, Some(true));
        assert_eq!(m.mounts[0].source.as_deref(), file.to_str());
        assert_eq!(m.copies.len(), 1);
        assert_eq!(m.digests[0].1, digest(b"from-file"));
        assert!(!format!("{m:?}").contains("from-file"));
        assert!(!format!("{m:?}").contains("t\u{ff}k"));

        let bytes = tar(&m.copies).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("run/secrets/token"));
        assert_eq!(entry.header().mode().unwrap(), 0o400);
        assert_eq!(entry.header().uid().unwrap(), 1000);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, "t\u{ff}k".as_bytes());

        std::fs::write(&file, "changed").unwrap();
        assert_ne!(material(&p, &s).unwrap().digests[0].1, m.digests[0].1);
        std::fs::remove_file(&file).unwrap();
        let err = format!("{:#}", material(&p, &s).unwrap_err());
        assert!(
            err.contains("secrets.db") && err.contains("db.txt"),
            "{err}"
        );
    }
}
