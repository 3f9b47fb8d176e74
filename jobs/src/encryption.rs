//! Client-side encryption at rest with [age](https://age-encryption.org): the
//! data object and every Prometheus block object of a backup are age files
//! (X25519 recipients), so the bucket alone holds no file name and no byte of
//! content. The layers stream like the rest of the pipeline: tar → gzip → age →
//! sha256 → upload, and the reverse on restore.
//!
//! What stays readable in the bucket: the manifest (host, state, source path,
//! times, file counts, sizes, checksums of the encrypted objects, a
//! fingerprint hash of the source's metadata) and the block ULIDs. A host
//! that only backs up needs only the recipients (public keys); restore and a
//! full verify need the identity file (the secret key), read only then.
//!
//! By hand: `age -d -i KEY data.tar.gz.age | tar xzf -`.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::x25519;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The scheme recorded in manifests.
pub const SCHEME: &str = "age";
/// Identity files are small; anything larger is not one.
const MAX_IDENTITY_FILE: u64 = 64 * 1024;

/// The `storage.encryption` settings, parsed.
#[derive(Clone)]
pub struct Encryption {
    recipients: Vec<x25519::Recipient>,
    /// sha256 of the sorted recipient strings: names the recipient set in
    /// manifests and block object names without listing the keys.
    digest: String,
    identity_file: Option<PathBuf>,
}

impl Encryption {
    /// `recipients` are `age1…` public keys; `identity_file` holds the secret
    /// key(s) that restore and verify use.
    pub fn new(recipients: &[String], identity_file: Option<PathBuf>) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::Encryption(
                "no recipient: list at least one age public key (age1…)".into(),
            ));
        }
        let mut parsed = Vec::with_capacity(recipients.len());
        let mut canonical = Vec::with_capacity(recipients.len());
        for (i, r) in recipients.iter().enumerate() {
            let key = x25519::Recipient::from_str(r.trim()).map_err(|e| {
                Error::Encryption(format!(
                    "recipient {} is not an age X25519 public key (age1…): {e}",
                    i + 1
                ))
            })?;
            canonical.push(key.to_string());
            parsed.push(key);
        }
        canonical.sort();
        canonical.dedup();
        let digest = hex::encode(Sha256::digest(canonical.join("\n").as_bytes()));
        Ok(Encryption {
            recipients: parsed,
            digest,
            identity_file,
        })
    }

    /// Identifies the recipient set (hex sha256).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn identity_file(&self) -> Option<&Path> {
        self.identity_file.as_deref()
    }

    /// Whether backups made now can be decrypted with the identity file;
    /// `None` without an identity file. Reads the identity file.
    pub fn identity_matches_recipients(&self) -> Result<Option<bool>> {
        if self.identity_file.is_none() {
            return Ok(None);
        }
        let ids = self.identities()?;
        let publics: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
        Ok(Some(
            self.recipients
                .iter()
                .any(|r| publics.contains(&r.to_string())),
        ))
    }

    /// Wraps `out` so that what is written to it arrives encrypted. The
    /// returned writer must be finished with [`age::stream::StreamWriter::finish`].
    pub(crate) fn encrypt_to<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = age::Encryptor::with_recipients(
            self.recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| io::Error::other(format!("age: {e}")))?;
        encryptor.wrap_output(out)
    }

    /// The secret keys of the identity file. Errors name the file, never its
    /// content.
    pub(crate) fn identities(&self) -> Result<Vec<x25519::Identity>> {
        let path = self.identity_file.as_deref().ok_or_else(|| {
            Error::Encryption(
                "the backup is encrypted and no identity file is configured \
                 (storage.encryption.identity_file)"
                    .into(),
            )
        })?;
        read_identities(path)
    }
}

/// Reads an age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments and
/// blank lines (what `age-keygen` writes).
pub fn read_identities(path: &Path) -> Result<Vec<x25519::Identity>> {
    let what =
        |detail: String| Error::Encryption(format!("identity file {}: {detail}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| what(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_IDENTITY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| what(e.to_string()))?;
    if text.len() as u64 > MAX_IDENTITY_FILE {
        return Err(what(format!("larger than {MAX_IDENTITY_FILE} bytes")));
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The key itself never goes into the message.
        let id = x25519::Identity::from_str(line).map_err(|_| {
            what(format!(
                "line {} is not an age X25519 secret key (AGE-SECRET-KEY-1…)",
                n + 1
            ))
        })?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(what("it holds no secret key".into()));
    }
    Ok(out)
}

/// A reader of the plaintext of the age file `input`, or an error that says
/// why it cannot be decrypted (not an age file, no matching key).
pub(crate) fn decrypt<R: Read>(
    input: R,
    identities: &[x25519::Identity],
) -> io::Result<age::stream::StreamReader<R>> {
    let decryptor = age::Decryptor::new(input).map_err(|e| match e {
        // A failing store is not a malformed header.
        age::DecryptError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => e,
        e => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a readable age file: {e}"),
        ),
    })?;
    decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "no key of the identity file can decrypt it (it was encrypted to other recipients)",
            ),
            age::DecryptError::Io(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, format!("age: {e}")),
        })
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys only, but the digest says as much and is shorter.
        f.debug_struct("Encryption")
            .field("recipients", &self.recipients.len())
            .field("digest", &self.digest)
            .field("identity_file", &self.identity_file)
            .finish()
    }
}

