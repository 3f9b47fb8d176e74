//! `kind: prometheus` against a real Prometheus (Debian's binary) and a real
//! Garage: snapshot, per-block upload, incremental second backup, restore that
//! a new Prometheus starts on with the same samples, and the admin API
//! disabled; the same with `storage.encryption` (age files per block).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rehost_tests::{garage, metric, output_ok, promtool_check, Garage, TestEnv};

const HOUR: u64 = 3600;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The Prometheus binary, or `None` (skip) outside CI.
fn prometheus_bin() -> Option<PathBuf> {
    let ok = Command::new("prometheus")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    match ok {
        true => Some(PathBuf::from("prometheus")),
        false if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but `prometheus` cannot run; scripts/install-tools.sh installs it")
        }
        false => {
            eprintln!("skipping: no prometheus binary (scripts/install-tools.sh installs it)");
            None
        }
    }
}

/// A Prometheus on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, data: &Path, admin: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join(format!("prometheus-{port}.yml"));
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=10y")
            // 2 h blocks only: no compaction merges blocks behind the test's back.
            .arg("--storage.tsdb.min-block-duration=2h")
            .arg("--storage.tsdb.max-block-duration=2h")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(dir.join(format!("prometheus-{port}.log"))).unwrap(),
            ));
        if admin {
            cmd.arg("--web.enable-admin-api");
        }
        let mut p = Prometheus {
            child: cmd.spawn().unwrap(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!(
                    "prometheus exited with {status}: {}",
                    fs::read_to_string(dir.join(format!("prometheus-{port}.log"))).unwrap()
                );
            }
            if matches!(p.get("/-/ready"), Some((200, _))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// `GET path` over HTTP/1.0: status and body, `None` if not reachable.
    fn get(&mut self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    /// The `data` of a range query, which must succeed.
    fn query_range(&mut self, query: &str, start: u64, end: u64, step: u64) -> serde_json::Value {
        let path = format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
            encode(query)
        );
        let (status, body) = self.get(&path).unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"].clone()
    }

    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes samples of three series every minute over `[from, to)` as blocks
/// into `data` with promtool, and returns the ULIDs of the blocks it made.
fn backfill(dir: &Path, data: &Path, from: u64, to: u64) -> BTreeSet<String> {
    let before = blocks_in(data);
    let mut text =
        String::from("# HELP rehost_test_value A test series.\n# TYPE rehost_test_value gauge\n");
    for t in (from..to).step_by(60) {
        for series in ["a", "b", "c"] {
            text += &format!(
                "rehost_test_value{{series=\"{series}\"}} {} {t}\n",
                t % 9973
            );
        }
    }
    text += "# EOF\n";
    let input = dir.join(format!("backfill-{from}.om"));
    fs::write(&input, text).unwrap();
    output_ok(
        Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(data),
    );
    let made: BTreeSet<String> = blocks_in(data).difference(&before).cloned().collect();
    assert!(!made.is_empty(), "promtool made no block");
    made
}

fn blocks_in(data: &Path) -> BTreeSet<String> {
    match fs::read_dir(data) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 26 && n.bytes().all(|b| b.is_ascii_alphanumeric()))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The id in "prom: uploaded backup ID (…)".
fn backup_id(stdout: &str) -> String {
    stdout
        .split("uploaded backup ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no backup id in {stdout:?}"))
        .to_string()
}

/// What the store holds for the test, read with rehost's own store client.
struct Store {
    rt: tokio::runtime::Runtime,
    store: std::sync::Arc<dyn rehost_jobs::store::ObjectStore>,
    prefix: String,
}

impl Store {
    fn open(g: &Garage, env: &TestEnv) -> Self {
        Store {
            rt: tokio::runtime::Runtime::new().unwrap(),
            store: g.store(&env.prefix),
            prefix: "e2e-host/prom/".into(),
        }
    }

    fn sizes(&self) -> std::collections::BTreeMap<String, u64> {
        let list = self.rt.block_on(self.store.list(&self.prefix)).unwrap();
        list.into_iter().map(|o| (o.key, o.size)).collect()
    }

    /// Moves every unreferenced-block mark's time `secs` into the past.
    fn age_marks(&self, secs: u64) {
        use rehost_jobs::store::body_from_bytes;
        for (key, _) in self.sizes() {
            let Some((stem, since)) = key.rsplit_once(".since-") else {
                continue;
            };
            let since: u64 = since.parse().unwrap();
            let moved = format!("{stem}.since-{}", since - secs);
            let s = self.store.as_ref();
            self.rt
                .block_on(s.put(&moved, body_from_bytes(bytes::Bytes::from_static(b"{}"))))
                .unwrap();
            self.rt.block_on(s.delete(&key)).unwrap();
        }
    }

    fn manifest(&self, id: &str) -> serde_json::Value {
        let key = format!("{}{id}/manifest.json", self.prefix);
        let bytes = self
            .rt
            .block_on(rehost_jobs::store::get_small(
                self.store.as_ref(),
                &key,
                1 << 20,
            ))
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// Waits (bounded) until Prometheus has scraped itself since the call;
/// returns the time the wait began.
fn wait_for_self_scrape(p: &mut Prometheus) -> u64 {
    let started = now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.query_range("up", started, now(), 1)["result"]
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(Instant::now() < deadline, "no self-scrape within 30 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    started
}

fn block_set(manifest: &serde_json::Value) -> BTreeSet<String> {
    manifest["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ulid"].as_str().unwrap().to_string())
        .collect()
}

const STATE: &str = "  prom:\n    path: ROOT/prometheus\n    kind: prometheus\n    api: http://127.0.0.1:PORT\n    owner: \"65534:65534\"\n    keep: { last: 1 }\n";

fn configure(g: &Garage, env: &TestEnv, port: u16) {
    let state = STATE
        .replace("ROOT", &env.dir.path().display().to_string())
        .replace("PORT", &port.to_string());
    env.write_config(g, &g.endpoint, &state);
}

/// `rehost prune` marks exactly one block that no kept backup references
/// and deletes nothing; a prune before the grace period is over still keeps
/// it; once the mark is a day old (its time moved back, as if a day had
/// passed) the next prune deletes exactly that block.
fn prune_deletes_one_block(env: &TestEnv, store: &Store) {
    let blocks = |s: &Store| s.sizes().keys().filter(|k| k.contains("/blocks/")).count();
    let before = blocks(store);
    let marked = env.rehost(&["prune"]);
    marked.expect(0);
    assert!(
        marked
            .stdout()
            .contains("1 block no longer referenced: marked"),
        "{}",
        marked.stdout()
    );
    let waiting = env.rehost(&["prune"]);
    waiting.expect(0);
    assert!(
        waiting
            .stdout()
            .contains("1 block unreferenced, waiting for the grace period"),
        "{}",
        waiting.stdout()
    );
    assert_eq!(
        blocks(store),
        before,
        "a block went before its grace period"
    );
    store.age_marks(25 * HOUR);
    let pruned = env.rehost(&["prune"]);
    pruned.expect(0);
    assert!(
        pruned
            .stdout()
            .contains("deleted 1 block no kept backup references"),
        "{}",
        pruned.stdout()
    );
    assert_eq!(blocks(store), before - 1);
    assert!(
        !store.sizes().keys().any(|k| k.contains("/unreferenced/")),
        "the mark of the deleted block stays"
    );
}

/// A scratch host with an empty `prometheus/` data directory: (env, its
/// folder, the data directory).
fn prometheus_env(g: &Garage) -> (TestEnv, PathBuf, PathBuf) {
    let env = TestEnv::new(g, "  placeholder:\n    path: /tmp/unused\n");
    let dir = env.dir.path().to_path_buf();
    let data = env.path("prometheus");
    fs::create_dir_all(&data).unwrap();
    (env, dir, data)
}

#[test]
fn backup_is_incremental_per_block_and_restores_a_working_prometheus() {
    let Some(g) = garage() else { return };
    if prometheus_bin().is_none() {
        return;
    }
    let (env, dir, data) = prometheus_env(&g);
    let t = now();
    let old = backfill(&dir, &data, t - 10 * HOUR, t - 3 * HOUR);

    let mut p = Prometheus::start(&dir, &data, true);
    configure(&g, &env, p.port);
    // A few self-scrapes, so that the head holds samples too.
    let started = wait_for_self_scrape(&mut p);
    std::thread::sleep(Duration::from_secs(2));
    let old_range = (t - 10 * HOUR, t - 3 * HOUR);
    let want_old = p.query_range("rehost_test_value", old_range.0, old_range.1, 60);
    assert_eq!(want_old["result"].as_array().unwrap().len(), 3);
    let head_end = now() - 1;
    let want_head = p.query_range("up", started, head_end, 1);

    let store = Store::open(&g, &env);
    let first = env.rehost(&["backup"]);
    first.expect(0);
    let first_id = backup_id(&first.stdout());
    assert!(
        first.stdout().contains(&format!(
            "{} blocks new, 0 blocks already stored",
            old.len() + 1
        )),
        "every backfilled block and the head are new: {}",
        first.stdout()
    );
    let snapshots = data.join("snapshots");
    assert_eq!(
        fs::read_dir(&snapshots).map(|d| d.count()).unwrap_or(0),
        0,
        "the snapshot was not removed"
    );
    let m1 = store.manifest(&first_id);
    assert_eq!(m1["format"], 2);
    let blocks1 = block_set(&m1);
    assert!(blocks1.is_superset(&old), "{blocks1:?} lacks {old:?}");

    // New blocks appear (as after hours of running): only they and the new
    // head are uploaded; the rest is referenced.
    p.stop();
    let new = backfill(&dir, &data, t - 20 * HOUR, t - 14 * HOUR);
    let p = Prometheus::start(&dir, &data, true);
    configure(&g, &env, p.port);
    let before = store.sizes();
    let second = env.rehost(&["backup"]);
    second.expect(0);
    let second_id = backup_id(&second.stdout());
    let after = store.sizes();
    let m2 = store.manifest(&second_id);
    let blocks2 = block_set(&m2);
    let uploaded_blocks: BTreeSet<String> = blocks2.difference(&blocks1).cloned().collect();
    assert_eq!(
        uploaded_blocks.len(),
        new.len() + 1,
        "new blocks and the head"
    );
    assert!(uploaded_blocks.is_superset(&new));
    assert!(blocks2.is_superset(&old), "old blocks are referenced");
    let created: u64 = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(_, s)| s)
        .sum();
    let new_block_bytes: u64 = after
        .iter()
        .filter(|(k, _)| {
            uploaded_blocks
                .iter()
                .any(|u| k.ends_with(&format!("blocks/{u}.tar.gz")))
        })
        .map(|(_, s)| s)
        .sum();
    let per_backup: u64 = after
        .iter()
        .filter(|(k, _)| k.contains(&format!("/{second_id}/")))
        .map(|(_, s)| s)
        .sum();
    let metrics = env.metrics().join("rehost-backup-prom.prom");
    let reported = metric(&metrics, "rehost_job_last_bytes", "backup", "prom").unwrap() as u64;
    assert_eq!(
        reported, created,
        "uploaded bytes are exactly the new objects"
    );
    assert_eq!(created, new_block_bytes + per_backup);
    let old_block_bytes: u64 = after
        .iter()
        .filter(|(k, _)| {
            old.iter()
                .any(|u| k.ends_with(&format!("blocks/{u}.tar.gz")))
        })
        .map(|(_, s)| s)
        .sum();
    assert!(old_block_bytes > 0);
    promtool_check(&metrics);
    p.stop();

    // Retention: the first backup goes, and with it the one block only it
    // referenced (its head); every block the kept backup lists stays.
    prune_deletes_one_block(&env, &store);
    let left: BTreeSet<String> = store
        .sizes()
        .keys()
        .filter_map(|k| k.strip_prefix("e2e-host/prom/blocks/"))
        .map(|k| k.trim_end_matches(".tar.gz").to_string())
        .collect();
    assert_eq!(left, blocks2);

    // Lose the machine's data, restore the newest backup, start anew.
    fs::remove_dir_all(&data).unwrap();
    env.rehost(&["restore"]).expect(0);
    let meta = fs::metadata(&data).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "owner: applied");
    for u in blocks2.iter() {
        assert!(
            data.join(u).join("meta.json").is_file(),
            "block {u} restored"
        );
        let m = fs::metadata(data.join(u).join("index")).unwrap();
        assert_eq!(m.uid(), 65534);
    }
    let mut restored = Prometheus::start(&dir, &data, false);
    assert_eq!(
        restored.query_range("rehost_test_value", old_range.0, old_range.1, 60),
        want_old,
        "the restored TSDB answers the old range as the original did"
    );
    assert_eq!(
        restored.query_range("up", started, head_end, 1),
        want_head,
        "samples from the original's head are there too"
    );
    let newer = restored.query_range("rehost_test_value", t - 20 * HOUR, t - 14 * HOUR, 60);
    assert_eq!(newer["result"].as_array().unwrap().len(), 3);
    restored.stop();

    env.rehost(&["verify", "prom"]).expect(0);
}

#[test]
fn a_disabled_admin_api_is_a_clear_error_and_a_recorded_failure() {
    let Some(g) = garage() else { return };
    if prometheus_bin().is_none() {
        return;
    }
    let (env, dir, data) = prometheus_env(&g);
    let p = Prometheus::start(&dir, &data, false);
    configure(&g, &env, p.port);
    let run = env.rehost(&["backup"]);
    run.expect(1);
    assert!(
        run.stderr().contains("--web.enable-admin-api"),
        "{}",
        run.stderr()
    );
    let metrics = env.metrics().join("rehost-backup-prom.prom");
    assert_eq!(
        metric(&metrics, "rehost_job_last_status", "backup", "prom"),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "rehost_job_failures_total", "backup", "prom"),
        Some(1.0)
    );
    assert!(!data.join("snapshots").exists());
    // Nothing reached the store.
    let store = Store::open(&g, &env);
    assert!(store.sizes().is_empty());
}

