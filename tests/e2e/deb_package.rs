//! The Debian package (`make deb`): built with `cargo deb` from the debug
//! binary under test, installed with `dpkg -i` into a throwaway Debian
//! bookworm container (`scripts/deb-test-image.sh`: mmdebstrap's minbase
//! with systemd, imported into Docker, cached by a content key), and checked
//! there: the files it installs, the `rehost` user its postinst makes (and a
//! second install leaves alone), `rehost --version`, `rehost init` and
//! `rehost check` on the packaged example configuration with a `file://`
//! store, `systemd-analyze verify` on the installed units, which are not
//! enabled; a purge removes the package and what `systemctl enable` made;
//! and a postinst that finds uid 10001 taken fails naming it.
//!
//! Needs Docker, mmdebstrap, cargo-deb and age-keygen
//! (`scripts/install-tools.sh` installs them): without one the test fails
//! under `CI=true` and is skipped otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rehost_tests::deploy::{need, need_docker, ok, repo, run, text, unique, Container};
use rehost_tests::{age, rehost_bin};

/// `cargo deb` of the debug binary next to this test (`--no-build`: `make
/// test` built it), into `dir`; the path of the .deb.
fn build_deb(dir: &Path) -> std::path::PathBuf {
    let bin = rehost_bin();
    let profile_dir = bin.parent().unwrap();
    assert_eq!(
        profile_dir.file_name().and_then(|n| n.to_str()),
        Some("debug"),
        "cargo deb --profile dev packages target/debug/rehost, not {}",
        bin.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // --fast: xz at a low level, 18 s instead of 85 s for the 50 MB debug
    // binary; -q: no warning that cargo-deb is meant for release builds.
    ok(Command::new(cargo)
        .current_dir(repo())
        .args([
            "deb",
            "-q",
            "-p",
            "rehost",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
        ])
        .arg("--output")
        .arg(dir));
    let debs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.into_iter().next().unwrap()
}

/// The packaged example, pointed at a `file://` store: the storage URL
/// replaced and the S3-only keys removed, every other line as shipped.
fn with_file_store(example: &str, store: &str) -> String {
    let mut out = String::new();
    let (mut url, mut dropped) = (0, 0);
    for line in example.lines() {
        if line == "  url: s3://infra-state/hosts" {
            out.push_str(&format!("  url: file://{store}\n"));
            url += 1;
        } else if ["  endpoint:", "  region:", "  path_style:"]
            .iter()
            .any(|k| line.starts_with(k))
        {
            dropped += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(
        (url, dropped),
        (1, 3),
        "examples/rehost.yaml changed: adapt this test"
    );
    out
}

#[test]
fn debian_package_installs_and_runs_in_bookworm() {
    let Some(()) = need_docker() else { return };
    let Some(()) = need("mmdebstrap") else { return };
    let Some(()) = need("cargo-deb") else { return };
    if !age::available() {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let debs = tmp.path().join("debs");
    fs::create_dir(&debs).unwrap();
    let deb = build_deb(&debs);
    let deb_name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let built = started.elapsed();

    let made = run(&mut Command::new(repo().join("scripts/deb-test-image.sh")));
    assert!(
        made.status.success(),
        "scripts/deb-test-image.sh:\n{}",
        text(&made)
    );
    let image = String::from_utf8_lossy(&made.stdout).trim().to_string();
    let imaged = started.elapsed();

    let container = Container(unique("deb").replace(':', "-"));
    // `sleep` keeps it up for the checks below (bounded: the guard removes it).
    ok(Command::new("docker")
        .args(["run", "-d", "--name", &container.0, "-v"])
        .arg(format!("{}:/debs:ro", debs.display()))
        .args([&image, "sleep", "900"]));

    // Installs on bookworm with only what its Depends names.
    let deb_path = format!("/debs/{deb_name}");
    container.ok(&format!("dpkg -i {deb_path}"));
    let version = container.ok("rehost --version");
    assert_eq!(
        version.trim(),
        format!("rehost {}", env!("CARGO_PKG_VERSION"))
    );

    // The user and group as cloud-init's bootcmd makes them, and state_dir.
    let user_line = "rehost:x:10001:10001::/nonexistent:/usr/sbin/nologin";
    let accounts = || {
        container
            .ok("getent passwd rehost; getent group rehost; stat -c '%U:%G %a' /var/lib/rehost")
    };
    assert_eq!(
        accounts(),
        format!("{user_line}\nrehost:x:10001:\nrehost:rehost 750\n")
    );

    // The files, byte for byte what the repository holds.
    let files = container.ok("dpkg -L rehost");
    for path in [
        "/usr/bin/rehost",
        "/usr/lib/systemd/system/rehost.service",
        "/usr/lib/systemd/system/rehost-boot.service",
        "/usr/share/man/man1/rehost.1.gz",
        "/usr/share/man/man1/rehost-restore.1.gz",
        "/usr/share/man/man1/rehost-backups-list.1.gz",
        "/usr/share/bash-completion/completions/rehost",
        "/usr/share/zsh/vendor-completions/_rehost",
        "/usr/share/fish/vendor_completions.d/rehost.fish",
        "/usr/share/doc/rehost/examples/rehost.yaml",
        "/usr/share/doc/rehost/copyright",
    ] {
        assert!(
            files.lines().any(|l| l == path),
            "{path} not installed:\n{files}"
        );
    }
    let packaging = repo().join("packaging");
    for (installed, source) in [
        (
            "/usr/share/doc/rehost/examples/rehost.yaml",
            repo().join("examples/rehost.yaml"),
        ),
        (
            "/usr/lib/systemd/system/rehost.service",
            packaging.join("systemd/rehost.service"),
        ),
        (
            "/usr/lib/systemd/system/rehost-boot.service",
            packaging.join("systemd/rehost-boot.service"),
        ),
        (
            "/usr/share/bash-completion/completions/rehost",
            packaging.join("completions/rehost.bash"),
        ),
        (
            "/usr/share/zsh/vendor-completions/_rehost",
            packaging.join("completions/_rehost"),
        ),
        (
            "/usr/share/fish/vendor_completions.d/rehost.fish",
            packaging.join("completions/rehost.fish"),
        ),
    ] {
        assert_eq!(
            container.ok(&format!("cat {installed}")),
            fs::read_to_string(&source).unwrap(),
            "{installed} is not {}",
            source.display()
        );
    }
    let man = container.ok("zcat /usr/share/man/man1/rehost-restore.1.gz");
    assert_eq!(
        man,
        fs::read_to_string(packaging.join("man/rehost-restore.1")).unwrap()
    );
    // bash completes a subcommand and a flag from the installed script.
    let completed = container.ok(
        "bash -c '. /usr/share/bash-completion/completions/rehost; \
         COMP_WORDS=(rehost res); COMP_CWORD=1; _rehost rehost res rehost; echo \"${COMPREPLY[*]}\"; \
         COMP_WORDS=(rehost restore --a); COMP_CWORD=2; _rehost rehost --a restore; echo \"${COMPREPLY[*]}\"'",
    );
    assert_eq!(completed, "restore\n--at\n");

    // A second install (an upgrade, a reinstall) runs postinst again: it
    // leaves the user, the group and /var/lib/rehost as they are.
    container.ok("chmod 0700 /var/lib/rehost");
    container.ok(&format!("dpkg -i {deb_path}"));
    assert_eq!(
        accounts(),
        format!("{user_line}\nrehost:x:10001:\nrehost:rehost 700\n")
    );

    // The packaged example configuration works, storage aside: init
    // registers the host in a file:// store, check passes.
    let example = container.ok("cat /usr/share/doc/rehost/examples/rehost.yaml");
    container.put(
        "/etc/rehost/rehost.yaml",
        with_file_store(&example, "/srv/store").as_bytes(),
        "0640",
    );
    let key = tmp.path().join("age.key");
    let (recipient, _) = age::keygen(&key);
    container.put("/etc/rehost/age.key", &fs::read(&key).unwrap(), "0600");
    container.put(
        "/opt/stack/docker-compose.yml",
        b"services:\n  web:\n    image: busybox\n",
        "0644",
    );
    container.put("/etc/rehost/stack.env", b"", "0600");
    container.ok("mkdir -p /srv/store");
    let env = [("REHOST_AGE_RECIPIENT", recipient.as_str())];
    let init = container.sh_in("rehost init", b"", &env);
    assert!(init.status.success(), "rehost init:\n{}", text(&init));
    let check = container.sh_in("rehost check", b"", &env);
    let check_text = text(&check);
    assert!(check.status.success(), "rehost check:\n{check_text}");
    for line in [
        "config /etc/rehost/rehost.yaml: ok (host web-1, 3 state entries, 1 pull entries)",
        "stack /opt/stack/docker-compose.yml: ok (project site, 1 services, 1 networks, 0 volumes)",
        "encryption: age, 1 recipient(s); identity file /etc/rehost/age.key: ok (it opens new backups)",
        "metrics /srv/monitoring: writable",
    ] {
        assert!(check_text.lines().any(|l| l == line), "no {line:?} in:\n{check_text}");
    }
    assert!(
        check_text.contains("storage file:///srv/store: ok (1 objects for host web-1"),
        "{check_text}"
    );

    // The installed units pass verify (no output at all: warnings count),
    // run the packaged binary, and are not enabled.
    let verify = container.sh("systemd-analyze verify rehost.service rehost-boot.service");
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        text(&verify)
    );
    let enabled = container.sh("systemctl is-enabled rehost.service rehost-boot.service");
    assert_eq!(
        String::from_utf8_lossy(&enabled.stdout),
        "disabled\ndisabled\n",
        "{}",
        text(&enabled)
    );

    // Enabled by hand, then purged: the binary, the units and the symlinks
    // go; the user stays (files elsewhere may belong to it).
    container.ok("systemctl enable rehost-boot.service rehost.service");
    let wants = "/etc/systemd/system/multi-user.target.wants";
    container.ok(&format!(
        "test -L {wants}/rehost.service && test -L {wants}/rehost-boot.service"
    ));
    container.ok("dpkg --purge rehost");
    container.ok(&format!(
        "! command -v rehost && ! test -e /usr/lib/systemd/system/rehost.service \
         && ! test -e {wants}/rehost.service && ! test -e {wants}/rehost-boot.service"
    ));
    assert!(accounts().starts_with(user_line));

    // uid 10001 taken by another account: postinst fails and says so.
    container.ok("userdel rehost; groupdel rehost 2>/dev/null; \
         groupadd --gid 10001 someone && useradd --uid 10001 --gid someone someone");
    let taken = container.sh(&format!("dpkg -i {deb_path}"));
    assert!(!taken.status.success(), "{}", text(&taken));
    assert!(
        text(&taken).contains("rehost: gid 10001 belongs to group someone"),
        "{}",
        text(&taken)
    );

    eprintln!(
        "deb package test: cargo deb {:.1} s, image {:.1} s, whole test {:.1} s",
        built.as_secs_f64(),
        (imaged - built).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_file_store_adaptation_changes_only_storage() {
    let example = fs::read_to_string(repo().join("examples/rehost.yaml")).unwrap();
    let adapted = with_file_store(&example, "/srv/store");
    assert!(adapted.contains("  url: file:///srv/store\n"));
    assert_eq!(example.lines().count() - 3, adapted.lines().count());
    let keys = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_string()))
            .collect()
    };
    let (before, after) = (keys(&example), keys(&adapted));
    for key in ["endpoint", "region", "path_style"] {
        assert!(
            before.iter().any(|k| k == key) && !after.iter().any(|k| k == key),
            "{key}"
        );
    }
}
