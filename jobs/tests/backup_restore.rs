//! Backup → restore round trips and refusals, against every store (directory
//! always, Garage when running): the tree comes back identical, an unchanged
//! source uploads nothing, and corrupt, truncated or hostile archives are
//! refused with the target left exactly as it was.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use chrono::Utc;
use common::{describe, forced, make_tree, spec, stores};
use rehost_jobs::archive::SourceKind;
use rehost_jobs::backup::{backup, BackupOutcome};
use rehost_jobs::catalog::{self, Selector};
use rehost_jobs::layout;
use rehost_jobs::manifest::{Manifest, ObjectEntry, SourceInfo, FORMAT};
use rehost_jobs::restore::{restore, RestoreOutcome, RestorePolicy, RestoreRequest};
use rehost_jobs::store::{body_from_bytes, get_small, ObjectStore};
use rehost_jobs::verify::verify;
use sha2::{Digest, Sha256};

const HOST: &str = "test-host";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_file_tree_round_trips() {
    for t in stores("rt-tree") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        make_tree(&root, 1000);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o710)).unwrap();
        let before = describe(&root);
        let s = spec("data", root.clone());
        let out = backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        let BackupOutcome::Uploaded { files, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(files, 1002, "{}", t.name);

        // Unchanged source: nothing uploaded, no new objects.
        let objects_before = t.store.list("").await.unwrap();
        let again = backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        assert!(
            matches!(again, BackupOutcome::Unchanged { .. }),
            "{}: {again:?}",
            t.name
        );
        assert_eq!(again.uploaded_bytes(), 0);
        assert_eq!(
            t.store.list("").await.unwrap().len(),
            objects_before.len(),
            "{}",
            t.name
        );

        // Lose the host's copy, restore, compare everything.
        fs::rename(&root, dir.path().join("data.orig")).unwrap();
        let restored = restore(t.store.as_ref(), HOST, &s, &forced())
            .await
            .unwrap();
        assert!(
            matches!(restored, RestoreOutcome::Restored { files: 1002, .. }),
            "{restored:?}"
        );
        assert_eq!(describe(&root), before, "{}: restored tree differs", t.name);
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o7777,
            0o710
        );
        assert_no_leftovers(dir.path());

        // Restoring over an existing tree swaps it atomically and removes the old one.
        fs::write(root.join("d00/sub0/extra"), "not in the backup").unwrap();
        restore(t.store.as_ref(), HOST, &s, &forced())
            .await
            .unwrap();
        assert_eq!(describe(&root), before, "{}", t.name);
        assert_no_leftovers(dir.path());

        // A changed source is uploaded again, and verify checks it.
        fs::write(root.join("new-file"), "new").unwrap();
        let third = backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        assert!(matches!(third, BackupOutcome::Uploaded { .. }));
        let report = verify(
            t.store.as_ref(),
            HOST,
            "data",
            &Selector::Latest,
            None,
            true,
            None,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(report.files, 1003);
        let list = catalog::list(t.store.as_ref(), HOST, "data").await.unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[1].verified && !list[0].verified);
    }
}

