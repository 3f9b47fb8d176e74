//! Checks of what deploys a host (`cloud-init/`): the user-data rendered
//! from its template passes `cloud-init schema` and carries the repository's
//! files byte for byte, `render.sh` refuses bad values, and the systemd units
//! pass `systemd-analyze verify` and `security`. Each check is shown to fail
//! on a broken copy. A missing tool fails the test under `CI=true` and skips
//! it otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rehost_tests::deploy::{need, ok, repo, run, text};
use rehost_tests::rehost_bin;

// ------------------------------------------------------------ systemd units

/// A root for `systemd-analyze verify --root`: the system's own units (for
/// the targets the units name), the units under test in /etc/systemd/system,
/// and the real rehost binary at the `ExecStart` path. This container has no
/// systemd running, and verify needs neither: it loads the units offline.
fn systemd_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let system = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("no systemd unit directory with sysinit.target");
    let lib = root.path().join("usr/lib/systemd");
    fs::create_dir_all(&lib).unwrap();
    // `cp -a`: the directory holds symlinks (aliases, masks), some dangling.
    ok(Command::new("cp").arg("-a").arg(system).arg(&lib));
    let units = root.path().join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    for unit in ["rehost.service", "rehost-boot.service"] {
        fs::copy(repo().join("cloud-init").join(unit), units.join(unit)).unwrap();
    }
    let bin = root.path().join("usr/local/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(rehost_bin(), bin.join("rehost")).unwrap();
    fs::set_permissions(bin.join("rehost"), fs::Permissions::from_mode(0o755)).unwrap();
    root
}

/// verify's exit code ignores warnings such as unknown keys: any output
/// is a failure too.
fn verify(root: &Path) -> (bool, String) {
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(["rehost.service", "rehost-boot.service"]));
    let all = text(&out);
    (out.status.success() && all.trim().is_empty(), all)
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(()) = need("systemd-analyze") else {
        return;
    };
    let root = systemd_root();
    let (clean, out) = verify(root.path());
    assert!(clean, "systemd-analyze verify:\n{out}");

    let units = root.path().join("etc/systemd/system");
    let daemon = fs::read_to_string(units.join("rehost.service")).unwrap();
    for line in [
        "User=rehost",
        "ExecStart=/usr/local/bin/rehost run",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/srv /var/lib/rehost",
        "PrivateTmp=yes",
        "Requires=rehost-boot.service",
        "After=rehost-boot.service network-online.target time-sync.target",
        "Wants=network-online.target time-sync.target",
        "EnvironmentFile=/etc/rehost/rehost.env",
    ] {
        assert!(
            daemon.lines().any(|l| l == line),
            "rehost.service lacks {line:?}"
        );
    }
    let boot = fs::read_to_string(units.join("rehost-boot.service")).unwrap();
    for line in [
        "Type=oneshot",
        "ExecStart=/usr/local/bin/rehost boot --no-run",
        "After=network-online.target docker.service time-sync.target",
        "Wants=network-online.target docker.service time-sync.target",
        "EnvironmentFile=/etc/rehost/rehost.env",
    ] {
        assert!(
            boot.lines().any(|l| l == line),
            "rehost-boot.service lacks {line:?}"
        );
    }
    for unit in [&daemon, &boot] {
        assert!(
            !unit.contains("AWS_"),
            "credentials belong in the EnvironmentFile"
        );
    }

    // The daemon's hardening, as systemd rates it: exposure at most 4.0 of
    // 10 ("OK"; 3.2 when written). The boot unit runs as root with Docker's
    // socket and is not rated.
    ok(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=40"])
        .arg(format!("--root={}", root.path().display()))
        .arg("rehost.service"));

    // A misspelt key (only a warning for verify) and a missing binary fail.
    fs::write(
        units.join("rehost.service"),
        daemon.replace("PrivateTmp=", "PrivateTemp="),
    )
    .unwrap();
    let (clean, out) = verify(root.path());
    assert!(!clean && out.contains("PrivateTemp"), "{out}");
    fs::write(units.join("rehost.service"), &daemon).unwrap();
    fs::remove_file(root.path().join("usr/local/bin/rehost")).unwrap();
    let (clean, out) = verify(root.path());
    assert!(!clean, "{out}");
}

