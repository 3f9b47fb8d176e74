//! `rehost run` against a real Garage: what the daemon schedules besides
//! backups (the prune after each backup, `verify:`), and what a timeout or a
//! SIGTERM does to a backup stuck on a stalled store (faultproxy in front of
//! Garage): the multipart upload is aborted, the failure recorded, and the
//! process exits within its grace period. Also: an unwritable metrics
//! directory fails no job and no boot, and `status`/`check` report it.
//!
//! The daemon runs as whoever runs the tests (`--allow-root` for root).
//! Every wait is bounded; everything listens on loopback. Timings are
//! measured and printed; the only bounds asserted are generous ones that
//! detect a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rehost_tests::faultproxy::{Fault, FaultProxy, Rule};
use rehost_tests::{garage, metric, promtool_check, wait, Daemon, Garage, TestEnv};

/// `rehost -c CONFIG run --allow-root --grace GRACE`, clean environment.
fn daemon(env: &TestEnv, grace: &str) -> Daemon {
    rehost_tests::run_daemon(env, grace)
}

fn prom(env: &TestEnv, job: &str, target: &str) -> std::path::PathBuf {
    env.metrics().join(format!("rehost-{job}-{target}.prom"))
}

/// A metric of the job's metrics file.
fn value(env: &TestEnv, job: &str, target: &str, name: &str) -> Option<f64> {
    metric(&prom(env, job, target), name, job, target)
}

/// The complete backups of `state`, from `rehost backups list` (one per line).
fn backup_ids(env: &TestEnv, state: &str) -> Vec<String> {
    let run = env.rehost(&["backups", "list", state]);
    run.expect(0);
    // Columns: STATE ID CREATED …; the header's first column is STATE.
    run.stdout()
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(state))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect()
}

/// The bucket, seen through the SDK: what rehost's store does not expose.
struct Bucket {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl Bucket {
    fn new(g: &Garage) -> Bucket {
        let id = std::env::var("REHOST_TEST_S3_ACCESS_KEY_ID").unwrap();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("garage"))
            .endpoint_url(&g.endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                id,
                g.secret.clone(),
                None,
                None,
                "test",
            ))
            .build();
        Bucket {
            rt: tokio::runtime::Runtime::new().unwrap(),
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: g.bucket.clone(),
        }
    }

    /// Keys of multipart uploads in progress under `prefix`.
    fn uploads(&self, prefix: &str) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .send(),
            )
            .unwrap();
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_string))
            .collect()
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .send(),
            )
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }
}

