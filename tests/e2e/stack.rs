//! `rehost up` / `rehost down` (the binary, the compose loader and the
//! engine together) against the real Docker Engine, on the test stack of
//! `tests/fixtures/stack` (web built here with a healthcheck, Prometheus
//! scraping it once healthy, a node exporter waiting for Prometheus):
//! it comes up and answers on its ports; a second `up` keeps every container;
//! a changed environment recreates that service only; a service removed from
//! the file loses its container; a failing healthcheck is a clear error;
//! `down` leaves nothing; an unreachable Engine is exit code 3. Also the
//! compose keys real files use (secrets, build targets, container_name,
//! links, capabilities, read-only roots, limits, profiles) as `docker
//! inspect` shows them, and image pulls from a distribution registry on
//! loopback (Debian's `docker-registry`, with and without htpasswd auth).
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
        let env = BTreeMap::from([
            ("WEB_PORT".to_string(), free_port().to_string()),
            ("PROM_PORT".to_string(), free_port().to_string()),
        ]);
        Stack::in_dir(dir, test, env)
    }

    /// A stack made of `files` (path under the stack folder → content).
    fn with_files(test: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("stack").join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Stack::in_dir(dir, test, env)
    }

    fn in_dir(dir: tempfile::TempDir, test: &str, env: BTreeMap<String, String>) -> Self {
        let project = format!("rehost-e2e-{test}-{}", std::process::id());
        let s = Stack { dir, project, env };
        fs::create_dir(s.dir.path().join("store")).unwrap();
        s.configure("");
        s.write_env();
        s
    }

    /// Writes rehost.yaml, with `extra` lines appended to its `stack:`.
    fn configure(&self, extra: &str) {
        fs::write(
            self.dir.path().join("rehost.yaml"),
            format!(
                "host: e2e\nstorage:\n  url: file://{}\nstack:\n  compose: {}\n  project: {}\n  env_file: {}\n{extra}",
                self.dir.path().join("store").display(),
                self.compose().display(),
                self.project,
                self.dir.path().join("stack.env").display()
            ),
        )
        .unwrap();
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
        self.rehost_with(args, &[])
    }

    fn rehost_with(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut cmd = Command::new(rehost_bin());
        cmd.arg("-c")
            .arg(self.dir.path().join("rehost.yaml"))
            .args(args);
        Stack::clean_env(&mut cmd);
        cmd.envs(env.iter().map(|(k, v)| (*k, *v)));
        Run(cmd.output().unwrap())
    }

    /// `rehost ARGS` on a pseudo-terminal, as an operator at a shell sees it:
    /// util-linux `script` runs it (`-e`: with its exit code) and copies what
    /// the terminal showed, stdout and stderr together, to its own stdout.
    fn rehost_in_terminal(&self, args: &[&str]) -> Run {
        let config = self.dir.path().join("rehost.yaml");
        let words: Vec<String> = [rehost_bin().display().to_string(), "-c".into()]
            .into_iter()
            .chain([config.display().to_string()])
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        assert!(words.iter().all(|w| !w.contains('\'')), "{words:?}");
        let line = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        Stack::clean_env(&mut cmd);
        Run(cmd.output().unwrap())
    }

    fn clean_env(cmd: &mut Command) {
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
                    "API_TOKEN",
                    "DOCKER_CONFIG",
                ]
                .contains(&k.as_str())
            {
                cmd.env_remove(k);
            }
        }
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

/// `docker inspect -f FORMAT NAME`, trimmed.
fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name]).trim().to_string()
}

