//! `kind: acme` with certificates from a real ACME flow: Debian's `pebble`
//! (Let's Encrypt's test ACME server) issues them to `lego` (the ACME library
//! Traefik itself uses), and the test lays lego's account and certificates
//! out as Traefik's acme.json (two resolvers, one issuing 10-day
//! certificates). Against a real Garage: the backup exports each
//! certificate's notAfter, equal to `openssl x509 -enddate` of the same
//! certificate; an acme.json cut short, emptied or replaced by something else
//! is refused (exit 1, named, the newest backup still the good one, metrics
//! saying so); the restore gives the good bytes back 0600 whatever the
//! original's mode, and exports the metrics again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rehost_tests::{free_port, garage, metric, promtool_check, server_certificate, TestEnv};

/// Whether `tool` runs; under `CI=true` its absence fails the test.
fn need(tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but `{tool}` is missing; scripts/install-tools.sh installs it");
        }
        eprintln!("skipping: `{tool}` is not installed (scripts/install-tools.sh)");
    }
    ok
}

/// A pebble server on loopback, killed on drop. Its listener's certificate
/// is a self-signed one made here (`ca`), which lego is told to trust.
struct Pebble {
    child: Child,
    url: String,
    ca: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pebble(dir: &Path, validity_seconds: Option<u64>) -> Pebble {
    fs::create_dir_all(dir).unwrap();
    let (ca, key) = server_certificate(dir, "listener").expect("openssl");
    let port = free_port();
    let mut settings = serde_json::json!({
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{}", free_port()),
        "certificate": ca,
        "privateKey": key,
        "httpPort": free_port(),
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    });
    if let Some(v) = validity_seconds {
        settings["certificateValidityPeriod"] = v.into();
    }
    let config = dir.join("pebble.json");
    fs::write(
        &config,
        serde_json::json!({ "pebble": settings }).to_string(),
    )
    .unwrap();
    let log = fs::File::create(dir.join("pebble.log")).unwrap();
    let child = Command::new("pebble")
        .arg("-config")
        .arg(&config)
        // The challenges are not what is tested: the VA answers "valid".
        .env("PEBBLE_VA_ALWAYS_VALID", "1")
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pebble = Pebble {
        child,
        url: format!("https://127.0.0.1:{port}/dir"),
        ca,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pebble did not listen within 60 s: {}",
            fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pebble
}

/// What lego obtained for one domain list: the chain (leaf first) and key,
/// PEM, as lego writes them.
struct Issued {
    domains: Vec<String>,
    chain: Vec<u8>,
    key: Vec<u8>,
    chain_file: PathBuf,
}

fn lego(pebble: &Pebble, path: &Path, domains: &[&str]) -> Issued {
    let mut cmd = Command::new("lego");
    cmd.env("LEGO_CA_CERTIFICATES", &pebble.ca)
        .args(["--accept-tos", "--email", "ops@example.test", "--server"])
        .arg(&pebble.url)
        .arg("--path")
        .arg(path)
        .args(["--http", "--http.port"])
        .arg(format!("127.0.0.1:{}", free_port()));
    for d in domains {
        cmd.args(["--domains", d]);
    }
    let out = cmd.arg("run").output().unwrap();
    assert!(
        out.status.success(),
        "lego {domains:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chain_file = path.join(format!("certificates/{}.crt", domains[0]));
    Issued {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        chain: fs::read(&chain_file).unwrap(),
        key: fs::read(path.join(format!("certificates/{}.key", domains[0]))).unwrap(),
        chain_file,
    }
}

/// lego's account (registration and key) in Traefik's `Account` layout:
/// `PrivateKey` is the key's DER, as Go's json encodes a []byte.
fn traefik_account(lego_path: &Path) -> serde_json::Value {
    let dir = fs::read_dir(lego_path.join("accounts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("ops@example.test");
    let account: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("account.json")).unwrap()).unwrap();
    let pem = fs::read_to_string(dir.join("keys/ops@example.test.key")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    serde_json::json!({
        "Email": account["email"],
        "Registration": account["registration"],
        "PrivateKey": body,
        "KeyType": "EC256",
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn traefik_certificate(c: &Issued) -> serde_json::Value {
    serde_json::json!({
        "domain": {"main": c.domains[0], "sans": c.domains[1..]},
        "certificate": b64(&c.chain),
        "key": b64(&c.key),
        "Store": "default",
    })
}

/// `openssl x509 -enddate` of the first certificate in `file`, as Unix time.
fn openssl_enddate(file: &Path) -> i64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let date = text.trim().strip_prefix("notAfter=").unwrap().to_string();
    let out = Command::new("date")
        .args(["-u", "+%s", "-d"])
        .arg(&date)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The series of one metric in a textfile, by their label sets.
fn series(file: &Path, name: &str) -> BTreeMap<String, f64> {
    let text = fs::read_to_string(file).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").unwrap();
            (labels.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn backup_ids(env: &TestEnv) -> Vec<String> {
    let out = env.rehost(&["backups", "list", "acme"]);
    out.expect(0);
    out.stdout()
        .lines()
        .filter(|l| l.starts_with("acme "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn acme_json_from_a_real_acme_flow_is_checked_measured_and_restored() {
    let Some(g) = garage() else { return };
    if !(need("pebble", "-h") && need("lego", "--version") && need("openssl", "version")) {
        return;
    }
    let env = TestEnv::new(&g, "  placeholder:\n    path: /tmp/unused\n");

    // Two resolvers, as a Traefik with a production and a short-lived
    // resolver has: three certificates from two ACME servers.
    let long = pebble(&env.path("pebble-long"), None);
    let short = pebble(&env.path("pebble-short"), Some(10 * 86400));
    let (le_path, short_path) = (env.path("lego-le"), env.path("lego-short"));
    let site = lego(
        &long,
        &le_path,
        &["site.example.test", "www.site.example.test"],
    );
    let api = lego(&long, &le_path, &["api.example.test"]);
    let soon = lego(&short, &short_path, &["soon.example.test"]);
    drop((long, short));
    let acme = serde_json::json!({
        "le": {
            "Account": traefik_account(&le_path),
            "Certificates": [traefik_certificate(&site), traefik_certificate(&api)],
        },
        "short": {
            "Account": traefik_account(&short_path),
            "Certificates": [traefik_certificate(&soon)],
        },
    });
    let good = serde_json::to_vec_pretty(&acme).unwrap();
    let dir = env.path("acme");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("acme.json");
    fs::write(&file, &good).unwrap();
    // Not 0600 on purpose: the restore must make it 0600 anyway.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    env.write_config(
        &g,
        &g.endpoint,
        &format!("  acme:\n    path: {}\n    kind: acme\n", file.display()),
    );

    env.rehost(&["backup", "acme"]).expect(0);
    let first = backup_ids(&env);
    assert_eq!(first.len(), 1);

    // The expiry of every certificate, as openssl reads it.
    let prom = env.metrics().join("rehost-acme-acme.prom");
    promtool_check(&prom);
    let expected: BTreeMap<String, f64> = [("le", &site), ("le", &api), ("short", &soon)]
        .into_iter()
        .map(|(resolver, c)| {
            (
                format!(
                    "target=\"acme\",resolver=\"{resolver}\",domain=\"{}\"",
                    c.domains[0]
                ),
                openssl_enddate(&c.chain_file) as f64,
            )
        })
        .collect();
    let not_after = "rehost_acme_certificate_not_after_timestamp_seconds";
    assert_eq!(series(&prom, not_after), expected);
    let soon_key = "target=\"acme\",resolver=\"short\",domain=\"soon.example.test\"";
    let days_left = (expected[soon_key] - now()) / 86400.0;
    assert!((9.0..=10.0).contains(&days_left), "{days_left} days");
    assert_eq!(
        series(&prom, "rehost_acme_certificates"),
        BTreeMap::from([
            ("target=\"acme\",resolver=\"le\"".to_string(), 2.0),
            ("target=\"acme\",resolver=\"short\"".to_string(), 1.0),
        ])
    );
    assert_eq!(
        series(&prom, "rehost_acme_file_valid"),
        BTreeMap::from([("target=\"acme\"".to_string(), 1.0)])
    );

    // What Traefik leaves after a crash or a full disk, and what is not its
    // file at all: refused, nothing uploaded, the newest backup unchanged.
    let backup_prom = env.metrics().join("rehost-backup-acme.prom");
    let broken: [(&str, Vec<u8>, &str); 3] = [
        ("cut short", good[..good.len() / 2].to_vec(), "ends early"),
        ("empty", Vec::new(), "empty"),
        (
            "a key cut short",
            {
                let mut acme = acme.clone();
                let key = &site.key[..site.key.len() / 2];
                acme["le"]["Certificates"][0]["key"] = b64(key).into();
                serde_json::to_vec(&acme).unwrap()
            },
            "certificate 0 (site.example.test): `key` is not a PEM private key",
        ),
    ];
    for (what, bytes, message) in broken {
        fs::write(&file, &bytes).unwrap();
        let out = env.rehost(&["backup", "acme"]);
        out.expect(1);
        assert!(
            out.stderr().contains(&file.display().to_string()) && out.stderr().contains(message),
            "{what}: {}",
            out.stderr()
        );
        assert_eq!(backup_ids(&env), first, "{what}: a backup was made");
        assert_eq!(
            metric(&backup_prom, "rehost_job_last_status", "backup", "acme"),
            Some(0.0)
        );
        assert_eq!(
            series(&prom, "rehost_acme_file_valid"),
            BTreeMap::from([("target=\"acme\"".to_string(), 0.0)]),
            "{what}"
        );
        // The last good expiry dates stay, so an expiry alert stays up.
        assert_eq!(series(&prom, not_after), expected, "{what}");
    }

    // The host is rebuilt: nothing there, no metrics yet. The restore gives
    // the good bytes back, 0600, and the metrics again.
    fs::remove_file(&file).unwrap();
    fs::remove_file(&prom).unwrap();
    env.rehost(&["restore", "acme"]).expect(0);
    assert_eq!(fs::read(&file).unwrap(), good);
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "restored with mode {mode:o}");
    assert_eq!(series(&prom, not_after), expected);
    assert_eq!(
        series(&prom, "rehost_acme_file_valid"),
        BTreeMap::from([("target=\"acme\"".to_string(), 1.0)])
    );
    env.rehost(&["backup", "acme"]).expect(0);
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
