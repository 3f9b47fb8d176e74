//! Storage faults: backup, restore and pull against Garage through the fault
//! proxy (`tests/faultproxy.rs`). Whatever the fault, a run that exits 0 left
//! correct data; a run that fails says why on stderr, exits 1 or 3, leaves no
//! visible backup without a manifest and no half-written target, and its
//! metrics file records the failure while keeping the last success. The
//! matrix of faults × commands → outcomes (with the retries the proxy saw) is
//! printed in the test output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rehost_tests::faultproxy::{Fault, FaultProxy, Rule};
use rehost_tests::{garage, metric, tree, Garage, Rng, Run, S3cmd, TestEnv};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Backup,
    Restore,
    Pull,
}

impl Cmd {
    fn args(self) -> &'static [&'static str] {
        match self {
            Cmd::Backup => &["backup", "data"],
            Cmd::Restore => &["restore", "data", "--force"],
            Cmd::Pull => &["pull", "site"],
        }
    }
    fn job(self) -> (&'static str, &'static str) {
        match self {
            Cmd::Backup => ("backup", "data"),
            Cmd::Restore => ("restore", "data"),
            Cmd::Pull => ("pull", "site"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Retryable or harmless: the run must succeed.
    Success,
    /// Not recoverable within the run: it must fail cleanly.
    Failure,
    /// The store keeps answering 5xx: it must fail with exit 3 (storage
    /// unavailable), as when it cannot be reached at all.
    Unavailable,
    /// Either, depending on where the fault lands; the invariants still hold.
    Either,
}

struct Case {
    name: &'static str,
    rules: fn() -> Vec<Rule>,
    commands: &'static [Cmd],
    expect: Expect,
}

const ALL: &[Cmd] = &[Cmd::Backup, Cmd::Restore, Cmd::Pull];

/// A scratch host with a state entry `data` (≈12 MiB, so the backup is a
/// multipart upload) and a pull entry `site` reading a shared source prefix.
struct Host {
    env: TestEnv,
    body: String,
    v1: BTreeMap<String, Vec<u8>>,
    v2: BTreeMap<String, Vec<u8>>,
}

impl Host {
    fn new(g: &Garage, source_prefix: &str, seed: u64) -> Self {
        let env = TestEnv::new(g, "  placeholder:\n    path: /tmp/unused\n");
        let root = env.dir.path().display().to_string();
        let body = format!(
            "  data:\n    path: {root}/data\npull:\n  site:\n    source: s3://{}/{source_prefix}/\n    \
             dest: {root}/www/site\n    delete_removed: true\n",
            g.bucket
        );
        env.write_config(g, &g.endpoint, &body);
        let data = env.path("data");
        let mut rng = Rng::new(seed);
        fs::create_dir_all(data.join("small")).unwrap();
        for i in 0..3 {
            fs::write(data.join(format!("big-{i}.bin")), rng.bytes(4 << 20)).unwrap();
        }
        for i in 0..30 {
            fs::write(data.join(format!("small/{i}.txt")), format!("v1 {i}\n")).unwrap();
        }
        let v1 = tree(&data);
        env.rehost(&["backup", "data"]).expect(0);
        env.rehost(&["restore", "data", "--force"]).expect(0);
        env.rehost(&["pull", "site"]).expect(0);
        // The proxied pull must download everything again.
        fs::remove_dir_all(env.path("www/site")).unwrap();
        fs::remove_file(env.path("www/.rehost-pull-site.json")).unwrap();
        fs::write(data.join("big-1.bin"), rng.bytes(4 << 20)).unwrap();
        fs::write(data.join("small/new.txt"), "v2\n").unwrap();
        let v2 = tree(&data);
        Host { env, body, v1, v2 }
    }

    fn point_at(&self, g: &Garage, endpoint: &str) {
        self.env.write_config(g, endpoint, &self.body);
    }

    fn listed_backups(&self) -> usize {
        let run = self.env.rehost(&["backups", "list", "data"]);
        run.expect(0);
        run.stdout()
            .lines()
            .filter(|l| l.starts_with("data "))
            .count()
    }
}

/// Puts a small web site into the bucket under `prefix`; returns its tree.
fn publish_site(g: &Garage, dir: &Path, prefix: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let s3 = S3cmd::new(g, dir)?;
    let site = dir.join("site");
    let mut rng = Rng::new(7);
    for i in 0..24 {
        let p = site.join(format!("d{}/page-{i}.html", i % 4));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, rng.bytes(20_000 + i * 9_000)).unwrap();
    }
    s3.run(&[
        "sync",
        &format!("{}/", site.display()),
        &format!("s3://{}/{prefix}/", g.bucket),
    ]);
    Some(tree(&site))
}

fn last_rehost_line(run: &Run) -> String {
    let stderr = run.stderr();
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("rehost: "))
        .unwrap_or("")
        .to_string();
    // The cause is at the end of the chain; the start repeats the command.
    let chars: Vec<char> = line.chars().collect();
    if chars.len() > 120 {
        format!("…{}", chars[chars.len() - 120..].iter().collect::<String>())
    } else {
        line
    }
}

