//! End-to-end test helpers: a `TestEnv` with its own directories, a rehost
//! configuration pointing at the Garage started by `scripts/garage.sh`, and a
//! way to run the real `rehost` binary and check its output and exit code.

// Test support: setup failures should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon;
pub mod deploy;
pub mod faultproxy;

pub use daemon::{wait, Daemon};

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `rehost` binary built next to the test executable (`make test` builds it).
pub fn rehost_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("rehost");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p rehost`; `make test` does)",
        bin.display()
    );
    bin
}

/// A loopback TCP port that was free a moment ago (for servers a test starts),
/// never one this process handed out before: a server started with the
/// previous one may not have bound it yet, and the kernel can offer it again.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        if given.insert(port) {
            return port;
        }
    }
}

/// `GET path` over HTTP/1.0 on 127.0.0.1: the status and the body, or why
/// nothing usable came back (refused, no answer within 10 s, not HTTP).
pub fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
    http_get_within(port, path, std::time::Duration::from_secs(10))
}

fn http_get_within(
    port: u16,
    path: &str,
    timeout: std::time::Duration,
) -> Result<(u16, Vec<u8>), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let not_http = || format!("not an HTTP response: {}", String::from_utf8_lossy(&buf));
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(not_http)?;
    let status = std::str::from_utf8(&buf[..head_end])
        .ok()
        .filter(|h| h.starts_with("HTTP/1."))
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_http)?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

/// The body of a 200 answer to `GET path` (within 5 s), or the error.
pub fn http_ok(port: u16, path: &str) -> Result<String, String> {
    match http_get_within(port, path, std::time::Duration::from_secs(5))? {
        (200, body) => Ok(String::from_utf8_lossy(&body).into_owned()),
        (status, body) => Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
    }
}

/// Garage settings from `scripts/garage.sh start`; `None` (skip, with a
/// printed reason) outside CI, a panic under `CI=true`.
pub fn garage() -> Option<Garage> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (
        var("REHOST_TEST_S3_ENDPOINT"),
        var("REHOST_TEST_S3_BUCKET"),
        var("REHOST_TEST_S3_CREDENTIALS_FILE"),
        var("REHOST_TEST_S3_SECRET_ACCESS_KEY"),
    ) {
        (Some(endpoint), Some(bucket), Some(credentials), Some(secret)) => Some(Garage {
            endpoint,
            bucket,
            credentials: credentials.into(),
            secret,
        }),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "CI=true but no Garage: REHOST_TEST_S3_* is not set. Run `make test`, \
             which starts Garage via scripts/garage.sh."
        ),
        _ => {
            eprintln!("skipping: no Garage (REHOST_TEST_S3_* not set; run `make test`)");
            None
        }
    }
}

/// The 3-node Garage cluster of `scripts/garage-cluster.sh start DIR`, DIR
/// from `REHOST_TEST_CLUSTER_DIR` (scripts/test.sh sets it); `None` (skip,
/// with a printed reason) outside CI, a panic under `CI=true`.
pub fn cluster() -> Option<Cluster> {
    let dir = std::env::var("REHOST_TEST_CLUSTER_DIR")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let text = dir.as_ref().map(|d| fs::read_to_string(d.join("env")));
    match (dir, text) {
        (Some(dir), Some(Ok(text))) => {
            // DIR/env: `export NAME=VALUE` lines, VALUE quoted by bash's
            // `printf %q` (a backslash before each special character).
            let vars: BTreeMap<&str, String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
                .map(|(k, v)| {
                    let mut out = String::new();
                    let mut chars = v.chars();
                    while let Some(c) = chars.next() {
                        out.push(if c == '\\' {
                            chars.next().unwrap_or(c)
                        } else {
                            c
                        });
                    }
                    (k, out)
                })
                .collect();
            let var = |n: &str| {
                vars.get(n)
                    .cloned()
                    .unwrap_or_else(|| panic!("{}/env has no {n}", dir.display()))
            };
            Some(Cluster {
                garage: Garage {
                    endpoint: var("REHOST_TEST_S3_ENDPOINT"),
                    bucket: var("REHOST_TEST_S3_BUCKET"),
                    credentials: var("REHOST_TEST_S3_CREDENTIALS_FILE").into(),
                    secret: var("REHOST_TEST_S3_SECRET_ACCESS_KEY"),
                },
                dir,
            })
        }
        (dir, text) if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "CI=true but no Garage cluster (REHOST_TEST_CLUSTER_DIR={dir:?}, its env: {:?}). \
             Run `make test`, which starts one via scripts/garage-cluster.sh.",
            text.map(|t| t.map(|_| "readable"))
        ),
        _ => {
            eprintln!(
                "skipping: no Garage cluster (REHOST_TEST_CLUSTER_DIR not set or without env; run `make test`)"
            );
            None
        }
    }
}

/// A 3-node cluster: its S3 endpoint (node 1) as a [`Garage`], and control
/// of its nodes through scripts/garage-cluster.sh (every wait there bounded).
pub struct Cluster {
    pub garage: Garage,
    pub dir: PathBuf,
}

impl Cluster {
    fn script(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/garage-cluster.sh");
        output_ok(Command::new(script).args(args).arg(&self.dir))
    }

    /// SIGKILLs node `n` (1-3); returns once it is gone. The signal is sent
    /// from here, at once, so that a kill "in the middle" of a command lands
    /// when asked; the script then waits for the process to be gone.
    pub fn kill(&self, n: u8) {
        let node = self.dir.join(format!("node{n}"));
        let pid = fs::read_to_string(node.join("garage.pid")).unwrap_or_default();
        let pid = pid.trim();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let conf = node.join("garage.toml");
        if !pid.is_empty() && String::from_utf8_lossy(&cmdline).contains(conf.to_str().unwrap()) {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        self.script(&["kill", &n.to_string()]);
    }

    /// Starts node `n` again with its data; returns once the running nodes
    /// see it connected.
    pub fn start(&self, n: u8) {
        self.script(&["start-node", &n.to_string()]);
    }
}

pub struct Garage {
    pub endpoint: String,
    pub bucket: String,
    pub credentials: PathBuf,
    /// Only used to check that it never appears in output.
    pub secret: String,
}

impl Garage {
    /// rehost's own client for `prefix` of this Garage's bucket.
    pub fn store(&self, prefix: &str) -> std::sync::Arc<dyn rehost_jobs::store::ObjectStore> {
        use rehost_jobs::store::{CredentialSource, S3Settings, StoreLocation};
        rehost_jobs::store::open(&StoreLocation::S3(S3Settings {
            bucket: self.bucket.clone(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint.clone()),
            region: "garage".into(),
            path_style: true,
            credentials: CredentialSource::File {
                path: self.credentials.clone(),
                profile: "default".into(),
            },
        }))
        .unwrap()
    }
}

/// A scratch host: `root/` holds state paths, `metrics/` the textfile
/// directory, `rehost.yaml` the configuration.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub prefix: String,
    /// `host:` of the configuration [`TestEnv::write_config`] writes.
    pub host: String,
}

impl TestEnv {
    /// A configuration with `state_yaml` (the indented body of `state:`)
    /// against a fresh prefix of the Garage bucket.
    pub fn new(garage: &Garage, state_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("e2e-{}", unique());
        let config = dir.path().join("rehost.yaml");
        let env = TestEnv {
            dir,
            config,
            prefix,
            host: "e2e-host".into(),
        };
        env.write_config(garage, &garage.endpoint, state_yaml);
        env
    }

    pub fn write_config(&self, garage: &Garage, endpoint: &str, state_yaml: &str) {
        let text = format!(
            "host: {}\nstate_dir: {}\nstorage:\n  url: s3://{}/{}\n  endpoint: {endpoint}\n  region: garage\n  \
             path_style: true\n  credentials_file: {}\nstate:\n{state_yaml}\nmetrics:\n  textfile_dir: {}\n",
            self.host,
            self.state_dir().display(),
            garage.bucket,
            self.prefix,
            garage.credentials.display(),
            self.metrics().display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn metrics(&self) -> PathBuf {
        self.dir.path().join("metrics")
    }

    /// `state_dir:`: this machine's records (its generation of the host).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("machine")
    }

    /// The ids of the complete backups of state entry `name`, oldest first
    /// (`backups list NAME --json`).
    pub fn backup_ids(&self, name: &str) -> Vec<String> {
        let out = self.rehost(&["backups", "list", name, "--json"]);
        out.expect(0);
        let doc: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
        doc["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Runs `rehost -c <config> ARGS` with a clean environment: stray AWS_*
    /// variables of the machine must not influence the tests.
    pub fn rehost(&self, args: &[&str]) -> Run {
        self.rehost_env(args, &[])
    }

    /// [`TestEnv::rehost`] with extra environment variables.
    pub fn rehost_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().unwrap())
    }

    /// The command [`TestEnv::rehost`] runs, for a test that starts it
    /// itself (to act while it runs).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(rehost_bin());
        cmd.arg("-c").arg(&self.config).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k == "REHOST_CONFIG" || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd
    }
}

impl TestEnv {
    /// Sets the config's `storage.encryption` (replacing an earlier one).
    pub fn set_encryption(&self, recipient: &str, identity: Option<&Path>) {
        let text = fs::read_to_string(&self.config).unwrap();
        let base = match text.find("  encryption:\n") {
            Some(at) => {
                let end = text.find("state:\n").unwrap();
                format!("{}{}", &text[..at], &text[end..])
            }
            None => text,
        };
        let mut section = format!("  encryption:\n    recipients: [\"{recipient}\"]\n");
        if let Some(p) = identity {
            section.push_str(&format!("    identity_file: {}\n", p.display()));
        }
        fs::write(
            &self.config,
            base.replacen("state:\n", &format!("{section}state:\n"), 1),
        )
        .unwrap();
    }
}

/// The reference age CLI, Debian's `age` (scripts/install-tools.sh).
pub mod age {
    use std::path::Path;
    use std::process::Command;

    /// Whether `age-keygen` runs; under `CI=true` its absence is a failure.
    pub fn available() -> bool {
        let ok = Command::new("age-keygen")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but age-keygen is missing; scripts/install-tools.sh installs Debian's `age`");
            }
            eprintln!("skipping: the age CLI is not installed (scripts/install-tools.sh)");
        }
        ok
    }

    /// A key made by `age-keygen -o PATH`: (public key, secret key line).
    pub fn keygen(path: &Path) -> (String, String) {
        super::output_ok(Command::new("age-keygen").arg("-o").arg(path));
        let public = super::output_ok(Command::new("age-keygen").arg("-y").arg(path))
            .trim()
            .to_string();
        let secret = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap()
            .to_string();
        (public, secret)
    }
}

/// Runs `cmd` and returns its stdout; panics with the command and its
/// stderr unless it succeeded.
#[track_caller]
pub fn output_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished run with helpers for assertions.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The value of `metric{job="JOB",target="TARGET"}` in a metrics file.
pub fn metric(file: &Path, metric: &str, job: &str, target: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    let prefix = format!("{metric}{{job=\"{job}\",target=\"{target}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

pub fn unique() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:x}", std::process::id())
}

/// `promtool check metrics` on a file. Under CI promtool must exist
/// (`scripts/install-tools.sh` installs it).
pub fn promtool_check(file: &Path) -> Option<String> {
    let text = std::fs::read(file).unwrap();
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but promtool cannot run ({e}); scripts/install-tools.sh installs it")
        }
        Err(e) => {
            eprintln!("skipping promtool check: {e}");
            return None;
        }
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejects {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An s3cmd with an explicit configuration for this Garage.
pub struct S3cmd {
    config: PathBuf,
}

impl S3cmd {
    pub fn new(g: &Garage, dir: &Path) -> Option<Self> {
        if Command::new("s3cmd").arg("--version").output().is_err() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but s3cmd is missing; scripts/install-tools.sh installs it");
            }
            eprintln!("skipping: s3cmd is not installed");
            return None;
        }
        let host = g
            .endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        let access = std::env::var("REHOST_TEST_S3_ACCESS_KEY_ID").unwrap();
        let config = dir.join("s3cmd.cfg");
        std::fs::write(
            &config,
            format!(
                "[default]\naccess_key = {access}\nsecret_key = {}\nhost_base = {host}\n\
                 host_bucket = {host}\nuse_https = False\nsignature_v2 = False\n\
                 bucket_location = garage\n",
                g.secret
            ),
        )
        .unwrap();
        Some(S3cmd { config })
    }

    pub fn run(&self, args: &[&str]) {
        let mut cmd = Command::new("s3cmd");
        cmd.arg("-c")
            .arg(&self.config)
            .arg("--no-progress")
            .args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "s3cmd {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Docker Engine for stack tests.
pub mod docker {
    use std::path::Path;
    use std::process::Command;

    /// Whether the Engine answers; under `CI=true` a missing Engine is a
    /// failure, locally a skip with the reason printed.
    pub fn available() -> bool {
        let ok = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but the Docker Engine is not reachable (`docker info` fails)");
            }
            eprintln!("skipping: the Docker Engine is not reachable (`docker info` fails)");
        }
        ok
    }

    /// Builds (or finds) the FROM-scratch test images of
    /// `scripts/test-images.sh`.
    pub fn test_images() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-images.sh");
        let out = Command::new("bash").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every entry under `root` (files with their content, directories and
/// symlinks marked), by relative path: two trees are equal when these are.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if m.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else if m.file_type().is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A small deterministic generator (xorshift64*), so that test data and
/// random kill points are reproducible from a printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` bytes that do not compress.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// `rehost -c CONFIG run --allow-root --grace GRACE` with a clean
/// environment, once it logged that it started.
pub fn run_daemon(env: &TestEnv, grace: &str) -> Daemon {
    let mut cmd = Command::new(rehost_bin());
    cmd.arg("-c")
        .arg(&env.config)
        .args(["run", "--allow-root", "--grace", grace]);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "REHOST_CONFIG" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let d = Daemon::start(cmd);
    assert!(
        d.wait_log(std::time::Duration::from_secs(10), |l| l
            .contains("daemon started")),
        "{}",
        d.log()
    );
    d
}

/// A self-signed server certificate for 127.0.0.1 (its own trust anchor:
/// `SSL_CERT_FILE` for rustls, `LEGO_CA_CERTIFICATES` for Go) from `openssl` (Debian's, from
/// scripts/install-tools.sh); `None` (skip) without it outside CI.
pub fn server_certificate(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // A server's certificate, not a CA's (which rustls refuses to see
        // at the end of a chain), that is its own trust anchor.
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => Some((cert, key)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but `openssl req` fails; scripts/install-tools.sh installs openssl: {out:?}")
        }
        _ => {
            eprintln!("skipping: openssl cannot make a test certificate ({out:?})");
            None
        }
    }
}
