//! Checks of the deployment files that cannot run here for real: the
//! production stack in `images/` (its upstream images are not pulled: there
//! is no registry), the cloud-init user-data and the systemd units in
//! `cloud-init/`. Each check uses the tool that owns the format: `promtool`
//! (config, rules, rule unit tests, and the PromQL of the dashboards),
//! `amtool`, `cloud-init schema`, `systemd-analyze verify`, and Docker's
//! classic builder for the Dockerfiles (see `dockerfiles_build`). Each also
//! shows, on a broken copy, that it can fail.
//!
//! A missing tool fails the test under `CI=true` and skips it otherwise
//! (`scripts/install-tools.sh` installs them all).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rehost_tests::rehost_bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn images() -> PathBuf {
    repo().join("images")
}

/// `Some(())` when `tool` runs; prints why not, or panics under `CI=true`.
fn need(tool: &str) -> Option<()> {
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
fn need_docker() -> Option<()> {
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

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    text(&out)
}

#[track_caller]
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but must fail:\n{}",
        text(&out)
    );
    text(&out)
}

fn copy_dir(from: &Path, to: &Path) {
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

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------- Prometheus

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let Some(()) = need("promtool") else { return };
    let dir = images().join("prometheus");
    let out = ok(Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml")));
    // The rule files are found through the config's relative glob, so the
    // layout of the image is checked too.
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    for rules in fs::read_dir(dir.join("rules")).unwrap() {
        ok(Command::new("promtool")
            .args(["check", "rules"])
            .arg(rules.unwrap().path()));
    }
}

#[test]
fn alert_rules_pass_their_unit_tests_and_the_tests_can_fail() {
    let Some(()) = need("promtool") else { return };
    let dir = images().join("prometheus");
    ok(Command::new("promtool")
        .args(["test", "rules"])
        .arg(dir.join("tests/alerts_test.yml")));

    // An alert one hour early must be caught ("fires after the threshold,
    // not before"), and so must a target-down alert that never fires.
    let tmp = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("> 26 * 3600", "> 25 * 3600"),
        ("expr: up == 0", "expr: up == 2"),
    ] {
        copy_dir(&dir, tmp.path());
        let rules = tmp.path().join("rules/alerts.yml");
        let original = fs::read_to_string(&rules).unwrap();
        assert!(original.contains(from), "{from:?} not in alerts.yml");
        fs::write(&rules, original.replace(from, to)).unwrap();
        fails(
            Command::new("promtool")
                .args(["test", "rules"])
                .arg(tmp.path().join("tests/alerts_test.yml")),
        );
    }
}

#[test]
fn alertmanager_config_passes_amtool() {
    let Some(()) = need("amtool") else { return };
    let file = images().join("alertmanager/alertmanager.yml");
    ok(Command::new("amtool").arg("check-config").arg(&file));
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("alertmanager.yml");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(
        &broken,
        text.replace("receiver: operator", "receiver: nobody"),
    )
    .unwrap();
    fails(Command::new("amtool").arg("check-config").arg(&broken));
}

/// Metric names rehost writes (the constants of `rehost_jobs::metrics`).
fn rehost_metrics() -> BTreeSet<&'static str> {
    use rehost_jobs::metrics::*;
    [
        LAST_SUCCESS,
        LAST_ATTEMPT,
        LAST_DURATION,
        LAST_STATUS,
        FAILURES,
        LAST_BYTES,
    ]
    .into()
}

/// Every `rehost_…` identifier in a PromQL expression.
fn rehost_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("rehost_") {
        let start = i + at;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        };
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

