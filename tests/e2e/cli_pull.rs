//! `rehost pull` against a real Garage: same result as `s3cmd sync
//! --delete-removed`, metrics, and readers never see a half-written file even
//! when the pull is killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rehost_tests::{garage, promtool_check, rehost_bin, Garage, S3cmd, TestEnv};

/// Every regular file under `root` with its content; also fails on symlinks.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A configuration with one `pull: site` entry from `prefix` of the test bucket.
fn pull_env(g: &Garage, extra: &str) -> TestEnv {
    let env = TestEnv::new(g, "  placeholder:\n    path: /tmp/unused\n");
    let body = format!(
        "  placeholder:\n    path: {root}/unused-state\npull:\n  site:\n    source: s3://{bucket}/{prefix}/site/\n    \
         dest: {root}/www/site\n    delete_removed: true\n{extra}",
        root = env.dir.path().display(),
        bucket = g.bucket,
        prefix = env.prefix,
    );
    env.write_config(g, &g.endpoint, &body);
    env
}

fn write_fixture(root: &Path, n: usize, version: u32) {
    for i in 0..n {
        let rel = match i % 3 {
            0 => format!("page-{i}.html"),
            1 => format!("assets/{}/img-{i}.png", i % 7),
            _ => format!("deep/a/b/file {i}.txt"),
        };
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("file {i} v{version}\n").repeat(i % 40 + 1)).unwrap();
    }
}

#[test]
fn pull_matches_s3cmd_sync_and_writes_metrics() {
    let Some(g) = garage() else { return };
    let env = pull_env(&g, "");
    let Some(s3) = S3cmd::new(&g, env.dir.path()) else {
        return;
    };
    let url = format!("s3://{}/{}/site/", g.bucket, env.prefix);
    let fixture = env.path("fixture");
    write_fixture(&fixture, 200, 1);
    s3.run(&["sync", &format!("{}/", fixture.display()), &url]);

    let dest = env.path("www/site");
    let reference = env.path("s3cmd-copy");
    fs::create_dir_all(&reference).unwrap();
    let first = env.rehost(&["pull"]);
    first.expect(0);
    assert!(
        first.stdout().contains("site: downloaded 200 files"),
        "{}",
        first.stdout()
    );
    s3.run(&[
        "sync",
        "--delete-removed",
        &url,
        &format!("{}/", reference.display()),
    ]);
    assert_eq!(tree(&dest), tree(&reference));
    assert_eq!(tree(&dest), tree(&fixture));

    // Change some, add some, delete some: both converge to the same tree.
    write_fixture(&fixture, 230, 2);
    for i in [1, 4, 7, 10, 13] {
        fs::remove_file(fixture.join(format!("assets/{}/img-{i}.png", i % 7))).unwrap();
    }
    fs::remove_dir_all(fixture.join("deep")).unwrap();
    s3.run(&[
        "sync",
        "--delete-removed",
        &format!("{}/", fixture.display()),
        &url,
    ]);
    env.rehost(&["pull", "site"]).expect(0);
    s3.run(&[
        "sync",
        "--delete-removed",
        &url,
        &format!("{}/", reference.display()),
    ]);
    assert_eq!(tree(&dest), tree(&fixture));
    assert_eq!(tree(&dest), tree(&reference));
    // Directories emptied by deletions are gone.
    assert!(!dest.join("deep").exists());

    let noop = env.rehost(&["pull"]);
    noop.expect(0);
    assert!(
        noop.stdout().contains("downloaded 0 files (0 B)"),
        "{}",
        noop.stdout()
    );
    // The index is beside dest, not served from it.
    assert!(env.path("www/.rehost-pull-site.json").is_file());
    let metrics = env.metrics().join("rehost-pull-site.prom");
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("rehost_job_last_status{job=\"pull\",target=\"site\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rehost_job_last_bytes{job=\"pull\",target=\"site\"} 0"),
        "{text}"
    );
    promtool_check(&metrics);
    assert!(!noop.all().contains(&g.secret));
}

#[test]
fn unknown_pull_name_is_a_usage_error() {
    let Some(g) = garage() else { return };
    let env = pull_env(&g, "");
    let run = env.rehost(&["pull", "nope"]);
    run.expect(2);
    assert!(
        run.stderr().contains("no pull entry `nope`"),
        "{}",
        run.stderr()
    );
}

const BIG: usize = 8 * 1024 * 1024;
const BIG_FILES: usize = 12;

fn big(i: usize, version: u8) -> Vec<u8> {
    let mut v = vec![version; BIG];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

#[test]
fn killed_pull_leaves_every_file_old_or_new() {
    let Some(g) = garage() else { return };
    let env = pull_env(&g, "    concurrency: 2\n");
    let Some(s3) = S3cmd::new(&g, env.dir.path()) else {
        return;
    };
    let url = format!("s3://{}/{}/site/", g.bucket, env.prefix);
    let fixture = env.path("fixture");
    let dest = env.path("www/site");
    let name = |i: usize| format!("dir{}/big-{i}.bin", i % 3);
    let upload = |version: u8| {
        for i in 0..BIG_FILES {
            let p = fixture.join(name(i));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, big(i, version)).unwrap();
        }
        s3.run(&["sync", &format!("{}/", fixture.display()), &url]);
    };
    upload(1);
    env.rehost(&["pull"]).expect(0);

    for (round, signal) in [(2u8, "TERM"), (3u8, "KILL")] {
        upload(round);
        let mut child = Command::new(rehost_bin());
        child.arg("-c").arg(&env.config).arg("pull");
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                child.env_remove(k);
            }
        }
        let mut child = child.spawn().unwrap();
        // Wait until some files are new and another download is under way
        // (a temporary exists), then kill.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut saw_temp = false;
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            let some_new = (0..BIG_FILES).any(|i| version_of(&dest.join(name(i))) == Some(round));
            if some_new
                && tree_names(&dest)
                    .iter()
                    .any(|n| n.contains(".rehost-pull-"))
            {
                saw_temp = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let _ = child.wait();
        eprintln!("round {round}: killed with SIG{signal} (saw a temporary: {saw_temp})");
        let previous = round - 1;
        let mut old = 0;
        for i in 0..BIG_FILES {
            let data = fs::read(dest.join(name(i))).unwrap();
            if data == big(i, previous) {
                old += 1;
            } else {
                assert!(data == big(i, round), "{}: neither old nor new", name(i));
            }
        }
        eprintln!("round {round}: {old} of {BIG_FILES} files still old");
        // Temporaries are hidden dotfiles, and the next run removes them.
        for n in tree_names(&dest) {
            if n.contains(".rehost-pull-") {
                let base = n.rsplit('/').next().unwrap();
                assert!(base.starts_with('.'), "visible temporary {n}");
            }
        }
        env.rehost(&["pull"]).expect(0);
        assert!(!tree_names(&dest)
            .iter()
            .any(|n| n.contains(".rehost-pull-")));
        for i in 0..BIG_FILES {
            assert!(fs::read(dest.join(name(i))).unwrap() == big(i, round));
        }
    }
}

/// The version byte of a [`big`] file (its 9th byte), if readable.
fn version_of(path: &Path) -> Option<u8> {
    use std::io::Read;
    let mut buf = [0u8; 9];
    fs::File::open(path).ok()?.read_exact(&mut buf).ok()?;
    Some(buf[8])
}

fn tree_names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
    out
}
