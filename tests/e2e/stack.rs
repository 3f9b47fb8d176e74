//! `rehost up` / `rehost down` (the binary, the compose loader and the
//! engine together) against the real Docker Engine, on the test stack of
//! `tests/fixtures/stack` (web built here with a healthcheck, Prometheus
//! scraping it once healthy, a node exporter waiting for Prometheus):
//! it comes up and answers on its ports; a second `up` keeps every container;
//! a changed environment recreates that service only; a service removed from
//! the file loses its container; a failing healthcheck is a clear error;
//! `down` leaves nothing; an unreachable Engine is exit code 3.
//!
//! Needs Docker (under `CI=true` its absence fails, elsewhere the test is
//! skipped with a reason); `scripts/test-images.sh` makes the images. Every test has
//! its own project name and copy of the stack, and removes what it made even
//! when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rehost_tests::{free_port, http_ok, rehost_bin, Run};

/// `true` when Docker is there (the test images are built when missing);
/// otherwise skip, or fail under `CI=true`.
fn docker_ready() -> bool {
    if !rehost_tests::docker::available() {
        return false;
    }
    rehost_tests::docker::test_images();
    true
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy of the test stack, a rehost.yaml for it and an env file with free
/// ports; everything labelled with the project is removed on drop.
struct Stack {
    dir: tempfile::TempDir,
    project: String,
    env: BTreeMap<String, String>,
}

impl Stack {
    fn new(test: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixtures(), &dir.path().join("stack"));
        let project = format!("rehost-e2e-{test}-{}", std::process::id());
        let env = BTreeMap::from([
            ("WEB_PORT".to_string(), free_port().to_string()),
            ("PROM_PORT".to_string(), free_port().to_string()),
        ]);
        let s = Stack { dir, project, env };
        fs::create_dir(s.dir.path().join("store")).unwrap();
        fs::write(
            s.dir.path().join("rehost.yaml"),
            format!(
                "host: e2e\nstorage:\n  url: file://{}\nstack:\n  compose: {}\n  project: {}\n  env_file: {}\n",
                s.dir.path().join("store").display(),
                s.compose().display(),
                s.project,
                s.dir.path().join("stack.env").display()
            ),
        )
        .unwrap();
        s.write_env();
        s
    }

    fn compose(&self) -> PathBuf {
        self.dir.path().join("stack/docker-compose.yml")
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.insert(key.into(), value.into());
        self.write_env();
    }

    fn write_env(&self) {
        let text: String = self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        fs::write(self.dir.path().join("stack.env"), text).unwrap();
    }

    fn rehost(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(rehost_bin());
        cmd.arg("-c")
            .arg(self.dir.path().join("rehost.yaml"))
            .args(args);
        for (k, _) in std::env::vars() {
            // The stack's variables come from its env file only.
            if k.starts_with("AWS_")
                || [
                    "REHOST_CONFIG",
                    "RUST_LOG",
                    "WEB_PORT",
                    "PROM_PORT",
                    "GREETING",
                    "SITE",
                    "EXPORTER_ROLE",
                ]
                .contains(&k.as_str())
            {
                cmd.env_remove(k);
            }
        }
        Run(cmd.output().unwrap())
    }

    /// Container name → ID of the project's containers.
    fn containers(&self) -> BTreeMap<String, String> {
        docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.Names}} {{.ID}}",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect()
    }

    fn port(&self, key: &str) -> u16 {
        self.env[key].parse().unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        for (list, rm) in [
            (vec!["ps", "-aq"], vec!["rm", "-f", "-v"]),
            (vec!["network", "ls", "-q"], vec!["network", "rm"]),
            (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
            (vec!["image", "ls", "-q"], vec!["image", "rm", "-f"]),
        ] {
            let mut args = list.clone();
            // Built images are named after the project.
            let by_name = format!("reference={}-*", self.project);
            args.extend([
                "--filter",
                if list[0] == "image" {
                    &by_name
                } else {
                    &filter
                },
            ]);
            let found: Vec<String> = docker(&args).split_whitespace().map(String::from).collect();
            if !found.is_empty() {
                let _ = Command::new("docker").args(&rm).args(&found).output();
            }
        }
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/stack")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn stack_up_answers_reconciles_minimally_and_goes_down() {
    if !docker_ready() {
        return;
    }
    let mut stack = Stack::new("stack");
    let p = stack.project.clone();
    let (web, prom, exporter) = (
        format!("{p}-web-1"),
        format!("{p}-prometheus-1"),
        format!("{p}-exporter-1"),
    );

    let run = stack.rehost(&["up"]);
    run.expect(0);
    let first = stack.containers();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        vec![&exporter, &prom, &web],
        "{}",
        run.all()
    );

    // web answers on its port, and Prometheus (on its own) has scraped it.
    let body = http_ok(stack.port("WEB_PORT"), "/greeting.txt").unwrap();
    assert_eq!(body.trim(), "hello from rehost");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = http_ok(
            stack.port("PROM_PORT"),
            "/api/v1/query?query=rehost_test_web_up",
        )
        .unwrap_or_default();
        if q.contains("\"value\"") && q.contains("\"1\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped web: {q}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Second up: every container ID unchanged.
    let run = stack.rehost(&["up"]);
    run.expect(0);
    assert!(run.stdout().contains("unchanged"), "{}", run.all());
    assert_eq!(stack.containers(), first);

    // A dry run of a change says what it would do and does nothing.
    stack.set("EXPORTER_ROLE", "changed");
    let run = stack.rehost(&["--dry-run", "up"]);
    run.expect(0);
    assert!(
        run.stdout().contains("would recreate exporter"),
        "{}",
        run.all()
    );
    assert_eq!(stack.containers(), first);

    // One service's environment changed: that service only is recreated.
    let run = stack.rehost(&["up"]);
    run.expect(0);
    let after = stack.containers();
    assert_ne!(after[&exporter], first[&exporter], "{}", run.all());
    assert_eq!(after[&web], first[&web]);
    assert_eq!(after[&prom], first[&prom]);

    // The exporter removed from the file: its container goes.
    let text = fs::read_to_string(stack.compose()).unwrap();
    let cut = text.find("  exporter:").unwrap();
    fs::write(stack.compose(), &text[..cut]).unwrap();
    let run = stack.rehost(&["up"]);
    run.expect(0);
    let left = stack.containers();
    assert!(!left.contains_key(&exporter), "{left:?}\n{}", run.all());
    assert_eq!(left.len(), 2);

    // down: nothing of the project is left.
    let run = stack.rehost(&["down"]);
    run.expect(0);
    assert!(stack.containers().is_empty());
    let nets = docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label=com.docker.compose.project={p}"),
        "-q",
    ]);
    assert!(nets.trim().is_empty(), "networks left: {nets}");
}

