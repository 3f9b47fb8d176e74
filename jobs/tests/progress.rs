//! The progress counters a display reads, against every store (directory
//! always, Garage when running): after a backup, restore, verify and pull
//! they hold exactly what the job moved, and the totals the job announced
//! match them.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::{forced, make_tree, spec, stores};
use rehost_jobs::backup::{backup_until, BackupOutcome};
use rehost_jobs::cancel::CancellationToken;
use rehost_jobs::catalog::{self, Selector};
use rehost_jobs::progress::{Progress, Snapshot};
use rehost_jobs::pull::{pull, PullSpec};
use rehost_jobs::restore::{restore, RestoreOutcome, RestoreRequest};
use rehost_jobs::store::body_from_bytes;
use rehost_jobs::verify::verify;

const HOST: &str = "progress-host";

/// Regular files below `root` and their bytes.
fn files_and_bytes(root: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                stack.push(path);
            } else if m.is_file() {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

/// Bytes that do not compress, so that the archive spans several parts.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_hold_what_each_job_moved() {
    for t in stores("progress") {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        make_tree(&src, 120);
        // Over two parts of the index: restore and verify fetch in parts.
        fs::write(src.join("big.bin"), noise(9 * 1024 * 1024 + 7)).unwrap();
        let (files, content) = files_and_bytes(&src);
        let s = spec("data", src.clone());

        let p = Arc::new(Progress::new());
        let out = backup_until(
            t.store.as_ref(),
            HOST,
            &s,
            false,
            &CancellationToken::new(),
            Some(Arc::clone(&p)),
        )
        .await
        .unwrap();
        assert!(matches!(out, BackupOutcome::Uploaded { .. }), "{out:?}");
        assert_eq!(
            p.snapshot(),
            Snapshot {
                bytes: content,
                files,
                totals: Some((content, files)),
            },
            "backup on {}",
            t.name
        );

        let manifest = catalog::find(t.store.as_ref(), HOST, "data", &Selector::Latest)
            .await
            .unwrap()
            .unwrap();
        let stored = manifest.total_size();
        assert!(
            manifest.data().unwrap().index.as_ref().unwrap().parts.len() > 1,
            "the backup should span several parts"
        );

        let p = Arc::new(Progress::new());
        let req = RestoreRequest {
            progress: Some(Arc::clone(&p)),
            ..forced()
        };
        let out = restore(t.store.as_ref(), HOST, &s, &req).await.unwrap();
        assert!(matches!(out, RestoreOutcome::Restored { .. }), "{out:?}");
        assert_eq!(
            p.snapshot(),
            Snapshot {
                bytes: stored,
                files,
                totals: Some((stored, files)),
            },
            "restore on {}",
            t.name
        );

        let p = Arc::new(Progress::new());
        verify(
            t.store.as_ref(),
            HOST,
            "data",
            &Selector::Latest,
            None,
            false,
            Some(Arc::clone(&p)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            p.snapshot(),
            Snapshot {
                bytes: stored,
                files,
                totals: Some((stored, files)),
            },
            "verify on {}",
            t.name
        );

        // pull: the objects downloaded, then nothing on a pull with nothing to do.
        let objects = [("a.txt", 10usize), ("dir/b.bin", 300_000), ("dir/c", 1)];
        for (key, len) in objects {
            t.store
                .put(
                    &format!("site/{key}"),
                    body_from_bytes(Bytes::from(noise(len))),
                )
                .await
                .unwrap();
        }
        let source = rehost_jobs::store::open(&match &t.location {
            rehost_jobs::store::StoreLocation::File(d) => {
                rehost_jobs::store::StoreLocation::File(d.join("site"))
            }
            rehost_jobs::store::StoreLocation::S3(s3) => {
                let mut s3 = s3.clone();
                s3.prefix = format!("{}/site", s3.prefix);
                rehost_jobs::store::StoreLocation::S3(s3)
            }
        })
        .unwrap();
        let pulled: u64 = objects.iter().map(|(_, len)| *len as u64).sum();
        let p = Arc::new(Progress::new());
        let spec = PullSpec {
            name: "site".into(),
            dest: dir.path().join("www"),
            delete_removed: false,
            allow_empty: false,
            concurrency: 2,
            progress: Some(Arc::clone(&p)),
        };
        let out = pull(source.as_ref(), &spec, false).await.unwrap();
        assert_eq!(out.downloaded, 3);
        assert_eq!(
            p.snapshot(),
            Snapshot {
                bytes: pulled,
                files: 3,
                totals: Some((pulled, 3)),
            },
            "pull on {}",
            t.name
        );
        let p = Arc::new(Progress::new());
        let again = PullSpec {
            progress: Some(Arc::clone(&p)),
            ..spec
        };
        pull(source.as_ref(), &again, false).await.unwrap();
        assert_eq!(
            p.snapshot(),
            Snapshot {
                bytes: 0,
                files: 0,
                totals: Some((0, 0)),
            }
        );
    }
}
