//! `notify:` end to end: the real binary tells an HTTP receiver written here
//! (std threads on loopback, no external tool) about its runs.
//!
//! Checked: every event arrives exactly once with the documented fields and
//! values (success, failure, start), healthchecks.io-style paths, a hanging
//! receiver abandoned at the timeout while the job completes, a receiver
//! answering 500 retried the configured number of times without failing the
//! job, HTTPS with a CA given through `SSL_CERT_FILE` (the trust roots of the
//! S3 client), the daemon's runs (one start and one outcome per run, whatever
//! its retries), and that the URL's token never appears in any output.
//!
//! Storage is `file://` (no Garage needed), or an S3 endpoint where nothing
//! listens for a failing run. Every wait is bounded; time bounds asserted are
//! generous ones that only detect a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rehost_tests::{metric, rehost_bin, server_certificate, wait, Daemon, Run};
use serde_json::Value;

/// In every URL; must never be printed.
const TOKEN: &str = "tok3n-s3cr3t";
/// In the query of some URLs; must never be printed either.
const QUERY_TOKEN: &str = "q7ery-s3cr3t";

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    Status(u16),
    /// Read the request, never answer (until the test ends).
    Hang,
}

#[derive(Clone, Debug)]
struct Request {
    /// The request line's target: path and query.
    target: String,
    content_type: String,
    body: String,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// An HTTP/1.1 receiver on 127.0.0.1: one thread accepts, one per connection
/// reads a request (head and `Content-Length` body), records it and answers.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
    /// Connections being held without an answer right now.
    hanging: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// Wraps an accepted connection (TLS for the HTTPS receiver).
type Wrap = Arc<dyn Fn(TcpStream) -> Option<Box<dyn ReadWrite>> + Send + Sync>;

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        Receiver::start_with(mode, Arc::new(|s| Some(Box::new(s) as Box<dyn ReadWrite>)))
    }

    fn start_with(mode: Mode, wrap: Wrap) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hanging = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, h, st) = (Arc::clone(&seen), Arc::clone(&hanging), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            let started = Instant::now();
            while !st.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(300) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let (s, h, st, wrap) = (
                            Arc::clone(&s),
                            Arc::clone(&h),
                            Arc::clone(&st),
                            Arc::clone(&wrap),
                        );
                        std::thread::spawn(move || serve(socket, mode, wrap, &s, &h, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver {
            port,
            seen,
            hanging,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.target).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    socket: TcpStream,
    mode: Mode,
    wrap: Wrap,
    seen: &Mutex<Vec<Request>>,
    hanging: &AtomicUsize,
    stop: &AtomicBool,
) {
    socket.set_nonblocking(false).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let Some(mut stream) = wrap(socket) else {
        return;
    };
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let request = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        if body.len() >= length {
            break Request {
                target: head.split(' ').nth(1).unwrap_or_default().to_string(),
                content_type: header("content-type"),
                body: body.to_string(),
            };
        }
    };
    seen.lock().unwrap().push(request);
    match mode {
        Mode::Status(status) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.flush();
        }
        Mode::Hang => {
            hanging.fetch_add(1, Ordering::SeqCst);
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(300) {
                std::thread::sleep(Duration::from_millis(20));
            }
            hanging.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A scratch host with a `file://` store, a state entry `acme` (a file with
/// some content), metrics, and the `notify:` section given.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.json"), "{\"certs\": [1, 2, 3]}").unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        Host { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("rehost.yaml")
    }

    /// `storage` is the body of `storage:`; `extra` more top-level sections.
    fn write(&self, storage: &str, extra: &str, notify: &str) {
        let d = self.dir.path().display();
        std::fs::write(
            self.config(),
            format!(
                "host: notify-e2e\nstate_dir: {d}/machine\nstorage:\n{storage}state:\n  acme:\n    path: {d}/acme.json\n{extra}metrics:\n  textfile_dir: {d}/metrics\nnotify:\n{notify}"
            ),
        )
        .unwrap();
    }

    fn write_file_store(&self, extra: &str, notify: &str) {
        let storage = format!("  url: file://{}/store\n", self.dir.path().display());
        self.write(&storage, extra, notify);
    }

    /// S3 storage where nothing listens (port 9 of loopback): every run
    /// that needs the store fails.
    fn write_unreachable_store(&self, notify: &str) {
        let creds = self.path("credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = GK0000\naws_secret_access_key = notasecret\n",
        )
        .unwrap();
        let storage = format!(
            "  url: s3://bucket/hosts\n  endpoint: http://127.0.0.1:9\n  region: garage\n  path_style: true\n  credentials_file: {}\n",
            creds.display()
        );
        self.write(&storage, "", notify);
    }

    /// `rehost -vv -c CONFIG ARGS` in a clean environment.
    fn rehost(&self, args: &[&str]) -> Run {
        self.rehost_env(args, &[])
    }

    fn rehost_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut cmd = Command::new(rehost_bin());
        clean_env(&mut cmd);
        cmd.arg("-vv").arg("-c").arg(self.config()).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().unwrap())
    }

    fn metric(&self, job: &str, target: &str, name: &str) -> Option<f64> {
        metric(
            &self.path(&format!("metrics/rehost-{job}-{target}.prom")),
            name,
            job,
            target,
        )
    }
}

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_")
            || k.starts_with("SSL_CERT")
            || k == "REHOST_CONFIG"
            || k == "RUST_LOG"
        {
            cmd.env_remove(k);
        }
    }
}