#[test]
fn failing_healthcheck_is_a_clear_error() {
    if !docker_ready() {
        return;
    }
    let stack = Stack::new("unhealthy");
    let text = fs::read_to_string(stack.compose()).unwrap();
    // web's healthcheck asks for a page that does not exist.
    let text = text.replace("http://127.0.0.1/\"]", "http://127.0.0.1/missing-page\"]");
    let text = text.replace("retries: 30\n  prometheus:", "retries: 2\n  prometheus:");
    fs::write(stack.compose(), text).unwrap();
    let run = stack.rehost(&["up", "--wait-timeout", "60s"]);
    run.expect(1);
    let err = run.stderr();
    assert!(err.contains("service `web` is unhealthy"), "{err}");
    assert!(err.contains("last health check: exit code 1"), "{err}");
    assert!(
        err.contains("404"),
        "the probe's own output is missing: {err}"
    );
    // Prometheus, which waits for web to be healthy, was never created.
    assert!(!stack
        .containers()
        .contains_key(&format!("{}-prometheus-1", stack.project)));
}

#[test]
fn unreachable_engine_is_exit_code_3() {
    let stack = Stack::new("nodocker");
    for cmd in ["up", "down"] {
        let mut c = Command::new(rehost_bin());
        c.arg("-c")
            .arg(stack.dir.path().join("rehost.yaml"))
            .arg(cmd)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        let run = Run(c.output().unwrap());
        run.expect(3);
        assert!(
            run.stderr()
                .contains("Docker Engine not reachable at unix:///nonexistent/docker.sock"),
            "{}",
            run.stderr()
        );
        assert!(
            run.stderr().contains("is dockerd running?"),
            "{}",
            run.stderr()
        );
    }
}
