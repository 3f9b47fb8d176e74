//! `prune` against real stores: backups spread over weeks are thinned to
//! exactly the set the policy names; manifests go first; leftovers of failed
//! uploads are removed once old; the newest verified backup survives.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use rehost_jobs::backup::backup;
use rehost_jobs::catalog;
use rehost_jobs::layout;
use rehost_jobs::manifest::Manifest;
use rehost_jobs::retention::{prune, KeepPolicy};
use rehost_jobs::store::{body_from_bytes, get_small, ObjectStore};

const HOST: &str = "ret-host";

/// Stores a copy of a real backup (`seed`) under an id dated `time`.
async fn clone_backup(
    store: &dyn ObjectStore,
    seed: &(Manifest, Bytes),
    time: DateTime<Utc>,
    complete: bool,
) -> String {
    let state = seed.0.state.as_str();
    let id = format!(
        "{}-{:08x}",
        time.format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u32>()
    );
    store
        .put(
            &layout::object_key(HOST, state, &id, layout::DATA),
            body_from_bytes(seed.1.clone()),
        )
        .await
        .unwrap();
    if complete {
        let mut m = seed.0.clone();
        m.id = id.clone();
        m.created = time;
        store
            .put(
                &layout::object_key(HOST, state, &id, layout::MANIFEST),
                body_from_bytes(Bytes::from(m.to_json())),
            )
            .await
            .unwrap();
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_exactly_the_policy_set() {
    for t in common::stores("retention") {
        let s = t.store.as_ref();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("acme.json");
        std::fs::write(&file, "{}").unwrap();
        backup(s, HOST, &common::spec("acme", file), false)
            .await
            .unwrap();
        let seed_id = catalog::list(s, HOST, "acme").await.unwrap()[0].id.clone();
        let seed_data = get_small(
            s,
            &layout::object_key(HOST, "acme", &seed_id, layout::DATA),
            1 << 20,
        )
        .await
        .unwrap();
        let seed = (
            catalog::load_manifest(s, HOST, "acme", &seed_id)
                .await
                .unwrap(),
            Bytes::from(seed_data),
        );
        // The seed is dated today, after the test's `now`: remove it entirely.
        for name in [layout::MANIFEST, layout::DATA] {
            s.delete(&layout::object_key(HOST, "acme", &seed_id, name))
                .await
                .unwrap();
        }

        // Two backups a day at 06:00 and 18:00 for 30 days, from 2026-10-01.
        let start: DateTime<Utc> = "2026-10-01T06:00:00Z".parse().unwrap();
        let mut ids = Vec::new();
        for half_days in 0..60 {
            let time = start + Duration::hours(12 * half_days);
            ids.push((time, clone_backup(s, &seed, time, true).await));
        }
        // A verified old one, an old failed upload and a fresh one in progress.
        let verified_time: DateTime<Utc> = "2026-10-02T18:00:00Z".parse().unwrap();
        let verified = ids
            .iter()
            .find(|(t, _)| *t == verified_time)
            .unwrap()
            .1
            .clone();
        s.put(
            &layout::object_key(HOST, "acme", &verified, layout::VERIFIED),
            body_from_bytes(Bytes::from_static(b"{}")),
        )
        .await
        .unwrap();
        let now: DateTime<Utc> = "2026-10-31T12:00:00Z".parse().unwrap();
        let stale = clone_backup(s, &seed, now - Duration::days(3), false).await;
        let fresh = clone_backup(s, &seed, now - Duration::hours(1), false).await;
        let policy = KeepPolicy {
            last: 3,
            daily: 5,
            weekly: 3,
            ..Default::default()
        };

        let dry = prune(s, HOST, "acme", &policy, now, true).await.unwrap();
        assert_eq!(
            catalog::list(s, HOST, "acme").await.unwrap().len(),
            62,
            "{}: dry run deleted",
            t.name
        );

        let report = prune(s, HOST, "acme", &policy, now, false).await.unwrap();
        assert_eq!(report.plan, dry.plan);
        let left: Vec<String> = catalog::list(s, HOST, "acme")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        let at = |s: &str| -> String {
            let t: DateTime<Utc> = s.parse().unwrap();
            ids.iter().find(|(time, _)| *time == t).unwrap().1.clone()
        };
        let mut expected = vec![
            // weekly: newest of ISO weeks 44 (Oct 26-), 43 (Oct 19-25), 42 (Oct 12-18)
            at("2026-10-18T18:00:00Z"),
            at("2026-10-25T18:00:00Z"),
            // daily: the newest of Oct 26..30
            at("2026-10-26T18:00:00Z"),
            at("2026-10-27T18:00:00Z"),
            at("2026-10-28T18:00:00Z"),
            at("2026-10-29T18:00:00Z"),
            // last 3 (and the newest, and the newest of its week)
            at("2026-10-30T06:00:00Z"),
            at("2026-10-30T18:00:00Z"),
            verified.clone(),
            fresh.clone(),
        ];
        // last: 3 = Oct 30 18:00, Oct 30 06:00, Oct 29 18:00
        expected.sort();
        expected.dedup();
        assert_eq!(left, expected, "{}", t.name);
        assert!(!left.contains(&stale) && !left.contains(&seed_id));
        // No object of a deleted backup is left behind.
        let keys = s.list(&layout::state_prefix(HOST, "acme")).await.unwrap();
        for k in &keys {
            assert!(
                expected.iter().any(|id| k.key.contains(id.as_str())),
                "{}: leftover {}",
                t.name,
                k.key
            );
        }
    }
}