/// The token-bearing URL of `receiver` (path and query).
fn secret_url(receiver: &Receiver) -> String {
    receiver.url(&format!("/hook/{TOKEN}?token={QUERY_TOKEN}"))
}

#[track_caller]
fn assert_no_token(output: &str) {
    assert!(
        !output.contains(TOKEN) && !output.contains(QUERY_TOKEN),
        "the notification URL's token was printed:\n{output}"
    );
}

/// Checks the fields every webhook document has, and returns it.
#[track_caller]
fn document(request: &Request, status: &str) -> Value {
    assert_eq!(request.content_type, "application/json");
    assert_eq!(request.target, format!("/hook/{TOKEN}?token={QUERY_TOKEN}"));
    let doc = request.json();
    let keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["bytes", "duration", "error", "host", "job", "schema", "status", "target", "time"],
        "{doc}"
    );
    assert_eq!(doc["schema"], 1, "{doc}");
    assert_eq!(doc["host"], "notify-e2e", "{doc}");
    assert_eq!(doc["status"], status, "{doc}");
    let time = doc["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "time {time:?} is not RFC 3339 UTC"
    );
    assert!(doc["duration"].as_f64().unwrap() >= 0.0, "{doc}");
    assert!(doc["bytes"].is_u64(), "{doc}");
    doc
}

#[test]
fn a_backup_sends_start_and_success_once_with_every_field() {
    let rx = Receiver::start(Mode::Status(200));
    let host = Host::new();
    host.write_file_store(
        "",
        &format!(
            "  - url: \"{}\"\n    name: hook\n    on: [start, success, failure]\n",
            secret_url(&rx)
        ),
    );
    let run = host.rehost(&["backup", "acme"]);
    run.expect(0);
    assert!(
        run.stdout().contains("acme: uploaded backup"),
        "{}",
        run.stdout()
    );
    assert_no_token(&run.all());

    // The command waited for its deliveries: both are there, once each.
    let got = rx.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    let start = document(&got[0], "start");
    assert_eq!(
        (&start["job"], &start["target"]),
        (&"backup".into(), &"acme".into())
    );
    assert_eq!(start["duration"], 0.0);
    assert_eq!(start["bytes"], 0);
    assert!(start["error"].is_null());

    let success = document(&got[1], "success");
    assert_eq!(
        (&success["job"], &success["target"]),
        (&"backup".into(), &"acme".into())
    );
    assert!(success["error"].is_null());
    // The same figures as the job's own metrics.
    let bytes = host
        .metric("backup", "acme", "rehost_job_last_bytes")
        .unwrap();
    assert!(bytes > 0.0);
    assert_eq!(success["bytes"].as_f64(), Some(bytes));
    let duration = host
        .metric("backup", "acme", "rehost_job_last_duration_seconds")
        .unwrap();
    // `time`: when the run began (start) and ended (success), to the second.
    let unix = |doc: &Value| {
        chrono::DateTime::parse_from_rfc3339(doc["time"].as_str().unwrap())
            .unwrap()
            .timestamp() as f64
    };
    let ended = host
        .metric(
            "backup",
            "acme",
            "rehost_job_last_success_timestamp_seconds",
        )
        .unwrap();
    assert_eq!(unix(&success), ended.floor(), "{success}");
    let began = host
        .metric(
            "backup",
            "acme",
            "rehost_job_last_attempt_timestamp_seconds",
        )
        .unwrap();
    assert!(
        (unix(&start) - began.floor()).abs() <= 1.0,
        "{start} vs {began}"
    );
    assert!(
        (success["duration"].as_f64().unwrap() - duration).abs() < 0.002,
        "{success} vs {duration}"
    );
    // The deliveries are recorded like a job's runs.
    assert_eq!(
        host.metric("notify", "hook", "rehost_job_last_status"),
        Some(1.0)
    );
    assert_eq!(
        host.metric("notify", "hook", "rehost_job_failures_total"),
        Some(0.0)
    );

    // `--dry-run` sends nothing.
    host.rehost(&["--dry-run", "backup", "acme"]).expect(0);
    assert_eq!(rx.requests().len(), 2);
}

