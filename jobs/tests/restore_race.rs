//! Root's restore cannot be redirected by the user who owns the target's
//! parent directory (issue 14, section 3).
//!
//! Layout, as cloud-init makes it: the target's parent belongs to another
//! user (uid 65534 here), root restores into it. That user runs a separate
//! process (this test binary again, under `setpriv`) which, in a tight loop,
//! atomically swaps every new entry of the parent (staging directories,
//! temporaries) for a symlink to a canary directory, keeping the original
//! under a name of its own. Meanwhile root restores a file entry and a
//! directory entry many times. The canary must stay empty with its mode,
//! owner and mtime unchanged, and after every restore, successful or not,
//! the target must hold exactly the backup.
//!
//! The attacker leaves alone the targets' own names (the owner of a
//! directory can always replace those, and no restore can prevent it) and
//! the lock files (a symlink there makes every later restore fail, which a
//! separate check below covers: it must fail and create nothing).
//!
//! Needs root (to restore as root and become uid 65534) and util-linux
//! `setpriv`: without them the test is skipped with a reason, except under
//! `CI=true`, where it fails.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{describe, forced, spec, stores};
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use rehost_jobs::backup::backup;
use rehost_jobs::restore::{restore, RestoreOutcome};

const HOST: &str = "race-host";
/// The other user: `nobody` on Debian.
const ATTACKER: u32 = 65534;
/// Set in the attacker's environment: the directory it attacks.
const ENV_DIR: &str = "REHOST_RACE_ATTACK_DIR";
const ENV_CANARY: &str = "REHOST_RACE_CANARY";
const ENV_STOP: &str = "REHOST_RACE_STOP";
const ENV_SPARE: &str = "REHOST_RACE_SPARE";
/// The attacker gives up after this long even if never told to stop.
const ATTACK_BOUND: Duration = Duration::from_secs(300);
const TEST_NAME: &str = "restores_stay_inside_while_another_user_swaps_entries";

/// Root and `setpriv`, or the reason this run cannot have them.
fn preconditions() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("it must run as root (CI does)".into());
    }
    match Command::new("setpriv").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("util-linux `setpriv` is missing (scripts/install-tools.sh installs it)".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_stay_inside_while_another_user_swaps_entries() {
    if let Ok(dir) = std::env::var(ENV_DIR) {
        // We are the attacker process (see `spawn_attacker`).
        attack(Path::new(&dir));
        return;
    }
    if let Err(why) = preconditions() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but the restore race test cannot run: {why}");
        }
        eprintln!("skipping the restore race test: {why}");
        return;
    }
    for (i, t) in stores("restore-race").into_iter().enumerate() {
        // The directory store carries the full count; a smaller round on
        // Garage shows the same with a real S3 store.
        let rounds = if i == 0 { 100 } else { 10 };
        race_round(&t, rounds).await;
    }
}

