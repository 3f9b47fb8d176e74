//! rehost on a replicated store: a 3-node Garage cluster (three zones,
//! `replication_factor = 3`, Garage's default consistency mode; started by
//! scripts/garage-cluster.sh) that loses nodes.
//!
//! With one node SIGKILLed before, and in the middle of, each of `backup`
//! (multipart), `restore`, `pull`, `verify`, `prune` and `boot`, the command
//! succeeds (quorum: 2 of 3) or exits 3, and never leaves a partial backup
//! listed nor a half-restored target; with two nodes down every one of them
//! exits 3 naming the store and leaves the local targets as they were; once
//! the nodes are back every listed backup verifies.
//!
//! The endpoint is node 1's S3 API: nodes 2 and 3 are the ones killed (a dead
//! endpoint is a refused connection, which tests/e2e/faults.rs covers). One
//! test, as every phase changes the cluster the others would use.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use rehost_tests::{cluster, tree, Cluster, Garage, Rng, Run, TestEnv};

/// Bound of one command: far above what any takes here (a few seconds), so
/// that only a hang reaches it.
const LIMIT: Duration = Duration::from_secs(120);

type Tree = BTreeMap<String, Vec<u8>>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmd {
    Backup,
    Restore,
    Pull,
    Verify,
    Prune,
    Boot,
}

impl Cmd {
    const ALL: [Cmd; 6] = [
        Cmd::Backup,
        Cmd::Restore,
        Cmd::Pull,
        Cmd::Verify,
        Cmd::Prune,
        Cmd::Boot,
    ];

