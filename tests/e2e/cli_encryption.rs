//! `storage.encryption` end to end with the rehost binary and real Garage:
//! keys from the reference `age-keygen`, an encrypted backup whose objects
//! reveal nothing, the by-hand restore with the reference `age` CLI and tar,
//! verify and restore with the identity file, and without it (backup-only
//! host): verify checks the stored bytes only, restore refuses and changes
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use rehost_tests::{age, garage, output_ok, tree, Garage, S3cmd, TestEnv};
use sha2::{Digest, Sha256};

const MARKER: &str = "PLAINTEXT-MARKER-e2e-41b7";

fn setup(g: &Garage) -> (TestEnv, String, String) {
    let env = TestEnv::new(g, "  placeholder:\n    path: /tmp/unused\n");
    let key = env.path("age.key");
    let (public, secret) = age::keygen(&key);
    let state = format!("  site:\n    path: {}\n", env.path("site").display());
    env.write_config(g, &g.endpoint, &state);
    env.set_encryption(&public, Some(&key));
    let site = env.path("site");
    fs::create_dir_all(site.join("img")).unwrap();
    fs::write(
        site.join("index.html"),
        format!("<h1>{MARKER}</h1>").repeat(100),
    )
    .unwrap();
    fs::write(site.join(format!("{MARKER}.txt")), "named secretly").unwrap();
    fs::write(site.join("img/logo.svg"), "<svg/>").unwrap();
    // Incompressible and larger than one part: the object is cut into
    // several independently decryptable ranges, and must still be one age
    // file for the by-hand restore.
    fs::write(site.join("img/photo.bin"), noise(9 << 20)).unwrap();
    (env, public, secret)
}

/// `len` bytes that do not compress: a sha256 chain.
fn noise(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(MARKER.as_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_backup_restores_with_rehost_and_by_hand_with_age() {
    let Some(g) = garage() else { return };
    if !age::available() {
        return;
    }
    let (env, _public, secret) = setup(&g);
    let mut outputs = String::new();
    let key = env.path("age.key");

    let check = env.rehost(&["check"]);
    check.expect(0);
    assert!(
        check
            .stdout()
            .contains("encryption: age, 1 recipient(s); identity file")
            && check.stdout().contains("ok (it opens new backups)"),
        "{}",
        check.stdout()
    );
    outputs += &check.all();
    let backup = env.rehost(&["backup"]);
    backup.expect(0);
    outputs += &backup.all();
    let original = tree(&env.path("site"));

    // Everything the bucket holds for this host, as s3cmd sees it.
    let Some(s3) = S3cmd::new(&g, env.dir.path()) else {
        return;
    };
    let dump = env.path("dump");
    fs::create_dir_all(&dump).unwrap();
    s3.run(&[
        "get",
        "--recursive",
        &format!("s3://{}/{}/", g.bucket, env.prefix),
        &format!("{}/", dump.display()),
    ]);
    let objects = tree(&dump);
    let data: Vec<&String> = objects
        .keys()
        .filter(|k| k.ends_with("data.tar.gz.age"))
        .collect();
    assert_eq!(data.len(), 1, "{:?}", objects.keys());
    for (name, bytes) in &objects {
        assert!(
            !contains(bytes, MARKER.as_bytes()),
            "{name} reveals the marker"
        );
        assert!(!contains(bytes, b"logo.svg"), "{name} reveals a file name");
    }
    let manifest_name = data[0].replace("data.tar.gz.age", "manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&objects[&manifest_name]).unwrap();
    assert_eq!(manifest["encryption"]["scheme"], "age");
    let cipher = &objects[data[0]];
    assert_eq!(
        manifest["objects"][0]["sha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(cipher)),
        "sha256sum of the object matches the manifest"
    );

    let parts = manifest["objects"][0]["index"]["parts"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(parts >= 3, "a 9 MiB backup lists {parts} parts");

    // By hand, as the README shows: age -d -i KEY data.tar.gz.age | tar xzf -
    let by_hand = env.path("by-hand");
    fs::create_dir_all(&by_hand).unwrap();
    let script = format!(
        "age -d -i '{}' '{}' | tar xzf - -C '{}'",
        key.display(),
        dump.join(data[0]).display(),
        by_hand.display()
    );
    output_ok(
        Command::new("bash")
            .args(["-o", "pipefail", "-c", &script])
            .stdin(Stdio::null()),
    );
    assert_eq!(tree(&by_hand), original, "by-hand restore differs");

    // rehost's own verify and restore.
    let verify = env.rehost(&["verify"]);
    verify.expect(0);
    assert!(verify.stdout().contains("is intact"), "{}", verify.stdout());
    outputs += &verify.all();
    fs::remove_dir_all(env.path("site")).unwrap();
    let restore = env.rehost(&["restore"]);
    restore.expect(0);
    outputs += &restore.all();
    assert_eq!(tree(&env.path("site")), original);

    assert!(
        !outputs.contains(&secret),
        "the secret key was printed:\n{outputs}"
    );
    assert!(!outputs.contains(&g.secret));
}

#[test]
fn a_backup_only_host_cannot_restore_and_says_why() {
    let Some(g) = garage() else { return };
    if !age::available() {
        return;
    }
    let (env, public, secret) = setup(&g);
    let key = env.path("age.key");
    env.rehost(&["backup"]).expect(0);

    // The identity file lives elsewhere (an operator's machine).
    env.set_encryption(&public, None);
    let check = env.rehost(&["check"]);
    check.expect(0);
    assert!(
        check.stdout().contains("no identity_file"),
        "{}",
        check.stdout()
    );
    let verify = env.rehost(&["verify"]);
    verify.expect(0);
    assert!(
        verify.stdout().contains("their content was not checked"),
        "{}",
        verify.stdout()
    );
    fs::write(env.path("site/index.html"), "newer local edit").unwrap();
    let local = tree(&env.path("site"));
    let restore = env.rehost(&["restore", "site", "--force"]);
    restore.expect(1);
    assert!(
        restore.stderr().contains("needs the identity file"),
        "{}",
        restore.stderr()
    );
    assert_eq!(tree(&env.path("site")), local, "the target changed");

    // An identity file that does not belong to a recipient is a problem
    // `check` reports; a group-readable one is warned about.
    let other = env.path("other.key");
    let (_, other_secret) = age::keygen(&other);
    fs::set_permissions(&other, fs::Permissions::from_mode(0o640)).unwrap();
    env.set_encryption(&public, Some(&other));
    let check = env.rehost(&["check"]);
    check.expect(1);
    assert!(
        check.stdout().contains("NONE of its keys"),
        "{}",
        check.stdout()
    );
    assert!(
        check.stderr().contains("age identity file") && check.stderr().contains("chmod 600"),
        "{}",
        check.stderr()
    );
    let restore = env.rehost(&["restore", "site", "--force"]);
    restore.expect(1);
    assert!(
        restore
            .stderr()
            .contains("no key of the identity file can decrypt it"),
        "{}",
        restore.stderr()
    );
    assert_eq!(tree(&env.path("site")), local, "the target changed");
    let all = format!("{}{}", check.all(), restore.all());
    assert!(!all.contains(&secret) && !all.contains(&other_secret));
    // The right key again: restore works.
    env.set_encryption(&public, Some(&key));
    env.rehost(&["restore", "site", "--force"]).expect(0);
    assert_ne!(tree(&env.path("site")), local);
}
