//! What `rehost` prints for people and for scripts, against a real Garage:
//! progress bars on a terminal only (run under a pseudo-terminal with
//! util-linux `script`), and the `--json` documents of `backups list`,
//! `status` and `check`, parsed and checked against what the test did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use rehost::output::bytes;
use rehost_tests::{garage, metric, rehost_bin, Garage, Rng, Run, TestEnv};
use serde_json::Value;

/// Whether util-linux `script` runs; under `CI=true` its absence is a failure.
fn script_available() -> bool {
    let ok = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but `script` is missing; scripts/install-tools.sh installs bsdutils");
        }
        eprintln!("skipping: util-linux `script` is not installed (scripts/install-tools.sh)");
    }
    ok
}

/// `rehost -c CONFIG ARGS` with stdout and stderr on a pseudo-terminal;
/// the run's stdout is everything the terminal showed.
fn on_pty(env: &TestEnv, args: &[&str]) -> Run {
    let command = format!(
        "{} -c {} {}",
        rehost_bin().display(),
        env.config.display(),
        args.join(" ")
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "REHOST_CONFIG" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    Run(cmd.output().unwrap())
}

/// Files of the `site` entry: a large one (several chunks and parts) and
/// four small ones. Returns their content bytes.
fn make_site(root: &Path, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(root.join("img")).unwrap();
    let mut total = 0;
    for (name, len) in [
        ("big.bin", 6 * 1024 * 1024 + 123),
        ("index.html", 1500),
        ("img/a.png", 40_000),
        ("img/b.png", 70_001),
        ("robots.txt", 30),
    ] {
        fs::write(root.join(name), rng.bytes(len)).unwrap();
        total += len as u64;
    }
    total
}

fn env_with_site(g: &Garage, extra: &str) -> TestEnv {
    let env = TestEnv::new(g, "  placeholder:\n    path: /tmp/unused\n");
    let root = env.dir.path().display().to_string();
    let body = format!(
        "  site:\n    path: {root}/site\n    backup: \"* * * * *\"\n{}",
        extra.replace("ROOT", &root)
    );
    env.write_config(g, &g.endpoint, &body);
    env
}

/// Log lines written while a bar is shown start on a line of their own:
/// the bar was erased (`ESC [2K`) before each, never left in front of it.
#[track_caller]
fn logs_on_their_own_lines(transcript: &str, bar: &str) -> usize {
    let mut seen = 0;
    for line in transcript.split('\n') {
        let Some(at) = line.find(" INFO") else {
            continue;
        };
        seen += 1;
        let before = &line[..at];
        let visible = before.rsplit("\u{1b}[2K").next().unwrap_or(before);
        assert!(
            !visible.contains(bar),
            "a bar shares a line with a log: {line:?}"
        );
    }
    seen
}

/// The one JSON document on a run's stdout.
#[track_caller]
fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", run.stdout()))
}

#[test]
fn progress_shows_on_a_terminal_and_nowhere_else() {
    let Some(g) = garage() else {
        return;
    };
    if !script_available() {
        return;
    }
    let env = env_with_site(
        &g,
        "pull:\n  www:\n    source: file://ROOT/content\n    dest: ROOT/www/site\n",
    );
    let content = make_site(&env.path("site"), 7);

    // A terminal: the bar ends in a line with what the counters saw.
    let pty = on_pty(&env, &["backup", "site"]);
    pty.expect(0);
    let want = format!("backup site: done, {}, 5 files in ", bytes(content));
    assert!(
        pty.stdout().contains(&want),
        "{want:?} not in:\n{}",
        pty.stdout()
    );

    // stderr a pipe (and a change to back up, so that there is progress
    // to show): no bar, nothing of it.
    fs::write(env.path("site/robots.txt"), "changed").unwrap();
    let piped = env.rehost(&["backup", "site"]);
    piped.expect(0);
    assert!(
        piped.stdout().contains("uploaded backup"),
        "{}",
        piped.all()
    );
    assert!(
        !piped.stderr().contains("backup site"),
        "{}",
        piped.stderr()
    );
    assert!(!piped.stderr().contains('\u{1b}'), "{}", piped.stderr());

    // restore and verify know their total from the manifest: the bytes
    // fetched are the backup's stored size, as `backups list --json` says.
    let list = env.rehost(&["backups", "list", "site", "--json"]);
    list.expect(0);
    let newest = json(&list)["backups"].as_array().unwrap().last().cloned();
    let size = newest.unwrap()["size_bytes"].as_u64().unwrap();
    let restore = on_pty(&env, &["restore", "site", "--force"]);
    restore.expect(0);
    let want = format!("restore site: done, {}, 5 files in ", bytes(size));
    assert!(
        restore.stdout().contains(&want),
        "{want:?} not in:\n{}",
        restore.stdout()
    );
    // `restore timings` is logged while the bar is up, `restore finished` after.
    assert!(restore.stdout().contains("restore timings"));
    assert!(logs_on_their_own_lines(&restore.stdout(), "restore site [") >= 2);
    let verify = on_pty(&env, &["verify", "site"]);
    verify.expect(0);
    let want = format!("verify site: done, {}, 5 files in ", bytes(size));
    assert!(
        verify.stdout().contains(&want),
        "{want:?} not in:\n{}",
        verify.stdout()
    );

    // -q and JSON logs on a terminal: the job runs and says so, no bar.
    let quiet = on_pty(&env, &["-q", "verify", "site"]);
    quiet.expect(0);
    assert!(quiet.stdout().contains("is intact"), "{}", quiet.stdout());
    assert!(
        !quiet.stdout().contains("verify site"),
        "{}",
        quiet.stdout()
    );
    let logs = on_pty(
        &env,
        &["--log-format", "json", "restore", "site", "--force"],
    );
    logs.expect(0);
    assert!(
        logs.stdout().contains("restored backup"),
        "{}",
        logs.stdout()
    );
    assert!(!logs.stdout().contains("restore site"), "{}", logs.stdout());
    // Every log line is still one JSON object: no bar was drawn into one.
    for line in logs.stdout().lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line.trim_end_matches('\r'))
            .unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }

    // pull: the bytes and files downloaded.
    let pulled = make_site(&env.path("content"), 11);
    let pull = on_pty(&env, &["pull", "www"]);
    pull.expect(0);
    let want = format!("pull www: done, {}, 5 files in ", bytes(pulled));
    assert!(
        pull.stdout().contains(&want),
        "{want:?} not in:\n{}",
        pull.stdout()
    );
    fs::write(env.path("content/robots.txt"), "changed").unwrap();
    let piped = env.rehost(&["pull", "www"]);
    piped.expect(0);
    assert!(
        piped.stdout().contains("downloaded 1 file"),
        "{}",
        piped.all()
    );
    assert!(!piped.stderr().contains("pull www"), "{}", piped.stderr());
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as `--json` prints it.
#[track_caller]
fn parse_time(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.ends_with('Z'), "not UTC: {s}");
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

