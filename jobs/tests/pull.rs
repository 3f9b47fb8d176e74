//! Content pull against every store (a directory always, Garage when
//! available): convergence, request counts, hostile keys, local damage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rehost_jobs::pull::{index_path, pull, PullSpec};
use rehost_jobs::store::{
    body_from_bytes, ByteStream, ObjectInfo, ObjectStore, PutBody, StoreError,
};

/// Counts GETs and the bytes they return; can add extra listing entries
/// (hostile keys) whose GET returns `payload`.
struct Counting {
    inner: Arc<dyn ObjectStore>,
    gets: AtomicU64,
    bytes: Arc<AtomicU64>,
    extra: Vec<String>,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Counting {
            inner,
            gets: AtomicU64::new(0),
            bytes: Arc::new(AtomicU64::new(0)),
            extra: Vec::new(),
        }
    }
    fn take(&self) -> (u64, u64) {
        (
            self.gets.swap(0, Ordering::SeqCst),
            self.bytes.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list_with_hint(prefix, &[]).await
    }
    // Forwarded, so that pulls from Garage list in the hinted ranges.
    async fn list_with_hint(
        &self,
        prefix: &str,
        earlier: &[&str],
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = self.inner.list_with_hint(prefix, earlier).await?;
        out.extend(self.extra.iter().map(|k| ObjectInfo {
            key: k.clone(),
            size: 7,
            etag: Some("evil".into()),
            modified: None,
        }));
        Ok(out)
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.extra.iter().any(|k| k == key) {
            return Ok(Box::pin(futures::stream::once(async {
                Ok(Bytes::from_static(b"escaped"))
            })));
        }
        let counter = self.bytes.clone();
        let stream = self.inner.get(key).await?;
        Ok(Box::pin(stream.map(move |c| {
            if let Ok(c) = &c {
                counter.fetch_add(c.len() as u64, Ordering::SeqCst);
            }
            c
        })))
    }
    async fn put(&self, key: &str, body: PutBody) -> Result<u64, StoreError> {
        self.inner.put(key, body).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    fn url(&self) -> String {
        self.inner.url()
    }
}

fn content(i: usize, version: u32) -> Vec<u8> {
    format!("object {i} version {version}\n")
        .repeat(i % 97 + 1)
        .into_bytes()
}

fn key_of(i: usize) -> String {
    match i % 4 {
        0 => format!("index-{i}.html"),
        1 => format!("img/{}/pic-{i}.png", i % 13),
        2 => format!("css/é {i}.css"),
        _ => format!("a/b/c/d/deep-{i}.js"),
    }
}

async fn put_all(store: &dyn ObjectStore, objects: &BTreeMap<String, Vec<u8>>) {
    futures::stream::iter(objects.iter())
        .map(|(k, v)| async move {
            store
                .put(k, body_from_bytes(Bytes::from(v.clone())))
                .await
                .unwrap();
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// Every regular file under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.file_type().is_symlink() {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(rel, b"<symlink>".to_vec());
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn spec(dest: &Path, delete_removed: bool) -> PullSpec {
    PullSpec {
        name: "site".into(),
        dest: dest.to_path_buf(),
        delete_removed,
        allow_empty: false,
        concurrency: 16,
        progress: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_of_2000_objects_converges_and_fetches_only_changes() {
    for s in common::stores("pull-converge") {
        let mut objects: BTreeMap<String, Vec<u8>> =
            (0..2000).map(|i| (key_of(i), content(i, 1))).collect();
        put_all(s.store.as_ref(), &objects).await;
        let counting = Counting::new(s.store.clone());
        let local = tempfile::tempdir().unwrap();
        let dest = local.path().join("www");

        let first = pull(&counting, &spec(&dest, true), false).await.unwrap();
        let total: u64 = objects.values().map(|v| v.len() as u64).sum();
        assert_eq!(first.downloaded, 2000, "{}", s.name);
        assert_eq!(first.bytes, total);
        assert_eq!(counting.take(), (2000, total));
        assert_eq!(tree(&dest), objects, "{}: first pull differs", s.name);
        // The index lives next to dest, never inside it.
        assert!(index_path(&dest, "site").is_file());
        assert!(!tree(&dest).keys().any(|k| k.contains("rehost")));

        // A no-op pull makes no GET.
        let noop = pull(&counting, &spec(&dest, true), false).await.unwrap();
        assert_eq!(
            (noop.downloaded, noop.unchanged, noop.deleted),
            (0, 2000, 0)
        );
        assert_eq!(counting.take(), (0, 0));

        // Change 20, add 10, delete 10.
        let mut changed = BTreeMap::new();
        for i in (0..2000).step_by(100).take(20) {
            changed.insert(key_of(i), content(i, 2));
        }
        for i in 2000..2010 {
            changed.insert(key_of(i), content(i, 1));
        }
        put_all(s.store.as_ref(), &changed).await;
        let removed: Vec<String> = (0..10).map(|j| key_of(7 + j * 150)).collect();
        for k in &removed {
            s.store.delete(k).await.unwrap();
            objects.remove(k);
        }
        let expected_bytes: u64 = changed.values().map(|v| v.len() as u64).sum();
        objects.extend(changed);

        let second = pull(&counting, &spec(&dest, true), false).await.unwrap();
        assert_eq!(
            (second.downloaded, second.deleted, second.unchanged),
            (30, 10, 1970),
            "{}",
            s.name
        );
        assert_eq!(counting.take(), (30, expected_bytes));
        assert_eq!(second.bytes, expected_bytes);
        assert_eq!(tree(&dest), objects, "{}: second pull differs", s.name);
        let third = pull(&counting, &spec(&dest, true), false).await.unwrap();
        assert_eq!(third.downloaded, 0);
        assert_eq!(counting.take(), (0, 0));
    }
}

#[tokio::test]
async fn local_damage_is_repaired_and_temporaries_cleaned() {
    for s in common::stores("pull-damage") {
        let objects: BTreeMap<String, Vec<u8>> =
            (0..20).map(|i| (key_of(i), content(i, 1))).collect();
        put_all(s.store.as_ref(), &objects).await;
        let counting = Counting::new(s.store.clone());
        let local = tempfile::tempdir().unwrap();
        let dest = local.path().join("www");
        pull(&counting, &spec(&dest, true), false).await.unwrap();
        counting.take();

        fs::remove_file(dest.join(key_of(0))).unwrap();
        fs::write(dest.join(key_of(1)), b"tampered").unwrap();
        fs::write(dest.join("stray.txt"), b"not in source").unwrap();
        let leftover = dest.join("img/.pic.png.rehost-pull-deadbeef");
        fs::write(&leftover, b"half").unwrap();

        let out = pull(&counting, &spec(&dest, true), false).await.unwrap();
        assert_eq!((out.downloaded, out.deleted), (2, 1), "{}", s.name);
        assert_eq!(counting.take().0, 2);
        assert!(!leftover.exists(), "temporary not cleaned up");
        assert_eq!(tree(&dest), objects);

        // Without delete_removed, extra local files stay.
        fs::write(dest.join("stray.txt"), b"kept").unwrap();
        pull(&counting, &spec(&dest, false), false).await.unwrap();
        assert!(dest.join("stray.txt").exists());
    }
}

#[tokio::test]
async fn empty_source_does_not_wipe_dest_unless_allowed() {
    for s in common::stores("pull-empty") {
        let local = tempfile::tempdir().unwrap();
        let dest = local.path().join("www");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("index.html"), b"<h1>keep me</h1>").unwrap();
        let err = pull(s.store.as_ref(), &spec(&dest, true), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("allow_empty"), "{err}");
        assert!(dest.join("index.html").exists());
        let mut allowed = spec(&dest, true);
        allowed.allow_empty = true;
        let out = pull(s.store.as_ref(), &allowed, false).await.unwrap();
        assert_eq!(out.deleted, 1);
        assert!(tree(&dest).is_empty());
    }
}

#[tokio::test]
async fn hostile_keys_are_refused_and_nothing_escapes_dest() {
    for s in common::stores("pull-hostile") {
        let objects: BTreeMap<String, Vec<u8>> =
            (0..8).map(|i| (key_of(i), content(i, 1))).collect();
        put_all(s.store.as_ref(), &objects).await;
        let mut counting = Counting::new(s.store.clone());
        let long_segment = format!("dir/{}", "n".repeat(300));
        let long_key = vec!["d"; 600].join("/");
        let hostile = [
            "../x",
            "a/../../b",
            "/abs/c",
            "a//b",
            "./d",
            "new\nline",
            "link/through",
            "nul\0byte",
            long_segment.as_str(),
            long_key.as_str(),
        ];
        counting.extra = hostile.iter().map(|k| k.to_string()).collect();
        let local = tempfile::tempdir().unwrap();
        let root = local.path().join("root");
        let dest = root.join("www");
        fs::create_dir_all(&dest).unwrap();
        let outside = local.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();

        let err = pull(&counting, &spec(&dest, false), false)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("10 objects were not applied"), "{text}");
        for k in ["../x", "a/../../b", "/abs/c", "a//b", "link/through"] {
            assert!(text.contains(&format!("{k:?}")), "{k} not reported: {text}");
        }
        // Only the good objects were fetched; nothing landed outside dest.
        assert_eq!(counting.take().0, 8);
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        let mut beside: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        beside.sort();
        assert_eq!(
            beside,
            [".rehost-pull-site.json", ".rehost-pull-site.lock", "www"]
        );
        assert!(!local.path().join("x").exists() && !local.path().join("b").exists());
        let mut got = tree(&dest);
        got.remove("link");
        assert_eq!(got, objects);
    }
}

/// Lists every object as 10 bytes larger than it is, as if it changed (or a
/// proxy cut the body) between the listing and the GET.
struct Lying(Arc<dyn ObjectStore>);

#[async_trait]
impl ObjectStore for Lying {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = self.0.list(prefix).await?;
        for o in &mut out {
            o.size += 10;
        }
        Ok(out)
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.0.head(key).await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.0.get(key).await
    }
    async fn put(&self, key: &str, body: PutBody) -> Result<u64, StoreError> {
        self.0.put(key, body).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    fn url(&self) -> String {
        self.0.url()
    }
}

#[tokio::test]
async fn a_body_shorter_than_listed_never_replaces_a_file() {
    for s in common::stores("pull-short") {
        let local = tempfile::tempdir().unwrap();
        let dest = local.path().join("www");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("index.html"), b"old").unwrap();
        let objects = BTreeMap::from([("index.html".to_string(), b"new content".to_vec())]);
        put_all(s.store.as_ref(), &objects).await;
        let lying = Lying(Arc::clone(&s.store));
        let err = pull(&lying, &spec(&dest, true), false).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("the listing said"),
            "{}: {err:#}",
            s.name
        );
        assert_eq!(
            fs::read(dest.join("index.html")).unwrap(),
            b"old",
            "{}",
            s.name
        );
        assert_eq!(
            fs::read_dir(&dest).unwrap().count(),
            1,
            "{}: temporaries left",
            s.name
        );
        // The honest listing then converges.
        pull(s.store.as_ref(), &spec(&dest, true), false)
            .await
            .unwrap();
        assert_eq!(fs::read(dest.join("index.html")).unwrap(), b"new content");
    }
}

/// A pull killed after it deleted a directory's files but before it removed
/// the directory leaves it empty; the next pull removes it (with
/// `delete_removed`), keeps it otherwise, and keeps the source's directories.
#[tokio::test]
async fn directories_emptied_by_a_killed_pull_are_removed() {
    for s in common::stores("pull-stale-dirs") {
        let local = tempfile::tempdir().unwrap();
        let dest = local.path().join("www");
        fs::create_dir_all(dest.join("gone/deeper")).unwrap();
        fs::create_dir_all(dest.join("kept")).unwrap();
        let objects = BTreeMap::from([("kept/a.html".to_string(), b"a".to_vec())]);
        put_all(s.store.as_ref(), &objects).await;
        pull(s.store.as_ref(), &spec(&dest, false), false)
            .await
            .unwrap();
        assert!(dest.join("gone/deeper").is_dir(), "{}", s.name);
        pull(s.store.as_ref(), &spec(&dest, true), false)
            .await
            .unwrap();
        assert!(
            !dest.join("gone").exists(),
            "{}: stale directory left",
            s.name
        );
        assert_eq!(
            fs::read(dest.join("kept/a.html")).unwrap(),
            b"a",
            "{}",
            s.name
        );
    }
}
