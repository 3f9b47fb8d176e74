use super::*;

/// A self-signed test certificate (CN=example.test) and its key, made with
/// `openssl req -x509 -newkey ec … -days 3650`; notAfter from
/// `openssl x509 -enddate`: Nov 25 01:48:39 2036 GMT.
const CERT: &str = include_str!("testdata/cert.pem");
const KEY: &str = include_str!("testdata/key.pem");
const NOT_AFTER: i64 = 2_111_190_519;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn acme_json(cert: &str, key: &str) -> String {
    serde_json::json!({
        "le": {
            "Account": {"Email": "ops@example.test", "Registration": {"body": {"status": "valid"}, "uri": "https://acme/acct/1"}, "PrivateKey": "MHcCAQEE", "KeyType": "4096"},
            "Certificates": [
                {"domain": {"main": "example.test", "sans": ["www.example.test"]}, "certificate": b64(cert), "key": b64(key), "Store": "default"}
            ]
        },
        "staging": {"Account": null, "Certificates": null}
    })
    .to_string()
}

fn err(bytes: &str) -> String {
    parse(Path::new("/srv/acme/acme.json"), bytes.as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_traefik_file_parses_with_its_expiry_dates() {
    let s = parse(Path::new("acme.json"), acme_json(CERT, KEY).as_bytes()).unwrap();
    assert_eq!(s.certificates(), 1);
    assert_eq!(
        s.resolvers["le"],
        vec![Certificate {
            domain: "example.test".into(),
            sans: vec!["www.example.test".into()],
            not_after: NOT_AFTER,
        }]
    );
    assert!(s.resolvers["staging"].is_empty());
}

#[test]
fn broken_files_are_refused_with_what_and_where() {
    let good = acme_json(CERT, KEY);
    let e = err("");
    assert!(
        e.contains("/srv/acme/acme.json") && e.contains("empty"),
        "{e}"
    );
    assert!(err(" \n").contains("empty"));
    let e = err(&good[..good.len() / 2]);
    assert!(e.contains("ends early"), "{e}");
    assert!(err("<html>").contains("not JSON"));
    assert!(err("[1,2]").contains("not JSON"));
    assert!(err("{}").contains("no ACME resolver"));
    assert!(err(r#"{"Account":{},"DomainsCertificate":{}}"#).contains("Traefik v1"));
    assert!(err(r#"{"le": 3}"#).contains("resolver `le`"));
    assert!(err(r#"{"le": {"Account": 3}}"#).contains("`Account` is not an object"));

    // A certificate cut short, a key that is not one, base64 that is not.
    let e = err(&acme_json(&CERT[..CERT.len() - 80], KEY));
    assert!(
        e.contains("certificate 0 (example.test)") && e.contains("not a PEM certificate"),
        "{e}"
    );
    let e = err(&acme_json(CERT, CERT));
    assert!(e.contains("not a private key"), "{e}");
    let e = err(&good.replace(&b64(KEY), "@@@"));
    assert!(e.contains("`key` is not base64"), "{e}");
    let e = err(&good.replace("\"main\":\"example.test\",", ""));
    assert!(e.contains("no `domain.main`"), "{e}");
}

#[test]
fn snapshots_hold_the_checked_bytes_privately() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("acme.json");
    std::fs::write(&live, acme_json(CERT, KEY)).unwrap();
    let snap = snapshot(&live).unwrap();
    assert_eq!(
        std::fs::read(snap.copy()).unwrap(),
        std::fs::read(&live).unwrap()
    );
    let mode = std::fs::metadata(snap.copy()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let copy = snap.copy().to_path_buf();
    drop(snap);
    assert!(!copy.exists(), "the copy is removed with the snapshot");

    // Not a symlink, not a directory.
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&live, &link).unwrap();
    assert!(snapshot(&link).unwrap_err().to_string().contains("symlink"));
    assert!(snapshot(dir.path())
        .unwrap_err()
        .to_string()
        .contains("not a regular file"));
}
