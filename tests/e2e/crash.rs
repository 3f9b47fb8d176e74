//! `kill -9` at random points of backup, restore and pull against Garage.
//! After every kill: the target is entirely the old or entirely the new
//! version (restore), every file is one version or the other (pull), no
//! backup without a manifest is listed and the newest listed one verifies
//! (backup); the next run succeeds and removes whatever the killed one left.
//!
//! Kill points are drawn from a seeded generator; the seed is printed, and
//! `REHOST_CRASH_SEED=N` replays a run. A kill that came after the process had
//! already finished does not count towards the kills required.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rehost_tests::{garage, rehost_bin, tree, Garage, Rng, S3cmd, TestEnv};

/// Kills that must land while the process is working, per command.
const KILLS_PER_COMMAND: usize = 7;
/// Attempts per command, so that a machine too fast or too slow for the
/// drawn points still ends.
const MAX_ATTEMPTS: usize = 16;
/// Longest an uninterrupted run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn seed() -> u64 {
    std::env::var("REHOST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// `rehost ARGS` started in the background, with the same clean environment
/// as [`TestEnv::rehost`].
fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    let mut cmd = Command::new(rehost_bin());
    cmd.arg("-c")
        .arg(&env.config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "REHOST_CONFIG" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().unwrap()
}

/// Runs `args` to the end and returns how long it took.
fn timed(env: &TestEnv, args: &[&str]) -> Duration {
    let started = Instant::now();
    let mut child = spawn(env, args);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "rehost {args:?}: {status}");
            return started.elapsed();
        }
        assert!(started.elapsed() < RUN_LIMIT, "rehost {args:?} hangs");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `args`, sends SIGKILL after a random part of `typical`, reaps the
/// process. True when the kill landed while it was still running.
///
/// A run that had already ended by then took less than the drawn time, so
/// `typical` shrinks to it: one slow measured run (a cold cache, a busy
/// machine) must not leave every later kill landing after the end.
fn kill_during(
    env: &TestEnv,
    args: &[&str],
    typical: &mut Duration,
    rng: &mut Rng,
) -> (bool, Duration) {
    // Between 2 % and 98 % of a typical run.
    let micros = typical.as_micros() as u64;
    let at = Duration::from_micros(micros / 50 + rng.below(micros * 96 / 100 + 1));
    let mut child = spawn(env, args);
    std::thread::sleep(at);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    if !running {
        *typical = at;
    }
    (running, at)
}

/// Names in `dir` that contain `marker`.
fn leftovers(dir: &Path, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(marker) {
                out.push(e.path().display().to_string());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Files in the metrics directory that are not finished `*.prom` files.
fn metrics_leftovers(env: &TestEnv) -> Vec<String> {
    fs::read_dir(env.metrics())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !(n.starts_with("rehost-") && n.ends_with(".prom")))
                .collect()
        })
        .unwrap_or_default()
}

fn listed_ids(env: &TestEnv) -> Vec<String> {
    let run = env.rehost(&["backups", "list", "data"]);
    run.expect(0);
    run.stdout()
        .lines()
        .filter(|l| l.starts_with("data "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// A data set large enough that every command takes a while: 40 MiB of
/// incompressible files and 1,500 small ones.
fn make_data(root: &Path, rng: &mut Rng) {
    fs::create_dir_all(root.join("small")).unwrap();
    for i in 0..10 {
        fs::write(root.join(format!("big-{i}.bin")), rng.bytes(4 << 20)).unwrap();
    }
    for i in 0..1500 {
        let dir = root.join(format!("small/{}", i % 30));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("{i}.txt")),
            format!("small file {i}\n").repeat(i % 50 + 1),
        )
        .unwrap();
    }
}

/// Two pull sources with mostly the same keys and different contents, plus
/// keys only in one of them.
fn publish_sources(g: &Garage, dir: &Path, prefix: &str) -> Option<[BTreeMap<String, Vec<u8>>; 2]> {
    fs::create_dir_all(dir).unwrap();
    let s3 = S3cmd::new(g, dir)?;
    let mut rng = Rng::new(99);
    let mut out = Vec::new();
    for (v, name) in ["a", "b"].iter().enumerate() {
        let root = dir.join(format!("src-{name}"));
        for i in 0..120 {
            let only_here = i % 10 == 0 && (i / 10) % 2 == v;
            let key = if only_here {
                format!("only-{name}/{i}.bin")
            } else {
                format!("d{}/{i}.bin", i % 6)
            };
            let p = root.join(key);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, rng.bytes(200_000 + i * 1_000)).unwrap();
        }
        s3.run(&[
            "sync",
            &format!("{}/", root.display()),
            &format!("s3://{}/{prefix}/{name}/", g.bucket),
        ]);
        out.push(tree(&root));
    }
    let b = out.pop().unwrap();
    let a = out.pop().unwrap();
    Some([a, b])
}

