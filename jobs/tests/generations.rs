//! Generations against real stores (a directory, and Garage when the tests
//! run under `make test`): a late backup of a generation that was taken over
//! never becomes what a restore picks, and shared blocks that a backup of
//! another generation may still be reusing survive prune.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use chrono::{Duration, Utc};
use common::{forced, spec, stores};
use rehost_jobs::archive::SourceKind;
use rehost_jobs::backup::{backup, BackupOutcome};
use rehost_jobs::catalog::{self, Selector};
use rehost_jobs::generation;
use rehost_jobs::layout;
use rehost_jobs::manifest::{BlockEntry, Manifest, ObjectEntry, SourceInfo, FORMAT_BLOCKS};
use rehost_jobs::restore::restore;
use rehost_jobs::retention::{prune, KeepPolicy, BLOCK_GRACE};
use rehost_jobs::store::{body_from_bytes, ObjectStore};

const HOST: &str = "gen-host";

fn uploaded(o: BackupOutcome) -> String {
    match o {
        BackupOutcome::Uploaded { id, .. } => id,
        other => panic!("expected an upload, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_backup_of_a_superseded_generation_is_never_restored() {
    for t in stores("generations") {
        let s = t.store.as_ref();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("acme.json");

        // OLD boots and backs up v1.
        let old = generation::begin(s, HOST, Utc::now()).await.unwrap();
        let mut old_spec = spec("acme", file.clone());
        old_spec.generation = Some(old.id.clone());
        std::fs::write(&file, "v1").unwrap();
        let v1 = uploaded(backup(s, HOST, &old_spec, false).await.unwrap());

        // NEW takes over (its clock a day behind) and backs up v2.
        let new = generation::begin(s, HOST, Utc::now() - Duration::days(1))
            .await
            .unwrap();
        let mut new_spec = old_spec.clone();
        new_spec.generation = Some(new.id.clone());
        std::fs::write(&file, "v2").unwrap();
        let v2 = uploaded(backup(s, HOST, &new_spec, false).await.unwrap());

        // OLD's backup that was already running finishes later, with other
        // content: by time it is the newest, by generation it is not.
        std::fs::write(&file, "v1-late").unwrap();
        let late = uploaded(backup(s, HOST, &old_spec, false).await.unwrap());
        assert!(v1 < v2 && late < v2, "{v1} {late} {v2}");
        let m = catalog::load_manifest(s, HOST, "acme", &late)
            .await
            .unwrap();
        assert_eq!(m.generation.as_deref(), Some(old.id.as_str()));
        assert_eq!(m.based_on.as_deref(), Some(v2.as_str()));

        let target = dir.path().join("restored.json");
        let mut restore_spec = new_spec.clone();
        restore_spec.path = target.clone();
        restore(s, HOST, &restore_spec, &forced()).await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"v2", "{}", t.name);

        // A new generation's first backup is made even when its content is
        // what the newest backup holds: it must own one.
        let newer = generation::begin(s, HOST, Utc::now()).await.unwrap();
        let mut newer_spec = old_spec.clone();
        newer_spec.generation = Some(newer.id.clone());
        std::fs::write(&file, "v2").unwrap();
        let own = uploaded(backup(s, HOST, &newer_spec, false).await.unwrap());
        assert!(
            own.starts_with(&format!("g{}-00000001-", newer.id)),
            "{own}"
        );
        assert!(matches!(
            backup(s, HOST, &newer_spec, false).await.unwrap(),
            BackupOutcome::Unchanged { .. }
        ));
        let all = catalog::list(s, HOST, "acme").await.unwrap();
        assert_eq!(
            catalog::select(&all, &Selector::Latest).unwrap().id,
            own,
            "{}",
            t.name
        );
    }
}

/// A format-2 manifest whose backup references `blocks` (fake objects: prune
/// reads only names and manifests).
async fn block_backup(s: &dyn ObjectStore, id: &str, blocks: &[&str]) {
    let data = Bytes::from_static(b"not read by prune");
    let put = |key: String, body: Bytes| async move {
        s.put(&key, body_from_bytes(body)).await.unwrap();
    };
    put(
        layout::object_key(HOST, "prom", id, layout::DATA),
        data.clone(),
    )
    .await;
    let mut entries = Vec::new();
    for ulid in blocks {
        let name = layout::block_name(ulid, None);
        put(
            layout::block_key(HOST, "prom", &name),
            Bytes::from_static(b"block"),
        )
        .await;
        entries.push(BlockEntry {
            ulid: ulid.to_string(),
            size: 5,
            sha256: "b".repeat(64),
            tar_bytes: 1024,
            files: 1,
            dirs: 1,
            object: None,
            index: None,
        });
    }
    let m = Manifest {
        format: FORMAT_BLOCKS,
        id: id.to_string(),
        host: HOST.into(),
        state: "prom".into(),
        created: Utc::now(),
        rehost_version: "test".into(),
        source: SourceInfo {
            path: "/prometheus".into(),
            kind: SourceKind::Dir,
            fingerprint: "f".repeat(64),
            root_mode: 0o755,
            root_mtime: 0,
        },
        files: 0,
        dirs: 0,
        symlinks: 0,
        tar_bytes: 1024,
        objects: vec![ObjectEntry {
            name: layout::DATA.into(),
            size: data.len() as u64,
            sha256: "a".repeat(64),
            index: None,
        }],
        blocks: entries,
        encryption: None,
        generation: layout::parse_generation_backup(id).map(|(g, _, _)| g.to_string()),
        based_on: None,
    };
    put(
        layout::object_key(HOST, "prom", id, layout::MANIFEST),
        Bytes::from(m.to_json()),
    )
    .await;
}

const A: &str = "01HZX3Q7W8J9K0M1N2P3R4S5TA";
const B: &str = "01HZX3Q7W8J9K0M1N2P3R4S5TB";
const C: &str = "01HZX3Q7W8J9K0M1N2P3R4S5TC";

fn block_names(listing: &[rehost_jobs::store::ObjectInfo]) -> Vec<String> {
    let prefix = layout::state_prefix(HOST, "prom");
    let mut names: Vec<String> = listing
        .iter()
        .filter_map(|o| layout::block_of_key(&prefix, &o.key).map(str::to_string))
        .collect();
    names.sort();
    names
}

/// The race the grace period exists for: a backup on the machine that was
/// taken over chose to reuse block A (a complete manifest listed it) while
/// the new generation's prune deletes the last manifest that listed A. Without
/// the grace period that prune deleted A at once and the late backup's
/// manifest pointed at nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_a_racing_backup_reuses_outlives_the_prune_that_unreferenced_it() {
    for t in stores("generations-blocks") {
        let s = t.store.as_ref();
        let old = generation::begin(s, HOST, Utc::now()).await.unwrap();
        let new = generation::begin(s, HOST, Utc::now()).await.unwrap();
        let now = Utc::now();
        let id = |g: &str, seq: u64| {
            let b = (1..seq)
                .map(|n| layout::BackupRef {
                    id: format!("g{g}-{n:08}-20261101T000000.000Z"),
                    time: now,
                    complete: true,
                    verified: false,
                    objects: vec![],
                })
                .collect::<Vec<_>>();
            layout::next_backup_id(&b, Some(g), now)
        };
        // OLD's backup listed A and B; NEW's backup lists only B and C.
        block_backup(s, &id(&old.id, 1), &[A, B]).await;
        block_backup(s, &id(&new.id, 1), &[B, C]).await;

        // NEW prunes (keep last 1): OLD's backup goes, A is unreferenced and
        // only marked.
        let keep = KeepPolicy {
            last: 1,
            ..Default::default()
        };
        let report = prune(s, HOST, "prom", &keep, now, false).await.unwrap();
        assert_eq!(report.plan.delete.len(), 1, "{}", t.name);
        assert_eq!(report.blocks_marked, [layout::block_name(A, None)]);
        assert!(report.blocks_deleted.is_empty());

        // Meanwhile OLD's running backup writes its manifest reusing A.
        let late = id(&old.id, 2);
        block_backup(s, &late, &[A, B]).await;

        // An hour later A still waits; a day later it is referenced again,
        // so it stays and loses its mark.
        let keep_all = KeepPolicy {
            last: 10,
            ..Default::default()
        };
        let report = prune(s, HOST, "prom", &keep_all, now + Duration::hours(1), false)
            .await
            .unwrap();
        assert!(report.blocks_deleted.is_empty(), "{}", t.name);
        let later = now + BLOCK_GRACE + Duration::hours(1);
        let report = prune(s, HOST, "prom", &keep_all, later, false)
            .await
            .unwrap();
        assert!(report.blocks_deleted.is_empty(), "{}", t.name);
        let listing = s.list(&layout::state_prefix(HOST, "prom")).await.unwrap();
        assert!(
            !listing.iter().any(|o| o.key.contains("/unreferenced/")),
            "the mark of a block referenced again stays"
        );
        // Every backup the store lists has all its blocks.
        let names = block_names(&listing);
        for b in catalog::list(s, HOST, "prom").await.unwrap() {
            let m = catalog::load_manifest(s, HOST, "prom", &b.id)
                .await
                .unwrap();
            for block in &m.blocks {
                assert!(
                    names.contains(&m.block_name(block)),
                    "{} lost {}",
                    b.id,
                    block.ulid
                );
            }
        }

        // Once OLD's late backup goes too, A is marked anew and deleted only
        // a grace period after that.
        let report = prune(s, HOST, "prom", &keep, later, false).await.unwrap();
        assert_eq!(report.blocks_marked, [layout::block_name(A, None)]);
        let report = prune(s, HOST, "prom", &keep, later + Duration::hours(23), false)
            .await
            .unwrap();
        assert_eq!(report.blocks_waiting, [layout::block_name(A, None)]);
        assert!(report.blocks_deleted.is_empty());
        let report = prune(s, HOST, "prom", &keep, later + BLOCK_GRACE, false)
            .await
            .unwrap();
        assert_eq!(
            report.blocks_deleted,
            [layout::block_name(A, None)],
            "{}",
            t.name
        );
        let listing = s.list(&layout::state_prefix(HOST, "prom")).await.unwrap();
        assert_eq!(
            block_names(&listing),
            [layout::block_name(B, None), layout::block_name(C, None)]
        );
        assert!(!listing.iter().any(|o| o.key.contains("/unreferenced/")));
    }
}
