//! The secret access key never leaves the credentials file or the
//! environment: a full run of every command (text and JSON logs, `-vv`,
//! `--dry-run`, error paths with wrong credentials, a malformed credentials
//! file and storage down) is grepped, stdout, stderr, metrics and every file
//! rehost wrote, for it. The access key id is not a secret (restic hides it,
//! but AWS itself prints it in errors such as InvalidAccessKeyId), so only the
//! secret is checked, and so is the age identity's secret key (the backups of
//! the run are encrypted). A credentials file others can read draws a warning
//! that names the file and the fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rehost_tests::{age, garage, rehost_bin, Garage, Run, S3cmd, TestEnv};

fn state_and_pull(env: &TestEnv, g: &Garage) -> String {
    format!(
        "  acme:\n    path: {root}/acme/acme.json\n    mode: \"0600\"\n    keep: {{ last: 1 }}\n  \
         site:\n    path: {root}/site\npull:\n  www:\n    source: s3://{bucket}/{prefix}-src/\n    \
         dest: {root}/www/html\n    delete_removed: true\n",
        root = env.dir.path().display(),
        bucket = g.bucket,
        prefix = env.prefix
    )
}

/// Every file under `dir` whose content holds `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let data = fs::read(&p).unwrap();
                if data.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

/// `rehost -c CONFIG ARGS` with exactly the `AWS_*` variables given.
fn rehost_with_env(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(rehost_bin());
    cmd.arg("-c").arg(&env.config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "REHOST_CONFIG" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Run(cmd.output().unwrap())
}

#[test]
fn the_secret_key_appears_nowhere() {
    let Some(g) = garage() else { return };
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");
    let body = state_and_pull(&env, &g);
    env.write_config(&g, &g.endpoint, &body);
    // Backups encrypted with age, so that the identity's secret key is
    // searched for too; its file lives outside the folder searched.
    let keys = tempfile::tempdir().unwrap();
    let age_secret = age::available().then(|| {
        let key = keys.path().join("age.key");
        let (public, secret) = age::keygen(&key);
        env.set_encryption(&public, Some(&key));
        secret
    });
    fs::create_dir_all(env.path("acme")).unwrap();
    fs::write(env.path("acme/acme.json"), "{\"le\":{}}").unwrap();
    fs::create_dir_all(env.path("site")).unwrap();
    fs::write(env.path("site/index.html"), "<h1>hi</h1>").unwrap();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("page.html"), "page").unwrap();
    let Some(s3) = S3cmd::new(&g, env.dir.path()) else {
        return;
    };
    s3.run(&[
        "sync",
        &format!("{}/", src.display()),
        &format!("s3://{}/{}-src/", g.bucket, env.prefix),
    ]);
    // s3cmd's configuration holds the secret by necessity; it is not ours.
    fs::remove_file(env.dir.path().join("s3cmd.cfg")).unwrap();

    let mut runs: Vec<(String, Run)> = Vec::new();
    let mut run = |label: &str, r: Run, expected: i32| {
        r.expect(expected);
        runs.push((label.to_string(), r));
    };
    for format in ["text", "json"] {
        let f = ["--log-format", format, "-vv"];
        let with = |args: &[&'static str]| [&f[..], args].concat();
        run("backup", env.rehost(&with(&["backup"])), 0);
        fs::write(
            env.path("acme/acme.json"),
            format!("{{\"le\":\"{format}\"}}"),
        )
        .unwrap();
        run("backup again", env.rehost(&with(&["backup"])), 0);
        run(
            "dry-run backup",
            env.rehost(&with(&["--dry-run", "backup"])),
            0,
        );
        run("backups list", env.rehost(&with(&["backups", "list"])), 0);
        run("verify", env.rehost(&with(&["verify"])), 0);
        run(
            "dry-run restore",
            env.rehost(&with(&["--dry-run", "restore", "--force"])),
            0,
        );
        run("restore", env.rehost(&with(&["restore", "--force"])), 0);
        run("dry-run pull", env.rehost(&with(&["--dry-run", "pull"])), 0);
        run("pull", env.rehost(&with(&["pull"])), 0);
        run(
            "dry-run prune",
            env.rehost(&with(&["--dry-run", "prune"])),
            0,
        );
        run("prune", env.rehost(&with(&["prune"])), 0);
        run("check", env.rehost(&with(&["check"])), 0);
        run("status", env.rehost(&with(&["status"])), 0);
    }
    // Every library's events too, at the most verbose level there is.
    run(
        "RUST_LOG=trace backups list",
        {
            let mut cmd = Command::new(rehost_bin());
            cmd.arg("-c")
                .arg(&env.config)
                .args(["backups", "list"])
                .env("RUST_LOG", "trace");
            for (k, _) in std::env::vars() {
                if k.starts_with("AWS_") {
                    cmd.env_remove(k);
                }
            }
            Run(cmd.output().unwrap())
        },
        0,
    );

    // Credentials from the environment instead of a file.
    let access = std::env::var("REHOST_TEST_S3_ACCESS_KEY_ID").unwrap();
    let creds_line = format!("  credentials_file: {}\n", g.credentials.display());
    let config_text = fs::read_to_string(&env.config).unwrap();
    fs::write(&env.config, config_text.replace(&creds_line, "")).unwrap();
    let good_env = [
        ("AWS_ACCESS_KEY_ID", access.as_str()),
        ("AWS_SECRET_ACCESS_KEY", g.secret.as_str()),
    ];
    run(
        "env credentials backup",
        rehost_with_env(&env, &good_env, &["-vv", "backup"]),
        0,
    );
    // A wrong secret: refused by the store (exit 3); neither secret shown.
    let wrong = format!("{}x", g.secret);
    let bad_env = [
        ("AWS_ACCESS_KEY_ID", access.as_str()),
        ("AWS_SECRET_ACCESS_KEY", wrong.as_str()),
    ];
    for format in ["text", "json"] {
        for args in [
            &["backup"][..],
            &["restore", "--force"],
            &["pull"],
            &["check"],
        ] {
            let all = [&["-vv", "--log-format", format][..], args].concat();
            run(
                &format!("wrong secret {args:?}"),
                rehost_with_env(&env, &bad_env, &all),
                3,
            );
        }
    }
    fs::write(&env.config, &config_text).unwrap();

    // A credentials file that is malformed, or names an unknown profile.
    let bad_file = env.path("bad-credentials");
    fs::write(
        &bad_file,
        format!(
            "[default]\naws_access_key_id = {access}\naws_secret_access_key {}\n",
            g.secret
        ),
    )
    .unwrap();
    fs::set_permissions(&bad_file, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        &env.config,
        config_text.replace(
            &g.credentials.display().to_string(),
            &bad_file.display().to_string(),
        ),
    )
    .unwrap();
    let malformed = env.rehost(&["backup"]);
    run("malformed credentials file", malformed, 3);
    fs::write(&env.config, &config_text).unwrap();

    // Storage down.
    env.write_config(&g, "http://127.0.0.1:9", &body);
    run("storage down backup", env.rehost(&["-vv", "backup"]), 3);
    run(
        "storage down json restore",
        env.rehost(&["-vv", "--log-format", "json", "restore", "--force"]),
        3,
    );
    fs::remove_file(&bad_file).unwrap();

    for (label, r) in &runs {
        assert!(
            !r.all().contains(&g.secret),
            "the secret key appeared in the output of `{label}`:\n{}",
            r.all()
        );
    }
    let written = files_containing(env.dir.path(), g.secret.as_bytes());
    assert!(written.is_empty(), "the secret is in {written:?}");
    if let Some(age_secret) = &age_secret {
        for (label, r) in &runs {
            assert!(
                !r.all().contains(age_secret),
                "the age secret key appeared in the output of `{label}`"
            );
        }
        let written = files_containing(env.dir.path(), age_secret.as_bytes());
        assert!(written.is_empty(), "the age secret key is in {written:?}");
    }
    // The runs did log (the check above is not vacuous).
    assert!(runs.iter().any(|(_, r)| r.stderr().contains("\"level\"")));
    assert!(runs
        .iter()
        .any(|(l, r)| l.starts_with("wrong secret") && r.stderr().contains("refused access")));
    println!(
        "{} runs checked, secret absent from all output and files",
        runs.len()
    );
}

#[test]
fn a_credentials_file_others_can_read_draws_a_warning() {
    let Some(g) = garage() else { return };
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");
    let creds = env.path("credentials");
    fs::copy(&g.credentials, &creds).unwrap();
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o644)).unwrap();
    let text = fs::read_to_string(&env.config).unwrap().replace(
        &g.credentials.display().to_string(),
        &creds.display().to_string(),
    );
    fs::write(&env.config, text).unwrap();
    let run = env.rehost(&["check"]);
    run.expect(0);
    let expected = format!("chmod 600 {}", creds.display());
    assert!(
        run.stderr().contains("is readable by") && run.stderr().contains(&expected),
        "{}",
        run.stderr()
    );
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o600)).unwrap();
    let run = env.rehost(&["check"]);
    run.expect(0);
    assert!(!run.stderr().contains("readable by"), "{}", run.stderr());
}