fn assert_no_leftovers(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".rehost-staging"), "leftover {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_json_keeps_0600_and_if_missing_is_honoured() {
    for t in stores("rt-acme") {
        let dir = tempfile::tempdir().unwrap();
        let acme = dir.path().join("acme").join("acme.json");
        fs::create_dir_all(acme.parent().unwrap()).unwrap();
        fs::write(
            &acme,
            br#"{"letsencrypt":{"Account":{"Email":"ops@example.com"}}}"#,
        )
        .unwrap();
        fs::set_permissions(&acme, fs::Permissions::from_mode(0o600)).unwrap();
        let mut s = spec("acme", acme.clone());
        s.mode = Some(0o600);
        backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        let original = fs::read(&acme).unwrap();

        let if_missing = RestoreRequest {
            force: false,
            ..forced()
        };
        let out = restore(t.store.as_ref(), HOST, &s, &if_missing)
            .await
            .unwrap();
        assert!(matches!(out, RestoreOutcome::Skipped(_)), "{out:?}");

        // Provisioning's `touch acme.json; chmod 644` counts as missing.
        fs::write(&acme, "").unwrap();
        fs::set_permissions(&acme, fs::Permissions::from_mode(0o644)).unwrap();
        let out = restore(t.store.as_ref(), HOST, &s, &if_missing)
            .await
            .unwrap();
        assert!(
            matches!(out, RestoreOutcome::Restored { files: 1, .. }),
            "{out:?}"
        );
        assert_eq!(fs::read(&acme).unwrap(), original);
        assert_eq!(
            fs::metadata(&acme).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // Gone entirely (a fresh VM), including its directory.
        fs::remove_dir_all(acme.parent().unwrap()).unwrap();
        restore(t.store.as_ref(), HOST, &s, &if_missing)
            .await
            .unwrap();
        assert_eq!(fs::read(&acme).unwrap(), original);
        assert_eq!(
            fs::metadata(&acme).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let never = RestoreRequest {
            policy: RestorePolicy::Never,
            force: false,
            ..forced()
        };
        fs::remove_file(&acme).unwrap();
        assert!(matches!(
            restore(t.store.as_ref(), HOST, &s, &never).await.unwrap(),
            RestoreOutcome::Skipped(_)
        ));
        assert!(!acme.exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_boot_has_no_backup_and_dry_run_changes_nothing() {
    for t in stores("rt-first") {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("grafana");
        let s = spec("grafana", target.clone());
        let out = restore(t.store.as_ref(), HOST, &s, &forced())
            .await
            .unwrap();
        assert_eq!(out, RestoreOutcome::NoBackup);
        assert!(!target.exists());

        make_tree(&target, 10);
        let dry = backup(t.store.as_ref(), HOST, &s, true).await.unwrap();
        assert!(
            matches!(dry, BackupOutcome::WouldUpload { files: 12, .. }),
            "{dry:?}"
        );
        assert!(
            t.store.list("").await.unwrap().is_empty(),
            "{}: dry run uploaded",
            t.name
        );

        backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        let before = describe(&target);
        fs::write(target.join("local-change"), "x").unwrap();
        let with_change = describe(&target);
        let req = RestoreRequest {
            dry_run: true,
            ..forced()
        };
        let out = restore(t.store.as_ref(), HOST, &s, &req).await.unwrap();
        assert!(
            matches!(out, RestoreOutcome::WouldRestore { replaces: true, .. }),
            "{out:?}"
        );
        assert_eq!(describe(&target), with_change);
        assert_ne!(before, with_change);
    }
}

/// Replaces the newest backup's data object by `data` and rewrites its
/// manifest so that size, checksum and counts are as `declare` says.
async fn publish(
    store: &dyn ObjectStore,
    state: &str,
    data: Vec<u8>,
    kind: SourceKind,
    declare: impl FnOnce(&mut Manifest),
) -> String {
    let id = layout::new_backup_id(Utc::now());
    let mut m = Manifest {
        format: FORMAT,
        id: id.clone(),
        host: HOST.into(),
        state: state.into(),
        created: Utc::now(),
        rehost_version: "test".into(),
        source: SourceInfo {
            path: "/nowhere".into(),
            kind,
            fingerprint: "0".repeat(64),
            root_mode: 0o755,
            root_mtime: 0,
        },
        files: 1,
        dirs: 0,
        symlinks: 0,
        tar_bytes: 1 << 30,
        objects: vec![ObjectEntry {
            name: layout::DATA.into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(&data)),
            index: None,
        }],
        blocks: vec![],
        encryption: None,
        generation: None,
        based_on: None,
    };
    declare(&mut m);
    let data_key = layout::object_key(HOST, state, &id, layout::DATA);
    store
        .put(&data_key, body_from_bytes(Bytes::from(data)))
        .await
        .unwrap();
    let key = layout::object_key(HOST, state, &id, layout::MANIFEST);
    store
        .put(&key, body_from_bytes(Bytes::from(m.to_json())))
        .await
        .unwrap();
    id
}

/// Builds a tar with raw headers, so that paths the tar crate would refuse to
/// write (absolute, `..`) can be put in.
struct RawTar(Vec<u8>);

impl RawTar {
    fn entry(
        mut self,
        path: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
    ) -> Self {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..path.len()].copy_from_slice(path);
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(path.as_bytes(), tar::EntryType::Regular, None, data)
    }

    fn gz(mut self) -> (Vec<u8>, u64) {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        let tar_len = self.0.len() as u64;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&self.0).unwrap();
        (enc.finish().unwrap(), tar_len)
    }
}

/// One PAX extended-header record: `<length> <key>=<value>\n`, where the
/// length counts the whole record, its own digits included.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_and_nothing_is_written() {
    use tar::EntryType::*;
    for t in stores("hostile") {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("www");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        make_tree(&target, 5);
        let before = describe(&target);
        let outside_abs = format!("{}/evil", outside.display());
        // Names longer than the 100 bytes of a plain header come from GNU
        // long-name entries or PAX headers; both must be checked the same way.
        let long_dotdot = format!("{}/../../outside/evil\0", "d".repeat(120)).into_bytes();
        let long_below_link = format!("lnk/{}\0", "f".repeat(120)).into_bytes();
        let overlong = format!("{}\0", "n".repeat(256)).into_bytes();
        let cases: Vec<(&str, RawTar)> = vec![
            ("absolute path", RawTar(vec![]).file(&outside_abs, b"x")),
            (
                "dot-dot",
                RawTar(vec![])
                    .file("ok.txt", b"fine")
                    .file("../outside/evil", b"x"),
            ),
            (
                "nested dot-dot",
                RawTar(vec![]).file("a/../../outside/evil", b"x"),
            ),
            (
                "symlink escaping",
                RawTar(vec![]).entry(b"esc", Symlink, Some(b"../outside"), b""),
            ),
            (
                "absolute symlink",
                RawTar(vec![]).entry(b"etc", Symlink, Some(b"/etc"), b""),
            ),
            (
                "write below a symlink",
                RawTar(vec![])
                    .entry(b"sub", Directory, None, b"")
                    .entry(b"lnk", Symlink, Some(b"sub"), b"")
                    .file("lnk/evil", b"x"),
            ),
            (
                "symlink to root then dot-dot",
                RawTar(vec![]).entry(b"d", Symlink, Some(b"."), b"").entry(
                    b"d/l",
                    Symlink,
                    Some(b".."),
                    b"",
                ),
            ),
            (
                "hard link outside",
                RawTar(vec![]).entry(b"hl", Link, Some(b"/etc/passwd"), b""),
            ),
            (
                "hard link to unknown",
                RawTar(vec![]).entry(b"hl", Link, Some(b"not-in-archive"), b""),
            ),
            (
                "char device",
                RawTar(vec![]).entry(b"null", Char, None, b""),
            ),
            (
                "block device",
                RawTar(vec![]).entry(b"sda", Block, None, b""),
            ),
            ("fifo", RawTar(vec![]).entry(b"pipe", Fifo, None, b"")),
            ("duplicate", RawTar(vec![]).file("a", b"1").file("a", b"2")),
            (
                "GNU long name with dot-dot",
                RawTar(vec![])
                    .entry(b"././@LongLink", GNULongName, None, &long_dotdot)
                    .file("innocent", b"x"),
            ),
            (
                "PAX path with dot-dot",
                RawTar(vec![])
                    .entry(
                        b"pax",
                        XHeader,
                        None,
                        &pax_record("path", "../outside/evil"),
                    )
                    .file("innocent", b"x"),
            ),
            (
                "PAX absolute path",
                RawTar(vec![])
                    .entry(b"pax", XHeader, None, &pax_record("path", &outside_abs))
                    .file("innocent", b"x"),
            ),
            (
                "GNU long link name escaping",
                RawTar(vec![])
                    .entry(b"././@LongLink", GNULongLink, None, &long_dotdot)
                    .entry(b"esc", Symlink, Some(b"x"), b""),
            ),
            (
                "hard link to a symlink",
                RawTar(vec![]).entry(b"s", Symlink, Some(b"x"), b"").entry(
                    b"hl",
                    Link,
                    Some(b"s"),
                    b"",
                ),
            ),
            (
                "long name below a symlink",
                RawTar(vec![])
                    .entry(b"sub", Directory, None, b"")
                    .entry(b"lnk", Symlink, Some(b"sub"), b"")
                    .entry(b"././@LongLink", GNULongName, None, &long_below_link)
                    .file("innocent", b"x"),
            ),
            (
                "file name longer than 255 bytes",
                RawTar(vec![])
                    .entry(b"././@LongLink", GNULongName, None, &overlong)
                    .file("innocent", b"x"),
            ),
        ];
        for (case, tar) in cases {
            let (gz, tar_len) = tar.gz();
            publish(t.store.as_ref(), "www", gz, SourceKind::Dir, |m| {
                m.tar_bytes = tar_len;
                m.files = 1;
            })
            .await;
            let err = restore(
                t.store.as_ref(),
                HOST,
                &spec("www", target.clone()),
                &forced(),
            )
            .await
            .expect_err(case);
            let msg = format!("{err:#}");
            assert!(
                msg.contains("refused") || msg.contains("does not match"),
                "{case}: {msg}"
            );
            assert_eq!(
                describe(&target),
                before,
                "{}: {case}: target changed",
                t.name
            );
            assert_eq!(
                fs::read_dir(&outside).unwrap().count(),
                0,
                "{case}: wrote outside"
            );
            assert_no_leftovers(dir.path());
            assert!(
                verify(
                    t.store.as_ref(),
                    HOST,
                    "www",
                    &Selector::Latest,
                    None,
                    false,
                    None,
                )
                .await
                .is_err(),
                "{case}: verify accepted it"
            );
        }
    }
}

