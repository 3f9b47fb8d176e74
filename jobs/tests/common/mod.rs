//! Test fixtures: the stores every suite runs against (a temp directory always,
//! Garage when `scripts/garage.sh start` exported its settings), and tree
//! builders/comparers.

// Fixture code panics on setup failures, like the tests that use it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rehost_jobs::store::{self, CredentialSource, ObjectStore, S3Settings, StoreLocation};

/// A store for one test, plus what keeps it alive.
pub struct TestStore {
    pub name: &'static str,
    pub store: Arc<dyn ObjectStore>,
    pub location: StoreLocation,
    _dir: Option<tempfile::TempDir>,
}

/// Garage settings from the environment, or `None` (with a printed reason).
/// Under `CI=true` a missing Garage is a failure, not a skip.
pub fn garage(prefix: &str) -> Option<StoreLocation> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(bucket), Some(creds)) = (
        var("REHOST_TEST_S3_ENDPOINT"),
        var("REHOST_TEST_S3_BUCKET"),
        var("REHOST_TEST_S3_CREDENTIALS_FILE"),
    ) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "CI=true but no Garage: REHOST_TEST_S3_* is not set. \
                 Run the tests with `make test`, which starts Garage via scripts/garage.sh."
            );
        }
        eprintln!(
            "skipping the Garage half of this test: REHOST_TEST_S3_* not set (run `make test`)"
        );
        return None;
    };
    Some(StoreLocation::S3(S3Settings {
        bucket,
        prefix: format!("{prefix}-{}", rehost_jobs::fsutil::random_suffix()),
        endpoint: Some(endpoint),
        region: var("REHOST_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
        path_style: true,
        credentials: CredentialSource::File {
            path: creds.into(),
            profile: "default".into(),
        },
    }))
}

/// A fresh directory store and, when available, a fresh Garage prefix.
pub fn stores(test: &str) -> Vec<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::File(dir.path().join("store"));
    fs::create_dir_all(dir.path().join("store")).unwrap();
    let mut out = vec![TestStore {
        name: "file",
        store: store::open(&location).unwrap(),
        location,
        _dir: Some(dir),
    }];
    if let Some(location) = garage(test) {
        out.push(TestStore {
            name: "garage",
            store: store::open(&location).unwrap(),
            location,
            _dir: None,
        });
    }
    out
}

/// Writes a tree of `n` files with nested dirs, odd modes, unicode and
/// non-UTF-8 names, symlinks (relative, absolute, dangling) and empty dirs.
pub fn make_tree(root: &Path, n: usize) {
    fs::create_dir_all(root).unwrap();
    for i in 0..n {
        let dir = root
            .join(format!("d{:02}", i % 37))
            .join(format!("sub{}", i % 5));
        fs::create_dir_all(&dir).unwrap();
        let name = match i % 10 {
            0 => format!("fichier-é-{i}.txt"),
            1 => format!("文件-{i}.log"),
            2 => format!("with space {i}"),
            _ => format!("f{i}.dat"),
        };
        let p = dir.join(name);
        fs::write(&p, format!("content of file {i}\n").repeat(i % 50 + 1)).unwrap();
        let mode = [0o644, 0o600, 0o755, 0o640, 0o444][i % 5];
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        filetime::set_file_mtime(
            &p,
            filetime::FileTime::from_unix_time(1_700_000_000 + i as i64, 0),
        )
        .unwrap();
    }
    let raw = std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9.bin");
    fs::write(root.join(raw), b"not utf-8 name").unwrap();
    fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("d00/sub0", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("does-not-exist", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink(root.join("d01"), root.join("link-abs-inside")).unwrap();
    let long = "x".repeat(200);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(root.join(&long).join(format!("{long}.txt")), "long path").unwrap();
}

/// Everything about a tree that a restore must reproduce, as sorted lines.
pub fn describe(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    describe_into(root, root, &mut out);
    out.sort();
    out
}

fn describe_into(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let m = fs::symlink_metadata(&path).unwrap();
        let line = if m.file_type().is_symlink() {
            format!("L {rel} -> {}", fs::read_link(&path).unwrap().display())
        } else if m.is_dir() {
            format!("D {rel} {:o} {}", m.mode() & 0o7777, m.mtime())
        } else {
            let data = fs::read(&path).unwrap();
            format!(
                "F {rel} {:o} {} {} {:x}",
                m.mode() & 0o7777,
                m.mtime(),
                data.len(),
                md5ish(&data)
            )
        };
        out.push(line);
        if m.is_dir() {
            describe_into(root, &path, out);
        }
    }
}

/// A cheap content digest for comparisons (FNV-1a).
pub fn md5ish(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Restore the newest backup whatever the target holds.
pub fn forced() -> rehost_jobs::restore::RestoreRequest {
    rehost_jobs::restore::RestoreRequest {
        policy: rehost_jobs::restore::RestorePolicy::IfMissing,
        force: true,
        selector: rehost_jobs::catalog::Selector::Latest,
        dry_run: false,
        progress: None,
    }
}

pub fn spec(name: &str, path: PathBuf) -> rehost_jobs::state::StateSpec {
    rehost_jobs::state::StateSpec {
        name: name.into(),
        path,
        mode: None,
        owner: None,
        kind: Default::default(),
        encryption: None,
        generation: None,
    }
}