#[test]
fn alert_rules_use_only_metrics_rehost_writes() {
    let known = rehost_metrics();
    let rules = yaml(&images().join("prometheus/rules/alerts.yml"));
    let mut seen = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            for name in rehost_names(expr) {
                assert!(
                    known.contains(name.as_str()),
                    "alert rule uses unknown metric {name}: {expr}"
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 3, "the rules should watch rehost's metrics");
}

// ------------------------------------------------------------------- Grafana

struct Dashboard {
    file: PathBuf,
    json: serde_json::Value,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = images().join("grafana/dashboards");
    let mut out: Vec<Dashboard> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|file| {
            let json = serde_json::from_str(&fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", file.display()));
            Dashboard { file, json }
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Every panel, rows' nested panels included.
fn panels(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

#[test]
fn dashboards_have_what_grafana_requires() {
    let datasources = yaml(&images().join("grafana/provisioning/datasources/prometheus.yml"));
    let ds_uids: BTreeSet<&str> = datasources["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    let all = dashboards();
    assert!(all.len() >= 2, "a host dashboard and a rehost dashboard");
    let mut uids = BTreeSet::new();
    for d in &all {
        let name = d.file.display();
        let title = d.json["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "{name}: no title");
        let uid = d.json["uid"].as_str().unwrap_or_default();
        // Grafana limits uids to 40 characters of [a-zA-Z0-9_-].
        assert!(
            !uid.is_empty()
                && uid.len() <= 40
                && uid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}: bad uid {uid:?}"
        );
        assert!(
            uids.insert(uid.to_string()),
            "{name}: uid {uid} is used twice"
        );
        let all_panels = panels(&d.json);
        assert!(!all_panels.is_empty(), "{name}: no panels");
        let mut ids = BTreeSet::new();
        for p in all_panels {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: a panel without id"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            assert!(
                p["type"].is_string() && p["title"].is_string(),
                "{name}: panel {id}"
            );
            let grid = &p["gridPos"];
            assert!(
                ["x", "y", "w", "h"].iter().all(|k| grid[k].is_u64()),
                "{name}: panel {id} gridPos"
            );
            for t in p["targets"].as_array().into_iter().flatten() {
                let ds = t["datasource"]["uid"]
                    .as_str()
                    .or(p["datasource"]["uid"].as_str());
                assert!(
                    ds.is_some_and(|u| ds_uids.contains(u)),
                    "{name}: panel {id} uses datasource {ds:?}, provisioned: {ds_uids:?}"
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{name}: panel {id}"
                );
            }
        }
    }
    // The provider's folder is where the Dockerfile copies the dashboards.
    let provider = yaml(&images().join("grafana/provisioning/dashboards/rehost.yml"));
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dockerfile = fs::read_to_string(images().join("grafana/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("COPY dashboards/ {path}/")),
        "grafana/Dockerfile must copy the dashboards to {path}"
    );
}

/// Grafana's interval variables, replaced by a duration so that promtool's
/// parser sees the query Prometheus will get.
fn grafana_to_promql(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"]
        .iter()
        .fold(expr.to_string(), |e, v| e.replace(v, "5m"))
}

/// Runs `promtool check rules` on one recording rule per expression: the
/// only offline PromQL parser at hand is the one inside promtool.
fn promql_parses(exprs: &[(String, String)]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let rules: Vec<serde_yaml::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let mut m = serde_yaml::Mapping::new();
            m.insert("record".into(), format!("dashboard:check_{i}").into());
            m.insert("expr".into(), expr.clone().into());
            serde_yaml::Value::Mapping(m)
        })
        .collect();
    let mut group = serde_yaml::Mapping::new();
    group.insert("name".into(), "dashboards".into());
    group.insert("rules".into(), serde_yaml::Value::Sequence(rules));
    let mut doc = serde_yaml::Mapping::new();
    doc.insert(
        "groups".into(),
        serde_yaml::Value::Sequence(vec![serde_yaml::Value::Mapping(group)]),
    );
    let file = tmp.path().join("dashboards.yml");
    fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    run(Command::new("promtool").args(["check", "rules"]).arg(&file))
}

#[test]
fn dashboard_queries_parse_and_use_only_metrics_rehost_writes() {
    let Some(()) = need("promtool") else { return };
    let known = rehost_metrics();
    let mut exprs = Vec::new();
    for d in dashboards() {
        for p in panels(&d.json) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap();
                let at = format!("{} panel {}", d.file.display(), p["title"]);
                for name in rehost_names(expr) {
                    assert!(known.contains(name.as_str()), "{at}: unknown metric {name}");
                }
                assert!(
                    !grafana_to_promql(expr).contains('$'),
                    "{at}: unknown variable in {expr}"
                );
                exprs.push((at, grafana_to_promql(expr)));
            }
        }
    }
    let rehost_queries = exprs
        .iter()
        .filter(|(_, e)| !rehost_names(e).is_empty())
        .count();
    assert!(
        rehost_queries >= 5,
        "the rehost dashboard should chart every rehost metric"
    );
    let out = promql_parses(&exprs);
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{}",
        text(&out)
    );

    // The parser does reject a broken query.
    let out = promql_parses(&[("broken".into(), "sum(rate(x[5m])".into())]);
    assert!(!out.status.success(), "promtool accepted a broken query");
}

// ----------------------------------------------------- compose and rehost.yaml

/// The compose file and rehost.yaml agree: every build context has its
/// Dockerfile, every state path is a bind mount of the stack, and the uids
/// the containers run as are the owners rehost restores.
#[test]
fn compose_file_and_rehost_yaml_agree() {
    let stack = images().join("stack");
    let compose = yaml(&stack.join("docker-compose.yml"));
    let config = yaml(&stack.join("rehost.yaml"));
    let services = compose["services"].as_mapping().unwrap();
    let mut binds: BTreeMap<String, String> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if let Some(ctx) = svc["build"].as_str() {
            let dir = stack.join(ctx);
            assert!(
                dir.join("Dockerfile").is_file(),
                "service {name}: no Dockerfile in {}",
                dir.display()
            );
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().unwrap();
            if let Some((src, _)) = v.split_once(':') {
                binds.insert(src.to_string(), name.to_string());
            }
        }
    }
    let user = |svc: &str| services[svc]["user"].as_str().map(str::to_string);
    for (entry, state) in config["state"].as_mapping().unwrap() {
        let entry = entry.as_str().unwrap();
        let path = Path::new(state["path"].as_str().unwrap());
        // A file is mounted through its directory (see acme in the compose file).
        let mounted = binds.iter().find(|(src, svc)| {
            *svc != "rehost-jobs"
                && (Path::new(src) == path || Path::new(src) == path.parent().unwrap())
        });
        let (_, svc) = mounted.unwrap_or_else(|| {
            panic!(
                "state {entry}: {} is not bind-mounted by any service",
                path.display()
            )
        });
        if let Some(u) = user(svc) {
            assert_eq!(
                state["owner"].as_str(),
                Some(u.as_str()),
                "state {entry}: owner vs user of {svc}"
            );
        }
    }
    let pull_dest = config["pull"]["site"]["dest"].as_str().unwrap();
    assert!(
        binds.contains_key(pull_dest),
        "{pull_dest} is served by no service"
    );
    let textfile = config["metrics"]["textfile_dir"].as_str().unwrap();
    assert_eq!(
        binds.get(textfile).map(String::as_str),
        Some("node-exporter")
    );
}

