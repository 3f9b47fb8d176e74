//! A host's life across machines, through the `rehost` binary against Garage:
//! a VM rebuilt while the old one still runs (generations), `rehost init` and
//! `required`, and a boot that could not reach the store.
//!
//! Each "machine" is a [`TestEnv`] of its own (its own state paths, metrics
//! and `state_dir`) on the same bucket prefix and `host:`.

// Test code: a failed setup step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rehost_tests::{free_port, garage, Garage, TestEnv};

/// One acme.json entry, `required`, kept to the newest backup.
fn acme_state(env: &TestEnv) -> String {
    format!(
        "  acme:\n    path: {}\n    mode: \"0600\"\n    required: true\n    keep: {{ last: 1 }}\n",
        env.path("acme.json").display()
    )
}

/// A machine for the host of `first` (or a new host prefix when `None`).
fn machine(g: &Garage, first: Option<&TestEnv>) -> TestEnv {
    let mut env = TestEnv::new(g, "");
    if let Some(first) = first {
        env.prefix = first.prefix.clone();
    }
    env.write_config(g, &g.endpoint, &acme_state(&env));
    env
}

fn backups(env: &TestEnv) -> usize {
    let out = env.rehost(&["backups", "list", "acme"]);
    out.expect(0);
    out.stdout().lines().filter(|l| l.contains("g0")).count()
}