// ----------------------------------------------------------------- cloud-init

fn render(values: &Path, out: &Path) -> Output {
    run(Command::new(repo().join("cloud-init/render.sh"))
        .arg(values)
        .arg(out))
}

fn shell(script: &str, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{script} failed");
    out.stdout
}

#[test]
fn cloud_init_user_data_renders_and_passes_the_schema() {
    let Some(()) = need("cloud-init") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let values = repo().join("cloud-init/values.example.env");
    let user_data = tmp.path().join("user-data");
    let out = render(&values, &user_data);
    assert!(out.status.success(), "render.sh:\n{}", text(&out));
    assert_eq!(
        fs::metadata(&user_data).unwrap().permissions().mode() & 0o777,
        0o600,
        "the rendered user-data holds credentials"
    );
    let rendered = fs::read_to_string(&user_data).unwrap();
    assert!(rendered.starts_with("#cloud-config\n"));
    let schema = ok(Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&user_data));
    assert!(schema.contains("Valid cloud-config"), "{schema}");

    // The schema of this cloud-init version allows unknown top-level keys:
    // check ours by name.
    let doc: serde_yaml::Value = serde_yaml::from_str(&rendered).unwrap();
    // Every ${VAR} of the template was substituted. The files render.sh adds
    // from the repository are literal text now (checked byte for byte
    // below): rehost.yaml and the compose file keep their own ${VAR}s.
    let generated = |p: &str| {
        p == "/etc/rehost/rehost.yaml"
            || p.starts_with("/opt/rehost/")
            || p.starts_with("/etc/systemd/system/")
    };
    let mut from_template = doc.clone();
    from_template["write_files"] = serde_yaml::Value::Sequence(
        doc["write_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|f| !generated(f["path"].as_str().unwrap()))
            .cloned()
            .collect(),
    );
    for line in serde_yaml::to_string(&from_template).unwrap().lines() {
        assert!(!line.contains("${"), "not substituted: {line}");
    }
    let keys: BTreeSet<&str> = doc
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "bootcmd",
            "package_update",
            "packages",
            "write_files",
            "runcmd"
        ]
        .into(),
    );
    // The files are those of the repository, byte for byte.
    let files: BTreeMap<&str, &serde_yaml::Value> = doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f))
        .collect();
    let expect = [
        ("/etc/rehost/rehost.yaml", "images/stack/rehost.yaml"),
        (
            "/opt/rehost/images/stack/docker-compose.yml",
            "images/stack/docker-compose.yml",
        ),
        (
            "/opt/rehost/images/prometheus/rules/alerts.yml",
            "images/prometheus/rules/alerts.yml",
        ),
        (
            "/opt/rehost/images/grafana/dashboards/rehost-jobs.json",
            "images/grafana/dashboards/rehost-jobs.json",
        ),
        (
            "/opt/rehost/scripts/rehost-image.sh",
            "scripts/rehost-image.sh",
        ),
        (
            "/etc/systemd/system/rehost.service",
            "cloud-init/rehost.service",
        ),
        (
            "/etc/systemd/system/rehost-boot.service",
            "cloud-init/rehost-boot.service",
        ),
    ];
    for (path, source) in expect {
        let f = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not written"));
        let content = f["content"].as_str().unwrap();
        // Text files are YAML literal blocks (so that the whole user-data
        // compresses), the rest gzip+base64.
        let decoded = match f["encoding"].as_str() {
            None => content.as_bytes().to_vec(),
            Some("gz+b64") => shell("base64 -d | gzip -dc", content.as_bytes()),
            Some(other) => panic!("{path}: unexpected encoding {other}"),
        };
        assert_eq!(
            decoded,
            fs::read(repo().join(source)).unwrap(),
            "{path} differs from {source}"
        );
    }
    // The provisioning script is valid sh (it runs only on the VM).
    let provision = files["/usr/local/sbin/rehost-provision"]["content"]
        .as_str()
        .unwrap();
    assert!(provision.starts_with("#!/bin/sh\n"));
    let script = tmp.path().join("rehost-provision");
    fs::write(&script, provision).unwrap();
    ok(Command::new("sh").arg("-n").arg(&script));
    let env = files["/etc/rehost/rehost.env"];
    assert_eq!(env["permissions"].as_str(), Some("0640"));
    assert_eq!(env["owner"].as_str(), Some("root:rehost"));
    assert!(env["content"]
        .as_str()
        .unwrap()
        .contains("AWS_SECRET_ACCESS_KEY=exampleexample"));
    // Backups are encrypted by default: the public key for rehost.yaml's
    // recipients, the identity in a file only the rehost user (and root)
    // can read.
    assert!(env["content"]
        .as_str()
        .unwrap()
        .contains("REHOST_AGE_RECIPIENT=age1"));
    let key = files["/etc/rehost/age.key"];
    assert_eq!(key["permissions"].as_str(), Some("0600"));
    assert_eq!(key["owner"].as_str(), Some("rehost:rehost"));
    assert!(key["content"]
        .as_str()
        .unwrap()
        .starts_with("AGE-SECRET-KEY-1"));

    // As delivered (--gzip), it fits AWS EC2's 16,384 bytes, and it is the
    // same user-data gzipped.
    let gz = tmp.path().join("user-data.gz");
    let out = run(Command::new(repo().join("cloud-init/render.sh"))
        .arg("--gzip")
        .arg(&values)
        .arg(&gz));
    assert!(out.status.success(), "render.sh --gzip:\n{}", text(&out));
    let delivered = fs::read(&gz).unwrap();
    assert!(delivered.len() <= 16_384, "{} bytes", delivered.len());
    assert_eq!(shell("gzip -dc", &delivered), rendered.as_bytes());

    // A broken user-data is caught by the schema check.
    let broken = tmp.path().join("broken");
    fs::write(
        &broken,
        rendered.replace("permissions: \"0640\"", "permissions: [640]"),
    )
    .unwrap();
    let out = text(&run(Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&broken)));
    assert!(!out.contains("Valid cloud-config"), "{out}");
}