/// `storage.encryption` with `kind: prometheus`: every block is an age file
/// named for its recipients, an encrypted backup reuses only blocks encrypted
/// to the same keys, retention collects them by name, and the restored TSDB
/// answers as the original did.
#[test]
fn encrypted_blocks_are_reused_per_key_and_restore() {
    let Some(g) = garage() else { return };
    if prometheus_bin().is_none() || !rehost_tests::age::available() {
        return;
    }
    let (env, dir, data) = prometheus_env(&g);
    let t = now();
    let old = backfill(&dir, &data, t - 10 * HOUR, t - 3 * HOUR);
    let key = env.path("age.key");
    let (public, _) = rehost_tests::age::keygen(&key);
    let mut p = Prometheus::start(&dir, &data, true);
    configure(&g, &env, p.port);
    env.set_encryption(&public, Some(&key));
    // Samples in the head, so that each snapshot has a block of its own.
    wait_for_self_scrape(&mut p);
    let old_range = (t - 10 * HOUR, t - 3 * HOUR);
    let want_old = p.query_range("rehost_test_value", old_range.0, old_range.1, 60);
    assert_eq!(want_old["result"].as_array().unwrap().len(), 3);

    let store = Store::open(&g, &env);
    let first = env.rehost(&["backup"]);
    first.expect(0);
    let m1 = store.manifest(&backup_id(&first.stdout()));
    assert_eq!(m1["encryption"]["scheme"], "age");
    let digest = m1["encryption"]["recipients"].as_str().unwrap().to_string();
    let sealed_name = |ulid: &str| format!("blocks/{ulid}.{}.tar.gz.age", &digest[..16]);
    let names: Vec<String> = store.sizes().into_keys().collect();
    for u in &old {
        assert!(
            names.iter().any(|k| k.ends_with(&sealed_name(u))),
            "block {u} is not stored encrypted: {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|k| k.ends_with(".tar.gz") || k.ends_with("/data.tar.gz")),
        "a plain object was stored: {names:?}"
    );

    // Same keys: the old blocks are referenced, only the head is new.
    let second = env.rehost(&["backup"]);
    second.expect(0);
    assert!(
        second
            .stdout()
            .contains(&format!("1 block new, {} blocks already stored", old.len())),
        "{}",
        second.stdout()
    );
    // Retention (keep last 1): the first backup's head block goes, by name.
    prune_deletes_one_block(&env, &store);
    p.stop();

    fs::remove_dir_all(&data).unwrap();
    env.rehost(&["restore"]).expect(0);
    let mut restored = Prometheus::start(&dir, &data, false);
    assert_eq!(
        restored.query_range("rehost_test_value", old_range.0, old_range.1, 60),
        want_old,
        "the restored TSDB answers the old range as the original did"
    );
    restored.stop();
    let verify = env.rehost(&["verify", "prom"]);
    verify.expect(0);
    assert!(verify.stdout().contains("is intact"), "{}", verify.stdout());
}

/// The requests of a routine `kind: prometheus` backup (nothing new but the
/// head) and of the prune after it, once the prunes are in their steady
/// state (each marks the head block the dropped backup alone referenced,
/// and deletes one marked a day earlier), for the README's scale model.
#[test]
fn requests_of_a_routine_backup_and_prune() {
    use rehost_tests::faultproxy::{by_operation, FaultProxy};
    let Some(g) = garage() else { return };
    if prometheus_bin().is_none() {
        return;
    }
    let (env, dir, data) = prometheus_env(&g);
    let t = now();
    backfill(&dir, &data, t - 10 * HOUR, t - 3 * HOUR);
    let mut p = Prometheus::start(&dir, &data, true);
    configure(&g, &env, p.port);
    wait_for_self_scrape(&mut p);
    let store = Store::open(&g, &env);
    env.rehost(&["backup"]).expect(0);
    env.rehost(&["backup"]).expect(0);
    // Marks the first backup's head; a day later, the next prune deletes it.
    env.rehost(&["prune"]).expect(0);
    store.age_marks(25 * HOUR);

    let proxy = FaultProxy::start(&g.endpoint, Vec::new());
    let state = STATE
        .replace("ROOT", &env.dir.path().display().to_string())
        .replace("PORT", &p.port.to_string());
    env.write_config(&g, &proxy.endpoint(), &state);
    let count = |from: usize| {
        let seen = proxy.stats().requests;
        (seen.len(), by_operation(&g.bucket, &seen[from..]))
    };
    let backup = env.rehost(&["backup"]);
    backup.expect(0);
    assert!(
        backup.stdout().contains("1 block new"),
        "{}",
        backup.stdout()
    );
    let (after_backup, backup_ops) = count(0);
    env.rehost(&["prune"]).expect(0);
    let (after_prune, prune_ops) = count(after_backup);
    let deleted = prune_ops.get("DELETE").copied().unwrap_or(0);
    assert!(deleted >= 2, "the aged block and its mark: {prune_ops:?}");
    println!(
        "kind: prometheus, requests of a routine backup (head only new): {after_backup} {backup_ops:?}; \
         of the prune after it (drops 1 backup, marks 1 block, deletes 1 marked a day ago): {} {prune_ops:?}",
        after_prune - after_backup
    );
    assert!(after_backup <= 12 && after_prune - after_backup <= 14);
    p.stop();
}