// --------------------------------------------------------------- Dockerfiles

/// Removes the images a test built, even when it fails.
struct Images(Vec<String>);
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

fn unique(what: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("rehost-e2e-{what}:{}-{nanos:x}", std::process::id())
}

/// Builds `context` with Docker's classic builder (what rehost's engine and
/// `scripts/rehost-image.sh` use) with every `FROM` replaced by `base`.
fn classic_build(context: &Path, base: &str, tag: &str) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(context, tmp.path());
    let dockerfile = tmp.path().join("Dockerfile");
    let text = fs::read_to_string(&dockerfile).unwrap();
    let rewritten: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().to_ascii_uppercase().starts_with("FROM ") {
                format!("FROM {base}")
            } else {
                l.to_string()
            }
        })
        .collect();
    fs::write(&dockerfile, rewritten.join("\n") + "\n").unwrap();
    run(Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(tmp.path()))
}

/// The Dockerfiles of the stack `FROM` upstream images, which cannot be
/// pulled here. What is checked instead, offline: every `FROM` names an
/// image pinned to a version, and the rest of the Dockerfile builds with the
/// classic builder on top of an empty local image, which parses every
/// instruction and proves every `COPY` source exists in the context. No
/// `RUN` can be checked that way, so the Dockerfiles have none (and are
/// refused here if they gain one).
#[test]
fn dockerfiles_build() {
    let Some(()) = need_docker() else { return };
    let base = unique("empty");
    let mut built = Images(vec![base.clone()]);
    // An empty image: `docker import` of an empty tar.
    let mut import = Command::new("docker")
        .args(["import", "-", &base])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        // An empty tar archive: two zero blocks.
        import
            .stdin
            .take()
            .unwrap()
            .write_all(&[0u8; 1024])
            .unwrap();
    }
    assert!(
        import.wait().unwrap().success(),
        "docker import of an empty image failed"
    );

    let mut contexts: Vec<PathBuf> = fs::read_dir(images())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file() && !p.ends_with("rehost"))
        .collect();
    contexts.sort();
    assert!(contexts.len() >= 5, "{contexts:?}");
    for ctx in &contexts {
        let name = ctx.file_name().unwrap().to_string_lossy().into_owned();
        let dockerfile = fs::read_to_string(ctx.join("Dockerfile")).unwrap();
        let mut froms = 0;
        for line in dockerfile.lines().map(str::trim) {
            let upper = line.to_ascii_uppercase();
            assert!(
                !upper.starts_with("RUN "),
                "{name}/Dockerfile: RUN cannot be checked here: {line}"
            );
            if let Some(image) = upper.strip_prefix("FROM ").map(|_| line[5..].trim()) {
                froms += 1;
                let (_, tag) = image.rsplit_once(':').unwrap_or_else(|| {
                    panic!("{name}/Dockerfile: {image} is not pinned to a version")
                });
                assert!(
                    tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
                    "{name}/Dockerfile: {image} is not pinned to a version"
                );
            }
        }
        assert_eq!(froms, 1, "{name}/Dockerfile: one FROM");
        let tag = unique(&name);
        built.0.push(tag.clone());
        let out = classic_build(ctx, &base, &tag);
        assert!(
            out.status.success(),
            "{name}/Dockerfile does not build:\n{}",
            text(&out)
        );
    }

    // The check fails on a missing COPY source and on a misspelt instruction.
    let tmp = tempfile::tempdir().unwrap();
    for broken in [
        "FROM x\nCOPY missing.yml /etc/x.yml\n",
        "FROM x\nCOPPY a b\n",
    ] {
        fs::write(tmp.path().join("Dockerfile"), broken).unwrap();
        let tag = unique("broken");
        built.0.push(tag.clone());
        let out = classic_build(tmp.path(), &base, &tag);
        assert!(!out.status.success(), "{broken:?} built:\n{}", text(&out));
    }
}

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
        "ReadWritePaths=/srv",
        "PrivateTmp=yes",
        "Requires=rehost-boot.service",
        "After=rehost-boot.service network-online.target",
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
        "After=network-online.target docker.service",
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

    // Every ${VAR} outside comments was substituted.
    for line in rendered
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        assert!(!line.contains("${"), "not substituted: {line}");
    }
    // The schema of this cloud-init version allows unknown top-level keys:
    // check ours by name.
    let doc: serde_yaml::Value = serde_yaml::from_str(&rendered).unwrap();
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
        assert_eq!(f["encoding"].as_str(), Some("gz+b64"), "{path}");
        let content = f["content"].as_str().unwrap();
        let decoded = shell("base64 -d | gzip -dc", content.as_bytes());
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

#[test]
fn render_refuses_bad_values_naming_line_and_key_never_the_value() {
    let Some(()) = need("envsubst") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let example = fs::read_to_string(repo().join("cloud-init/values.example.env")).unwrap();
    let secret = "exampleexampleexampleexampleexampleexample";
    let cases: [(&str, String, &str); 5] = [
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
        assert!(!out_file.exists(), "{what}: a user-data was written");
    }
}

// ------------------------------------------------------------ rehost image

/// Removes a container even when the test fails.
struct Container(String);
impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

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