#[test]
fn a_failed_backup_sends_start_and_failure_with_its_error() {
    let rx = Receiver::start(Mode::Status(204));
    let host = Host::new();
    host.write_unreachable_store(&format!(
        "  - url: \"{}\"\n    on: [start, failure]\n    jobs: [\"backup:acme\"]\n",
        secret_url(&rx)
    ));
    let run = host.rehost(&["backup", "acme"]);
    run.expect(3);
    assert_no_token(&run.all());
    let got = rx.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    document(&got[0], "start");
    let failure = document(&got[1], "failure");
    assert_eq!(
        (&failure["job"], &failure["target"]),
        (&"backup".into(), &"acme".into())
    );
    assert_eq!(failure["bytes"], 0);
    let error = failure["error"].as_str().unwrap();
    assert!(!error.is_empty());
    // The error the command printed, without its `backup acme: ` prefix.
    assert!(
        run.stderr()
            .contains(&format!("rehost: backup acme: {error}")),
        "error {error:?} not in:\n{}",
        run.stderr()
    );

    // `jobs: ["backup:acme"]` leaves a restore untold.
    host.rehost(&["restore", "acme", "--force"]).expect(3);
    assert_eq!(rx.requests().len(), 2);
}

#[test]
fn healthchecks_pings_start_then_the_url_or_fail() {
    let rx = Receiver::start(Mode::Status(200));
    let host = Host::new();
    let notify = format!(
        "  - url: \"{}\"\n    type: healthchecks\n    on: [start, success, failure]\n    jobs: [backup]\n",
        rx.url(&format!("/ping/{TOKEN}"))
    );
    host.write_file_store("", &notify);
    let run = host.rehost(&["backup"]);
    run.expect(0);
    assert_no_token(&run.all());
    let ping = format!("/ping/{TOKEN}");
    assert_eq!(rx.targets(), [format!("{ping}/start"), ping.clone()]);
    let got = rx.requests();
    assert_eq!(got[0].content_type, "text/plain; charset=utf-8");
    assert_eq!(got[0].body, "rehost notify-e2e: backup acme started\n");
    assert!(
        got[1]
            .body
            .starts_with("rehost notify-e2e: backup acme succeeded in "),
        "{}",
        got[1].body
    );

    // Another machine, whose store does not answer.
    let host = Host::new();
    host.write_unreachable_store(&notify);
    let run = host.rehost(&["backup"]);
    run.expect(3);
    assert_no_token(&run.all());
    let targets = rx.targets();
    assert_eq!(
        targets[2..],
        [format!("{ping}/start"), format!("{ping}/fail")]
    );
    let fail = &rx.requests()[3].body;
    assert!(
        fail.starts_with("rehost notify-e2e: backup acme failed after "),
        "{fail}"
    );
}

#[test]
fn a_hanging_receiver_is_abandoned_at_the_timeout_and_the_job_completes() {
    let rx = Receiver::start(Mode::Hang);
    let host = Host::new();
    host.write_file_store(
        "",
        &format!(
            "  - url: \"{}\"\n    on: [start, success]\n    timeout: 1s\n    retries: 0\n",
            secret_url(&rx)
        ),
    );
    let clock = Instant::now();
    let run = host.rehost(&["backup", "acme"]);
    let took = clock.elapsed();
    println!("backup with a hanging receiver: {took:?}");
    run.expect(0);
    assert!(
        run.stdout().contains("acme: uploaded backup"),
        "{}",
        run.stdout()
    );
    assert_no_token(&run.all());
    // Both requests arrived and the receiver still holds them: the command
    // ended without their answers.
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(rx.hanging.load(Ordering::SeqCst), 2);
    assert_eq!(
        run.stderr().matches("no answer within 1s").count(),
        2,
        "{}",
        run.stderr()
    );
    // Two bounded deliveries of 1 s each; the bound only detects a hang.
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(
        host.metric("notify", "0", "rehost_job_failures_total"),
        Some(2.0)
    );
}

