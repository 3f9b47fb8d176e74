//! `kind: sqlite` against a real Garage: databases written continuously by
//! other threads are backed up 20 times; every restored copy passes
//! `PRAGMA integrity_check` and is consistent (rows = counter, updated in the
//! same transaction); other files come back as files; nothing is written into
//! the source or left in `$TMPDIR`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rehost_tests::{garage, TestEnv};
use rusqlite::Connection;

const BACKUPS: usize = 20;

fn create(path: &Path, wal: bool) {
    let db = Connection::open(path).unwrap();
    if wal {
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
    }
    db.execute_batch(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB);
         CREATE TABLE counter(n INTEGER NOT NULL);
         INSERT INTO counter VALUES (0);",
    )
    .unwrap();
}

/// Inserts a row and bumps the counter in one transaction, until told to stop
/// (bounded in count and time); returns the number of commits.
fn writer(path: PathBuf, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut db = Connection::open(&path).unwrap();
        db.busy_timeout(Duration::from_secs(30)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut commits = 0;
        while !stop.load(Ordering::Relaxed) && commits < 2_000_000 && Instant::now() < deadline {
            let tx = db
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            tx.execute("INSERT INTO items(body) VALUES (randomblob(300))", [])
                .unwrap();
            tx.execute("UPDATE counter SET n = n + 1", []).unwrap();
            tx.commit().unwrap();
            commits += 1;
            // Hundreds of commits a second, like a busy application: enough to
            // land inside every copy, not so many that the database balloons.
            thread::sleep(Duration::from_millis(2));
        }
        commits
    })
}

/// Rows, counter and integrity of a restored database (opened read-only: the
/// check must not change what it checks).
fn check(path: &Path) -> (i64, i64) {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        assert!(
            !Path::new(&companion).exists(),
            "{} restored with a {suffix} file",
            path.display()
        );
    }
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{}", path.display());
    let rows: i64 = db
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    let n: i64 = db
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    (rows, n)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        out.push(e.unwrap().file_name().to_string_lossy().into_owned());
    }
    out.sort();
    out
}

#[test]
fn databases_written_during_twenty_backups_restore_consistent() {
    let Some(g) = garage() else { return };
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");
    let root = env.path("grafana");
    fs::create_dir_all(root.join("plugins/panel")).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    fs::write(root.join("plugins/panel/plugin.json"), r#"{"id":"panel"}"#).unwrap();
    fs::write(root.join("grafana.ini"), "[server]\nhttp_port = 3000\n").unwrap();
    // Grafana's default rollback journal, and a WAL database deeper down.
    create(&root.join("grafana.db"), false);
    create(&root.join("data/extra.sqlite"), true);
    let state = format!(
        "  grafana:\n    path: {}\n    kind: sqlite\n    databases: [\"*.db\", \"data/*.sqlite\"]\n",
        root.display()
    );
    env.write_config(&g, &g.endpoint, &state);
    let tmp = env.path("tmp");
    fs::create_dir_all(&tmp).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        writer(root.join("grafana.db"), stop.clone()),
        writer(root.join("data/extra.sqlite"), stop.clone()),
    ];
    let mut ids = Vec::new();
    for _ in 0..BACKUPS {
        let run = env.rehost_env(&["backup"], &[("TMPDIR", &tmp)]);
        run.expect(0);
        let out = run.stdout();
        let id = out
            .split("uploaded backup ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("the writers changed nothing? {out}"))
            .to_string();
        ids.push(id);
        assert!(
            listing(&tmp).is_empty(),
            "copies left in $TMPDIR: {:?}",
            listing(&tmp)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let commits: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(commits.iter().all(|&c| c > 0), "{commits:?}");
    // Nothing of rehost's in the source: only the databases and their companions.
    let mut names = listing(&root);
    names.retain(|n| !n.starts_with("grafana.db-"));
    assert_eq!(names, ["data", "grafana.db", "grafana.ini", "plugins"]);

    let mut last = [(0i64, 0i64); 2];
    for id in &ids {
        env.rehost(&["restore", "grafana", "--force", "--backup", id])
            .expect(0);
        for (i, db) in ["grafana.db", "data/extra.sqlite"].iter().enumerate() {
            let (rows, n) = check(&root.join(db));
            assert_eq!(rows, n, "{db} of backup {id}: rows and counter disagree");
            assert!(rows >= last[i].0, "{db}: backup {id} went back in time");
            last[i] = (rows, n);
        }
        assert_eq!(
            fs::read_to_string(root.join("plugins/panel/plugin.json")).unwrap(),
            r#"{"id":"panel"}"#
        );
    }
    // The writers ran during the backups: the copies are of a moving target.
    let first = {
        env.rehost(&["restore", "grafana", "--force", "--backup", &ids[0]])
            .expect(0);
        check(&root.join("grafana.db")).0
    };
    assert!(
        last[0].0 > first,
        "no write happened between the first and last backup"
    );
}

#[test]
fn a_file_matching_the_glob_that_is_not_a_database_fails_the_backup() {
    let Some(g) = garage() else { return };
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");
    let root = env.path("app");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("notes.db"), "plain text, not SQLite at all").unwrap();
    let state = format!("  app:\n    path: {}\n    kind: sqlite\n", root.display());
    env.write_config(&g, &g.endpoint, &state);
    let run = env.rehost(&["backup"]);
    run.expect(1);
    assert!(run.stderr().contains("notes.db"), "{}", run.stderr());
    let list = env.rehost(&["backups", "list", "app"]);
    list.expect(0);
    assert!(
        list.stdout().starts_with("no backups in "),
        "a failed backup left something: {}",
        list.stdout()
    );
}
