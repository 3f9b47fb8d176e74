//! `kind: sqlite`: consistent copies of live SQLite databases.
//!
//! A database that its application writes while a plain copy reads it can be
//! copied half old, half new, which SQLite then reports as corrupt. Each file
//! matching the entry's `databases` globs is therefore copied with SQLite's
//! online backup API into a private temporary directory (`$TMPDIR`, default
//! `/tmp`, mode 0700, never inside the source, so the application and its file
//! watchers see nothing), checked with `PRAGMA integrity_check`, and archived
//! under the database's own name in place of the live file. The live file's
//! `-wal`, `-shm` and `-journal` companions are left out: the copy is complete
//! without them. Every other file (plugins, provisioning) is archived as is.
//! The temporary directory is removed when [`Copies`] is dropped, on success
//! and on every error.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::archive::{self, Entry, SourceKind};
use crate::cancel::{self, CancellationToken};
use crate::error::{Error, Result};

/// Database files when the entry names none: what Grafana and most
/// applications call theirs.
pub const DEFAULT_DATABASES: &[&str] = &["*.db", "*.sqlite", "*.sqlite3"];

/// Pages copied per step (1 MiB with 4 KiB pages): the writer waits at most
/// for one step, not for the whole copy.
const PAGES_PER_STEP: i32 = 256;
const PAUSE_BETWEEN_STEPS: Duration = Duration::from_millis(5);
/// How long a step waits for a writer's lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds of SQLITE_BUSY/LOCKED tolerated in the final one-step copy.
const MAX_BUSY_ROUNDS: u32 = 600;
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Consistent copies of the databases of one source, by relative path.
pub struct Copies {
    _dir: tempfile::TempDir,
    copies: HashMap<PathBuf, PathBuf>,
    companions: HashSet<PathBuf>,
}

impl Copies {
    /// How the archive writer treats an entry of the source.
    pub fn entry(&self, rel: &Path, meta: &Metadata) -> Entry {
        if meta.is_file() {
            if let Some(copy) = self.copies.get(rel) {
                return Entry::Replace(copy.clone());
            }
            if self.companions.contains(rel) {
                return Entry::Skip;
            }
        }
        Entry::Keep
    }

    pub fn count(&self) -> usize {
        self.copies.len()
    }
}

/// Copies every database of `root` that matches `patterns` (see [`matches`]).
/// A `root` that is a single file is itself the database.
pub fn copy_databases(root: &Path, patterns: &[String]) -> Result<Copies> {
    copy_databases_until(root, patterns, &CancellationToken::new())
}

/// [`copy_databases`], stopping with [`Error::Cancelled`] once `cancel` is
/// cancelled (checked between files and between steps of a copy).
pub fn copy_databases_until(
    root: &Path,
    patterns: &[String],
    cancel: &CancellationToken,
) -> Result<Copies> {
    let dir = tempfile::Builder::new()
        .prefix(".rehost-sqlite-")
        .tempdir()
        .map_err(|e| Error::io("create a temporary directory for database copies", e))?;
    let (kind, _) = archive::source_kind(root)
        .map_err(|e| Error::io(format!("read source {}", root.display()), e))?;
    let mut found: Vec<PathBuf> = Vec::new();
    archive::walk(root, &mut |e| {
        cancel::check(cancel)?;
        if e.meta.is_file() && (kind == SourceKind::File || matches_any(patterns, e.rel)) {
            found.push(e.rel.to_path_buf());
        }
        Ok(())
    })
    .map_err(|e| Error::io(format!("read source {}", root.display()), e))?;

    let mut copies = HashMap::new();
    let mut companions = HashSet::new();
    for (i, rel) in found.into_iter().enumerate() {
        let live = match kind {
            SourceKind::File => root.to_path_buf(),
            SourceKind::Dir => root.join(&rel),
        };
        // Numbered names: the copies' directory needs no tree of its own.
        let copy = dir.path().join(format!("{i}.db"));
        copy_one(&live, &copy, cancel)?;
        for suffix in COMPANIONS {
            let mut name = OsString::from(rel.as_os_str());
            name.push(suffix);
            companions.insert(PathBuf::from(name));
        }
        tracing::debug!(database = %live.display(), "consistent copy taken");
        copies.insert(rel, copy);
    }
    Ok(Copies {
        _dir: dir,
        copies,
        companions,
    })
}