/// `docker exec NAME ARGS...` stdout, or panics with its stderr.
fn exec(name: &str, args: &[&str]) -> String {
    let o = Command::new("docker")
        .arg("exec")
        .arg(name)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker exec {name} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const FEATURES_DOCKERFILE: &str = "\
FROM rehost-test/busybox:latest AS build
RUN echo built-in-the-build-stage > /stage.txt
FROM rehost-test/busybox:latest AS runtime
COPY --from=build /stage.txt /stage.txt
CMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo app started; while true; do sleep 1; done\"]
FROM rehost-test/busybox:latest AS debug
RUN echo the-debug-stage > /stage.txt
";

const FEATURES_COMPOSE: &str = "\
secrets:
  db_password:
    file: ./secrets/db_password.txt
  api_token:
    environment: API_TOKEN
services:
  app:
    build:
      context: ./app
      target: runtime
    container_name: ${APP_NAME}
    expose: ['8080']
    links: ['db:database']
    cap_drop: [ALL]
    read_only: true
    tmpfs: [/scratch]
    deploy:
      resources:
        limits: {memory: 64m}
    stop_grace_period: 3s
    secrets: [db_password]
    depends_on: [db]
    healthcheck:
      test: [CMD, test, -s, /run/secrets/db_password]
      interval: 2s
      start_period: 20s
      start_interval: 1s
      retries: 10
  db:
    image: rehost-test/busybox:latest
    command: sh -c \"trap 'exit 0' TERM; while true; do sleep 1; done\"
    secrets:
      - source: api_token
        target: token
        mode: 0400
  debug:
    image: rehost-test/busybox:latest
    profiles: [debug]
    command: sh -c \"trap 'exit 0' TERM; while true; do sleep 1; done\"
";

/// The keys real compose files use, applied on the real Engine: secrets
/// (file and variable), a multi-stage build's target, container_name,
/// expose, links, cap_drop, read_only + tmpfs, a memory limit, the
/// healthcheck's start_interval, stop_grace_period and a profile.
#[test]
fn compose_features_are_applied_and_secrets_stay_secret() {
    if !docker_ready() {
        return;
    }
    let file_secret = "file-secret-8d1f0c";
    let env_secret = "env-secret-77ab31";
    let app_name = format!("rehost-e2e-features-app-{}", std::process::id());
    let mut stack = Stack::with_files(
        "features",
        &[
            ("docker-compose.yml", FEATURES_COMPOSE),
            ("app/Dockerfile", FEATURES_DOCKERFILE),
            ("secrets/db_password.txt", file_secret),
        ],
        &[("APP_NAME", &app_name), ("API_TOKEN", env_secret)],
    );
    let p = stack.project.clone();
    let db = format!("{p}-db-1");
    // Debug logs too: the secrets must not be in any of rehost's output.
    let debug_log = [("RUST_LOG", Path::new("debug"))];

    let run = stack.rehost_with(&["up"], &debug_log);
    run.expect(0);
    let out = run.all();
    assert!(
        !out.contains(file_secret) && !out.contains(env_secret),
        "{out}"
    );
    let first = stack.containers();
    let mut want = vec![&app_name, &db];
    want.sort();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        want,
        "the profile's service is not started: {out}"
    );

    // Healthy, with every setting applied.
    assert_eq!(inspect(&app_name, "{{.State.Health.Status}}"), "healthy");
    assert_eq!(
        exec(&app_name, &["cat", "/stage.txt"]).trim(),
        "built-in-the-build-stage"
    );
    assert!(inspect(&app_name, "{{json .Config.ExposedPorts}}").contains("8080/tcp"));
    assert_eq!(
        inspect(
            &app_name,
            &format!("{{{{json (index .NetworkSettings.Networks \"{p}_default\").Links}}}}")
        ),
        format!("[\"{db}:database\"]")
    );
    assert_eq!(
        inspect(&app_name, "{{json .HostConfig.CapDrop}}"),
        "[\"ALL\"]"
    );
    assert_eq!(inspect(&app_name, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert!(inspect(&app_name, "{{json .HostConfig.Tmpfs}}").contains("/scratch"));
    exec(&app_name, &["touch", "/scratch/ok"]);
    assert_eq!(
        inspect(&app_name, "{{.HostConfig.Memory}}"),
        (64u64 << 20).to_string()
    );
    assert_eq!(inspect(&app_name, "{{.Config.StopTimeout}}"), "3");
    assert_eq!(
        inspect(&app_name, "{{json .Config.Healthcheck.Interval}}"),
        "2000000000"
    );
    // `StartInterval` exists from Engine API 1.44 on; an older Engine drops it.
    let api: f64 = docker(&["version", "--format", "{{.Server.APIVersion}}"])
        .trim()
        .parse()
        .unwrap();
    if api >= 1.44 {
        assert_eq!(
            inspect(&app_name, "{{json .Config.Healthcheck.StartInterval}}"),
            "1000000000"
        );
    }

    // The secrets are readable inside, and nowhere else.
    assert_eq!(
        exec(&app_name, &["cat", "/run/secrets/db_password"]),
        file_secret
    );
    assert_eq!(exec(&db, &["cat", "/run/secrets/token"]), env_secret);
    assert_eq!(
        exec(&db, &["stat", "-c", "%a", "/run/secrets/token"]).trim(),
        "400"
    );
    for name in [&app_name, &db] {
        let labels = inspect(name, "{{json .Config.Labels}}");
        let env = inspect(name, "{{json .Config.Env}}");
        let logs = Command::new("docker")
            .args(["logs", name])
            .output()
            .unwrap();
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        for text in [labels, env, logs] {
            assert!(
                !text.contains(file_secret) && !text.contains(env_secret),
                "{name}: {text}"
            );
        }
    }
    let history = docker(&["history", "--no-trunc", &inspect(&app_name, "{{.Image}}")]);
    assert!(!history.contains(file_secret), "{history}");

    // `up` again recreates nothing.
    let run = stack.rehost(&["up"]);
    run.expect(0);
    assert!(run.stdout().contains("unchanged"), "{}", run.all());
    assert_eq!(stack.containers(), first);

    // A new content of the file recreates its user only, and so does a new
    // value of the variable.
    fs::write(
        stack.dir.path().join("stack/secrets/db_password.txt"),
        "rotated-1",
    )
    .unwrap();
    let run = stack.rehost_with(&["up"], &debug_log);
    run.expect(0);
    assert!(!run.all().contains("rotated-1"), "{}", run.all());
    let after = stack.containers();
    assert_ne!(after[&app_name], first[&app_name], "{}", run.all());
    assert_eq!(after[&db], first[&db], "{}", run.all());
    assert_eq!(
        exec(&app_name, &["cat", "/run/secrets/db_password"]),
        "rotated-1"
    );
    stack.set("API_TOKEN", "rotated-2");
    let run = stack.rehost(&["up"]);
    run.expect(0);
    let again = stack.containers();
    assert_ne!(again[&db], after[&db], "{}", run.all());
    assert_eq!(again[&app_name], after[&app_name], "{}", run.all());
    assert_eq!(exec(&db, &["cat", "/run/secrets/token"]), "rotated-2");

    // The profile enabled: its service joins, the others stay.
    stack.configure("  profiles: [debug]\n");
    let run = stack.rehost(&["up"]);
    run.expect(0);
    let with_debug = stack.containers();
    assert!(
        with_debug.contains_key(&format!("{p}-debug-1")),
        "{}",
        run.all()
    );
    assert_eq!(with_debug[&app_name], again[&app_name]);
    assert_eq!(with_debug[&db], again[&db]);

    let run = stack.rehost(&["down"]);
    run.expect(0);
    assert!(stack.containers().is_empty());
}

/// A distribution registry (Debian's `docker-registry`) on a free loopback
/// port, with htpasswd (bcrypt) auth when asked; stopped on drop. The
/// Engine treats 127.0.0.0/8 as an insecure-allowed registry.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `None` (skip) when the registry or htpasswd is missing, except under
    /// `CI=true`, where that fails: scripts/install-tools.sh installs both.
    fn start(user: Option<(&str, &str)>) -> Option<Registry> {
        let have = |tool: &str| Path::new(tool).exists();
        if !have("/usr/bin/docker-registry") || (user.is_some() && !have("/usr/bin/htpasswd")) {
            let why =
                "docker-registry or htpasswd is missing; scripts/install-tools.sh installs them";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but {why}");
            }
            eprintln!("skipping: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((name, password)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", name, password])
                .output()
                .unwrap();
            assert!(out.status.success());
            fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rehost-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while rehost_tests::http_get(port, "/v2/").is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry never answered on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(registry)
    }

    /// Pushes the busybox test image as `NAME:1` (with the Docker CLI's
    /// config in `config` when given) and removes that tag locally: the
    /// reference then exists only in the registry.
    fn push(&self, name: &str, config: Option<&Path>) -> String {
        let reference = format!("127.0.0.1:{}/{name}:1", self.port);
        let cli = |args: &[&str]| {
            let mut c = Command::new("docker");
            if let Some(dir) = config {
                c.arg("--config").arg(dir);
            }
            let out = c.args(args).output().unwrap();
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        cli(&["tag", "rehost-test/busybox:latest", &reference]);
        cli(&["push", &reference]);
        cli(&["rmi", &reference]);
        reference
    }
}

impl Registry {
    /// Pushes an image with a layer of its own (the busybox test image plus
    /// a file no other image has) as `NAME:1`, then removes it locally: a
    /// pull must download that layer, so the Engine reports its progress.
    fn push_fresh(&self, name: &str) -> String {
        let reference = format!("127.0.0.1:{}/{name}:1", self.port);
        let ctx = tempfile::tempdir().unwrap();
        fs::write(
            ctx.path().join("Dockerfile"),
            "FROM rehost-test/busybox:latest\nCOPY unique /unique\n",
        )
        .unwrap();
        fs::write(
            ctx.path().join("unique"),
            format!("{name} {:?}\n", std::time::SystemTime::now()),
        )
        .unwrap();
        let cli = |args: &[&str]| {
            let out = Command::new("docker")
                .env("DOCKER_BUILDKIT", "0")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        cli(&[
            "build",
            "-q",
            "-t",
            &reference,
            &ctx.path().display().to_string(),
        ]);
        cli(&["push", &reference]);
        cli(&["rmi", &reference]);
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PULL_COMPOSE: &str = "\
services:
  app:
    image: ${IMAGE}
    pull_policy: ${POLICY:-missing}
    command: sh -c \"trap 'exit 0' TERM; while true; do sleep 1; done\"
";

/// An image that is not present is pulled from the registry; a name the
/// registry does not have fails with the registry's message (exit 1);
/// `pull_policy: never` refuses to pull.
#[test]
fn missing_images_are_pulled_from_a_registry() {
    if !docker_ready() {
        return;
    }
    let Some(registry) = Registry::start(None) else {
        return;
    };
    let reference = registry.push_fresh(&format!("rehost-e2e/pull-{}", std::process::id()));
    let mut stack = Stack::with_files(
        "pull",
        &[("docker-compose.yml", PULL_COMPOSE)],
        &[("IMAGE", &reference), ("POLICY", "never")],
    );
    let run = stack.rehost(&["up"]);
    run.expect(1);
    assert!(
        run.stderr().contains("`pull_policy: never`"),
        "{}",
        run.all()
    );

    // On a terminal, the pull draws a line per layer (`<layer id>: <status>`,
    // each redrawn in place after an erase-line), as `docker pull` does.
    stack.set("POLICY", "missing");
    let run = stack.rehost_in_terminal(&["up"]);
    run.expect(0);
    let shown = run.stdout();
    assert!(shown.contains(&format!("pulled  {reference}")), "{shown}");
    let layer_lines = shown
        .split("\x1b[2K")
        .skip(1)
        .filter(|l| {
            l.split_once(": ")
                .is_some_and(|(id, _)| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .count();
    assert!(layer_lines > 0, "no per-layer progress line: {shown:?}");
    assert_eq!(stack.containers().len(), 1);
    let run = stack.rehost(&["up"]);
    run.expect(0);
    assert!(run.stdout().contains("unchanged"), "{}", run.all());

    let missing = format!("127.0.0.1:{}/rehost-e2e/no-such-image:1", registry.port);
    stack.set("IMAGE", &missing);
    let run = stack.rehost(&["up"]);
    run.expect(1);
    assert!(
        run.stderr().contains(&format!("pull image {missing}"))
            && run.stderr().contains("manifest unknown"),
        "{}",
        run.all()
    );
    // Not a terminal: no progress drawing in what is captured.
    assert!(!run.all().contains('\x1b'), "{}", run.all());
    let _ = Command::new("docker").args(["rmi", &reference]).output();
}

/// A registry that wants a password: the credentials of a Docker
/// `config.json` (`DOCKER_CONFIG`) are used; without them the pull fails
/// with the registry's refusal, and the password is never printed.
#[test]
fn a_registry_with_auth_takes_the_credentials_of_config_json() {
    if !docker_ready() {
        return;
    }
    let password = "pull-pass-5e1d";
    let Some(registry) = Registry::start(Some(("ci", password))) else {
        return;
    };
    let config = tempfile::tempdir().unwrap();
    let mut login = Command::new("docker")
        .arg("--config")
        .arg(config.path())
        .args(["login", "-u", "ci", "--password-stdin"])
        .arg(format!("127.0.0.1:{}", registry.port))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut login.stdin.take().unwrap(), password.as_bytes()).unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = registry.push(
        &format!("rehost-e2e/auth-{}", std::process::id()),
        Some(config.path()),
    );
    let stack = Stack::with_files(
        "pullauth",
        &[("docker-compose.yml", PULL_COMPOSE)],
        &[("IMAGE", &reference)],
    );

    let empty = tempfile::tempdir().unwrap();
    let run = stack.rehost_with(&["up"], &[("DOCKER_CONFIG", empty.path())]);
    run.expect(1);
    let err = run.stderr();
    assert!(
        err.contains(&format!("pull image {reference}")),
        "{}",
        run.all()
    );
    assert!(
        err.contains("no basic auth credentials") || err.contains("unauthorized"),
        "{}",
        run.all()
    );
    assert!(stack.containers().is_empty());

    let run = stack.rehost_with(
        &["up"],
        &[
            ("DOCKER_CONFIG", config.path()),
            ("RUST_LOG", Path::new("debug")),
        ],
    );
    run.expect(0);
    assert!(
        run.stdout().contains(&format!("pulled  {reference}")),
        "{}",
        run.all()
    );
    assert!(!run.all().contains(password), "the password was printed");
    assert_eq!(stack.containers().len(), 1);
    let _ = Command::new("docker").args(["rmi", &reference]).output();
}