/// `REHOST_JOBS_IN=compose`: the rehost-jobs service gets a replica and the
/// provisioning script disables rehost.service; the default is systemd.
#[test]
fn render_picks_where_the_jobs_daemon_runs() {
    let Some(()) = need("envsubst") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let example = fs::read_to_string(repo().join("cloud-init/values.example.env")).unwrap();
    for (mode, replicas) in [("systemd", "0"), ("compose", "1")] {
        let values = tmp.path().join("values.env");
        fs::write(
            &values,
            example.replace("REHOST_JOBS_IN=systemd", &format!("REHOST_JOBS_IN={mode}")),
        )
        .unwrap();
        let user_data = tmp.path().join("user-data");
        let out = render(&values, &user_data);
        assert!(out.status.success(), "{}", text(&out));
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&fs::read_to_string(&user_data).unwrap()).unwrap();
        let files = doc["write_files"].as_sequence().unwrap();
        let content = |path: &str| {
            files
                .iter()
                .find(|f| f["path"].as_str() == Some(path))
                .and_then(|f| f["content"].as_str())
                .unwrap_or_else(|| panic!("{path} not written"))
                .to_string()
        };
        assert!(
            content("/etc/rehost/stack.env")
                .lines()
                .any(|l| l == format!("REHOST_JOBS_REPLICAS={replicas}")),
            "{mode}"
        );
        assert!(
            content("/usr/local/sbin/rehost-provision")
                .contains(&format!("if [ '{mode}' = compose ]")),
            "{mode}"
        );
    }
}

