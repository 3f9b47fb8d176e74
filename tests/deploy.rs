//! Helpers of the deployment-file checks (`e2e/deploy_files.rs`,
//! `e2e/deploy_host.rs`, `e2e/rehost_image.rs`): the repository's paths,
//! tools that must exist under `CI=true` and may be skipped otherwise, and
//! commands whose output is shown when they fail.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn images() -> PathBuf {
    repo().join("images")
}

/// `Some(())` when `tool` runs; prints why not, or panics under `CI=true`.
pub fn need(tool: &str) -> Option<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        return Some(());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but `{tool}` is not installed; scripts/install-tools.sh installs it");
    }
    eprintln!("skipping: `{tool}` is not installed (scripts/install-tools.sh installs it)");
    None
}

/// `need("docker")`, and its daemon answers.
pub fn need_docker() -> Option<()> {
    need("docker")?;
    let answered = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if answered {
        return Some(());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the Docker daemon does not answer (`docker version`)");
    }
    eprintln!("skipping: the Docker daemon does not answer (`docker version`)");
    None
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    text(&out)
}

#[track_caller]
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but must fail:\n{}",
        text(&out)
    );
    text(&out)
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Removes the images a test built, even when it fails.
pub struct Images(pub Vec<String>);
impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", "-f", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A Docker name (image tag or, with `:` replaced, container) no other run uses.
pub fn unique(what: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("rehost-e2e-{what}:{}-{nanos:x}", std::process::id())
}

/// A container removed (`docker rm -f`) when dropped, even when the test fails.
pub struct Container(pub String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Container {
    /// `sh -c SCRIPT` in the container, with `stdin` on its standard input.
    pub fn sh_in(&self, script: &str, stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["exec", "-i"]);
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .args([&self.0, "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn sh(&self, script: &str) -> Output {
        self.sh_in(script, b"", &[])
    }

    /// The output of `script`, which must succeed.
    #[track_caller]
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `bytes` to `path` in the container with `mode`.
    pub fn put(&self, path: &str, bytes: &[u8], mode: &str) {
        let script =
            format!("mkdir -p \"$(dirname {path})\" && cat >{path} && chmod {mode} {path}");
        let out = self.sh_in(&script, bytes, &[]);
        assert!(out.status.success(), "{script}:\n{}", text(&out));
    }
}