/// Runs every case; returns the printed matrix.
fn run_matrix(title: &str, cases: &[Case]) -> Option<String> {
    let g = garage()?;
    let scratch = tempfile::tempdir().unwrap();
    let source_prefix = format!(
        "e2e-faults-src-{}-{}",
        std::process::id(),
        title.replace(' ', "-")
    );
    let site = publish_site(&g, scratch.path(), &source_prefix)?;
    let mut matrix = String::new();
    writeln!(
        matrix,
        "\n{title}\n{:<34} {:<8} {:<9} {:>5} {:>7} {:>7} {:>6}  message",
        "fault", "command", "outcome", "exit", "reqs", "faults", "retry"
    )
    .unwrap();
    for (n, case) in cases.iter().enumerate() {
        let host = Host::new(&g, &source_prefix, 100 + n as u64);
        let mut backup_ok = false;
        for &cmd in case.commands {
            let (job, target) = cmd.job();
            let prom = host
                .env
                .metrics()
                .join(format!("rehost-{job}-{target}.prom"));
            let success_before = metric(
                &prom,
                "rehost_job_last_success_timestamp_seconds",
                job,
                target,
            )
            .unwrap_or_else(|| panic!("{}: no baseline success for {job}", case.name));
            let data = host.env.path("data");
            if cmd == Cmd::Restore {
                // A local change that a failed restore must leave in place.
                fs::write(data.join("small/local-only.txt"), "local\n").unwrap();
            }
            let local_before = tree(&data);

            let proxy = FaultProxy::start(&g.endpoint, (case.rules)());
            host.point_at(&g, &proxy.endpoint());
            let started = Instant::now();
            let run = host.env.rehost(cmd.args());
            let took = started.elapsed();
            let stats = proxy.stats();
            drop(proxy);
            host.point_at(&g, &g.endpoint);

            let ok = run.code() == 0;
            let what = format!("{} × {cmd:?}", case.name);
            match case.expect {
                Expect::Success => assert!(ok, "{what}: expected success\n{}", run.all()),
                Expect::Failure => assert!(!ok, "{what}: expected failure\n{}", run.all()),
                Expect::Unavailable => assert_eq!(
                    run.code(),
                    3,
                    "{what}: expected exit 3 (storage unavailable)\n{}",
                    run.all()
                ),
                Expect::Either => {}
            }
            if !ok {
                assert!(
                    matches!(run.code(), 1 | 3),
                    "{what}: exit {}\n{}",
                    run.code(),
                    run.all()
                );
                assert!(
                    run.stderr().contains("rehost: ") && !run.stderr().contains("panicked"),
                    "{what}: no clear error message\n{}",
                    run.stderr()
                );
            }
            assert!(!run.all().contains(&g.secret), "{what}: secret in output");

            // Metrics: the run is recorded; a failure keeps the last success.
            let status = metric(&prom, "rehost_job_last_status", job, target);
            let success_after = metric(
                &prom,
                "rehost_job_last_success_timestamp_seconds",
                job,
                target,
            );
            assert_eq!(status, Some(if ok { 1.0 } else { 0.0 }), "{what}");
            if ok {
                assert!(success_after >= Some(success_before), "{what}");
            } else {
                assert_eq!(success_after, Some(success_before), "{what}: success lost");
            }

            match cmd {
                Cmd::Backup => {
                    backup_ok = ok;
                    assert_eq!(
                        host.listed_backups(),
                        if ok { 2 } else { 1 },
                        "{what}: listed backups"
                    );
                    if ok {
                        host.env.rehost(&["verify", "data"]).expect(0);
                    }
                }
                Cmd::Restore => {
                    // Without a backup step (or after a failed one) the
                    // newest backup is still v1.
                    let expected = match (ok, backup_ok) {
                        (false, _) => &local_before,
                        (true, true) => &host.v2,
                        (true, false) => &host.v1,
                    };
                    assert!(
                        tree(&data) == *expected,
                        "{what}: the target is neither untouched nor the backup"
                    );
                    let leftovers: Vec<_> = fs::read_dir(host.env.dir.path())
                        .unwrap()
                        .filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
                        .collect();
                    assert!(leftovers.is_empty(), "{what}: staging left: {leftovers:?}");
                }
                Cmd::Pull => {
                    let got = tree(&host.env.path("www/site"));
                    if ok {
                        assert!(got == site, "{what}: pulled tree differs from the source");
                    }
                    for (k, v) in &got {
                        assert!(!k.contains(".rehost-pull-"), "{what}: temporary {k} left");
                        if !k.ends_with('/') {
                            assert!(site.get(k) == Some(v), "{what}: {k} is not the source's");
                        }
                    }
                }
            }
            writeln!(
                matrix,
                "{:<34} {:<8} {:<9} {:>5} {:>7} {:>7} {:>6}  {}",
                case.name,
                format!("{cmd:?}").to_lowercase(),
                if ok { "ok" } else { "failed" },
                run.code(),
                stats.requests.len(),
                stats.faulted(),
                stats.retried(),
                if ok {
                    format!("data correct ({:.1} s)", took.as_secs_f64())
                } else {
                    last_rehost_line(&run)
                }
            )
            .unwrap();
        }
    }
    println!("{matrix}");
    Some(matrix)
}