    fn args(self) -> &'static [&'static str] {
        match self {
            Cmd::Backup => &["backup"],
            Cmd::Restore => &["restore", "data", "--force"],
            Cmd::Pull => &["pull"],
            Cmd::Verify => &["verify"],
            Cmd::Prune => &["prune"],
            Cmd::Boot => &["boot", "--no-run"],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    /// All nodes up.
    None,
    /// Node N killed before the command starts.
    Before(u8),
    /// Node N killed after this long (half the command's time with all nodes up).
    After(u8, Duration),
}

struct Host {
    env: TestEnv,
    /// `s3://bucket/prefix`: what a storage error must name.
    url: String,
    site: Tree,
    /// The tree of `data` each listed backup was made from, by id.
    made_from: BTreeMap<String, Tree>,
    step: u32,
}

impl Host {
    fn data(&self) -> std::path::PathBuf {
        self.env.path("data")
    }

    fn www(&self) -> std::path::PathBuf {
        self.env.path("www")
    }

    fn backups(&self) -> Vec<String> {
        self.env.backup_ids("data")
    }

    fn newest_tree(&self) -> Tree {
        let ids = self.backups();
        self.made_from[ids.last().expect("no backup listed")].clone()
    }

    /// Sets the local side up so that `cmd` has work to do: a changed file
    /// to back up, a local-only file for a restore to remove, an empty pull
    /// dest, a missing state path for boot to restore. With `keep_targets`
    /// (two nodes down) the pull dest and the state path stay as they are.
    fn prepare(&mut self, cmd: Cmd, keep_targets: bool) {
        self.step += 1;
        match cmd {
            Cmd::Backup => {
                fs::write(self.data().join("counter"), self.step.to_string()).unwrap();
            }
            Cmd::Restore => {
                fs::write(self.data().join("local-only"), self.step.to_string()).unwrap();
            }
            Cmd::Pull if !keep_targets => {
                let _ = fs::remove_dir_all(self.www());
            }
            Cmd::Boot if !keep_targets => {
                fs::remove_dir_all(self.data()).unwrap();
            }
            _ => {}
        }
    }

    /// Runs `cmd` with `kill` applied; returns its run, its wall time and
    /// whether a `Kill::After` landed while it ran.
    fn run(&self, cluster: &Cluster, cmd: Cmd, kill: Kill) -> (Run, Duration, bool) {
        if let Kill::Before(n) = kill {
            cluster.kill(n);
        }
        let out_path = self.env.path("cmd.out");
        let err_path = self.env.path("cmd.err");
        let started = Instant::now();
        let mut child = self
            .env
            .command(cmd.args())
            .stdout(Stdio::from(fs::File::create(&out_path).unwrap()))
            .stderr(Stdio::from(fs::File::create(&err_path).unwrap()))
            .spawn()
            .unwrap();
        let mut landed = false;
        let mut pending = match kill {
            Kill::After(n, at) => Some((n, at)),
            _ => None,
        };
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if let Some((n, at)) = pending {
                if started.elapsed() >= at {
                    cluster.kill(n);
                    pending = None;
                    landed = true;
                }
            }
            if started.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rehost {:?} ({kill:?}) still running after {LIMIT:?}\nstderr:\n{}",
                    cmd.args(),
                    fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = started.elapsed();
        let run = Run(Output {
            status,
            stdout: fs::read(&out_path).unwrap(),
            stderr: fs::read(&err_path).unwrap(),
        });
        (run, took, landed)
    }

    /// What must hold after `cmd` exited `code` (0 or 3: anything else fails).
    fn check(&mut self, cmd: Cmd, run: &Run, before: &[String], data_before: &Tree) {
        let code = run.code();
        assert!(
            code == 0 || code == 3,
            "rehost {:?}: exit {code}, expected 0 (quorum) or 3 (storage)\nstdout:\n{}\nstderr:\n{}",
            cmd.args(),
            run.stdout(),
            run.stderr()
        );
        if code == 3 {
            self.names_the_store(cmd, run);
        }
        let after = self.backups();
        match cmd {
            Cmd::Backup => {
                let new: Vec<_> = after.iter().filter(|id| !before.contains(id)).collect();
                if code == 0 {
                    assert_eq!(
                        new.len(),
                        1,
                        "a successful backup lists one more: {after:?}"
                    );
                } else {
                    // Nothing partial is listed: no new backup.
                    assert!(new.is_empty(), "a failed backup is listed: {new:?}");
                }
                for id in new {
                    self.made_from.insert(id.clone(), data_before.clone());
                }
            }
            Cmd::Restore => {
                let now = tree(&self.data());
                if code == 0 {
                    assert!(now == self.newest_tree(), "restore: not the newest backup");
                } else {
                    assert!(now == *data_before, "a failed restore changed the target");
                }
            }
            Cmd::Pull => {
                let now = tree(&self.www());
                if code == 0 {
                    assert!(now == self.site, "pull: dest differs from the source");
                } else {
                    // A failed pull may have fetched some files, never a
                    // half-written or foreign one.
                    for (k, v) in &now {
                        assert!(
                            k.ends_with('/') || self.site.get(k) == Some(v),
                            "failed pull left {k} that is not the source's"
                        );
                    }
                }
            }
            Cmd::Prune => {
                assert!(after.iter().all(|id| before.contains(id)));
                if code == 0 {
                    assert!(after.len() <= 3, "prune kept {} backups", after.len());
                }
            }
            Cmd::Boot => {
                let now = tree(&self.data());
                if code == 0 {
                    assert!(now == self.newest_tree(), "boot: not the newest backup");
                } else {
                    assert!(now.is_empty(), "a failed boot left a partial state path");
                }
            }
            Cmd::Verify => {}
        }
        self.made_from.retain(|id, _| after.contains(id));
    }

    fn names_the_store(&self, cmd: Cmd, run: &Run) {
        let url = &self.url;
        assert!(
            run.all().contains(url),
            "rehost {:?} exit 3 without naming the store {url}:\n{}",
            cmd.args(),
            run.all()
        );
    }
}

/// `files` under `prefix` of the cluster's bucket, with rehost's own client.
fn upload(g: &Garage, prefix: &str, files: &Tree) {
    use rehost_jobs::store::body_from_bytes;
    let store = g.store(prefix);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (key, bytes) in files {
        rt.block_on(store.put(key, body_from_bytes(bytes::Bytes::from(bytes.clone()))))
            .unwrap();
    }
}

/// Starts the killed nodes again however the test ends, so that a failure
/// does not leave the cluster degraded for a rerun.
struct Revive<'a>(&'a Cluster);

impl Drop for Revive<'_> {
    fn drop(&mut self) {
        for n in [2, 3] {
            self.0.start(n);
        }
    }
}