#[test]
fn the_daemon_prunes_after_each_backup_and_runs_the_verify_schedule() {
    let Some(g) = garage() else { return };
    let env = TestEnv::new(&g, "");
    let state = format!(
        "  acme:\n    path: {}/acme.json\n    backup: \"*/2 * * * * *\"\n    keep: {{ last: 2 }}\n    verify: \"*/3 * * * * *\"\n    timeout: 20s\n",
        env.dir.path().display()
    );
    env.write_config(&g, &g.endpoint, &state);
    fs::create_dir_all(env.metrics()).unwrap();
    let acme = env.path("acme.json");
    fs::write(&acme, "0").unwrap();
    // A changing source: every scheduled backup uploads a new one.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, acme) = (Arc::clone(&stop), acme.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            let start = Instant::now();
            while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(90) {
                n += 1;
                fs::write(&acme, format!("{{\"n\":{n}}}")).unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut d = daemon(&env, "10s");
    let uploaded = |log: &str| log.matches("uploaded backup").count();
    let enough = d.wait_log(Duration::from_secs(60), |l| {
        uploaded(l) >= 5 && l.matches("job=\"prune\"").count() + l.matches("job=prune").count() >= 3
    });
    // The verify has run and succeeded at least once by now (every 3 s).
    let verified = wait(Duration::from_secs(20), || {
        value(&env, "verify", "acme", "rehost_job_last_status") == Some(1.0)
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let (code, took) = d.terminate(Duration::from_secs(40));
    let log = d.log();
    println!("daemon exit after SIGTERM: {took:?}");
    assert!(enough, "fewer than 5 backups and 3 prunes in 60 s\n{log}");
    assert!(verified, "no successful verify\n{log}");
    assert_eq!(code, 0, "{log}");

    // Prune ran as its own job, after backups, and deleted old ones.
    assert_eq!(
        value(&env, "prune", "acme", "rehost_job_last_status"),
        Some(1.0),
        "{log}"
    );
    assert!(
        value(
            &env,
            "prune",
            "acme",
            "rehost_job_last_success_timestamp_seconds"
        )
        .unwrap()
            > 0.0
    );
    promtool_check(&prom(&env, "prune", "acme"));
    assert!(log.contains("deleted backup"), "{log}");
    let first = log
        .lines()
        .find_map(|l| l.split("uploaded backup ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let left = backup_ids(&env, "acme");
    assert!(
        !left.contains(&first),
        "the first backup {first} was not pruned: {left:?}"
    );
    // keep last 2 (a backup that finished during shutdown, whose prune the
    // shutdown skipped, may make it 3).
    assert!(
        (2..=3).contains(&left.len()),
        "after {} backups: {left:?}\n{log}",
        uploaded(&log)
    );

    // Verify: its own metrics, and verified.json next to a verified backup.
    promtool_check(&prom(&env, "verify", "acme"));
    let bucket = Bucket::new(&g);
    let keys = bucket.keys(&format!("{}/e2e-host/acme/", env.prefix));
    assert!(
        keys.iter().any(|k| k.ends_with("/verified.json")),
        "no verified.json: {keys:?}"
    );
    // `rehost status` knows the verify job.
    let status = env.rehost(&["status"]);
    assert!(
        status
            .stdout()
            .lines()
            .any(|l| l.starts_with("verify") && l.contains("acme")),
        "{}",
        status.stdout()
    );
}

/// A source whose upload needs several parts: 24 MiB that does not compress
/// (stored as is), then a 2 GiB sparse file (read in full, compressed to
/// almost nothing).
fn big_source(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut rng = rehost_tests::Rng::new(7);
    fs::write(dir.join("a-random.bin"), rng.bytes(24 << 20)).unwrap();
    let sparse = fs::File::create(dir.join("b-sparse.bin")).unwrap();
    sparse.set_len(2 << 30).unwrap();
}

/// Garage behind a proxy that never answers the upload of part 2.
fn stalled_parts(g: &Garage) -> FaultProxy {
    FaultProxy::start(
        &g.endpoint,
        vec![Rule::always(Fault::Stall)
            .method("PUT")
            .path_contains("partNumber=2")],
    )
}

#[test]
fn a_timed_out_backup_on_a_stalled_store_aborts_its_upload() {
    let Some(g) = garage() else { return };
    let proxy = stalled_parts(&g);
    let env = TestEnv::new(&g, "");
    big_source(&env.path("big"));
    let state = format!(
        "  big:\n    path: {}/big\n    run_at_start: true\n    timeout: 5s\n",
        env.dir.path().display()
    );
    env.write_config(&g, &proxy.endpoint(), &state);
    fs::create_dir_all(env.metrics()).unwrap();
    let started = Instant::now();
    let mut d = daemon(&env, "5s");
    let failed = wait(Duration::from_secs(60), || {
        value(&env, "backup", "big", "rehost_job_failures_total") == Some(1.0)
    });
    let recorded = started.elapsed();
    let log = d.log();
    assert!(failed, "no failure recorded within 60 s\n{log}");
    println!("timeout 5 s: failure recorded {recorded:?} after the start");
    assert!(log.contains("timed out after 5s"), "{log}");
    assert!(
        proxy.stats().faulted() >= 1,
        "the stall never happened: {log}"
    );
    // The run (and its abort) ended before the failure was recorded.
    let bucket = Bucket::new(&g);
    let prefix = format!("{}/e2e-host/big/", env.prefix);
    assert_eq!(bucket.uploads(&prefix), Vec::<String>::new(), "{log}");
    let duration = value(&env, "backup", "big", "rehost_job_last_duration_seconds").unwrap();
    println!("the cancelled attempt took {duration:.1} s in all (timeout 5 s)");
    assert!(
        duration < 5.0 + 20.0,
        "the attempt did not stop: {duration} s\n{log}"
    );
    let (code, took) = d.terminate(Duration::from_secs(30));
    println!("exit {took:?} after SIGTERM");
    assert_eq!(code, 0, "{}", d.log());
    drop(proxy);
}

#[test]
fn sigterm_during_a_stalled_backup_exits_within_the_grace_period() {
    let Some(g) = garage() else { return };
    let proxy = stalled_parts(&g);
    let env = TestEnv::new(&g, "");
    big_source(&env.path("big"));
    let state = format!(
        "  big:\n    path: {}/big\n    run_at_start: true\n    timeout: 10m\n",
        env.dir.path().display()
    );
    env.write_config(&g, &proxy.endpoint(), &state);
    fs::create_dir_all(env.metrics()).unwrap();
    let mut d = daemon(&env, "3s");
    // Part 2 is stalled: the backup can go no further.
    assert!(
        wait(Duration::from_secs(60), || proxy.stats().faulted() >= 1),
        "the upload never reached part 2\n{}",
        d.log()
    );
    let (code, took) = d.terminate(Duration::from_secs(3 + 20));
    let log = d.log();
    println!("exit {took:?} after SIGTERM (grace 3 s)");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("daemon stopped"), "{log}");
    assert!(log.contains("abandoning the runs still going"), "{log}");
    assert_eq!(
        value(&env, "backup", "big", "rehost_job_last_status"),
        Some(0.0),
        "{log}"
    );
    let bucket = Bucket::new(&g);
    let prefix = format!("{}/e2e-host/big/", env.prefix);
    assert_eq!(bucket.uploads(&prefix), Vec::<String>::new(), "{log}");
    drop(proxy);
}

#[test]
fn an_unwritable_metrics_directory_fails_no_job_and_no_boot() {
    let Some(g) = garage() else { return };
    let env = TestEnv::new(&g, "");
    let state = format!(
        "  acme:\n    path: {}/acme.json\n    backup: \"0 3 * * *\"\n",
        env.dir.path().display()
    );
    env.write_config(&g, &g.endpoint, &state);
    fs::write(env.path("acme.json"), "{}").unwrap();
    // A file where the metrics directory should be: no user, root included,
    // can create it.
    fs::write(env.metrics(), "not a directory").unwrap();

    let backup = env.rehost(&["backup", "acme"]);
    backup.expect(0);
    assert!(
        backup.stderr().contains("cannot record the run's metrics"),
        "{}",
        backup.stderr()
    );
    let boot = env.rehost(&["boot", "--no-run"]);
    boot.expect(0);
    assert!(
        boot.stderr().contains("cannot write the boot metrics"),
        "{}",
        boot.stderr()
    );

    let status = env.rehost(&["status"]);
    status.expect(1);
    assert!(
        status.stdout().contains("NOT writable"),
        "{}",
        status.stdout()
    );
    let check = env.rehost(&["check"]);
    check.expect(1);
    assert!(
        check.stdout().contains("NOT writable"),
        "{}",
        check.stdout()
    );
}