impl PartialEq for Encryption {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.identity_file == other.identity_file
    }
}

impl Eq for Encryption {}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn keypair() -> (String, String) {
        let id = x25519::Identity::generate();
        (
            id.to_public().to_string(),
            id.to_string().expose_secret().to_string(),
        )
    }

    #[test]
    fn round_trip_streams_and_wrong_keys_are_named() {
        let (public, secret) = keypair();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.txt");
        std::fs::write(
            &key,
            format!("# created: now\n# public key: {public}\n{secret}\n"),
        )
        .unwrap();
        let enc = Encryption::new(std::slice::from_ref(&public), Some(key.clone())).unwrap();
        assert_eq!(enc.identity_matches_recipients().unwrap(), Some(true));

        let plain: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut w = enc.encrypt_to(Vec::new()).unwrap();
        for chunk in plain.chunks(7777) {
            w.write_all(chunk).unwrap();
        }
        let cipher = w.finish().unwrap();
        assert!(cipher.starts_with(b"age-encryption.org/v1\n"));

        let ids = enc.identities().unwrap();
        let mut back = Vec::new();
        decrypt(&cipher[..], &ids)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain);

        // Truncated: the last chunk's tag is missing, so reading fails.
        let mut cut = Vec::new();
        let err = decrypt(&cipher[..cipher.len() - 100], &ids)
            .unwrap()
            .read_to_end(&mut cut);
        assert!(err.is_err());

        // Another key: refused, and the message says why without the key.
        let (_, other_secret) = keypair();
        let other = dir.path().join("other.txt");
        std::fs::write(&other, format!("{other_secret}\n")).unwrap();
        let other_ids = read_identities(&other).unwrap();
        let err = decrypt(&cipher[..], &other_ids).err().unwrap().to_string();
        assert!(err.contains("no key of the identity file"), "{err}");
        assert!(!err.contains("AGE-SECRET-KEY"), "{err}");

        // Not an age file at all.
        let err = decrypt(&b"\x1f\x8b\x08\x00 plain gzip"[..], &ids)
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a readable age file"), "{err}");
    }

    #[test]
    fn bad_settings_are_named_and_secrets_stay_out_of_messages() {
        let err = Encryption::new(&[], None).unwrap_err().to_string();
        assert!(err.contains("no recipient"), "{err}");
        let (public, secret) = keypair();
        let err = Encryption::new(&[public.clone(), "age1nope".into()], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("recipient 2"), "{err}");
        // A secret key pasted where the public key goes.
        let err = Encryption::new(std::slice::from_ref(&secret), None)
            .unwrap_err()
            .to_string();
        assert!(!err.contains(&secret), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, format!("# ok\n{public}\n")).unwrap();
        let err = read_identities(&bad).err().unwrap().to_string();
        assert!(err.contains("line 2") && err.contains("bad.txt"), "{err}");
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "# nothing\n").unwrap();
        assert!(read_identities(&empty)
            .err()
            .unwrap()
            .to_string()
            .contains("no secret key"));
        let missing = dir.path().join("missing.txt");
        assert!(read_identities(&missing)
            .err()
            .unwrap()
            .to_string()
            .contains("missing.txt"));

        let enc = Encryption::new(&[public], None).unwrap();
        assert_eq!(enc.identity_matches_recipients().unwrap(), None);
        let err = enc.identities().err().unwrap().to_string();
        assert!(err.contains("identity_file"), "{err}");
    }

    #[test]
    fn the_digest_names_the_set_not_the_order() {
        let (a, _) = keypair();
        let (b, _) = keypair();
        let ab = Encryption::new(&[a.clone(), b.clone()], None).unwrap();
        let ba = Encryption::new(&[b.clone(), a.clone(), b], None).unwrap();
        assert_eq!(ab.digest(), ba.digest());
        assert_ne!(ab.digest(), Encryption::new(&[a], None).unwrap().digest());
    }
}
