//! `rehost run` and `rehost status` against a real Garage, the daemon running
//! as an unprivileged system user (`rehost-test`, created if missing). These
//! tests need root to create that user and drop to it: they skip with a
//! printed reason otherwise, and fail under `CI=true`. Every wait is bounded;
//! everything listens on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rehost_tests::{garage, promtool_check, rehost_bin, wait, Daemon, Garage, Run, TestEnv};

const USER: &str = "rehost-test";

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `Some` when the test can run as root; prints why not, or panics under CI.
fn need_root(what: &str) -> Option<()> {
    if is_root() {
        return Some(());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but not root: {what} needs root");
    }
    eprintln!("skipping: {what} needs root (to create {USER} and drop to it)");
    None
}

static USER_LOCK: Mutex<()> = Mutex::new(());

/// The uid and gid of the unprivileged test user, created on first use.
fn test_user() -> (u32, u32) {
    let _guard = USER_LOCK.lock().unwrap();
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, USER])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            })
    };
    if id("-u").is_none() {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {USER} failed");
    }
    (id("-u").unwrap(), id("-g").unwrap())
}

/// A test environment owned by the test user: its own copy of the Garage
/// credentials (the original is root's, mode 0600), state and metrics.
fn user_env(g: &Garage, state_yaml: &str, endpoint: Option<&str>) -> (TestEnv, Garage, (u32, u32)) {
    let user = test_user();
    let env = TestEnv::new(g, "  placeholder:\n    path: /tmp/unused\n");
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let credentials = env.path("credentials");
    fs::copy(&g.credentials, &credentials).unwrap();
    let mine = Garage {
        endpoint: g.endpoint.clone(),
        bucket: g.bucket.clone(),
        credentials,
        secret: g.secret.clone(),
    };
    let state = state_yaml.replace("ROOT", &env.dir.path().display().to_string());
    env.write_config(&mine, endpoint.unwrap_or(&g.endpoint), &state);
    fs::create_dir_all(env.path("acme")).unwrap();
    fs::write(env.path("acme/acme.json"), br#"{"le":{}}"#).unwrap();
    fs::create_dir_all(env.path("site")).unwrap();
    fs::write(env.path("site/index.html"), "<h1>hi</h1>").unwrap();
    fs::create_dir_all(env.metrics()).unwrap();
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.0, user.1))
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    (env, mine, user)
}

/// `rehost -c CONFIG ARGS`, as `user` when given, with a clean environment.
fn command(env: &TestEnv, user: Option<(u32, u32)>, args: &[&str]) -> Command {
    let mut cmd = match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--init-groups")
                .arg(rehost_bin());
            c
        }
        None => Command::new(rehost_bin()),
    };
    cmd.arg("-c").arg(&env.config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "REHOST_CONFIG" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", env.dir.path());
    cmd
}

/// A metric of `rehost-<job>-<target>.prom`, if the file exists.
fn metric(dir: &Path, job_target: &str, name: &str) -> Option<f64> {
    let text = fs::read_to_string(dir.join(format!("rehost-{job_target}.prom"))).ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

const SCHEDULED: &str = r#"  acme:
    path: ROOT/acme/acme.json
    backup: "*/2 * * * * *"
    timeout: 20s
  site:
    path: ROOT/site
    run_at_start: true
"#;

#[test]
fn scheduled_backups_as_an_unprivileged_user_then_sigterm() {
    let Some(g) = garage() else { return };
    let Some(()) = need_root("running the daemon as an unprivileged user") else {
        return;
    };
    let (env, _g, user) = user_env(&g, SCHEDULED, None);
    let started = Instant::now();
    let mut daemon = Daemon::start(command(&env, Some(user), &["run", "--grace", "10s"]));
    assert!(
        daemon.wait_log(Duration::from_secs(10), |l| l.contains("daemon started")),
        "{}",
        daemon.log()
    );

    // run_at_start: the unscheduled `site` is backed up right away.
    let metrics = env.metrics();
    assert!(
        wait(Duration::from_secs(15), || metric(
            &metrics,
            "backup-site",
            "rehost_job_last_status"
        ) == Some(1.0)),
        "no run_at_start backup of site within 15 s\n{}",
        daemon.log()
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // Every 2 seconds: successive metrics updates, each one valid.
    let mut attempts = Vec::new();
    let seen_three = wait(Duration::from_secs(20), || {
        if let Some(t) = metric(
            &metrics,
            "backup-acme",
            "rehost_job_last_attempt_timestamp_seconds",
        ) {
            if attempts.last() != Some(&t) {
                attempts.push(t);
                promtool_check(&metrics.join("rehost-backup-acme.prom"));
            }
        }
        attempts.len() >= 3
    });
    assert!(seen_three, "attempts seen: {attempts:?}\n{}", daemon.log());
    for pair in attempts.windows(2) {
        assert!(pair[1] - pair[0] >= 1.5, "runs too close: {attempts:?}");
    }
    assert_eq!(
        metric(&metrics, "backup-acme", "rehost_job_last_status"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "backup-acme", "rehost_job_failures_total"),
        Some(0.0)
    );
    // Written by the unprivileged user.
    let meta = fs::metadata(metrics.join("rehost-backup-acme.prom")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), user);
    promtool_check(&metrics.join("rehost-backup-site.prom"));

    // Fresh jobs: status exits 0 and shows both.
    let status = env.rehost(&["status"]);
    status.expect(0);
    let out = status.stdout();
    assert!(out.starts_with("JOB "), "{out}");
    assert!(
        out.contains("backup") && out.contains("acme") && out.contains(" ago)"),
        "{out}"
    );

    let (code, took) = daemon.terminate(Duration::from_secs(20));
    let log = daemon.log();
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(12), "exit took {took:?}");
    assert!(log.contains("daemon stopped"), "{log}");
    // Logs name the job, the target, the duration, the bytes and the result.
    let done = log
        .lines()
        .find(|l| l.contains("result=\"ok\"") || l.contains("result=ok"))
        .unwrap_or_else(|| panic!("no finished-run line:\n{log}"));
    for field in ["job=", "target=", "duration_ms=", "bytes="] {
        assert!(done.contains(field), "{field} missing in {done}");
    }
    assert!(
        !log.contains(&g.secret),
        "the secret key appeared in the log"
    );
}