struct Host {
    env: TestEnv,
    root: PathBuf,
    bucket: String,
    source_prefix: String,
}

impl Host {
    fn configure(&self, g: &Garage, source: &str) {
        let body = format!(
            "  data:\n    path: {root}/data\npull:\n  site:\n    source: s3://{}/{}/{source}/\n    \
             dest: {root}/www/site\n    delete_removed: true\n",
            self.bucket,
            self.source_prefix,
            root = self.root.display()
        );
        self.env.write_config(g, &g.endpoint, &body);
    }
}

#[test]
fn kill_9_at_random_points_loses_nothing() {
    let Some(g) = garage() else { return };
    let seed = seed();
    println!("crash seed: {seed} (replay with REHOST_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");
    let root = env.dir.path().to_path_buf();
    let source_prefix = format!("{}-sources", env.prefix);
    let Some([src_a, src_b]) = publish_sources(&g, &root.join("sources"), &source_prefix) else {
        return;
    };
    let host = Host {
        env,
        root: root.clone(),
        bucket: g.bucket.clone(),
        source_prefix,
    };
    host.configure(&g, "a");
    let env = &host.env;
    let data = root.join("data");
    make_data(&data, &mut rng);
    let mut report = Vec::new();

    // --- backup -------------------------------------------------------------
    // The first backup uploads everything; the timed one, like the killed
    // ones, uploads one changed file.
    env.rehost(&["backup", "data"]).expect(0);
    fs::write(data.join("big-0.bin"), rng.bytes(4 << 20)).unwrap();
    let mut typical = timed(env, &["backup", "data"]);
    let mut landed = 0;
    for attempt in 0..MAX_ATTEMPTS {
        if landed >= KILLS_PER_COMMAND {
            break;
        }
        // A new version, so the run uploads instead of finding it unchanged.
        fs::write(
            data.join(format!("big-{}.bin", attempt % 10)),
            rng.bytes(4 << 20),
        )
        .unwrap();
        let before = listed_ids(env);
        let (running, at) = kill_during(env, &["backup", "data"], &mut typical, &mut rng);
        landed += usize::from(running);
        let after = listed_ids(env);
        // Only complete backups are listed; the killed run added one at most.
        assert!(
            after.len() == before.len() || after.len() == before.len() + 1,
            "seed {seed}: backups went from {before:?} to {after:?}"
        );
        env.rehost(&["verify", "data"]).expect(0);
        let next = env.rehost(&["backup", "data"]);
        next.expect(0);
        assert!(
            metrics_leftovers(env).is_empty(),
            "seed {seed}: {:?}",
            metrics_leftovers(env)
        );
        report.push(format!(
            "backup  kill at {:>5} ms ({}) → listed {} → {}, verify ok, next run ok",
            at.as_millis(),
            if running { "mid-run" } else { "after end" },
            before.len(),
            after.len()
        ));
    }
    assert!(
        landed >= KILLS_PER_COMMAND,
        "seed {seed}: only {landed} backup kills landed mid-run"
    );

    // --- restore ------------------------------------------------------------
    // Alternate between two backups with different trees.
    let ids = listed_ids(env);
    let (id_old, id_new) = (ids[ids.len() - 2].clone(), ids[ids.len() - 1].clone());
    env.rehost(&["restore", "data", "--force", "--backup", &id_old])
        .expect(0);
    let tree_old = tree(&data);
    let mut typical = timed(env, &["restore", "data", "--force", "--backup", &id_new]);
    let tree_new = tree(&data);
    assert_ne!(tree_old, tree_new);
    let versions = [(id_old, tree_old), (id_new, tree_new)];
    let mut current = 1;
    let mut landed = 0;
    for _ in 0..MAX_ATTEMPTS {
        if landed >= KILLS_PER_COMMAND {
            break;
        }
        let other = 1 - current;
        let args = ["restore", "data", "--force", "--backup", &versions[other].0];
        let (running, at) = kill_during(env, &args, &mut typical, &mut rng);
        landed += usize::from(running);
        let now = tree(&data);
        let state = if now == versions[current].1 {
            "old"
        } else if now == versions[other].1 {
            "new"
        } else {
            panic!("seed {seed}: a restore killed after {at:?} left a mixed target")
        };
        let staged = leftovers(&root, ".rehost-staging-");
        env.rehost(&args).expect(0);
        assert!(
            tree(&data) == versions[other].1,
            "seed {seed}: restore did not converge"
        );
        assert!(
            leftovers(&root, ".rehost-staging-").is_empty(),
            "seed {seed}: staging not removed by the next run"
        );
        report.push(format!(
            "restore kill at {:>5} ms ({}) → target {state}, {} staging dir(s) left, next run ok and cleaned",
            at.as_millis(),
            if running { "mid-run" } else { "after end" },
            staged.len()
        ));
        current = other;
    }
    assert!(
        landed >= KILLS_PER_COMMAND,
        "seed {seed}: only {landed} restore kills landed mid-run"
    );

    // --- pull ---------------------------------------------------------------
    let dest = root.join("www/site");
    let sources = [("a", &src_a), ("b", &src_b)];
    host.configure(&g, "a");
    env.rehost(&["pull", "site"]).expect(0);
    host.configure(&g, "b");
    let mut typical = timed(env, &["pull", "site"]);
    assert!(
        tree(&dest) == src_b,
        "seed {seed}: pull differs from its source"
    );
    let mut current = 1;
    let mut landed = 0;
    for _ in 0..MAX_ATTEMPTS {
        if landed >= KILLS_PER_COMMAND {
            break;
        }
        let other = 1 - current;
        host.configure(&g, sources[other].0);
        let (running, at) = kill_during(env, &["pull", "site"], &mut typical, &mut rng);
        landed += usize::from(running);
        let temps = leftovers(&dest, ".rehost-pull-");
        let mut mixed = (0, 0);
        for (k, v) in tree(&dest) {
            if k.ends_with('/') || k.contains(".rehost-pull-") {
                continue;
            }
            if sources[current].1.get(&k) == Some(&v) {
                mixed.0 += 1;
            } else if sources[other].1.get(&k) == Some(&v) {
                mixed.1 += 1;
            } else {
                panic!("seed {seed}: {k} is neither version after a kill at {at:?}");
            }
        }
        env.rehost(&["pull", "site"]).expect(0);
        assert!(
            tree(&dest) == *sources[other].1,
            "seed {seed}: pull did not converge"
        );
        assert!(leftovers(&dest, ".rehost-pull-").is_empty());
        report.push(format!(
            "pull    kill at {:>5} ms ({}) → {} old + {} new files, {} temporaries, next run ok and cleaned",
            at.as_millis(),
            if running { "mid-run" } else { "after end" },
            mixed.0,
            mixed.1,
            temps.len()
        ));
        current = other;
    }
    assert!(
        landed >= KILLS_PER_COMMAND,
        "seed {seed}: only {landed} pull kills landed mid-run"
    );
    assert!(
        metrics_leftovers(env).is_empty(),
        "{:?}",
        metrics_leftovers(env)
    );
    println!("crash seed {seed}: {} kills", report.len());
    for line in &report {
        println!("  {line}");
    }
}
