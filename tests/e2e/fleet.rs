//! Many hosts on one bucket, and the fleet view over them, against Garage.
//!
//! Every simulated host reaches Garage through a proxy of its own
//! ([`FaultProxy`] with no rule: it forwards and records), so the test sees
//! on the wire which keys each host asked for, and counts its requests per
//! operation. Those counts are what the README's scale model is built on.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rehost_tests::faultproxy::{by_operation, FaultProxy};
use rehost_tests::{garage, promtool_check, run_daemon, unique, Garage, TestEnv};

const HOSTS: usize = 20;
/// Kept per host (`keep: { last: KEEP }`).
const KEEP: usize = 3;

/// How long the daemons run: `REHOST_FLEET_SECONDS`, default 120.
fn duration() -> Duration {
    let secs = std::env::var("REHOST_FLEET_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120u64);
    Duration::from_secs(secs.clamp(10, 900))
}

/// One simulated host: its own directory, configuration and proxy.
struct Host {
    name: String,
    env: TestEnv,
    proxy: FaultProxy,
}

/// Points `env` at `host` under `prefix`, through `endpoint`.
fn config(g: &Garage, env: &mut TestEnv, host: &str, prefix: &str, endpoint: &str, state: &str) {
    env.host = host.into();
    env.prefix = prefix.into();
    env.write_config(g, endpoint, state);
}

/// `data`: backed up every 3 s (jitter up to 2 s), the newest KEEP kept.
fn data_entry(env: &TestEnv) -> String {
    format!(
        "  data:\n    path: {}\n    backup: \"*/3 * * * * *\"\n    jitter: 2s\n    run_at_start: true\n    \
         keep: {{ last: {KEEP} }}\n",
        env.path("data").display()
    )
}

/// Rewrites a host's changing file: a backup then has something to upload.
fn touch(root: &Path, round: usize) {
    fs::write(
        root.join("data/changing.txt"),
        format!("round {round}\n").repeat(50),
    )
    .unwrap();
}

#[test]
fn twenty_hosts_on_one_bucket_stay_apart_and_the_fleet_view_sees_them() {
    let Some(g) = garage() else { return };
    let prefix = format!("fleet-{}", unique());
    let hosts: Vec<Host> = (0..HOSTS)
        .map(|i| {
            let mut env = TestEnv::new(&g, "");
            let name = format!("web-{i:02}");
            fs::create_dir_all(env.path("data/static")).unwrap();
            for f in 0..5 {
                fs::write(
                    env.path(&format!("data/static/{f}.txt")),
                    format!("{name} file {f}\n").repeat(100 * (f + 1)),
                )
                .unwrap();
            }
            touch(env.dir.path(), 0);
            let proxy = FaultProxy::start(&g.endpoint, Vec::new());
            let state = data_entry(&env);
            config(&g, &mut env, &name, &prefix, &proxy.endpoint(), &state);
            env.rehost(&["init"]).expect(0);
            Host { name, env, proxy }
        })
        .collect();

    // --- the daemons, side by side ------------------------------------------
    let mut daemons: Vec<_> = hosts.iter().map(|h| run_daemon(&h.env, "10s")).collect();
    let run_for = duration();
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < run_for {
        std::thread::sleep(Duration::from_secs(4));
        round += 1;
        // Most rounds change every host's data; every third leaves it as is,
        // so the daemons also meet unchanged sources.
        if round % 3 != 0 {
            for h in &hosts {
                touch(h.env.dir.path(), round);
            }
        }
    }
    for (d, h) in daemons.iter_mut().zip(&hosts) {
        let (code, _) = d.terminate(Duration::from_secs(60));
        assert_eq!(code, 0, "{}: {}", h.name, d.log());
    }
    let ran = started.elapsed();
    // Each host restores its newest backup (through its proxy too).
    for h in &hosts {
        h.env.rehost(&["restore", "data", "--force"]).expect(0);
        assert!(h.env.path("data/changing.txt").is_file(), "{}", h.name);
    }

    // --- nobody touched anybody else's objects -------------------------------
    let mut report = Vec::new();
    let mut totals: BTreeMap<&'static str, usize> = BTreeMap::new();
    for h in &hosts {
        let seen = h.proxy.stats().requests;
        let own = format!("{prefix}/{}/", h.name);
        for r in &seen {
            let (op, key) = r.operation(&g.bucket);
            assert!(
                key.starts_with(&own),
                "{} sent {} {} ({op} of {key:?}), outside {own}",
                h.name,
                r.method,
                r.target
            );
        }
        let c = by_operation(&g.bucket, &seen);
        for (op, n) in &c {
            *totals.entry(op).or_insert(0) += n;
        }
        let kept = h.env.backup_ids("data");
        assert!(
            (1..=KEEP + 1).contains(&kept.len()),
            "{}: {} complete backups kept with keep: last {KEEP}: {kept:?}",
            h.name,
            kept.len()
        );
        // Retention ran: more backups were made than are kept.
        let puts_of_manifests = seen
            .iter()
            .filter(|r| r.method == "PUT" && r.target.contains("manifest.json"))
            .count();
        assert!(
            puts_of_manifests > kept.len(),
            "{}: {puts_of_manifests} backups made, {} kept: prune never ran?",
            h.name,
            kept.len()
        );
        // Every kept backup is whole.
        for id in &kept {
            h.env.rehost(&["verify", "data", "--backup", id]).expect(0);
        }
        report.push(format!(
            "  {}: {} requests ({}), {puts_of_manifests} backups made, {} kept",
            h.name,
            seen.len(),
            c.iter()
                .map(|(op, n)| format!("{op} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            kept.len()
        ));
    }

    // --- the fleet view ----------------------------------------------------
    let mut viewer = TestEnv::new(&g, "");
    let proxy = FaultProxy::start(&g.endpoint, Vec::new());
    config(&g, &mut viewer, "viewer", &prefix, &proxy.endpoint(), "");
    let out = viewer.rehost(&["fleet", "--json", "--max-age", "1h"]);
    out.expect(0);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let listed = doc["hosts"].as_array().unwrap();
    assert_eq!(listed.len(), HOSTS, "{}", out.stdout());
    for (h, v) in hosts.iter().zip(listed) {
        assert_eq!(v["host"], h.name.as_str());
        assert_eq!(v["registered"], true);
        let entries = v["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{v}");
        let e = &entries[0];
        let kept = h.env.backup_ids("data");
        assert_eq!(e["status"], "ok", "{e}");
        assert_eq!(e["backups"], kept.len());
        assert_eq!(e["newest"]["id"], kept.last().unwrap().as_str(), "{e}");
        // Each verify above succeeded on the newest backup too.
        assert!(e["newest"]["verified"].is_string(), "{e}");
        assert!(e["newest"]["size_bytes"].as_u64().unwrap() > 0, "{e}");
    }
    let fleet_seen = proxy.stats().requests;
    let fleet_counts = by_operation(&g.bucket, &fleet_seen);
    // Listings and the newest manifest of each entry: never a data object,
    // never an older manifest.
    for r in &fleet_seen {
        let (op, key) = r.operation(&g.bucket);
        assert!(
            op == "LIST" || (op == "GET" && key.ends_with("/manifest.json")),
            "fleet sent {} {}",
            r.method,
            r.target
        );
    }
    assert_eq!(fleet_counts.get("GET"), Some(&HOSTS), "{fleet_counts:?}");
    let objects = doc["objects_listed"].as_u64().unwrap();

    // Old enough to be stale: exit 1, every entry named; metrics still written.
    std::thread::sleep(Duration::from_secs(2));
    let metrics = viewer.path("fleet.prom");
    let out = viewer.rehost(&[
        "fleet",
        "--max-age",
        "1s",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    out.expect(1);
    assert!(
        out.stderr().contains(&format!("{HOSTS} entries are stale"))
            && out.stderr().contains("web-07/data"),
        "{}",
        out.all()
    );
    let text = fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("rehost_fleet_backup_stale{") && l.ends_with(" 1"))
            .count(),
        HOSTS,
        "{text}"
    );
    // Panics on a file promtool rejects.
    promtool_check(&metrics);

    println!(
        "{HOSTS} hosts ran their daemons for {:.0} s (backup every 3 s + up to 2 s jitter, keep last {KEEP}):",
        ran.as_secs_f64()
    );
    for line in &report {
        println!("{line}");
    }
    println!(
        "  all hosts: {}",
        totals
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "fleet view of {HOSTS} hosts ({objects} objects): {} requests ({})",
        fleet_seen.len(),
        fleet_counts
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The requests one run of each operation sends, on the wire, for the
/// README's scale model: one host, one small entry (an acme.json-sized
/// file), a content source of 200 objects.
#[test]
fn requests_per_operation() {
    let Some(g) = garage() else { return };
    let Some(s3) = rehost_tests::S3cmd::new(&g, Path::new("/tmp")) else {
        return;
    };
    let prefix = format!("fleet-ops-{}", unique());
    let mut env = TestEnv::new(&g, "");
    let site = env.path("site-source");
    fs::create_dir_all(&site).unwrap();
    for i in 0..200 {
        fs::write(
            site.join(format!("page-{i}.html")),
            format!("<p>{i}</p>\n").repeat(40),
        )
        .unwrap();
    }
    let content = format!("s3://{}/{prefix}-content/", g.bucket);
    s3.run(&["sync", &format!("{}/", site.display()), &content]);
    fs::write(env.path("acme.json"), "x".repeat(20_000)).unwrap();
    let proxy = FaultProxy::start(&g.endpoint, Vec::new());
    let state = format!(
        "  acme:\n    path: {}\n    keep: {{ last: 2 }}\npull:\n  site:\n    source: {content}\n    dest: {}\n",
        env.path("acme.json").display(),
        env.path("www").display()
    );
    config(&g, &mut env, "ops-host", &prefix, &proxy.endpoint(), &state);

    let mut done = 0;
    let mut rows: Vec<(String, BTreeMap<&'static str, usize>)> = Vec::new();
    let mut measure = |what: &str, args: &[&str], code: i32| {
        env.rehost(args).expect(code);
        let seen = proxy.stats().requests;
        rows.push((what.to_string(), by_operation(&g.bucket, &seen[done..])));
        done = seen.len();
    };
    measure("init", &["init"], 0);
    measure("backup, first", &["backup", "acme"], 0);
    fs::write(env.path("acme.json"), "y".repeat(20_000)).unwrap();
    measure("backup, changed", &["backup", "acme"], 0);
    measure("backup, unchanged", &["backup", "acme"], 0);
    fs::write(env.path("acme.json"), "z".repeat(20_000)).unwrap();
    measure("backup, changed", &["backup", "acme"], 0);
    measure("prune, deletes 1 backup", &["prune", "acme"], 0);
    measure("prune, nothing to delete", &["prune", "acme"], 0);
    measure("verify", &["verify", "acme"], 0);
    measure("pull, first (200 objects)", &["pull", "site"], 0);
    measure("pull, unchanged", &["pull", "site"], 0);
    s3.run(&[
        "put",
        site.join("page-7.html").to_str().unwrap(),
        &format!("{content}page-7.html"),
    ]);
    fs::write(site.join("page-7.html"), "changed\n").unwrap();
    s3.run(&[
        "put",
        site.join("page-7.html").to_str().unwrap(),
        &format!("{content}page-7.html"),
    ]);
    measure("pull, 1 object changed", &["pull", "site"], 0);
    measure("fleet (1 host, 1 entry)", &["fleet"], 0);

    let total = |c: &BTreeMap<&str, usize>| c.values().sum::<usize>();
    let by_name = |name: &str| {
        rows.iter()
            .filter(|(w, _)| w == name)
            .map(|(_, c)| total(c))
            .max()
            .unwrap()
    };
    // Upper bounds that the README's scale model relies on: a change that
    // makes these grow must update the model.
    assert!(by_name("backup, unchanged") <= 4, "{rows:?}");
    assert!(by_name("backup, changed") <= 8, "{rows:?}");
    assert!(by_name("prune, nothing to delete") <= 2, "{rows:?}");
    assert!(by_name("pull, unchanged") <= 1, "{rows:?}");
    assert!(by_name("fleet (1 host, 1 entry)") <= 3, "{rows:?}");
    println!(
        "requests per operation (one host, acme.json-sized entry, 200-object content source):"
    );
    for (what, c) in &rows {
        println!(
            "  {what:<28} {:>3}  ({})",
            total(c),
            c.iter()
                .map(|(op, n)| format!("{op} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// The daemon's run of an unchanged entry with `keep:` costs the backup's 3
/// requests: its prune waits for an upload (or an hour), which keeps the
/// scale model's per-minute acme.json runs at 3 requests, not 5.
#[test]
fn an_unchanged_entry_costs_the_daemon_three_requests_a_run() {
    let Some(g) = garage() else { return };
    let mut env = TestEnv::new(&g, "");
    fs::write(env.path("acme.json"), "x".repeat(20_000)).unwrap();
    let proxy = FaultProxy::start(&g.endpoint, Vec::new());
    let state = format!(
        "  acme:\n    path: {}\n    backup: \"* * * * * *\"\n    keep: {{ last: 2 }}\n",
        env.path("acme.json").display()
    );
    config(
        &g,
        &mut env,
        "quiet-host",
        &format!("quiet-{}", unique()),
        &proxy.endpoint(),
        &state,
    );
    let mut d = run_daemon(&env, "10s");
    assert!(
        d.wait_log(Duration::from_secs(60), |l| l
            .matches("unchanged since backup")
            .count()
            >= 5),
        "{}",
        d.log()
    );
    let (code, _) = d.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", d.log());
    let log = d.log();
    let unchanged = log.matches("unchanged since backup").count();
    let uploaded = log.matches("uploaded backup").count();
    let skipped = log.matches("nothing uploaded since the last prune").count();
    let seen = proxy.stats().requests;
    let c = by_operation(&g.bucket, &seen);
    println!(
        "daemon, acme.json unchanged: {uploaded} upload(s), {unchanged} unchanged runs, {skipped} prunes left out; \
         {} requests ({c:?})",
        seen.len()
    );
    assert_eq!(uploaded, 1, "{log}");
    assert!(skipped >= unchanged.saturating_sub(1), "{log}");
    // The upload (2 LIST, 2 PUT) and its prune (2 LIST), then 3 a run.
    assert!(
        seen.len() <= 6 + 3 * unchanged,
        "{} requests for 1 upload and {unchanged} unchanged runs: {c:?}",
        seen.len()
    );
}
