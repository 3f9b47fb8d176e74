//! Restores that read one object in parts, against every store (directory
//! always, Garage when running): a backup larger than a part lists a part
//! index and restores through it, plain and encrypted; a backup made before
//! the index existed (the same objects, a manifest without it) still
//! restores and verifies, in one stream; a corrupt part is named and leaves
//! the target alone; and the object is still one plain `.tar.gz` that `tar
//! xzf` restores by hand.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use bytes::Bytes;
use common::{describe, forced, make_tree, spec, stores, TestStore};
use rehost_jobs::backup::backup;
use rehost_jobs::catalog::{self, Selector};
use rehost_jobs::encryption::Encryption;
use rehost_jobs::layout;
use rehost_jobs::manifest::Manifest;
use rehost_jobs::restore::{restore, RestoreOutcome};
use rehost_jobs::state::StateSpec;
use rehost_jobs::store::{body_from_bytes, get_small, ObjectStore};
use rehost_jobs::verify::verify;
use sha2::{Digest, Sha256};

const HOST: &str = "parts-host";

/// `len` bytes that do not compress: a sha256 chain.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(seed.as_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

/// A tree of about 14 MiB of tar: small files, 11 MiB of noise in two files,
/// and 3 MiB of text, so that it makes several parts of 4 MiB.
fn big_tree(root: &Path) {
    make_tree(root, 300);
    fs::write(root.join("noise-a.bin"), noise("a", 7 << 20)).unwrap();
    fs::write(root.join("d01/noise-b.bin"), noise("b", (4 << 20) + 12345)).unwrap();
    let text: String = (0..60_000)
        .map(|i| format!("{i:08} GET /index.html 200 in {}ms\n", i % 97))
        .collect();
    fs::write(root.join("access.log"), text).unwrap();
}

fn sealed(s: &StateSpec, dir: &Path) -> StateSpec {
    let id = age::x25519::Identity::generate();
    let key = dir.join("age.key");
    fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let mut s = s.clone();
    s.encryption = Some(Arc::new(
        Encryption::new(&[id.to_public().to_string()], Some(key)).unwrap(),
    ));
    s
}

async fn newest(store: &dyn ObjectStore, state: &str) -> Manifest {
    catalog::find(store, HOST, state, &Selector::Latest)
        .await
        .unwrap()
        .unwrap()
}

fn manifest_key(m: &Manifest) -> String {
    layout::object_key(&m.host, &m.state, &m.id, layout::MANIFEST)
}

/// Rewrites the newest manifest of `state` as a rehost without part indexes
/// wrote it: the same JSON without the `index` keys.
async fn strip_index(store: &dyn ObjectStore, state: &str) {
    let m = newest(store, state).await;
    let key = manifest_key(&m);
    let mut json: serde_json::Value =
        serde_json::from_slice(&get_small(store, &key, 8 << 20).await.unwrap()).unwrap();
    for o in json["objects"].as_array_mut().unwrap() {
        assert!(o.as_object_mut().unwrap().remove("index").is_some());
    }
    let bytes = serde_json::to_vec_pretty(&json).unwrap();
    store
        .put(&key, body_from_bytes(Bytes::from(bytes)))
        .await
        .unwrap();
    assert!(newest(store, state).await.data().unwrap().index.is_none());
}