#[test]
fn fault_matrix() {
    let cases = [
        Case {
            name: "HTTP 503 on the first 2 requests",
            rules: || vec![Rule::always(Fault::Status(503)).nth(1, 2)],
            commands: ALL,
            expect: Expect::Success,
        },
        Case {
            name: "HTTP 500 on the 3rd request",
            rules: || vec![Rule::always(Fault::Status(500)).nth(3, 1)],
            commands: ALL,
            expect: Expect::Success,
        },
        Case {
            name: "HTTP 503 on every PUT/POST",
            rules: || {
                vec![
                    Rule::always(Fault::Status(503)).method("PUT"),
                    Rule::always(Fault::Status(503)).method("POST"),
                ]
            },
            commands: &[Cmd::Backup],
            expect: Expect::Unavailable,
        },
        Case {
            name: "HTTP 500 on every request",
            rules: || vec![Rule::always(Fault::Status(500))],
            commands: ALL,
            expect: Expect::Unavailable,
        },
        Case {
            name: "cut the 1st object GET after 100 B",
            rules: || {
                vec![Rule::always(Fault::CutBody(100))
                    .method("GET")
                    .path_contains("x-id=GetObject")
                    .nth(1, 1)]
            },
            commands: ALL,
            expect: Expect::Either,
        },
        Case {
            name: "cut every data GET after 1 MiB",
            rules: || {
                vec![Rule::always(Fault::CutBody(1 << 20))
                    .method("GET")
                    .path_contains("data.tar.gz")]
            },
            commands: &[Cmd::Backup, Cmd::Restore],
            expect: Expect::Either,
        },
        Case {
            name: "cut the 1st list response",
            rules: || {
                vec![Rule::always(Fault::CutBody(200))
                    .method("GET")
                    .path_contains("list-type=2")
                    .nth(1, 1)]
            },
            commands: ALL,
            expect: Expect::Either,
        },
        Case {
            name: "latency 2 ms per 16 KiB",
            rules: || vec![Rule::always(Fault::Latency(Duration::from_millis(2)))],
            commands: ALL,
            expect: Expect::Success,
        },
    ];
    let Some(matrix) = run_matrix("fault matrix", &cases) else {
        return;
    };
    assert!(matrix.lines().count() > cases.len());
}

/// Stalls take the client's timeouts to resolve (60 s read timeout, 20 s
/// stalled-body detection), so they run apart from the quick cases.
#[test]
fn stalled_storage_is_abandoned_in_bounded_time() {
    let cases = [
        Case {
            name: "stall the 1st data GET",
            rules: || {
                vec![Rule::always(Fault::Stall)
                    .method("GET")
                    .path_contains("data.tar.gz")
                    .nth(1, 1)]
            },
            commands: &[Cmd::Restore],
            expect: Expect::Success,
        },
        Case {
            name: "stall the body of every GET",
            rules: || vec![Rule::always(Fault::StallBody).method("GET")],
            commands: &[Cmd::Pull],
            expect: Expect::Failure,
        },
    ];
    run_matrix("stalls", &cases);
}