#[test]
fn a_rebuilt_host_takes_over_and_the_old_machine_writes_nothing() {
    let Some(g) = garage() else { return };
    let old = machine(&g, None);
    old.rehost(&["init"])
        .expect(0)
        .stdout()
        .contains("registered");
    assert!(old
        .rehost(&["init"])
        .expect(0)
        .stdout()
        .contains("already registered"));

    // OLD boots (a first boot: nothing to restore) and backs up v1.
    old.rehost(&["boot", "--no-run"]).expect(0);
    fs::write(old.path("acme.json"), "v1").unwrap();
    old.rehost(&["backup"]).expect(0);

    // NEW boots while OLD still runs: it restores v1, then backs up v2.
    let new = machine(&g, Some(&old));
    let boot = new.rehost(&["boot", "--no-run"]);
    boot.expect(0);
    assert_eq!(fs::read(new.path("acme.json")).unwrap(), b"v1");
    fs::write(new.path("acme.json"), "v2").unwrap();
    new.rehost(&["backup"]).expect(0);
    let before = backups(&new);

    // OLD's next backup and prune are refused (exit 4), and say by whom.
    fs::write(old.path("acme.json"), "v1, changed on the old machine").unwrap();
    let refused = old.rehost(&["backup"]);
    refused.expect(4);
    let text = refused.all();
    assert!(
        text.contains("was taken over by generation") && text.contains("nothing written"),
        "{text}"
    );
    old.rehost(&["prune"]).expect(4);
    assert_eq!(backups(&new), before, "the old machine wrote a backup");
    let metric = fs::read_to_string(old.metrics().join("rehost-generation.prom")).unwrap();
    assert!(
        metric.contains("rehost_generation_superseded{host=\"e2e-host\"} 1"),
        "{metric}"
    );
    rehost_tests::promtool_check(&old.metrics().join("rehost-generation.prom"));
    let check = old.rehost(&["check"]);
    check.expect(1);
    assert!(check.stdout().contains("NOT the newest"), "{}", check.all());
    let fine = fs::read_to_string(new.metrics().join("rehost-generation.prom")).unwrap();
    assert!(fine.contains("} 0"), "{fine}");

    // A rebuild of NEW gets v2, not what OLD held.
    let third = machine(&g, Some(&old));
    third.rehost(&["boot", "--no-run"]).expect(0);
    assert_eq!(fs::read(third.path("acme.json")).unwrap(), b"v2");
    let mode = fs::metadata(third.path("acme.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // …and NEW in turn is superseded; its prune too.
    new.rehost(&["backup"]).expect(4);
    new.rehost(&["prune"]).expect(4);
    third.rehost(&["prune"]).expect(0);
}

#[test]
fn a_required_entry_needs_a_host_the_store_knows() {
    let Some(g) = garage() else { return };
    let env = machine(&g, None);
    // Another host of the same store, so that the message has one to list.
    let other = fs::read_to_string(&env.config)
        .unwrap()
        .replace("host: e2e-host", "host: web-one");
    let other_config = env.path("other.yaml");
    fs::write(&other_config, other).unwrap();
    let registered = rehost_tests::Run(
        std::process::Command::new(rehost_tests::rehost_bin())
            .args(["-c", other_config.to_str().unwrap(), "init"])
            .output()
            .unwrap(),
    );
    registered.expect(0);

    let refused = env.rehost(&["boot", "--no-run"]);
    refused.expect(1);
    let text = refused.all();
    assert!(
        text.contains("host `e2e-host` is unknown")
            && text.contains("rehost init")
            && text.contains("web-one")
            && text.contains("Nothing was started"),
        "{text}"
    );
    assert!(!env.path("acme.json").exists());
    assert!(!env.state_dir().join("generation-e2e-host.json").exists());

    env.rehost(&["init"]).expect(0);
    let first = env.rehost(&["boot", "--no-run"]);
    first.expect(0);
    assert!(
        first.stdout().contains("no backup in storage yet"),
        "{}",
        first.all()
    );
    assert!(env
        .rehost(&["check"])
        .expect(0)
        .stdout()
        .contains("this machine runs it"));
}

#[test]
fn a_boot_that_could_not_reach_the_store_backs_nothing_up_over_the_stored_state() {
    let Some(g) = garage() else { return };
    let first = machine(&g, None);
    first.rehost(&["init"]).expect(0);
    first.rehost(&["boot", "--no-run"]).expect(0);
    fs::write(first.path("acme.json"), "stored").unwrap();
    first.rehost(&["backup"]).expect(0);

    // The second machine boots while the store is unreachable: nothing is
    // required of it here, so the stack would start…
    let second = TestEnv::new(&g, "");
    let mut second = second;
    second.prefix = first.prefix.clone();
    let state = acme_state(&second).replace("    required: true\n", "");
    let dead = format!("http://127.0.0.1:{}", free_port());
    second.write_config(&g, &dead, &state);
    second.rehost(&["boot", "--no-run"]).expect(0);
    let local = fs::read_to_string(second.state_dir().join("generation-e2e-host.json")).unwrap();
    assert!(local.contains("\"generation\": null"), "{local}");

    // …and its service writes a fresh acme.json. Once the store answers, the
    // backup refuses to make that the newest.
    fs::write(second.path("acme.json"), "fresh, empty certificates").unwrap();
    second.write_config(&g, &g.endpoint, &state);
    let refused = second.rehost(&["backup"]);
    refused.expect(1);
    assert!(
        refused
            .all()
            .contains("was not restored in this machine's generation"),
        "{}",
        refused.all()
    );
    // Emptied, it is restored first, then backed up in its own generation.
    fs::write(second.path("acme.json"), "").unwrap();
    second.rehost(&["backup"]).expect(0);
    assert_eq!(fs::read(second.path("acme.json")).unwrap(), b"stored");
    // Its generation began with that first backup: the first machine is
    // superseded.
    first.rehost(&["backup"]).expect(4);
}

/// Two daemons of the same host run at once (the old VM not destroyed yet),
/// backing up every 2 s and pruning to the 3 newest while the state keeps
/// changing on both: the old one stops writing once the new one booted, and
/// every backup left in the store verifies.
#[test]
fn two_daemons_of_one_host_leave_only_verifiable_backups() {
    let Some(g) = garage() else { return };
    let schedule = |env: &TestEnv| {
        format!(
            "  acme:\n    path: {}\n    backup: \"*/2 * * * * *\"\n    keep: {{ last: 3 }}\n",
            env.path("acme.json").display()
        )
    };
    let old = TestEnv::new(&g, "");
    old.write_config(&g, &g.endpoint, &schedule(&old));
    let mut new = TestEnv::new(&g, "");
    new.prefix = old.prefix.clone();
    new.write_config(&g, &g.endpoint, &schedule(&new));

    fs::write(old.path("acme.json"), "old 0").unwrap();
    old.rehost(&["boot", "--no-run"]).expect(0);
    let mut old_daemon = rehost_tests::run_daemon(&old, "5s");
    let changes = |env: &TestEnv, name: &str, from: u32, to: u32| {
        for i in from..to {
            fs::write(env.path("acme.json"), format!("{name} {i}")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(700));
        }
    };
    changes(&old, "old", 1, 8);
    new.rehost(&["boot", "--no-run"]).expect(0);
    let mut new_daemon = rehost_tests::run_daemon(&new, "5s");
    // Both keep changing their copy for a while; only NEW may write.
    std::thread::scope(|s| {
        s.spawn(|| changes(&old, "old", 8, 30));
        s.spawn(|| changes(&new, "new", 0, 30));
    });
    assert_eq!(
        old_daemon.terminate(std::time::Duration::from_secs(30)).0,
        0
    );
    assert_eq!(
        new_daemon.terminate(std::time::Duration::from_secs(30)).0,
        0
    );

    let log = old_daemon.log();
    assert_eq!(
        log.matches("stops backing up and pruning").count(),
        1,
        "the takeover is said once\n{log}"
    );
    let status = |env: &TestEnv, job: &str| {
        rehost_tests::metric(
            &env.metrics().join(format!("rehost-{job}-acme.prom")),
            "rehost_job_last_status",
            job,
            "acme",
        )
    };
    assert_eq!(status(&old, "backup"), Some(0.0), "{log}");
    assert_eq!(status(&new, "backup"), Some(1.0), "{}", new_daemon.log());
    assert_eq!(status(&new, "prune"), Some(1.0), "{}", new_daemon.log());

    // What is left: NEW's newest backups (its prune kept 3), all verifiable,
    // and the newest holds NEW's content.
    let list = new.rehost(&["backups", "list", "acme"]);
    list.expect(0);
    let ids: Vec<String> = list
        .stdout()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|id| id.starts_with('g'))
        .map(str::to_string)
        .collect();
    assert!(!ids.is_empty() && ids.len() <= 3, "{}", list.stdout());
    for id in &ids {
        new.rehost(&["verify", "acme", "--backup", id]).expect(0);
    }
    let third = TestEnv::new(&g, "");
    let mut third = third;
    third.prefix = old.prefix.clone();
    third.write_config(&g, &g.endpoint, &schedule(&third));
    third.rehost(&["restore"]).expect(0);
    let restored = fs::read_to_string(third.path("acme.json")).unwrap();
    assert!(restored.starts_with("new "), "{restored}");
}