async fn round_trip(t: &TestStore, s: &StateSpec, root: &Path, want: &[String]) {
    fs::remove_dir_all(root).unwrap();
    let out = restore(t.store.as_ref(), HOST, s, &forced()).await.unwrap();
    assert!(
        matches!(out, RestoreOutcome::Restored { .. }),
        "{}: {out:?}",
        t.name
    );
    assert_eq!(describe(root), want, "{}: restored tree differs", t.name);
    let enc = s.encryption.as_deref();
    let report = verify(
        t.store.as_ref(),
        HOST,
        &s.name,
        &Selector::Latest,
        enc,
        false,
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(report.content_checked, "{}", t.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_backups_restore_in_parts_and_older_ones_in_one_stream() {
    for t in stores("parts") {
        for encrypted in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("data");
            big_tree(&root);
            let want = describe(&root);
            let plain = spec("data", root.clone());
            let s = if encrypted {
                sealed(&plain, dir.path())
            } else {
                plain
            };
            let what = format!("{} encrypted={encrypted}", t.name);
            backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
            let m = newest(t.store.as_ref(), "data").await;
            let index = m.data().unwrap().index.clone().expect("a part index");
            assert!(index.parts.len() >= 3, "{what}: {index:?}");
            assert_eq!(index.payload_offset > 0, encrypted, "{what}");

            round_trip(&t, &s, &root, &want).await;

            // The same backup as an older rehost recorded it.
            strip_index(t.store.as_ref(), "data").await;
            round_trip(&t, &s, &root, &want).await;
            // Clean up for the next pass: a new backup of a new tree.
            for o in t.store.list(&format!("{HOST}/data/")).await.unwrap() {
                t.store.delete(&o.key).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_part_is_named_and_the_target_is_left_alone() {
    for t in stores("parts-corrupt") {
        for encrypted in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("data");
            big_tree(&root);
            let plain = spec("data", root.clone());
            let s = if encrypted {
                sealed(&plain, dir.path())
            } else {
                plain
            };
            backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
            let m = newest(t.store.as_ref(), "data").await;
            let data = m.data().unwrap();
            let key = layout::object_key(HOST, "data", &m.id, &data.name);
            let mut bytes = get_small(t.store.as_ref(), &key, 64 << 20).await.unwrap();
            // Inside the third part, away from any border it shares.
            let p = &data
                .index
                .as_ref()
                .unwrap()
                .placed(m.layout_of(data.index.as_ref().unwrap(), data.size))[2];
            let at = ((p.stored.0 + p.stored.1) / 2) as usize;
            bytes[at] ^= 0x20;
            t.store
                .put(&key, body_from_bytes(Bytes::from(bytes)))
                .await
                .unwrap();

            fs::write(root.join("local"), "newer local data").unwrap();
            let before = describe(&root);
            let err = restore(t.store.as_ref(), HOST, &s, &forced())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("part 2 (bytes") && err.contains("sha256"),
                "{}: {err}",
                t.name
            );
            assert_eq!(describe(&root), before, "{}: target changed", t.name);
            let leftovers: Vec<PathBuf> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().contains(".rehost-staging"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
            let err = verify(
                t.store.as_ref(),
                HOST,
                "data",
                &Selector::Latest,
                s.encryption.as_deref(),
                false,
                None,
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains("part 2"), "{err}");
            for o in t.store.list(&format!("{HOST}/data/")).await.unwrap() {
                t.store.delete(&o.key).await.unwrap();
            }
        }
    }
}

/// A manifest is untrusted input too: an index whose sums are right but
/// whose parts are cut elsewhere (with checksums to match, as whoever can
/// write the manifest could make them) is refused as corrupt, and one that
/// shifts tar bytes between parts is refused by size; the target is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_index_is_refused_and_the_target_is_left_alone() {
    for t in stores("parts-lying") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        big_tree(&root);
        let s = spec("data", root.clone());
        backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        let m = newest(t.store.as_ref(), "data").await;
        let data_key = layout::object_key(HOST, "data", &m.id, layout::DATA);
        let object = get_small(t.store.as_ref(), &data_key, 64 << 20)
            .await
            .unwrap();
        let good = get_small(t.store.as_ref(), &manifest_key(&m), 8 << 20)
            .await
            .unwrap();
        fs::write(root.join("local"), "newer local data").unwrap();
        let before = describe(&root);
        type Lie = fn(&mut serde_json::Value);
        let lies: [(&str, Lie, &str); 2] = [
            (
                "parts cut inside a gzip member",
                |parts| {
                    let moved = 1000;
                    let gz0 = parts[0]["gz"].as_u64().unwrap();
                    let gz1 = parts[1]["gz"].as_u64().unwrap();
                    parts[0]["gz"] = (gz0 + moved).into();
                    parts[1]["gz"] = (gz1 - moved).into();
                },
                "part 0 (bytes",
            ),
            (
                "tar bytes moved between parts",
                |parts| {
                    let tar0 = parts[0]["tar"].as_u64().unwrap();
                    let tar1 = parts[1]["tar"].as_u64().unwrap();
                    parts[0]["tar"] = (tar0 - 4096).into();
                    parts[1]["tar"] = (tar1 + 4096).into();
                },
                "inflates to more than",
            ),
        ];
        for (case, lie, want) in lies {
            let mut json: serde_json::Value = serde_json::from_slice(&good).unwrap();
            let parts = &mut json["objects"][0]["index"]["parts"];
            lie(parts);
            // Checksums that match the new ranges.
            let mut at = 0usize;
            for p in parts.as_array_mut().unwrap() {
                let gz = p["gz"].as_u64().unwrap() as usize;
                p["sha256"] = hex::encode(Sha256::digest(&object[at..at + gz])).into();
                at += gz;
            }
            let bytes = serde_json::to_vec_pretty(&json).unwrap();
            t.store
                .put(&manifest_key(&m), body_from_bytes(Bytes::from(bytes)))
                .await
                .unwrap();
            let err = restore(t.store.as_ref(), HOST, &s, &forced())
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{} {case}: {err}", t.name);
            assert_eq!(describe(&root), before, "{} {case}: target changed", t.name);
        }
    }
}

/// The README's by-hand restore of an unencrypted backup is
/// `aws s3 cp s3://…/data.tar.gz - | tar xzf -`: the object of a backup
/// with a part index is still one gzip stream that tar reads whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_xzf_restores_an_indexed_backup_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    fs::create_dir_all(&store_dir).unwrap();
    let store = rehost_jobs::store::FsStore::new(store_dir.clone());
    let root = dir.path().join("data");
    big_tree(&root);
    let s = spec("data", root.clone());
    backup(&store, HOST, &s, false).await.unwrap();
    let m = newest(&store, "data").await;
    assert!(m.data().unwrap().index.as_ref().unwrap().parts.len() >= 3);
    let object = store_dir.join(layout::object_key(HOST, "data", &m.id, layout::DATA));
    let out = dir.path().join("by-hand");
    fs::create_dir_all(&out).unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&object)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(describe(&out), describe(&root));
}