fn gz_of(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_manifests_bombs_and_garbage_are_refused() {
    for t in stores("lies") {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data");
        make_tree(&target, 5);
        let before = describe(&target);
        let s = spec("data", target.clone());
        let (good, good_len) = RawTar(vec![]).file("a.txt", b"hello").gz();

        // A gzip bomb: 128 MiB of zeros declared as 1 MiB of tar.
        let (bomb, _) = RawTar(vec![]).file("zeros", &vec![0u8; 128 << 20]).gz();
        assert!(bomb.len() < 4 << 20, "{}", bomb.len());
        let truncated = good[..good.len() / 2].to_vec();
        let garbage = b"this is not gzip at all".to_vec();
        type Lie = Box<dyn FnOnce(&mut Manifest)>;
        let cases: Vec<(&str, Vec<u8>, Lie, &str)> = vec![
            (
                "object larger than declared",
                good.clone(),
                Box::new(|m| m.objects[0].size = 10),
                "larger than",
            ),
            (
                "wrong checksum",
                good.clone(),
                Box::new(|m| m.objects[0].sha256 = "0".repeat(64)),
                "sha256",
            ),
            (
                "wrong file count",
                good.clone(),
                Box::new(|m| m.files = 7),
                "the manifest says 7",
            ),
            (
                "gzip bomb",
                bomb,
                Box::new(|m| m.tar_bytes = 1 << 20),
                "expands beyond",
            ),
            (
                "truncated",
                truncated,
                Box::new(|_| {}),
                "corrupt or truncated",
            ),
            (
                "not gzip",
                garbage,
                Box::new(|_| {}),
                "corrupt or truncated",
            ),
            (
                "object smaller than declared",
                good.clone(),
                Box::new(|m| m.objects[0].size += 10),
                "declared",
            ),
            (
                "archive shorter than declared",
                good.clone(),
                Box::new(move |m| m.tar_bytes = good_len + 512),
                "the manifest says",
            ),
            (
                "archive larger than the disk",
                good.clone(),
                Box::new(|m| m.tar_bytes = 1 << 60),
                "restoring needs",
            ),
            (
                "gzip of something that is not a tar",
                gz_of(b"plain text, not a tar archive"),
                Box::new(|_| {}),
                "corrupt or truncated",
            ),
            (
                "empty object",
                Vec::new(),
                Box::new(|_| {}),
                "corrupt or truncated",
            ),
            (
                "manifest larger than 4 MiB",
                good.clone(),
                Box::new(|m| m.rehost_version = "v".repeat(5 << 20)),
                "larger than",
            ),
            (
                "manifest of another backup",
                good.clone(),
                Box::new(|m| m.id = "20200101T000000Z-other".into()),
                "not the backup it is stored in",
            ),
        ];
        for (case, data, lie, expected) in cases {
            publish(t.store.as_ref(), "data", data, SourceKind::Dir, move |m| {
                m.tar_bytes = good_len;
                lie(m);
            })
            .await;
            let err = restore(t.store.as_ref(), HOST, &s, &forced())
                .await
                .unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{case}: {err:#}");
        }

        assert_eq!(describe(&target), before, "{}: target changed", t.name);
        assert_no_leftovers(dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_object_fails_verify_and_restore_leaves_target() {
    for t in stores("corrupt") {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("prom");
        make_tree(&target, 200);
        let s = spec("prom", target.clone());
        backup(t.store.as_ref(), HOST, &s, false).await.unwrap();
        verify(
            t.store.as_ref(),
            HOST,
            "prom",
            &Selector::Latest,
            None,
            false,
            None,
        )
        .await
        .unwrap();

        // Flip one byte in the middle of the stored archive.
        let b = catalog::list(t.store.as_ref(), HOST, "prom").await.unwrap();
        let key = layout::object_key(HOST, "prom", &b[0].id, layout::DATA);
        let mut data = get_small(t.store.as_ref(), &key, 64 << 20).await.unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0x55;
        t.store
            .put(&key, body_from_bytes(Bytes::from(data)))
            .await
            .unwrap();

        let err = verify(
            t.store.as_ref(),
            HOST,
            "prom",
            &Selector::Latest,
            None,
            true,
            None,
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("corrupt") || msg.contains("sha256"), "{msg}");
        assert!(!catalog::list(t.store.as_ref(), HOST, "prom").await.unwrap()[0].verified);

        fs::write(target.join("local"), "newer local data").unwrap();
        let before = describe(&target);
        let err = restore(t.store.as_ref(), HOST, &s, &forced())
            .await
            .unwrap_err();
        assert!(!format!("{err:#}").is_empty());
        assert_eq!(describe(&target), before, "{}: target changed", t.name);
        assert_no_leftovers(dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_is_reported_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    fs::write(
        &creds,
        "[default]\naws_access_key_id = A\naws_secret_access_key = B\n",
    )
    .unwrap();
    let location = rehost_jobs::store::StoreLocation::S3(rehost_jobs::store::S3Settings {
        bucket: "b".into(),
        prefix: "p".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        region: "garage".into(),
        path_style: true,
        credentials: rehost_jobs::store::CredentialSource::File {
            path: creds,
            profile: "default".into(),
        },
    });
    let store = rehost_jobs::store::open(&location).unwrap();
    let target = dir.path().join("acme.json");
    fs::write(&target, "{}").unwrap();
    let err = backup(store.as_ref(), HOST, &spec("acme", target.clone()), false)
        .await
        .unwrap_err();
    assert!(err.is_storage_unavailable(), "{err:#}");
    let err = restore(store.as_ref(), HOST, &spec("acme", target), &forced())
        .await
        .unwrap_err();
    assert!(err.is_storage_unavailable(), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_links_inside_the_archive_are_restored() {
    use std::os::unix::fs::MetadataExt;
    for t in stores("hardlink") {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data");
        // Many small files first, so the linked file is still queued when the
        // link entry arrives.
        let mut tar = RawTar(vec![]);
        for i in 0..200 {
            tar = tar.file(&format!("f{i}"), format!("file {i}").as_bytes());
        }
        let (gz, tar_len) = tar
            .entry(b"sub", tar::EntryType::Directory, None, b"")
            .entry(
                b"sub/link-to-f199",
                tar::EntryType::Link,
                Some(b"f199"),
                b"",
            )
            .gz();
        publish(t.store.as_ref(), "data", gz, SourceKind::Dir, |m| {
            m.tar_bytes = tar_len;
            m.files = 200;
            m.dirs = 1;
        })
        .await;
        restore(
            t.store.as_ref(),
            HOST,
            &spec("data", target.clone()),
            &forced(),
        )
        .await
        .unwrap();
        let a = fs::metadata(target.join("f199")).unwrap();
        let b = fs::metadata(target.join("sub/link-to-f199")).unwrap();
        assert_eq!(a.ino(), b.ino(), "{}", t.name);
        assert_eq!(
            fs::read_to_string(target.join("sub/link-to-f199")).unwrap(),
            "file 199"
        );
        assert_eq!(fs::read_dir(&target).unwrap().count(), 201);
    }
}