#[test]
fn as_root_without_allow_root_it_exits_2() {
    let Some(g) = garage() else { return };
    let Some(()) = need_root("checking the root refusal") else {
        return;
    };
    let env = TestEnv::new(
        &g,
        "  acme:\n    path: /tmp/unused-acme\n    backup: \"* * * * *\"\n",
    );
    let started = Instant::now();
    let run = env.rehost(&["run"]);
    run.expect(2);
    assert!(
        run.stderr().contains("refusing to run the daemon as root"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("--allow-root"), "{}", run.stderr());
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Accepts connections and never answers, for `limit` at most.
fn stalled_endpoint(limit: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut held = Vec::new();
        while start.elapsed() < limit && held.len() < 64 {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_stalled_store_times_the_job_out_and_records_the_failure() {
    let Some(g) = garage() else { return };
    let Some(()) = need_root("running the daemon as an unprivileged user") else {
        return;
    };
    let endpoint = stalled_endpoint(Duration::from_secs(60));
    let state = "  acme:\n    path: ROOT/acme/acme.json\n    run_at_start: true\n    timeout: 2s\n";
    let (env, _g, user) = user_env(&g, state, Some(&endpoint));
    let mut daemon = Daemon::start(command(&env, Some(user), &["run", "--grace", "5s"]));
    let metrics = env.metrics();
    let failed = wait(Duration::from_secs(20), || {
        metric(&metrics, "backup-acme", "rehost_job_failures_total") == Some(1.0)
    });
    assert!(failed, "no failure recorded within 20 s\n{}", daemon.log());
    assert_eq!(
        metric(&metrics, "backup-acme", "rehost_job_last_status"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "backup-acme",
            "rehost_job_last_success_timestamp_seconds"
        ),
        Some(0.0)
    );
    let duration = metric(&metrics, "backup-acme", "rehost_job_last_duration_seconds").unwrap();
    assert!((2.0..5.0).contains(&duration), "duration {duration}");
    promtool_check(&metrics.join("rehost-backup-acme.prom"));
    assert!(
        daemon.wait_log(Duration::from_secs(5), |l| l.contains("timed out after 2s")),
        "{}",
        daemon.log()
    );
    let (code, _) = daemon.terminate(Duration::from_secs(15));
    assert_eq!(code, 0, "{}", daemon.log());
}

#[test]
fn status_exit_codes_follow_the_staleness_rule() {
    let Some(g) = garage() else { return };
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");
    let state = format!(
        "  acme:\n    path: {}/acme/acme.json\n    backup: \"*/2 * * * * *\"\n    timeout: 1s\n  site:\n    path: {}/site\n",
        env.dir.path().display(),
        env.dir.path().display()
    );
    env.write_config(&g, &g.endpoint, &state);
    fs::create_dir_all(env.path("acme")).unwrap();
    fs::write(env.path("acme/acme.json"), "{}").unwrap();
    fs::create_dir_all(env.path("site")).unwrap();

    // No metrics yet: the scheduled job is stale ("never"), exit 1.
    let never = env.rehost(&["status"]);
    never.expect(1);
    assert!(never.stdout().contains("never"), "{}", never.stdout());
    assert!(
        never.stderr().contains("stale: backup acme"),
        "{}",
        never.stderr()
    );

    // Just backed up: fresh, exit 0 (site is unscheduled: "never" is fine).
    env.rehost(&["backup", "acme"]).expect(0);
    let fresh = env.rehost(&["status"]);
    fresh.expect(0);
    let line = fresh
        .stdout()
        .lines()
        .find(|l| l.contains("acme"))
        .unwrap()
        .to_string();
    assert!(line.contains(" ok "), "{line}");

    // Allowed age: 2 x 2 s + 1 s. After 6 s the job is stale.
    std::thread::sleep(Duration::from_secs(6));
    let stale = env.rehost(&["status"]);
    stale.expect(1);
    assert!(stale.stdout().contains("STALE"), "{}", stale.stdout());

    // Without a metrics section there is nothing to read: exit 2.
    let text = fs::read_to_string(&env.config).unwrap();
    let cut = text.find("\nmetrics:").unwrap();
    fs::write(&env.config, &text[..=cut]).unwrap();
    let none = env.rehost(&["status"]);
    none.expect(2);
    assert!(
        none.stderr().contains("no `metrics:` section"),
        "{}",
        none.stderr()
    );
}

/// `rehost boot` (no stack): restores, then replaces itself with `rehost run`
/// as `run_as` — the same process, now unprivileged, scheduling the jobs.
#[test]
fn boot_hands_the_daemon_to_run_as() {
    let Some(g) = garage() else { return };
    let Some(()) = need_root("boot's hand-over to an unprivileged user") else {
        return;
    };
    let state = format!("{SCHEDULED}run_as: {USER}\n");
    let (env, _g, user) = user_env(&g, &state, None);
    let mut daemon = Daemon::start(command(&env, None, &["boot", "--docker-timeout", "5s"]));
    assert!(
        daemon.wait_log(Duration::from_secs(20), |l| l.contains("daemon started")),
        "{}",
        daemon.log()
    );
    let pid = daemon.pid();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(
        uids,
        vec![user.0; 4],
        "real/effective/saved/fs uid of the daemon"
    );
    let metrics = env.metrics();
    assert!(
        wait(Duration::from_secs(15), || metric(
            &metrics,
            "backup-site",
            "rehost_job_last_status"
        ) == Some(1.0)),
        "the handed-over daemon did not run its run_at_start job\n{}",
        daemon.log()
    );
    let boot = fs::read_to_string(metrics.join("rehost-boot.prom")).unwrap();
    assert!(boot.contains("rehost_boot_last_status 1\n"), "{boot}");
    promtool_check(&metrics.join("rehost-boot.prom"));
    let (code, _) = daemon.terminate(Duration::from_secs(20));
    assert_eq!(code, 0, "{}", daemon.log());
}

#[test]
fn boot_refuses_before_restoring_without_a_usable_run_as() {
    let Some(g) = garage() else { return };
    let (env, _g, _user) = user_env(&g, SCHEDULED, None);
    let run = Run(command(&env, None, &["boot"]).output().unwrap());
    run.expect(2);
    assert!(
        run.stderr().contains("`run_as` is not set"),
        "{}",
        run.stderr()
    );
    assert!(!env.metrics().join("rehost-boot.prom").exists());
    let state = format!("{SCHEDULED}run_as: no-such-user-here\n");
    env.write_config(
        &g,
        &g.endpoint,
        &state.replace("ROOT", &env.dir.path().display().to_string()),
    );
    let run = Run(command(&env, None, &["boot"]).output().unwrap());
    run.expect(2);
    assert!(
        run.stderr().contains("no user `no-such-user-here`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_second_boot_exits_while_the_first_holds_the_lock() {
    let Some(g) = garage() else { return };
    let (env, _g, _user) = user_env(&g, SCHEDULED, None);
    // The first boot is stood in for by flock(1) holding the lock file.
    let lock = env.dir.path().join(".rehost-boot.lock");
    // --no-fork: flock execs sleep itself, so killing it releases the lock.
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait(Duration::from_secs(5), || lock.exists()));
    std::thread::sleep(Duration::from_millis(200));
    let run = Run(command(&env, None, &["boot", "--no-run"]).output().unwrap());
    let _ = holder.kill();
    let _ = holder.wait();
    run.expect(1);
    assert!(run.stderr().contains("boot lock"), "{}", run.stderr());
    assert!(run.stderr().contains("is held"), "{}", run.stderr());
    // Nothing was restored by the refused boot.
    assert!(!env.metrics().join("rehost-restore-acme.prom").exists());
}
