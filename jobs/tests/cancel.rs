//! Cancellation of a backup: it stops in the middle of a large file (the
//! blocking reader checks the token between chunks), holds the entry's lock
//! until its blocking work has ended, and leaves no multipart upload behind
//! on S3 (Garage, when `scripts/garage.sh start` exported its settings).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{garage, spec, stores};
use futures::StreamExt;
use rehost_jobs::backup::backup_until;
use rehost_jobs::cancel::CancellationToken;
use rehost_jobs::lock::StateLock;
use rehost_jobs::store::{self, CredentialSource, StoreLocation};
use rehost_jobs::Error;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_backup_stops_inside_a_2_gib_file_and_then_unlocks() {
    for s in stores("cancel-read") {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big");
        fs::create_dir_all(&src).unwrap();
        // Sparse: 2 GiB to read and compress, nothing on disk.
        fs::File::create(src.join("sparse.bin"))
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let token = CancellationToken::new();
        let canceller = {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                token.cancel();
            })
        };
        let started = Instant::now();
        let result = backup_until(
            s.store.as_ref(),
            "h",
            &spec("big", src.clone()),
            false,
            &token,
            None,
        )
        .await;
        let took = started.elapsed();
        canceller.await.unwrap();
        println!(
            "{}: cancelled backup of 2 GiB returned after {took:?}",
            s.name
        );
        // Without the checks it would have archived all 2 GiB and succeeded.
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{}: {result:?}",
            s.name
        );
        // Its blocking work has ended, so the lock is free again.
        StateLock::acquire(&src, "big", true).unwrap();
        let left = s.store.list("h/big/").await.unwrap();
        assert!(
            left.iter().all(|o| !o.key.ends_with("manifest.json")),
            "{}: {left:?}",
            s.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_multipart_upload_is_aborted() {
    let Some(location) = garage("cancel-abort") else {
        return;
    };
    let StoreLocation::S3(settings) = &location else {
        unreachable!()
    };
    let store = store::open(&location).unwrap();
    let key = "h/big/upload/data.tar.gz";
    // 20 MiB (two parts and more), then a body that never ends.
    let chunks = (0..20).map(|_| Ok(Bytes::from(vec![7u8; 1 << 20])));
    let body = futures::stream::iter(chunks).chain(futures::stream::pending());
    let client = client(settings);
    let uploads = || async {
        let out = client
            .list_multipart_uploads()
            .bucket(&settings.bucket)
            .prefix(&settings.prefix)
            .send()
            .await
            .unwrap();
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let put = store.put(key, Box::pin(body));
    // The parts are sent; the upload then waits for a body that never comes.
    // Seen in progress, then dropped.
    tokio::select! {
        r = put => panic!("the upload cannot have completed: {r:?}"),
        () = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let during = uploads().await;
            assert_eq!(during.len(), 1, "{during:?}");
        } => {}
    }
    store.settle().await;
    let keys = uploads().await;
    assert!(keys.is_empty(), "multipart uploads left: {keys:?}");
}

/// An SDK client on the store's bucket, with the test credentials file.
fn client(settings: &rehost_jobs::store::S3Settings) -> aws_sdk_s3::Client {
    let CredentialSource::File { path, .. } = &settings.credentials else {
        unreachable!()
    };
    let text = fs::read_to_string(path).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap()
    };
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(settings.region.clone()))
            .endpoint_url(settings.endpoint.clone().unwrap())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                value("aws_access_key_id"),
                value("aws_secret_access_key"),
                None,
                None,
                "test",
            ))
            .build(),
    )
}