#[test]
fn a_receiver_answering_500_is_retried_as_configured_and_the_job_succeeds() {
    let rx = Receiver::start(Mode::Status(500));
    let host = Host::new();
    host.write_file_store(
        "",
        &format!(
            "  - url: \"{}\"\n    name: flaky\n    on: [success]\n    retries: 2\n",
            secret_url(&rx)
        ),
    );
    let run = host.rehost(&["backup", "acme"]);
    run.expect(0);
    assert_no_token(&run.all());
    let got = rx.requests();
    assert_eq!(got.len(), 3, "1 + 2 retries: {got:?}");
    for request in &got {
        document(request, "success");
    }
    assert!(
        run.stderr().contains("HTTP 500 (after 3 attempts)"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        host.metric("notify", "flaky", "rehost_job_last_status"),
        Some(0.0)
    );
    assert_eq!(
        host.metric("notify", "flaky", "rehost_job_failures_total"),
        Some(1.0)
    );
    assert_eq!(
        host.metric("backup", "acme", "rehost_job_last_status"),
        Some(1.0)
    );
}

#[test]
fn the_url_is_never_printed_by_check_nor_by_errors() {
    let rx = Receiver::start(Mode::Status(200));
    let host = Host::new();
    // A target nobody listens on, and one that works.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    host.write_file_store(
        "",
        &format!(
            "  - url: \"http://127.0.0.1:{closed}/hook/{TOKEN}?token={QUERY_TOKEN}\"\n    retries: 0\n  - url: \"{}\"\n",
            secret_url(&rx)
        ),
    );
    let check = host.rehost(&["check"]);
    check.expect(0);
    assert_no_token(&check.all());
    assert!(
        check.stdout().contains(&format!(
            "notify 0: webhook http://127.0.0.1:{closed} on success, failure of every job"
        )),
        "{}",
        check.stdout()
    );
    assert!(rx.requests().is_empty(), "check contacted a target");

    let run = host.rehost(&["backup", "acme"]);
    run.expect(0);
    assert_no_token(&run.all());
    assert!(
        run.stderr().contains(&format!("http://127.0.0.1:{closed}"))
            && run.stderr().contains("cannot connect"),
        "{}",
        run.stderr()
    );
    assert_eq!(rx.requests().len(), 1);

    // A bad URL in the configuration: exit 2, with its position, not its text.
    host.write_file_store(
        "",
        &format!("  - url: \"htps://hc-ping.com/{TOKEN}?token={QUERY_TOKEN}\"\n"),
    );
    let run = host.rehost(&["check"]);
    run.expect(2);
    assert_no_token(&run.all());
    assert!(
        run.stderr()
            .contains("rehost.yaml:11:5: notify.0.url: expected an http:// or https:// URL"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_token_may_come_from_the_environment() {
    let rx = Receiver::start(Mode::Status(200));
    let host = Host::new();
    host.write_file_store(
        "",
        &format!("  - url: \"{}\"\n", rx.url("/hook/${HOOK_TOKEN}")),
    );
    let unset = host.rehost(&["backup"]);
    unset.expect(2);
    assert!(
        unset
            .stderr()
            .contains("notify.0.url: environment variable HOOK_TOKEN is not set"),
        "{}",
        unset.stderr()
    );
    let run = host.rehost_env(&["backup"], &[("HOOK_TOKEN", Path::new(TOKEN))]);
    run.expect(0);
    assert_no_token(&run.all());
    assert_eq!(rx.targets(), [format!("/hook/{TOKEN}")]);
}

#[test]
fn https_targets_are_checked_against_the_system_roots() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let host = Host::new();
    let Some((cert, key)) = server_certificate(host.dir.path(), "cert") else {
        return;
    };
    let (other, _) = server_certificate(host.dir.path(), "other").unwrap();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let wrap: Wrap = Arc::new(move |socket| {
        let conn = rustls::ServerConnection::new(Arc::clone(&config)).ok()?;
        Some(Box::new(rustls::StreamOwned::new(conn, socket)) as Box<dyn ReadWrite>)
    });
    let rx = Receiver::start_with(Mode::Status(200), wrap);
    let url = format!(
        "https://127.0.0.1:{}/hook/{TOKEN}?token={QUERY_TOKEN}",
        rx.port
    );
    host.write_file_store("", &format!("  - url: \"{url}\"\n    retries: 0\n"));

    // The roots the S3 client trusts: the system's store, here replaced by
    // SSL_CERT_FILE. A certificate none of them signed is refused.
    let run = host.rehost_env(&["backup", "acme"], &[("SSL_CERT_FILE", &other)]);
    run.expect(0);
    assert_no_token(&run.all());
    assert!(
        run.stderr().contains("notification not delivered")
            && run.stderr().contains("TLS: invalid peer certificate"),
        "{}",
        run.stderr()
    );

    std::fs::write(host.path("acme.json"), "changed").unwrap();
    let run = host.rehost_env(&["backup", "acme"], &[("SSL_CERT_FILE", &cert)]);
    run.expect(0);
    assert_no_token(&run.all());
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    document(&got[0], "success");
}

#[test]
fn the_daemon_notifies_each_run_once_whatever_its_retries() {
    let rx = Receiver::start(Mode::Status(200));
    let host = Host::new();
    let d = host.dir.path().display().to_string();
    // acme is backed up at start (succeeds); the pull's source does not
    // exist, so it fails twice (one retry) and is one failed run.
    std::fs::create_dir_all(host.path("www")).unwrap();
    host.write_file_store(
        &format!(
            "pull:\n  site:\n    source: file://{d}/no-such-content\n    dest: {d}/www\n    run_at_start: true\n    retries: 1\n"
        ),
        &format!(
            "  - url: \"{}\"\n    on: [start, success, failure]\n",
            secret_url(&rx)
        ),
    );
    let config = std::fs::read_to_string(host.config()).unwrap();
    std::fs::write(
        host.config(),
        config.replace(
            &format!("    path: {d}/acme.json\n"),
            &format!("    path: {d}/acme.json\n    run_at_start: true\n"),
        ),
    )
    .unwrap();

    let mut cmd = Command::new(rehost_bin());
    clean_env(&mut cmd);
    cmd.arg("-c")
        .arg(host.config())
        .args(["run", "--allow-root", "--grace", "5s"]);
    let mut daemon = Daemon::start(cmd);
    let four = wait(Duration::from_secs(60), || rx.requests().len() >= 4);
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    let log = daemon.log();
    assert!(
        four,
        "fewer than 4 notifications in 60 s: {:?}\n{log}",
        rx.requests()
    );
    assert_eq!(code, 0, "{log}");
    assert_no_token(&log);
    assert!(log.contains("attempt failed, will retry"), "{log}");

    // The daemon has exited: nothing more can arrive.
    let got = rx.requests();
    let mut events: Vec<(String, String, String)> = got
        .iter()
        .map(|r| {
            let doc = document(r, r.json()["status"].as_str().unwrap());
            let s = |k: &str| doc[k].as_str().unwrap().to_string();
            (s("job"), s("target"), s("status"))
        })
        .collect();
    events.sort();
    let e = |j: &str, t: &str, s: &str| (j.to_string(), t.to_string(), s.to_string());
    assert_eq!(
        events,
        [
            e("backup", "acme", "start"),
            e("backup", "acme", "success"),
            e("pull", "site", "failure"),
            e("pull", "site", "start"),
        ],
        "{log}"
    );
    // Start before outcome, for each job.
    for job in ["backup", "pull"] {
        let order: Vec<String> = got
            .iter()
            .map(Request::json)
            .filter(|doc| doc["job"] == job)
            .map(|doc| doc["status"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(order[0], "start", "{job}: {order:?}");
    }
    let pull_failure = got
        .iter()
        .map(Request::json)
        .find(|doc| doc["job"] == "pull" && doc["status"] == "failure")
        .unwrap();
    assert!(!pull_failure["error"].as_str().unwrap().is_empty());
}

#[test]
fn boot_sends_its_own_run_and_each_restore() {
    let rx = Receiver::start(Mode::Status(200));
    let host = Host::new();
    host.write_file_store(
        "",
        &format!(
            "  - url: \"{}\"\n    on: [start, success, failure]\n    jobs: [boot, restore]\n",
            secret_url(&rx)
        ),
    );
    // A first boot: no backup to restore yet, which is a success.
    let run = host.rehost(&["boot", "--no-run"]);
    run.expect(0);
    assert_no_token(&run.all());
    let got: Vec<Value> = rx.requests().iter().map(Request::json).collect();
    let events: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|d| {
            (
                d["job"].as_str().unwrap(),
                d["target"].as_str().unwrap(),
                d["status"].as_str().unwrap(),
            )
        })
        .collect();
    // The boot's start goes out alongside the boot, so it may reach the
    // receiver after the restore's; its outcome comes after everything.
    let mut sorted = events.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            ("boot", "", "start"),
            ("boot", "", "success"),
            ("restore", "acme", "start"),
            ("restore", "acme", "success"),
        ]
    );
    let at = |e: (&str, &str, &str)| events.iter().position(|x| *x == e).unwrap();
    assert!(at(("restore", "acme", "start")) < at(("restore", "acme", "success")));
    assert_eq!(events[3], ("boot", "", "success"));
    for request in rx.requests() {
        document(&request, request.json()["status"].as_str().unwrap());
    }
}