#[test]
fn json_documents_of_backups_list_status_and_check() {
    let Some(g) = garage() else {
        return;
    };
    let env = env_with_site(&g, "  notes:\n    path: ROOT/notes.txt\n");
    make_site(&env.path("site"), 3);
    fs::write(env.path("notes.txt"), "remember").unwrap();
    let before = unix_ms(SystemTime::now());
    let backup = env.rehost(&["backup"]);
    backup.expect(0);
    let after = unix_ms(SystemTime::now());
    // `site: uploaded backup ID (…)`, per entry.
    let id_of = |state: &str| -> String {
        let prefix = format!("{state}: uploaded backup ");
        let line = backup.stdout();
        let rest = line
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {line}"));
        rest.split_whitespace().next().unwrap().to_string()
    };

    // backups list --json
    let list = env.rehost(&["backups", "list", "--json"]);
    list.expect(0);
    let doc = json(&list);
    assert_eq!(doc["host"], "e2e-host");
    assert_eq!(doc["incomplete"], 0);
    assert!(
        doc["storage"].as_str().unwrap().contains(&env.prefix),
        "{doc}"
    );
    let backups = doc["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{doc}");
    let (site, notes) = (&backups[0], &backups[1]);
    assert_eq!(site["state"], "site");
    assert_eq!(site["id"], id_of("site").as_str());
    assert_eq!(notes["state"], "notes");
    assert_eq!(notes["id"], id_of("notes").as_str());
    assert_eq!(site["files"], 5);
    assert_eq!(site["dirs"], 1, "img/");
    assert_eq!(notes["files"], 1);
    for b in backups {
        let created = parse_time(&b["created"]);
        assert!(before - 1000 <= created && created <= after + 1000, "{b}");
        assert_eq!(b["verified"], false);
        assert_eq!(b["encrypted"], false);
        assert!(b["generation"].is_null(), "{b}");
        let sha = b["sha256"].as_str().unwrap();
        assert!(sha.len() == 64 && sha.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(b["size_bytes"].as_u64().unwrap() > 0);
    }
    assert!(
        site["tar_bytes"].as_u64().unwrap() > 6 * 1024 * 1024,
        "{site}"
    );
    // The table shows the same backups.
    let table = env.rehost(&["backups", "list"]);
    table.expect(0);
    let sha = site["sha256"].as_str().unwrap();
    assert!(table.stdout().contains(&sha[..12]), "{}", table.stdout());

    // The stored size is what a restore downloads (its metrics say so),
    // and a verify shows in the listing.
    env.rehost(&["restore", "site", "--force"]).expect(0);
    env.rehost(&["verify", "site"]).expect(0);
    let size = site["size_bytes"].as_u64().unwrap();
    let prom = env.metrics().join("rehost-restore-site.prom");
    assert_eq!(
        metric(&prom, "rehost_job_last_bytes", "restore", "site"),
        Some(size as f64)
    );
    let doc = json(env.rehost(&["backups", "list", "site", "--json"]).expect(0));
    assert_eq!(doc["backups"][0]["verified"], true, "{doc}");
    assert_eq!(doc["backups"].as_array().unwrap().len(), 1);

    // status --json: everything fresh, exit 0.
    let status = env.rehost(&["status", "--json"]);
    status.expect(0);
    let doc = json(&status);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["metrics_writable"], true);
    assert_eq!(doc["metrics_dir"], env.metrics().display().to_string());
    let jobs = doc["jobs"].as_array().unwrap();
    let job = |kind: &str, target: &str| -> &Value {
        jobs.iter()
            .find(|j| j["job"] == kind && j["target"] == target)
            .unwrap_or_else(|| panic!("no {kind} {target} in {doc}"))
    };
    let b = job("backup", "site");
    assert_eq!(b["status"], "ok");
    // Every minute: 2 x 60 s + the default 30 min timeout.
    assert_eq!(b["allowed_age_seconds"], 2 * 60 + 30 * 60);
    assert_eq!(b["last_ok"], true);
    assert_eq!(b["failures_total"], 0);
    let success = parse_time(&b["last_success"]);
    assert!(before - 1000 <= success && success <= after + 1000, "{b}");
    assert!(b["last_success_age_seconds"].as_u64().unwrap() < 600, "{b}");
    assert!(b["last_duration_seconds"].as_f64().unwrap() >= 0.0, "{b}");
    let n = job("backup", "notes");
    assert_eq!(n["status"], "ok");
    assert!(n["allowed_age_seconds"].is_null(), "not scheduled: {n}");
    assert_eq!(job("restore", "site")["last_bytes"], size);
    assert_eq!(job("verify", "site")["status"], "ok");

    // A scheduled job that never ran is stale: exit 1 with or without --json.
    let root = env.dir.path().display().to_string();
    let stale_body = format!(
        "  site:\n    path: {root}/site\n    backup: \"* * * * *\"\n  notes:\n    path: {root}/notes.txt\n  \
         db:\n    path: {root}/db\n    backup: \"0 3 * * *\"\n"
    );
    env.write_config(&g, &g.endpoint, &stale_body);
    env.rehost(&["status"]).expect(1);
    let status = env.rehost(&["status", "--json"]);
    status.expect(1);
    let doc = json(&status);
    assert_eq!(doc["ok"], false);
    let db = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["target"] == "db")
        .unwrap();
    assert_eq!(db["status"], "stale");
    assert!(
        db["last_success"].is_null() && db["last_ok"].is_null(),
        "{db}"
    );
    assert!(
        status.stderr().contains("stale: backup db"),
        "{}",
        status.stderr()
    );

    // check --json: every section, exit 0.
    let check = env.rehost(&["check", "--json"]);
    check.expect(0);
    let doc = json(&check);
    assert_eq!(doc["ok"], true, "{doc}");
    assert!(doc["error"].is_null());
    assert_eq!(doc["problems"], serde_json::json!([]));
    assert_eq!(doc["config"]["host"], "e2e-host");
    assert_eq!(doc["config"]["path"], env.config.display().to_string());
    assert_eq!(doc["config"]["state_entries"], 3);
    assert!(doc["stack"].is_null());
    assert!(doc["storage"]["objects"].as_u64().unwrap() >= 4, "{doc}");
    assert!(doc["storage"]["list_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(doc["generation"]["known"], true);
    let states = doc["state"].as_array().unwrap();
    assert_eq!(states[0]["name"], "site");
    assert_eq!(states[0]["kind"], "files");
    assert_eq!(states[0]["target"], "exists");
    assert_eq!(states[0]["backup"], "* * * * *");
    assert_eq!(states[2]["name"], "db");
    assert_eq!(states[2]["target"], "missing");
    assert_eq!(doc["metrics"]["writable"], true);

    // A problem: exit 1 either way, and the document names it.
    let blocked = env.path("blocked");
    fs::write(&blocked, "a file where the metrics directory should be").unwrap();
    let text = fs::read_to_string(&env.config).unwrap().replace(
        &format!("textfile_dir: {}", env.metrics().display()),
        &format!("textfile_dir: {}/metrics", blocked.display()),
    );
    fs::write(&env.config, text).unwrap();
    env.rehost(&["check"]).expect(1);
    let check = env.rehost(&["check", "--json"]);
    check.expect(1);
    let doc = json(&check);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["metrics"]["writable"], false);
    assert_eq!(doc["problems"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["error"], "1 problem(s) found");

    // Storage down: exit 3 either way; the document says how far it got.
    env.write_config(&g, "http://127.0.0.1:9", &stale_body);
    env.rehost(&["check"]).expect(3);
    let check = env.rehost(&["check", "--json"]);
    check.expect(3);
    let doc = json(&check);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["config"]["host"], "e2e-host");
    assert!(doc["storage"].is_null(), "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("unreachable"),
        "{doc}"
    );
    // A listing has nothing to say without the store: no document.
    let list = env.rehost(&["backups", "list", "--json"]);
    list.expect(3);
    assert_eq!(list.stdout(), "");
}
