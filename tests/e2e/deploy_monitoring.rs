//! The stack's monitoring on real rehost metrics: `rehost backup` writes its
//! textfiles, a real node_exporter (Debian's) serves them, and a real
//! Prometheus runs the stack's `node` scrape job (targets moved to loopback)
//! and alert rules. This checks what promtool's unit tests take for granted:
//! rehost's series keep their `job="backup"` label through the scrape
//! (`honor_labels`), so the alert expressions match them. Everything listens
//! on 127.0.0.1; every wait is bounded. A missing tool fails the test under
//! `CI=true` and skips it otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rehost_tests::deploy::{images, need, run, text, yaml};
use rehost_tests::free_port;
use rehost_tests::rehost_bin;

/// Kills and reaps a server started by the test, even when it fails.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(name: &'static str, cmd: &mut Command, log: &Path) -> Server {
    let log = fs::File::create(log).unwrap();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Server(child)
}

/// GET `url` (with `query` URL-encoded) through curl; `None` until the server answers.
fn api(url: &str, query: Option<&str>) -> Option<serde_json::Value> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "--max-time", "5", "-G", url]);
    if let Some(q) = query {
        cmd.arg("--data-urlencode").arg(format!("query={q}"));
    }
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Polls `probe` every 250 ms for at most `limit`.
fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn alert_rules_match_rehost_metrics_scraped_through_node_exporter() {
    for tool in ["prometheus", "prometheus-node-exporter", "curl"] {
        let Some(()) = need(tool) else { return };
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // Real metrics: one backup that succeeds, one that fails (never succeeded).
    for d in ["store", "metrics", "notes"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("notes/a.txt"), "kept\n").unwrap();
    let config = dir.join("rehost.yaml");
    fs::write(
        &config,
        format!(
            "host: monitoring-e2e\nstorage:\n  url: file://{d}/store\nstate:\n  notes:\n    path: {d}/notes\n  \
             gone:\n    path: {d}/gone\nmetrics:\n  textfile_dir: {d}/metrics\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let mut backup = Command::new(rehost_bin());
    backup.arg("-c").arg(&config).arg("backup");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "REHOST_CONFIG" || k == "RUST_LOG" {
            backup.env_remove(k);
        }
    }
    let out = run(&mut backup);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one of two backups fails:\n{}",
        text(&out)
    );

    let node_port = free_port();
    let _node = start(
        "node_exporter",
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                dir.join("metrics").display()
            )),
        &dir.join("node_exporter.log"),
    );

    // The stack's configuration, with the `node` job pointed at loopback,
    // the other targets (containers) dropped, and the stack's rule files.
    let mut prom = yaml(&images().join("prometheus/prometheus.yml"));
    let node_job = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("node"))
        .cloned()
        .expect("the stack scrapes node_exporter as job `node`");
    let mut node_job = node_job;
    node_job["static_configs"][0]["targets"] =
        serde_yaml::from_str(&format!("[\"127.0.0.1:{node_port}\"]")).unwrap();
    node_job["scrape_interval"] = "1s".into();
    prom["scrape_configs"] = serde_yaml::Value::Sequence(vec![node_job]);
    prom["global"]["evaluation_interval"] = "1s".into();
    prom.as_mapping_mut().unwrap().remove("alerting");
    let rules = images().join("prometheus/rules/*.yml");
    prom["rule_files"] = serde_yaml::Value::Sequence(vec![rules.display().to_string().into()]);
    let prom_config = dir.join("prometheus.yml");
    fs::write(&prom_config, serde_yaml::to_string(&prom).unwrap()).unwrap();

    let prom_port = free_port();
    let _prometheus = start(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &dir.join("prometheus.log"),
    );
    let base = format!("http://127.0.0.1:{prom_port}/api/v1");
    let logs = || {
        format!(
            "prometheus log:\n{}\nnode_exporter log:\n{}",
            fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default(),
            fs::read_to_string(dir.join("node_exporter.log")).unwrap_or_default()
        )
    };

    // The series arrive with rehost's own `job` label.
    let query = "rehost_job_last_success_timestamp_seconds{job=\"backup\"}";
    let series = wait_for(Duration::from_secs(60), || {
        let v = api(&format!("{base}/query"), Some(query))?;
        let result = v["data"]["result"].as_array()?.clone();
        (result.len() == 2).then_some(result)
    })
    .unwrap_or_else(|| {
        panic!(
            "{query} did not return both targets within 60 s\n{}",
            logs()
        )
    });
    for s in &series {
        let target = s["metric"]["target"].as_str().unwrap();
        let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        match target {
            "notes" => assert!(value > 1.7e9, "notes: {value}"),
            "gone" => assert_eq!(value, 0.0),
            other => panic!("unexpected target {other}"),
        }
        assert!(s["metric"].get("exported_job").is_none(), "{s}");
    }

    // The rules load, and the stale-backup and failing-job alerts become
    // pending (their `for:` is minutes) for the failed entry only.
    let alerts = wait_for(Duration::from_secs(60), || {
        let v = api(&format!("{base}/alerts"), None)?;
        let alerts = v["data"]["alerts"].as_array()?.clone();
        let names: Vec<(String, String)> = alerts
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    a["labels"]["target"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        let has = |n: &str| names.iter().any(|(a, t)| a == n && t == "gone");
        (has("RehostBackupStale") && has("RehostJobFailing")).then_some(names)
    })
    .unwrap_or_else(|| {
        panic!(
            "no pending rehost alerts for `gone` within 60 s\n{}",
            logs()
        )
    });
    // The backup that succeeded has no `verify:`: the only alert for it is
    // the one saying so (pending: its `for:` is 2 days).
    let for_notes: Vec<&str> = alerts
        .iter()
        .filter(|(_, t)| t == "notes")
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(
        for_notes,
        ["RehostBackupNeverVerified"],
        "alerts for the backup that succeeded: {alerts:?}"
    );
    let rules = api(&format!("{base}/rules"), None).unwrap();
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    let file = fs::read_to_string(images().join("prometheus/rules/alerts.yml")).unwrap();
    let written = file
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(written >= 5, "{written} rules in alerts.yml");
    assert_eq!(loaded, written, "every rule of alerts.yml is loaded");
}