/// `--gzip` refuses a user-data over EC2's 16,384 bytes (nothing written);
/// without `--gzip` it is rendered with a warning.
#[test]
fn render_gzip_refuses_a_user_data_over_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    // A stack with 64 KiB of incompressible text (hex of pseudo-random bytes).
    let images = tmp.path().join("images");
    ok(Command::new("cp")
        .arg("-R")
        .arg(repo().join("images"))
        .arg(&images));
    let mut rng = rehost_tests::Rng::new(15);
    fs::write(
        images.join("stack/big.txt"),
        hex::encode(rng.bytes(32 * 1024)) + "\n",
    )
    .unwrap();
    let values = repo().join("cloud-init/values.example.env");
    let gz = tmp.path().join("user-data.gz");
    let out = run(Command::new(repo().join("cloud-init/render.sh"))
        .env("REHOST_RENDER_IMAGES", &images)
        .arg("--gzip")
        .arg(&values)
        .arg(&gz));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("over AWS EC2's limit of 16384"),
        "{}",
        text(&out)
    );
    assert!(!gz.exists());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "a temporary file was left"
    );

    let plain = tmp.path().join("user-data");
    let out = run(Command::new(repo().join("cloud-init/render.sh"))
        .env("REHOST_RENDER_IMAGES", &images)
        .arg(&values)
        .arg(&plain));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deliver it with --gzip"),
        "{}",
        text(&out)
    );
    assert!(fs::read_to_string(&plain)
        .unwrap()
        .contains("/opt/rehost/images/stack/big.txt"));
}

#[test]
fn render_refuses_bad_values_naming_line_and_key_never_the_value() {
    let Some(()) = need("envsubst") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let example = fs::read_to_string(repo().join("cloud-init/values.example.env")).unwrap();
    let secret = "exampleexampleexampleexampleexampleexample";
    let identity = example
        .lines()
        .find_map(|l| l.strip_prefix("REHOST_AGE_IDENTITY="))
        .unwrap()
        .to_string();
    let cases: [(&str, String, &str); 7] = [
        (
            "missing key",
            example
                .lines()
                .filter(|l| !l.starts_with("AWS_SECRET_ACCESS_KEY="))
                .collect::<Vec<_>>()
                .join("\n"),
            "AWS_SECRET_ACCESS_KEY is required",
        ),
        (
            "unknown key",
            format!("{example}DOMAINE=example.org\n"),
            "unknown key DOMAINE",
        ),
        (
            "quote",
            example.replace(&format!("={secret}"), &format!("={secret}\"")),
            "AWS_SECRET_ACCESS_KEY: quotes",
        ),
        (
            "bad sha256",
            example.replace(&"0".repeat(64), "abc"),
            "REHOST_BINARY_SHA256",
        ),
        (
            "twice",
            format!("{example}DOMAIN=example.net\n"),
            "DOMAIN given twice",
        ),
        (
            "a secret key where the public key goes",
            example.replace(
                "REHOST_AGE_RECIPIENT=age1",
                &format!("REHOST_AGE_RECIPIENT={identity}\n#age1"),
            ),
            "REHOST_AGE_RECIPIENT: expected an age public key",
        ),
        (
            "a truncated secret key",
            example.replace(&identity, &identity[..40]),
            "REHOST_AGE_IDENTITY: expected one age secret key",
        ),
    ];
    for (what, values, message) in cases {
        let file = tmp.path().join("values.env");
        fs::write(&file, values).unwrap();
        let out_file = tmp.path().join("user-data");
        let out = render(&file, &out_file);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {all}");
        assert!(all.contains(message), "{what}: {all}");
        assert!(all.contains("values.env"), "{what}: names the file: {all}");
        assert!(
            !all.contains(secret),
            "{what}: the secret is printed: {all}"
        );
        assert!(
            !all.contains(&identity[..40]),
            "{what}: the age identity is printed: {all}"
        );
        assert!(!out_file.exists(), "{what}: a user-data was written");
    }
}