#[test]
fn a_cluster_that_loses_nodes_fails_cleanly_or_not_at_all() {
    let Some(cluster) = cluster() else { return };
    let test_started = Instant::now();
    let g = &cluster.garage;
    let mut env = TestEnv::new(g, "");
    env.prefix = format!("cluster-{}", env.prefix);
    let root = env.dir.path().to_path_buf();
    let state = format!(
        "  data:\n    path: {root}/data\n    required: true\n    keep: {{ last: 3 }}\n\
         pull:\n  site:\n    source: s3://{bucket}/{prefix}-site/\n    dest: {root}/www\n    \
         delete_removed: true\n",
        root = root.display(),
        bucket = g.bucket,
        prefix = env.prefix,
    );
    env.write_config(g, &g.endpoint, &state);

    // The state: 26 MiB that does not compress (a data object of 4 parts of
    // 8 MiB: a multipart upload) and a few small files.
    let mut rng = Rng::new(17);
    let data = root.join("data");
    fs::create_dir_all(data.join("small")).unwrap();
    fs::write(data.join("big.bin"), rng.bytes(26 << 20)).unwrap();
    for i in 0..20 {
        fs::write(data.join(format!("small/{i}.txt")), rng.bytes(3000)).unwrap();
    }
    // The pulled content: 40 objects of 256 KiB.
    let site: Tree = (0..40)
        .map(|i| (format!("page-{i}.bin"), rng.bytes(256 << 10)))
        .collect();
    upload(g, &format!("{}-site", env.prefix), &site);

    let mut host = Host {
        url: format!("s3://{}/{}", g.bucket, env.prefix),
        env,
        site,
        made_from: BTreeMap::new(),
        step: 0,
    };
    host.env.rehost(&["init"]).expect(0);
    let _revive = Revive(&cluster);
    let mut report = Vec::new();

    // Every command once with all nodes up: it must succeed, and its time
    // places the kill "in the middle" below.
    let mut healthy = BTreeMap::new();
    for cmd in Cmd::ALL {
        let before = host.backups();
        host.prepare(cmd, false);
        let data_before = tree(&host.data());
        let (run, took, _) = host.run(&cluster, cmd, Kill::None);
        run.expect(0);
        host.check(cmd, &run, &before, &data_before);
        healthy.insert(format!("{cmd:?}"), took);
        report.push(format!(
            "{cmd:?} all up: exit 0 in {:.2}s",
            took.as_secs_f64()
        ));
    }

    // One node down, before and in the middle of every command. A kill
    // meant for the middle that came after the command had ended (it ran
    // faster than with all nodes up) is tried again earlier, up to 3 times.
    for (i, cmd) in Cmd::ALL.into_iter().enumerate() {
        let node = 2 + (i % 2) as u8;
        let half = healthy[&format!("{cmd:?}")] / 2;
        let kills = [
            Kill::Before(node),
            Kill::After(node, half),
            Kill::After(node, half / 2),
            Kill::After(node, half / 4),
        ];
        let mut landed_mid = false;
        for kill in kills {
            if landed_mid {
                break;
            }
            let before = host.backups();
            host.prepare(cmd, false);
            let data_before = tree(&host.data());
            let (run, took, landed) = host.run(&cluster, cmd, kill);
            report.push(format!(
                "{cmd:?} node {node} killed {}: exit {} in {:.2}s",
                match kill {
                    Kill::After(_, at) if landed => format!("after {:.2}s", at.as_secs_f64()),
                    Kill::After(_, at) =>
                        format!("after {:.2}s (not: it had ended)", at.as_secs_f64()),
                    _ => "before".to_string(),
                },
                run.code(),
                took.as_secs_f64()
            ));
            landed_mid = landed;
            cluster.start(node);
            host.check(cmd, &run, &before, &data_before);
            if cmd == Cmd::Boot && run.code() != 0 {
                host.env.rehost(&["restore", "data"]).expect(0);
            }
        }
        assert!(
            landed_mid,
            "no kill landed during {cmd:?}:\n{}",
            report.join("\n")
        );
    }

    // Two nodes down: no quorum. Every command exits 3 naming the store and
    // leaves the state path and the pull dest as they were.
    let mut backups = host.backups();
    backups.sort();
    cluster.kill(2);
    cluster.kill(3);
    for cmd in Cmd::ALL {
        host.prepare(cmd, true);
        let (data_before, www_before) = (tree(&host.data()), tree(&host.www()));
        let (run, took, _) = host.run(&cluster, cmd, Kill::None);
        report.push(format!(
            "{cmd:?} nodes 2+3 down: exit {} in {:.2}s",
            run.code(),
            took.as_secs_f64()
        ));
        run.expect(3);
        host.names_the_store(cmd, &run);
        assert!(
            tree(&host.data()) == data_before,
            "{cmd:?} touched the state path"
        );
        assert!(
            tree(&host.www()) == www_before,
            "{cmd:?} touched the pull dest"
        );
    }
    cluster.start(2);
    cluster.start(3);

    // Back to three: every listed backup verifies, and nothing was listed
    // or lost while two nodes were down.
    let mut listed = host.backups();
    listed.sort();
    assert_eq!(listed, backups, "the backups changed while no quorum");
    for id in &listed {
        host.env
            .rehost(&["verify", "data", "--backup", id])
            .expect(0);
    }
    println!(
        "cluster test: {} backups verified; whole test {:.1}s\n{}",
        listed.len(),
        test_started.elapsed().as_secs_f64(),
        report.join("\n")
    );
}
