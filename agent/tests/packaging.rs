//! The files under `packaging/` that are made from other sources of this
//! repository, checked in so that `cargo deb` needs no build step of its own
//! and a reviewer sees what the package installs:
//!
//! - `man/*.1`: the man pages, rendered by clap_mangen from the clap
//!   definitions of `agent/src/cli.rs` (one page per command, like git's:
//!   `rehost.1`, `rehost-restore.1`, `rehost-backups-list.1`, …), each
//!   command's `--help` example as its EXAMPLE section;
//! - `completions/`: the scripts `rehost completions bash|zsh|fish` prints;
//! - `systemd/*.service`: the units of `cloud-init/`, with the binary at
//!   `/usr/bin/rehost` (where the package puts it) instead of
//!   `/usr/local/bin/rehost` (where cloud-init's provisioning puts it).
//!
//! The test fails when a checked-in file differs from what its source makes
//! now, or when a file is there that nothing makes (a removed command's
//! page). `make packaging` rewrites them all
//! (`REHOST_UPDATE_PACKAGING=1 cargo test -p rehost --test packaging`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use rehost::cli::Args;
use rehost::cmd::completions::{self, Shell};

const REGENERATE: &str =
    "`make packaging` (REHOST_UPDATE_PACKAGING=1 cargo test -p rehost --test packaging)";

/// The directories this test owns entirely, relative to `packaging/`.
const OWNED: [&str; 3] = ["man", "completions", "systemd"];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// Every generated file, by path relative to `packaging/`.
fn generated() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    // As clap_mangen::generate_to: no page for the `help` subcommand.
    let mut cmd = Args::command().disable_help_subcommand(true);
    cmd.build();
    man_pages(cmd, &mut files);
    for shell in Shell::ALL {
        let name = match shell {
            Shell::Bash => "rehost.bash",
            Shell::Zsh => "_rehost",
            Shell::Fish => "rehost.fish",
        };
        files.insert(format!("completions/{name}"), completions::script(shell));
    }
    for unit in ["rehost.service", "rehost-boot.service"] {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cloud-init")
            .join(unit);
        let text = fs::read_to_string(&source).unwrap();
        files.insert(format!("systemd/{unit}"), packaged_unit(unit, &text));
    }
    files
}

/// `cmd`'s page and those of its subcommands, recursively.
fn man_pages(cmd: clap::Command, files: &mut BTreeMap<String, Vec<u8>>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub.clone(), files);
    }
    let has_example = cmd.get_after_help().is_some();
    let man = clap_mangen::Man::new(cmd);
    let name = format!("man/{}", man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page).unwrap();
    let mut page = String::from_utf8(page).unwrap();
    // clap_mangen puts `after_help` under EXTRA; here it is the example.
    if has_example {
        assert_eq!(page.matches("\n.SH EXTRA\n").count(), 1, "{name}: {page}");
        page = page.replace("\n.SH EXTRA\n", "\n.SH EXAMPLE\n");
    }
    files.insert(name, page.into_bytes());
}

/// cloud-init's unit as the package installs it: the same file, with the
/// package's binary path and a header saying where it comes from.
fn packaged_unit(unit: &str, text: &str) -> Vec<u8> {
    const FROM: &str = "ExecStart=/usr/local/bin/rehost ";
    assert!(
        text.matches(FROM).count() == 1 && text.matches("/usr/local/bin/rehost").count() == 1,
        "cloud-init/{unit}: expected /usr/local/bin/rehost exactly once, in a `{FROM}…` line"
    );
    format!(
        "# Generated from cloud-init/{unit} by `make packaging`: edit that file, not this\n\
         # one. The Debian package's binary is /usr/bin/rehost.\n{}",
        text.replace(FROM, "ExecStart=/usr/bin/rehost ")
    )
    .into_bytes()
}

/// The files now in the owned directories, by path relative to `packaging/`.
fn checked_in() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in OWNED {
        let Ok(entries) = fs::read_dir(packaging().join(dir)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
            files.insert(name, fs::read(entry.path()).unwrap());
        }
    }
    files
}

fn update(want: &BTreeMap<String, Vec<u8>>, have: &BTreeMap<String, Vec<u8>>) {
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        fs::remove_file(packaging().join(name)).unwrap();
        eprintln!("removed packaging/{name}");
    }
    for (name, bytes) in want {
        if have.get(name) != Some(bytes) {
            let path = packaging().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
            eprintln!("wrote packaging/{name}");
        }
    }
}

#[test]
fn packaging_files_are_current() {
    let want = generated();
    let have = checked_in();
    if std::env::var_os("REHOST_UPDATE_PACKAGING").is_some() {
        update(&want, &have);
        return;
    }
    let mut stale = Vec::new();
    for (name, bytes) in &want {
        match have.get(name) {
            None => stale.push(format!("packaging/{name} is missing")),
            Some(b) if b != bytes => stale.push(format!("packaging/{name} is out of date")),
            Some(_) => {}
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        stale.push(format!("packaging/{name} is made by nothing any more"));
    }
    assert!(
        stale.is_empty(),
        "{}\nThe man pages and completions come from agent/src/cli.rs, the units from cloud-init/. \
         Regenerate with {REGENERATE} and commit the result.",
        stale.join("\n")
    );
}

/// The pages are what they should be, not just what was generated last time:
/// one per command, each with its synopsis and its example.
#[test]
fn every_command_has_a_man_page_with_its_example() {
    let files = generated();
    for page in [
        "rehost.1",
        "rehost-restore.1",
        "rehost-backups.1",
        "rehost-backups-list.1",
        "rehost-completions.1",
    ] {
        assert!(files.contains_key(&format!("man/{page}")), "no {page}");
    }
    assert!(!files.contains_key("man/rehost-help.1"));
    let restore = String::from_utf8(files["man/rehost-restore.1"].clone()).unwrap();
    assert!(restore.starts_with(".ie \\n(.g .ds Aq"), "{restore}");
    assert!(restore.contains(".TH rehost-restore 1"), "{restore}");
    assert!(restore.contains("\\-\\-at"), "{restore}");
    assert!(restore.contains(".SH EXAMPLE"), "{restore}");
    assert!(
        restore.contains("restore acme \\-\\-at \"2026\\-11\\-23 10:15\""),
        "{restore}"
    );
    let top = String::from_utf8(files["man/rehost.1"].clone()).unwrap();
    assert!(top.contains("rehost\\-restore(1)"), "{top}");
    assert!(top.contains("REHOST_CONFIG"), "{top}");
}

#[test]
fn packaged_units_run_usr_bin_rehost() {
    let files = generated();
    let daemon = String::from_utf8(files["systemd/rehost.service"].clone()).unwrap();
    assert!(daemon.lines().any(|l| l == "ExecStart=/usr/bin/rehost run"));
    let boot = String::from_utf8(files["systemd/rehost-boot.service"].clone()).unwrap();
    assert!(boot
        .lines()
        .any(|l| l == "ExecStart=/usr/bin/rehost boot --no-run"));
    for unit in [&daemon, &boot] {
        assert!(!unit.contains("/usr/local/bin"), "{unit}");
    }
}
