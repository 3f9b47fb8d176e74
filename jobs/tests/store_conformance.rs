//! One conformance suite for every ObjectStore implementation: the directory
//! store always, S3 against a real Garage when it is running.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use futures::StreamExt;
use rand::RngCore;
use rehost_jobs::store::{self, body_from_bytes, get_small, ObjectStore, StoreError};
use sha2::{Digest, Sha256};

async fn read_all(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let mut s = store.get(key).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn put_get_head_list_delete() {
    for t in common::stores("conf-basic") {
        let s = t.store.as_ref();
        s.put("a/b/one", body_from_bytes(Bytes::from_static(b"hello")))
            .await
            .unwrap();
        s.put("a/two", body_from_bytes(Bytes::from_static(b"world!")))
            .await
            .unwrap();
        s.put("ab/three", body_from_bytes(Bytes::from_static(b"")))
            .await
            .unwrap();
        assert_eq!(read_all(s, "a/b/one").await, b"hello", "{}", t.name);
        let head = s.head("a/two").await.unwrap().unwrap();
        assert_eq!(head.size, 6, "{}", t.name);
        assert!(s.head("a/missing").await.unwrap().is_none(), "{}", t.name);
        let keys: Vec<_> = s
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a/b/one", "a/two"], "{}", t.name);
        let keys: Vec<_> = s
            .list("a")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a/b/one", "a/two", "ab/three"], "{}", t.name);
        assert!(s.list("zzz/").await.unwrap().is_empty(), "{}", t.name);
        // Overwrite replaces.
        s.put("a/two", body_from_bytes(Bytes::from_static(b"again")))
            .await
            .unwrap();
        assert_eq!(
            get_small(s, "a/two", 100).await.unwrap(),
            b"again",
            "{}",
            t.name
        );
        assert!(matches!(
            get_small(s, "a/two", 2).await,
            Err(StoreError::TooLarge { .. })
        ));
        s.delete("a/b/one").await.unwrap();
        s.delete("a/b/one").await.unwrap(); // idempotent
        assert!(
            matches!(s.get("a/b/one").await, Err(StoreError::NotFound { .. })),
            "{}",
            t.name
        );
        let keys: Vec<_> = s
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a/two"], "{}", t.name);
    }
}

#[tokio::test]
async fn large_streamed_put_is_multipart_and_exact() {
    for t in common::stores("conf-large") {
        // 21 MiB + a few bytes in odd-sized chunks: three multipart parts.
        let mut data = vec![0u8; 21 * 1024 * 1024 + 17];
        rand::thread_rng().fill_bytes(&mut data);
        let chunks: Vec<std::io::Result<Bytes>> = data
            .chunks(300_001)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let stored = t
            .store
            .put("big/object", Box::pin(futures::stream::iter(chunks)))
            .await
            .unwrap();
        assert_eq!(stored, data.len() as u64, "{}", t.name);
        let back = read_all(t.store.as_ref(), "big/object").await;
        assert_eq!(Sha256::digest(&back), Sha256::digest(&data), "{}", t.name);
        assert_eq!(
            t.store.head("big/object").await.unwrap().unwrap().size,
            data.len() as u64
        );
    }
}

#[tokio::test]
async fn a_failing_body_leaves_no_object() {
    for t in common::stores("conf-abort") {
        for size in [1000usize, 12 * 1024 * 1024] {
            let chunks: Vec<std::io::Result<Bytes>> = vec![
                Ok(Bytes::from(vec![1u8; size])),
                Err(std::io::Error::other("disk read failed")),
            ];
            let err = t
                .store
                .put("half/object", Box::pin(futures::stream::iter(chunks)))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::BodyFailed { .. }),
                "{}: {err}",
                t.name
            );
            assert!(
                t.store.head("half/object").await.unwrap().is_none(),
                "{}",
                t.name
            );
            assert!(
                t.store.list("half/").await.unwrap().is_empty(),
                "{}",
                t.name
            );
        }
    }
}

#[tokio::test]
async fn hostile_keys_are_refused() {
    for t in common::stores("conf-keys") {
        let long = "k".repeat(1025);
        for key in [
            "../escape",
            "/abs",
            "a/../../b",
            "a//b",
            "a/./b",
            "",
            "nul\0byte",
            "trailing/",
            long.as_str(),
        ] {
            let err = t
                .store
                .put(key, body_from_bytes(Bytes::from_static(b"x")))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidKey { .. }),
                "{}: {key:?}: {err}",
                t.name
            );
            assert!(matches!(
                t.store.get(key).await,
                Err(StoreError::InvalidKey { .. })
            ));
        }
    }
}

