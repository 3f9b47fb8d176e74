//! Encryption at rest, against every store (directory always, Garage when
//! running): an encrypted backup leaves no file name and no content readable
//! in the store, restores with the identity file, is refused without it or
//! with the wrong one (target untouched), verifies fully with the key and
//! partially without, and a tampered ciphertext is caught even when the
//! manifest is rewritten to match it.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use bytes::Bytes;
use common::{describe, forced, make_tree, spec, stores};
use rehost_jobs::backup::{backup, BackupOutcome};
use rehost_jobs::catalog::{self, Selector};
use rehost_jobs::encryption::Encryption;
use rehost_jobs::layout;
use rehost_jobs::manifest::Manifest;
use rehost_jobs::restore::{restore, RestoreRequest};
use rehost_jobs::state::StateSpec;
use rehost_jobs::store::{body_from_bytes, get_small, ObjectStore};
use rehost_jobs::verify::verify;
use sha2::{Digest, Sha256};

const HOST: &str = "sealed-host";
/// In a file name and in file content: must never be readable in the store.
const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";

/// A fresh key pair: (public key, identity file holding the secret key).
fn keypair(dir: &Path, name: &str) -> (String, PathBuf) {
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    fs::write(
        &path,
        format!(
            "# created by a test\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        ),
    )
    .unwrap();
    (id.to_public().to_string(), path)
}

fn sealed(spec: &StateSpec, recipients: &[&str], identity: Option<&Path>) -> StateSpec {
    let recipients: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
    let mut s = spec.clone();
    s.encryption = Some(Arc::new(
        Encryption::new(&recipients, identity.map(Path::to_path_buf)).unwrap(),
    ));
    s
}

/// Verifies (and records) the newest backup of `s` with its keys.
async fn verify_latest(
    store: &dyn ObjectStore,
    s: &StateSpec,
) -> rehost_jobs::Result<Option<rehost_jobs::verify::VerifyReport>> {
    verify(
        store,
        HOST,
        &s.name,
        &Selector::Latest,
        s.encryption.as_deref(),
        true,
        None,
    )
    .await
}

/// Puts `data` as the data object and `m` as its manifest.
async fn replace(
    store: &dyn ObjectStore,
    data_key: &str,
    data: Vec<u8>,
    manifest_key: &str,
    m: &Manifest,
) {
    store
        .put(data_key, body_from_bytes(Bytes::from(data)))
        .await
        .unwrap();
    store
        .put(manifest_key, body_from_bytes(Bytes::from(m.to_json())))
        .await
        .unwrap();
}

/// Every object of the store, read whole.
async fn all_objects(store: &dyn ObjectStore) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for o in store.list("").await.unwrap() {
        let data = get_small(store, &o.key, 64 << 20).await.unwrap();
        out.push((o.key, data));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn make_source(root: &Path) {
    make_tree(root, 300);
    fs::write(
        root.join(format!("{MARKER}.txt")),
        format!("{MARKER} content\n").repeat(50),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backups_hide_everything_and_round_trip() {
    for t in stores("sealed-rt") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        make_source(&root);
        let before = describe(&root);
        let (public, key) = keypair(dir.path(), "key.txt");
        let s = sealed(&spec("data", root.clone()), &[&public], Some(&key));

        let out = backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        assert!(matches!(out, BackupOutcome::Uploaded { .. }), "{out:?}");
        let objects = all_objects(t.store.as_ref()).await;
        let names: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            names.iter().any(|k| k.ends_with("/data.tar.gz.age")),
            "{}: {names:?}",
            t.name
        );
        assert!(
            !names.iter().any(|k| k.ends_with("/data.tar.gz")),
            "{names:?}"
        );
        for (key, data) in &objects {
            assert!(
                !contains(data, MARKER.as_bytes()),
                "{}: {key} reveals the marker",
                t.name
            );
            // Not even the tree's ordinary names or a gzip stream.
            assert!(
                !contains(data, b"d00/sub0"),
                "{}: {key} reveals a path",
                t.name
            );
            if key.ends_with(".age") {
                assert!(data.starts_with(b"age-encryption.org/v1\n"), "{key}");
            }
        }
        let list = catalog::list(t.store.as_ref(), HOST, "data").await.unwrap();
        let m = catalog::load_manifest(t.store.as_ref(), HOST, "data", &list[0].id)
            .await
            .unwrap();
        let enc = m.encryption.as_ref().expect("manifest records encryption");
        assert_eq!(enc.scheme, "age");
        assert_eq!(
            Some(enc.recipients.as_str()),
            s.encryption.as_ref().map(|e| e.digest())
        );

        // Unchanged source, same keys: nothing uploaded.
        let again = backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        assert!(
            matches!(again, BackupOutcome::Unchanged { .. }),
            "{again:?}"
        );

        // Lose the data; restore with the identity file.
        fs::rename(&root, dir.path().join("data.lost")).unwrap();
        restore(t.store.as_ref(), HOST, &s, &forced())
            .await
            .unwrap();
        assert_eq!(describe(&root), before, "{}: restored tree differs", t.name);

        // Full verify with the key: every entry read, recorded.
        let report = verify_latest(t.store.as_ref(), &s).await.unwrap().unwrap();
        assert!(report.content_checked);
        // make_tree's files, and the marker file.
        assert_eq!(report.files, 303, "{report:?}");
        assert!(catalog::list(t.store.as_ref(), HOST, "data").await.unwrap()[0].verified);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_right_key_restore_refuses_and_verify_checks_the_stored_bytes() {
    for t in stores("sealed-keys") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        make_source(&root);
        let (public, _key) = keypair(dir.path(), "key.txt");
        let (_, wrong) = keypair(dir.path(), "wrong.txt");
        let base = spec("data", root.clone());
        // A host that only backs up: recipients, no identity file.
        let writer = sealed(&base, &[&public], None);
        backup(t.store.as_ref(), HOST, &writer, false)
            .await
            .unwrap();

        fs::write(root.join("local-only"), "newer than the backup").unwrap();
        let local = describe(&root);
        for (why, s, want) in [
            (
                "no identity file",
                writer.clone(),
                "needs the identity file",
            ),
            (
                "no encryption settings at all",
                base.clone(),
                "needs the identity file",
            ),
            (
                "another key",
                sealed(&base, &[&public], Some(&wrong)),
                "no key of the identity file can decrypt it",
            ),
        ] {
            let err = restore(t.store.as_ref(), HOST, &s, &forced())
                .await
                .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(want), "{}: {why}: {msg}", t.name);
            assert!(!msg.contains("AGE-SECRET-KEY"), "{msg}");
            assert_eq!(describe(&root), local, "{}: {why}: target changed", t.name);
            let leftovers: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".rehost-staging"))
                .collect();
            assert!(leftovers.is_empty(), "{why}: {leftovers:?}");
        }

        // Verify without the key checks sizes and checksums only, and says so
        // by not recording the backup as verified.
        let report = verify_latest(t.store.as_ref(), &writer)
            .await
            .unwrap()
            .unwrap();
        assert!(!report.content_checked, "{report:?}");
        assert!(!catalog::list(t.store.as_ref(), HOST, "data").await.unwrap()[0].verified);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_encryption_on_or_changing_keys_makes_a_new_backup() {
    for t in stores("sealed-switch") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        make_tree(&root, 50);
        let (a, key_a) = keypair(dir.path(), "a.txt");
        let (b, _) = keypair(dir.path(), "b.txt");
        let plain = spec("data", root.clone());
        let to_a = sealed(&plain, &[&a], Some(&key_a));
        let to_ab = sealed(&plain, &[&b, &a], Some(&key_a));

        let mut kinds = Vec::new();
        for s in [&plain, &to_a, &to_a, &to_ab, &to_ab, &plain] {
            let out = backup(t.store.as_ref(), HOST, s, false).await.unwrap();
            kinds.push(matches!(out, BackupOutcome::Uploaded { .. }));
        }
        // The same source each time: only a change of encryption uploads.
        assert_eq!(kinds, [true, true, false, true, false, true], "{}", t.name);

        // Every backup restores with what it needs: the plain ones with no
        // key, the encrypted ones with key A (a recipient of both sets).
        let list = catalog::list(t.store.as_ref(), HOST, "data").await.unwrap();
        assert_eq!(list.len(), 4);
        for b in &list {
            let req = RestoreRequest {
                selector: Selector::Id(b.id.clone()),
                ..forced()
            };
            restore(t.store.as_ref(), HOST, &to_a, &req).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_is_refused_even_with_a_matching_manifest() {
    for t in stores("sealed-tamper") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        make_source(&root);
        let (public, key) = keypair(dir.path(), "key.txt");
        let s = sealed(&spec("data", root.clone()), &[&public], Some(&key));
        backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        let id = catalog::list(t.store.as_ref(), HOST, "data").await.unwrap()[0]
            .id
            .clone();

        // Flip a byte of the payload and make the manifest vouch for it: only
        // age's authentication can catch this.
        let data_key = layout::object_key(HOST, "data", &id, layout::DATA_AGE);
        let mut data = get_small(t.store.as_ref(), &data_key, 64 << 20)
            .await
            .unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0x01;
        let manifest_key = layout::object_key(HOST, "data", &id, layout::MANIFEST);
        let mut m: Manifest = serde_json::from_slice(
            &get_small(t.store.as_ref(), &manifest_key, 1 << 20)
                .await
                .unwrap(),
        )
        .unwrap();
        m.objects[0].sha256 = hex::encode(Sha256::digest(&data));
        // ...and its part index, so that in the parts a restore fetches too
        // only age's authentication is left to catch it.
        let entry = &m.objects[0];
        let index = entry.index.as_ref().expect("a part index");
        let placed = index.placed(m.layout_of(index, entry.size));
        let parts = &mut m.objects[0].index.as_mut().unwrap().parts;
        for (part, p) in parts.iter_mut().zip(placed) {
            let range = &data[p.stored.0 as usize..p.stored.1 as usize];
            part.sha256 = hex::encode(Sha256::digest(range));
        }
        replace(t.store.as_ref(), &data_key, data, &manifest_key, &m).await;

        fs::write(root.join("local-only"), "newer").unwrap();
        let local = describe(&root);
        let err = restore(t.store.as_ref(), HOST, &s, &forced())
            .await
            .unwrap_err();
        assert!(!format!("{err:#}").is_empty());
        assert_eq!(describe(&root), local, "{}: target changed", t.name);
        let err = verify_latest(t.store.as_ref(), &s).await.unwrap_err();
        assert!(!format!("{err:#}").is_empty());
        assert!(!catalog::list(t.store.as_ref(), HOST, "data").await.unwrap()[0].verified);

        // A plain gzip where the manifest (one without a part index, as an
        // older rehost wrote) promises an age file.
        let plain = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03not age".to_vec();
        m.objects[0].sha256 = hex::encode(Sha256::digest(&plain));
        m.objects[0].size = plain.len() as u64;
        m.objects[0].index = None;
        replace(t.store.as_ref(), &data_key, plain, &manifest_key, &m).await;
        let err = restore(t.store.as_ref(), HOST, &s, &forced())
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("not a readable age file"), "{msg}");
        assert_eq!(describe(&root), local);
    }
}
