//! The rehost binary against a real Garage: what a user runs and sees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rehost_tests::{garage, promtool_check, TestEnv};

const STATE: &str = r#"  acme:
    path: ROOT/acme/acme.json
    mode: "0600"
    required: true
    backup: "* * * * *"
    keep: { last: 2 }
  site:
    path: ROOT/site
"#;

fn env_with_state() -> Option<(rehost_tests::Garage, TestEnv)> {
    let g = garage()?;
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");
    let state = STATE.replace("ROOT", &env.dir.path().display().to_string());
    env.write_config(&g, &g.endpoint, &state);
    fs::create_dir_all(env.path("acme")).unwrap();
    fs::write(env.path("acme/acme.json"), br#"{"le":{"Certificates":[]}}"#).unwrap();
    fs::set_permissions(
        env.path("acme/acme.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::create_dir_all(env.path("site/img")).unwrap();
    fs::write(env.path("site/index.html"), "<h1>hi</h1>").unwrap();
    fs::write(env.path("site/img/logo.svg"), "<svg/>").unwrap();
    Some((g, env))
}

#[test]
fn backup_destroy_restore_keeps_acme_0600_and_writes_metrics() {
    let Some((g, env)) = env_with_state() else {
        return;
    };
    let first = env.rehost(&["backup"]);
    first.expect(0);
    assert!(
        first.stdout().contains("acme: uploaded backup"),
        "{}",
        first.stdout()
    );
    let again = env.rehost(&["backup"]);
    again.expect(0);
    assert_eq!(
        again.stdout().matches("nothing uploaded").count(),
        2,
        "{}",
        again.stdout()
    );

    let original = fs::read(env.path("acme/acme.json")).unwrap();
    fs::remove_dir_all(env.path("acme")).unwrap();
    fs::remove_dir_all(env.path("site")).unwrap();

    let dry = env.rehost(&["--dry-run", "restore"]);
    dry.expect(0);
    assert!(dry.stdout().contains("would restore"), "{}", dry.stdout());
    assert!(!env.path("acme").exists(), "dry run restored something");

    env.rehost(&["restore"]).expect(0);
    assert_eq!(fs::read(env.path("acme/acme.json")).unwrap(), original);
    let mode = fs::metadata(env.path("acme/acme.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        fs::read_to_string(env.path("site/img/logo.svg")).unwrap(),
        "<svg/>"
    );

    // if-missing: a second restore leaves the present state alone.
    let skip = env.rehost(&["restore", "acme"]);
    skip.expect(0);
    assert!(skip.stdout().contains("skipped"), "{}", skip.stdout());

    let list = env.rehost(&["backups", "list"]);
    list.expect(0);
    assert_eq!(list.stdout().lines().count(), 3, "{}", list.stdout());
    env.rehost(&["verify"]).expect(0);
    assert!(env
        .rehost(&["backups", "list", "acme"])
        .stdout()
        .contains(" yes"));

    for job in [
        "backup-acme",
        "backup-site",
        "restore-acme",
        "restore-site",
        "verify-acme",
    ] {
        let file = env.metrics().join(format!("rehost-{job}.prom"));
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.contains("rehost_job_last_status{"), "{job}: {text}");
        assert!(text.contains("} 1\n"), "{job}: {text}");
        promtool_check(&file);
    }
    let all = [first.all(), again.all(), list.all()].concat();
    assert!(
        !all.contains(&g.secret),
        "the secret key appeared in the output"
    );
}

#[test]
fn storage_down_exits_3_and_records_the_failure() {
    let Some((g, env)) = env_with_state() else {
        return;
    };
    env.rehost(&["backup", "acme"]).expect(0);
    let state = STATE.replace("ROOT", &env.dir.path().display().to_string());
    // Nothing listens on port 9 of loopback.
    env.write_config(&g, "http://127.0.0.1:9", &state);
    let run = env.rehost(&["restore", "acme", "--force"]);
    run.expect(3);
    assert!(run.stderr().contains("unreachable"), "{}", run.stderr());
    fs::write(env.path("acme/acme.json"), "changed").unwrap();
    env.rehost(&["backup", "acme"]).expect(3);
    let text = fs::read_to_string(env.metrics().join("rehost-backup-acme.prom")).unwrap();
    assert!(
        text.contains("rehost_job_last_status{job=\"backup\",target=\"acme\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("rehost_job_failures_total{job=\"backup\",target=\"acme\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains(
            "rehost_job_last_success_timestamp_seconds{job=\"backup\",target=\"acme\"} 0\n"
        ),
        "a failure erased the last success: {text}"
    );
    let check = env.rehost(&["check"]);
    check.expect(3);
}

#[test]
fn bad_config_names_file_line_and_key_with_exit_2() {
    let Some((g, env)) = env_with_state() else {
        return;
    };
    let state = STATE
        .replace("ROOT", &env.dir.path().display().to_string())
        .replace("mode: \"0600\"", "mode: \"rw\"");
    env.write_config(&g, &g.endpoint, &state);
    let run = env.rehost(&["check"]);
    run.expect(2);
    let config = env.config.display().to_string();
    // Line 12: `host:` and `state_dir:` come first.
    let expected = format!("{config}:12:5: state.acme.mode:");
    assert!(
        run.stderr().contains(&expected),
        "wanted {expected} in: {}",
        run.stderr()
    );

    fs::write(
        &env.config,
        "host: x\nstorage:\n  url: s3://b\n  endpiont: http://x\n",
    )
    .unwrap();
    let run = env.rehost(&["check"]);
    run.expect(2);
    assert!(
        run.stderr().contains(":4:3: storage.endpiont: unknown key"),
        "{}",
        run.stderr()
    );

    fs::write(&env.config, "host: [unclosed\n").unwrap();
    env.rehost(&["backup"]).expect(2);
}

#[test]
fn prune_applies_keep_last_and_dry_run_deletes_nothing() {
    let Some((_g, env)) = env_with_state() else {
        return;
    };
    for i in 0..4 {
        fs::write(env.path("acme/acme.json"), format!("{{\"v\":{i}}}")).unwrap();
        env.rehost(&["backup", "acme"]).expect(0);
    }
    let listed = |env: &TestEnv| {
        env.rehost(&["backups", "list", "acme"])
            .stdout()
            .lines()
            .count()
            - 1
    };
    assert_eq!(listed(&env), 4);
    let dry = env.rehost(&["--dry-run", "prune"]);
    dry.expect(0);
    assert_eq!(
        dry.stdout().matches("would delete backup").count(),
        2,
        "{}",
        dry.stdout()
    );
    assert_eq!(listed(&env), 4);
    let run = env.rehost(&["prune"]);
    run.expect(0);
    assert!(
        run.stdout().contains("site: no keep policy"),
        "{}",
        run.stdout()
    );
    assert_eq!(listed(&env), 2);
    // The newest is what a restore gets.
    fs::remove_file(env.path("acme/acme.json")).unwrap();
    env.rehost(&["restore", "acme"]).expect(0);
    assert_eq!(
        fs::read_to_string(env.path("acme/acme.json")).unwrap(),
        "{\"v\":3}"
    );
    promtool_check(&env.metrics().join("rehost-prune-acme.prom"));
}
