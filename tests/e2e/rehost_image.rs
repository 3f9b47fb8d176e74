//! rehost's own image (`images/rehost/`, `scripts/rehost-image.sh`), built
//! FROM scratch from the debug binary and run as uid 10001 against a
//! `file://` store. Needs Docker and root (to chown the test directory to
//! 10001): fails without them under `CI=true`, skips otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use rehost_tests::deploy::{fails, need_docker, ok, repo, run, text, unique, Container, Images};
use rehost_tests::rehost_bin;

// ------------------------------------------------------------ rehost image

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `scripts/rehost-image.sh` builds the FROM-scratch image from the debug
/// binary; it runs `rehost --version`, and `rehost run` as uid 10001 backs up
/// a state entry into a `file://` store, writes its metrics, and exits 0 on
/// `docker stop`.
#[test]
fn rehost_image_runs_the_daemon_as_uid_10001() {
    let Some(()) = need_docker() else { return };
    if !is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but not root: the test chowns its directory to uid 10001");
        }
        eprintln!("skipping: needs root to chown the test directory to uid 10001");
        return;
    }
    let image = unique("rehost");
    let _images = Images(vec![image.clone()]);
    let script = repo().join("scripts/rehost-image.sh");
    let built = ok(Command::new(&script)
        .env("REHOST_IMAGE", &image)
        .arg(rehost_bin()));
    assert!(built.contains(&image), "{built}");
    // Idempotent: the same binary builds nothing.
    let again = ok(Command::new(&script)
        .env("REHOST_IMAGE", &image)
        .arg(rehost_bin()));
    assert!(again.contains("is up to date"), "{again}");

    // A wrong binary path is an error that names it, and builds nothing.
    let missing = fails(
        Command::new(&script)
            .env("REHOST_IMAGE", &image)
            .arg("/nonexistent/rehost"),
    );
    assert!(
        missing.contains("/nonexistent/rehost: not an executable file"),
        "{missing}"
    );

    let user =
        ok(Command::new("docker").args(["image", "inspect", "-f", "{{.Config.User}}", &image]));
    assert_eq!(user.trim(), "10001:10001");
    let version = ok(Command::new("docker").args(["run", "--rm", &image, "--version"]));
    assert!(version.starts_with("rehost "), "{version}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    fs::create_dir_all(data.join("state/notes")).unwrap();
    fs::write(data.join("state/notes/a.txt"), "kept across hosts\n").unwrap();
    fs::create_dir_all(data.join("store")).unwrap();
    fs::create_dir_all(data.join("metrics")).unwrap();
    fs::write(
        data.join("rehost.yaml"),
        "host: image-e2e\nstorage:\n  url: file:///data/store\nstate:\n  notes:\n    path: /data/state/notes\n    \
         backup: \"0 0 * * *\"\n    run_at_start: true\nmetrics:\n  textfile_dir: /data/metrics\n",
    )
    .unwrap();
    ok(Command::new("chown").args(["-R", "10001:10001"]).arg(data));
    fs::set_permissions(data, fs::Permissions::from_mode(0o755)).unwrap();

    let name = unique("run").replace(':', "-");
    let container = Container(name.clone());
    ok(Command::new("docker")
        .args(["run", "-d", "--name", &container.0, "-v"])
        .arg(format!("{}:/data", data.display()))
        .args([&image, "-c", "/data/rehost.yaml", "run"]));

    let metrics = data.join("metrics/rehost-backup-notes.prom");
    let succeeded = || {
        fs::read_to_string(&metrics).is_ok_and(|t| {
            t.lines().any(|l| {
                l.starts_with("rehost_job_last_success_timestamp_seconds")
                    && l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v > 0.0)
            })
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !succeeded() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let logs = || text(&run(Command::new("docker").args(["logs", &name])));
    assert!(
        succeeded(),
        "no successful backup within 60 s; logs:\n{}",
        logs()
    );

    ok(Command::new("docker").args(["stop", "-t", "30", &name]));
    let code = ok(Command::new("docker").args(["inspect", "-f", "{{.State.ExitCode}}", &name]));
    assert_eq!(
        code.trim(),
        "0",
        "exit code after SIGTERM; logs:\n{}",
        logs()
    );

    // The backup is in the store, written by uid 10001.
    let host_dir = data.join("store/image-e2e/notes");
    let backups: Vec<PathBuf> = fs::read_dir(&host_dir)
        .unwrap_or_else(|e| panic!("{}: {e}; logs:\n{}", host_dir.display(), logs()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(backups[0].join("manifest.json"))
            .unwrap()
            .uid(),
        10001
    );
    assert_eq!(fs::metadata(&metrics).unwrap().uid(), 10001);
}