async fn race_round(t: &common::TestStore, rounds: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path();
    // The attacker must reach its directory and its own copy of this binary.
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    let canary = top.join("canary");
    fs::create_dir(&canary).unwrap();
    fs::set_permissions(&canary, fs::Permissions::from_mode(0o755)).unwrap();
    let parent = top.join("srv-acme");
    fs::create_dir(&parent).unwrap();

    // The state to back up and restore: one file, one tree.
    let file_target = parent.join("acme.json");
    fs::write(
        &file_target,
        r#"{"le":{"Account":{"Email":"ops@example.com"}}}"#,
    )
    .unwrap();
    fs::set_permissions(&file_target, fs::Permissions::from_mode(0o600)).unwrap();
    let dir_target = parent.join("data");
    fs::create_dir_all(dir_target.join("sub/deeper")).unwrap();
    for (i, rel) in ["a.txt", "sub/b.bin", "sub/deeper/c"].iter().enumerate() {
        fs::write(
            dir_target.join(rel),
            format!("file {i}\n").repeat(100 * (i + 1)),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("sub/b.bin", dir_target.join("link")).unwrap();
    let file_spec = {
        let mut s = spec("acme", file_target.clone());
        s.mode = Some(0o600);
        s
    };
    let dir_spec = spec("data", dir_target.clone());
    backup(t.store.as_ref(), HOST, &file_spec, false)
        .await
        .unwrap();
    backup(t.store.as_ref(), HOST, &dir_spec, false)
        .await
        .unwrap();
    let file_bytes = fs::read(&file_target).unwrap();
    let dir_tree = describe(&dir_target);

    // Now the parent belongs to the other user, as /srv/acme does.
    nix::unistd::chown(&parent, Some(ATTACKER.into()), Some(ATTACKER.into())).unwrap();
    let canary_before = fingerprint(&canary);

    // A planted lock symlink: the restore fails and creates nothing.
    let lock = parent.join(".rehost-acme.lock");
    fs::remove_file(&lock).ok();
    std::os::unix::fs::symlink(canary.join("created-by-root"), &lock).unwrap();
    nix::unistd::fchownat(
        AT_FDCWD,
        &lock,
        Some(ATTACKER.into()),
        Some(ATTACKER.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let e = restore(t.store.as_ref(), HOST, &file_spec, &forced())
        .await
        .expect_err("a restore through a planted lock symlink");
    assert!(e.to_string().contains("lock"), "{e}");
    assert_eq!(
        fingerprint(&canary),
        canary_before,
        "{}: the lock symlink was followed",
        t.name
    );
    fs::remove_file(&lock).unwrap();

    let stop = top.join("stop");
    let mut attacker = spawn_attacker(top, &parent, &canary, &stop);
    let mut outcomes = Vec::new();
    for round in 0..rounds {
        for (s, is_file) in [(&file_spec, true), (&dir_spec, false)] {
            let result = restore(t.store.as_ref(), HOST, s, &forced()).await;
            // Whatever happened, the target holds the backup: a success put
            // it there, a failure left the previous (identical) content.
            if is_file {
                assert_eq!(
                    fs::read(&file_target).unwrap(),
                    file_bytes,
                    "{} round {round}: {result:?}",
                    t.name
                );
                let m = fs::symlink_metadata(&file_target).unwrap();
                assert!(
                    m.is_file() && m.mode() & 0o7777 == 0o600,
                    "{} round {round}",
                    t.name
                );
            } else {
                assert!(fs::symlink_metadata(&dir_target).unwrap().is_dir());
                assert_eq!(
                    describe(&dir_target),
                    dir_tree,
                    "{} round {round}: {result:?}",
                    t.name
                );
            }
            assert_eq!(
                fingerprint(&canary),
                canary_before,
                "{} round {round}: root wrote into the canary ({result:?})",
                t.name
            );
            match &result {
                Ok(RestoreOutcome::Restored { .. }) => {}
                Ok(other) => panic!(
                    "{} round {round}: forced restore did not restore: {other:?}",
                    t.name
                ),
                // A clean failure: an error naming what went wrong.
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            outcomes.push(result.map(|_| ()).map_err(|e| e.to_string()));
        }
    }
    fs::write(&stop, "").unwrap();
    let swaps = attacker.finish();
    assert_eq!(
        fingerprint(&canary),
        canary_before,
        "{}: canary changed",
        t.name
    );
    // Nothing appeared beside the parent either.
    let mut top_names: Vec<_> = fs::read_dir(top)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top_names.sort();
    assert_eq!(
        top_names,
        ["attacker", "canary", "srv-acme", "stop"],
        "{}",
        t.name
    );
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!(
        "{}: {ok} restores succeeded, {} failed cleanly, the attacker swapped {swaps} entries; first failures: {:?}",
        t.name,
        failed.len(),
        failed.iter().take(3).collect::<Vec<_>>()
    );
    // The attack really happened, and did not just make every restore fail.
    assert!(
        swaps >= rounds,
        "{}: the attacker swapped only {swaps} entries",
        t.name
    );
    assert!(ok > 0, "{}: no restore succeeded", t.name);
}

/// Everything the canary must keep: mode, owner, mtime, and no entries.
fn fingerprint(dir: &Path) -> (u32, u32, u32, i64, i64, Vec<OsString>) {
    let m = fs::symlink_metadata(dir).unwrap();
    let names = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    (m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec(), names)
}

struct Attacker {
    child: std::process::Child,
}

impl Attacker {
    /// Waits for the attacker to stop and returns how many entries it swapped.
    fn finish(&mut self) -> usize {
        let out = self.child.stdout.take().unwrap();
        let lines: Vec<String> = BufReader::new(out).lines().map(|l| l.unwrap()).collect();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the attacker process failed: {status}: {lines:?}"
        );
        lines
            .iter()
            .find_map(|l| l.split_once("ATTACKER_SWAPS=").map(|(_, n)| n))
            .unwrap_or_else(|| panic!("the attacker reported no count: {lines:?}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // A failed assertion must not leave the attacker looping.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs this test binary again as uid/gid 65534 (a copy it can read), in
/// attacker mode.
fn spawn_attacker(top: &Path, parent: &Path, canary: &Path, stop: &Path) -> Attacker {
    let exe = top.join("attacker");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let spare = [
        "acme.json",
        "data",
        ".rehost-acme.lock",
        ".rehost-data.lock",
    ]
    .join("/");
    let child = Command::new("setpriv")
        .args([
            &format!("--reuid={ATTACKER}"),
            &format!("--regid={ATTACKER}"),
            "--clear-groups",
        ])
        .arg(&exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, parent)
        .env(ENV_CANARY, canary)
        .env(ENV_STOP, stop)
        .env(ENV_SPARE, spare)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let attacker = Attacker { child };
    // Started when it has swapped its own probe: from then on it is looping.
    let probe = parent.join("probe");
    let started = Instant::now();
    loop {
        fs::create_dir(&probe).unwrap_or(());
        std::thread::sleep(Duration::from_millis(20));
        if fs::symlink_metadata(&probe).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&probe).unwrap();
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the attacker did not start"
        );
    }
    attacker
}

/// The attacker's loop: every new entry of `dir` (except the spared names)
/// is atomically exchanged with a fresh symlink to the canary; the original
/// stays under `.attacker-N`. Ends when the stop file appears, or after
/// [`ATTACK_BOUND`].
fn attack(dir: &Path) {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        ATTACKER,
        "the attacker must not run as root"
    );
    let canary = PathBuf::from(std::env::var(ENV_CANARY).unwrap());
    let stop = PathBuf::from(std::env::var(ENV_STOP).unwrap());
    let spare: HashSet<OsString> = std::env::var(ENV_SPARE)
        .unwrap()
        .split('/')
        .map(OsString::from)
        .collect();
    let mut done: HashSet<OsString> = HashSet::new();
    let mut swaps = 0usize;
    let started = Instant::now();
    while !stop.exists() && started.elapsed() < ATTACK_BOUND {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if spare.contains(&name)
                || done.contains(&name)
                || name.to_string_lossy().starts_with(".attacker-")
            {
                continue;
            }
            let aside = dir.join(format!(".attacker-{swaps}"));
            if std::os::unix::fs::symlink(&canary, &aside).is_err() {
                continue;
            }
            match renameat2(
                AT_FDCWD,
                &aside,
                AT_FDCWD,
                &dir.join(&name),
                RenameFlags::RENAME_EXCHANGE,
            ) {
                Ok(()) => {
                    swaps += 1;
                    done.insert(name);
                }
                // Gone before we got to it.
                Err(_) => {
                    let _ = fs::remove_file(&aside);
                }
            }
        }
    }
    println!("ATTACKER_SWAPS={swaps}");
}