#[tokio::test]
async fn unreachable_storage_is_classified() {
    // Nothing listens on port 9 of loopback.
    let location = store::StoreLocation::S3(store::S3Settings {
        bucket: "b".into(),
        prefix: String::new(),
        endpoint: Some("http://127.0.0.1:9".into()),
        region: "garage".into(),
        path_style: true,
        credentials: store::CredentialSource::File {
            path: write_creds().into(),
            profile: "default".into(),
        },
    });
    let s = store::open(&location).unwrap();
    let err = s.list("x/").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    // A missing directory store is unavailable too.
    let s = store::open(&store::StoreLocation::File(
        "/nonexistent/rehost-store".into(),
    ))
    .unwrap();
    assert!(s.list("x/").await.unwrap_err().is_unavailable());
}

fn write_creds() -> String {
    let dir = std::env::temp_dir().join(format!("rehost-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("credentials");
    std::fs::write(
        &p,
        "[default]\naws_access_key_id = AKX\naws_secret_access_key = SECRETX\n",
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn wrong_credentials_are_denied_not_unreachable() {
    let Some(rehost_jobs::store::StoreLocation::S3(mut s)) = common::garage("conf-denied") else {
        return;
    };
    s.credentials = store::CredentialSource::File {
        path: write_creds().into(),
        profile: "default".into(),
    };
    let store = store::open(&store::StoreLocation::S3(s)).unwrap();
    let err = store.list("x/").await.unwrap_err();
    assert!(matches!(err, StoreError::Denied { .. }), "{err}");
    assert!(!err.to_string().contains("SECRETX"), "secret leaked: {err}");
}

/// A listing of several pages (S3 returns 1,000 keys per request) returns
/// every key exactly once, with objects directly under the prefix, deeper
/// sub-prefixes, and a sibling prefix sharing the leading characters; also
/// when it is long enough to be listed in concurrent ranges.
#[tokio::test]
async fn listings_spanning_pages_are_complete() {
    for t in common::stores("conf-pages") {
        let s = t.store.as_ref();
        let mut keys: Vec<String> = Vec::new();
        keys.extend((0..300).map(|i| format!("big/direct-{i:04}")));
        for k in 0..5 {
            keys.extend((0..200).map(|i| format!("big/d{k}/f{i:04}")));
        }
        keys.extend((0..1200).map(|i| format!("big/deep/x/f{i:04}")));
        // Past the pages listed one by one (3,000 keys), S3 listings are
        // split into ranges at the sub-prefixes; names that sort between
        // `big/z5` and `big/z5/` sit at a range bound. (A key that is also a
        // folder, `big/z5`, is one the directory store cannot hold.)
        for k in 0..8 {
            keys.extend((0..150).map(|i| format!("big/z{k}/f{i:04}")));
        }
        keys.extend(["big/z5!", "big/z5.txt", "big/z5-x", "big/z7x/a"].map(String::from));
        keys.push("bigger/one".to_string());
        futures::stream::iter(keys.clone())
            .map(|k| async move {
                s.put(&k, body_from_bytes(Bytes::from(k.clone().into_bytes())))
                    .await
                    .unwrap()
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        keys.sort();

        let listed: Vec<_> = s.list("big").await.unwrap();
        let names: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(names.len(), keys.len(), "{}", t.name);
        assert_eq!(names, keys, "{}", t.name);
        assert!(
            listed.iter().all(|o| o.size == o.key.len() as u64),
            "{}",
            t.name
        );

        let under: Vec<_> = s.list("big/").await.unwrap();
        assert_eq!(under.len(), keys.len() - 1, "{}", t.name);
        assert!(
            under.iter().all(|o| o.key.starts_with("big/")),
            "{}",
            t.name
        );

        // A hinted listing is the same listing, whatever the hint says: S3
        // lists in ranges that start at hinted keys.
        let exact: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut stale: Vec<String> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, k)| k.clone())
            .collect();
        stale.extend(["a/x", "big/d2/f0100~", "big/e", "big/zz", "zzz"].map(String::from));
        stale.sort();
        let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
        let unsorted: Vec<&str> = exact.iter().rev().copied().collect();
        // None of these exist; the listing must still find every key.
        let fake: Vec<String> = (0..9000).map(|i| format!("big/q{i:05}")).collect();
        let fake: Vec<&str> = fake.iter().map(String::as_str).collect();
        // A range starts at `big/z5/`: `big/z5!`, `big/z5-x` and
        // `big/z5.txt` sort before it but after its start-after.
        let mut at_bound: Vec<&str> = exact[..500].to_vec();
        at_bound.push("big/z5/");
        let after: Vec<String> = (0..499).map(|i| format!("big/zz{i:03}")).collect();
        at_bound.extend(after.iter().map(String::as_str));
        for (what, hint) in [
            ("exact", &exact),
            ("stale", &stale),
            ("unsorted", &unsorted),
            ("fake", &fake),
            ("bound at big/z5/", &at_bound),
            ("empty", &Vec::new()),
        ] {
            let hinted = s.list_with_hint("big", hint).await.unwrap();
            assert_eq!(hinted, listed, "{}: {what} hint", t.name);
        }
    }
}