fn db_error(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Database {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Online backup of `live` into the new file `copy`, then an integrity check
/// of the copy.
fn copy_one(live: &Path, copy: &Path, cancel: &CancellationToken) -> Result<()> {
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    // Read-only, never created: a backup must not make an empty database
    // appear where the application expects to create its own.
    let source = Connection::open_with_flags(
        live,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_error(live, format!("open: {e}")))?;
    source
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| db_error(live, e))?;
    let mut dest = Connection::open(copy).map_err(|e| db_error(copy, format!("create: {e}")))?;
    {
        let backup =
            Backup::new(&source, &mut dest).map_err(|e| db_error(live, format!("backup: {e}")))?;
        run_backup(&backup, cancel).map_err(|e| {
            if cancel.is_cancelled() {
                Error::Cancelled
            } else {
                db_error(live, format!("backup: {e}"))
            }
        })?;
    }
    drop(source);
    let problems = integrity_problems(&dest).map_err(|e| db_error(live, e))?;
    if !problems.is_empty() {
        return Err(db_error(
            live,
            format!(
                "the copy fails PRAGMA integrity_check: {}",
                problems.join("; ")
            ),
        ));
    }
    dest.close()
        .map_err(|(_, e)| db_error(copy, format!("close: {e}")))?;
    Ok(())
}

/// Steps through the database; a write by another connection restarts the
/// copy, so when the application keeps writing, the rest is copied in one
/// step (which holds a read lock only as long as that copy takes).
fn run_backup(backup: &Backup<'_, '_>, cancel: &CancellationToken) -> rusqlite::Result<()> {
    let mut steps: u64 = 0;
    let mut limit: u64 = 16;
    let interrupted = || {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERRUPT),
            Some("cancelled".into()),
        )
    };
    loop {
        if cancel.is_cancelled() {
            return Err(interrupted());
        }
        match backup.step(PAGES_PER_STEP)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {}
            // rusqlite's StepResult is non-exhaustive.
            _ => {}
        }
        steps += 1;
        if steps == 1 {
            let pages = backup.progress().pagecount.max(0) as u64;
            limit = 4 * (pages / PAGES_PER_STEP as u64 + 1) + 16;
        }
        if steps >= limit {
            break;
        }
        std::thread::sleep(PAUSE_BETWEEN_STEPS);
    }
    for _ in 0..MAX_BUSY_ROUNDS {
        if cancel.is_cancelled() {
            return Err(interrupted());
        }
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the database stayed locked by its writer".into()),
    ))
}

/// What `PRAGMA integrity_check` reports (at most 10 lines); empty when "ok".
fn integrity_problems(db: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = db.prepare("PRAGMA integrity_check(10)")?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if rows == ["ok"] {
        Ok(Vec::new())
    } else {
        Ok(rows)
    }
}

fn matches_any(patterns: &[String], rel: &Path) -> bool {
    patterns.iter().any(|p| matches(p, rel))
}

/// Shell-style glob: `*` any run of characters but `/`, `?` one character but
/// `/`. A pattern without `/` matches the file name at any depth
/// (`*.db`); one with `/` matches the whole relative path (`data/*.db`).
pub fn matches(pattern: &str, rel: &Path) -> bool {
    let text = if pattern.contains('/') {
        rel.as_os_str().as_bytes()
    } else {
        match rel.file_name() {
            Some(n) => n.as_bytes(),
            None => return false,
        }
    };
    glob(pattern.as_bytes(), text)
}

fn glob(p: &[u8], t: &[u8]) -> bool {
    // Iterative matcher with one backtrack point, linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(b'?') if t[ti] != b'/' => {
                pi += 1;
                ti += 1;
            }
            Some(&c) if c != b'?' && c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) if t[st] != b'/' => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| matches(p, Path::new(t));
        assert!(m("*.db", "grafana.db"));
        assert!(m("*.db", "sub/dir/grafana.db"));
        assert!(!m("*.db", "grafana.db-wal"));
        assert!(!m("*.db", "grafana.dbx"));
        assert!(m("grafana.db", "grafana.db"));
        assert!(m("g?afana.*", "grafana.db"));
        assert!(m("data/*.sqlite", "data/x.sqlite"));
        assert!(!m("data/*.sqlite", "data/sub/x.sqlite"));
        assert!(!m("data/*.sqlite", "x.sqlite"));
        assert!(m("*", "anything"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn copies_are_consistent_and_companions_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("grafana");
        std::fs::create_dir_all(root.join("plugins")).unwrap();
        std::fs::write(root.join("plugins/p.js"), "x").unwrap();
        let db = Connection::open(root.join("grafana.db")).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);",
        )
        .unwrap();
        let patterns: Vec<String> = DEFAULT_DATABASES.iter().map(|s| s.to_string()).collect();
        let copies = copy_databases(&root, &patterns).unwrap();
        assert_eq!(copies.count(), 1);
        let meta = std::fs::metadata(root.join("grafana.db")).unwrap();
        let Entry::Replace(copy) = copies.entry(Path::new("grafana.db"), &meta) else {
            panic!("the database is not replaced by its copy");
        };
        assert!(!copy.starts_with(&root), "copy written into the source");
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3, "rows in the WAL must be in the copy");
        assert!(matches!(
            copies.entry(Path::new("grafana.db-wal"), &meta),
            Entry::Skip
        ));
        assert!(matches!(
            copies.entry(Path::new("plugins/p.js"), &meta),
            Entry::Keep
        ));
        let tmp = copy.parent().unwrap().to_path_buf();
        drop(copies);
        assert!(!tmp.exists(), "temporary directory left behind");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.db"), "not sqlite at all, just text").unwrap();
        let err = copy_databases(dir.path(), &["*.db".to_string()])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("notes.db"), "{err}");
    }
}
