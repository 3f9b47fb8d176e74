//! Checks of the production stack in `images/`, whose upstream images cannot
//! be pulled here (no registry): each file is checked by the tool that owns
//! its format — `promtool` (config, rules, rule unit tests, and the PromQL of
//! the dashboards), `amtool`, Docker's classic builder for the Dockerfiles
//! (see `dockerfiles_build`) — and each check is shown, on a broken copy, to
//! fail. A missing tool fails the test under `CI=true` and skips it
//! otherwise (`scripts/install-tools.sh` installs them all).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rehost_tests::deploy::{
    copy_dir, fails, images, need, need_docker, ok, run, text, unique, yaml, Images,
};

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
    ok(Command::new("promtool")
        .args(["check", "rules"])
        .arg(fleet_rules()));
}

/// The rules for a central Prometheus that scrapes `rehost fleet --metrics`.
fn fleet_rules() -> PathBuf {
    images().join("../examples/prometheus/fleet-alerts.yml")
}

#[test]
fn alert_rules_pass_their_unit_tests_and_the_tests_can_fail() {
    let Some(()) = need("promtool") else { return };
    let dir = images().join("prometheus");
    ok(Command::new("promtool")
        .args(["test", "rules"])
        .arg(dir.join("tests/alerts_test.yml")));

    // An alert one hour early must be caught ("fires after the threshold,
    // not before"), and so must a target-down alert that never fires and a
    // certificate alert a day late.
    let tmp = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("> 26 * 3600", "> 25 * 3600"),
        ("expr: up == 0", "expr: up == 2"),
        // A certificate alert a day late.
        ("< 14 * 86400", "< 13 * 86400"),
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

    // The fleet's rules: their tests pass, and a scan alert that waits two
    // hours instead of one is caught.
    let fleet = fleet_rules();
    let fleet_dir = fleet.parent().unwrap();
    ok(Command::new("promtool")
        .args(["test", "rules"])
        .arg(fleet_dir.join("fleet-alerts_test.yml")));
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(fleet_dir, tmp.path());
    let rules = tmp.path().join("fleet-alerts.yml");
    let original = fs::read_to_string(&rules).unwrap();
    let from = "rehost_fleet_scan_timestamp_seconds > 3600";
    assert!(original.contains(from), "{from:?} not in fleet-alerts.yml");
    fs::write(
        &rules,
        original.replace(from, "rehost_fleet_scan_timestamp_seconds > 7200"),
    )
    .unwrap();
    fails(
        Command::new("promtool")
            .args(["test", "rules"])
            .arg(tmp.path().join("fleet-alerts_test.yml")),
    );
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
        GENERATION_SUPERSEDED,
        rehost_jobs::acme::metrics::FILE_VALID,
        rehost_jobs::acme::metrics::CERTIFICATES,
        rehost_jobs::acme::metrics::NOT_AFTER,
        rehost_jobs::fleet::LAST_BACKUP,
        rehost_jobs::fleet::MAX_AGE,
        rehost_jobs::fleet::SCAN_TIMESTAMP,
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
    let mut seen = 0;
    for rules in [
        yaml(&images().join("prometheus/rules/alerts.yml")),
        yaml(&fleet_rules()),
    ] {
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

/// The example configuration and its compose file pass `rehost check`: the
/// compose file stays inside rehost's subset, the kinds validate, and the
/// `${VAR}`s the README lists are the ones it needs.
#[test]
fn example_stack_passes_rehost_check() {
    let Some(g) = rehost_tests::garage() else {
        return;
    };
    let creds = fs::read_to_string(&g.credentials).unwrap();
    let key_id = creds
        .lines()
        .find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == "aws_access_key_id")
        })
        .map(|(_, v)| v.trim().to_string())
        .unwrap();
    if !rehost_tests::age::available() {
        return;
    }
    // As on a host: rehost.yaml beside its age identity (and stack.env), the
    // compose file where REHOST_STACK_DIR says.
    let etc = tempfile::tempdir().unwrap();
    for file in ["rehost.yaml", "stack.env"] {
        fs::copy(images().join("stack").join(file), etc.path().join(file)).unwrap();
    }
    let (recipient, _) = rehost_tests::age::keygen(&etc.path().join("age.key"));
    let mut cmd = Command::new(rehost_tests::rehost_bin());
    cmd.arg("-c")
        .arg(etc.path().join("rehost.yaml"))
        .arg("check")
        .env("REHOST_STACK_DIR", images().join("stack"))
        .env("REHOST_AGE_RECIPIENT", &recipient)
        .env("REHOST_HOST", "deploy-check")
        .env(
            "REHOST_STORAGE_URL",
            format!("s3://{}/deploy-check", g.bucket),
        )
        .env("REHOST_S3_ENDPOINT", &g.endpoint)
        .env("REHOST_S3_REGION", "garage")
        .env("REHOST_CONTENT_URL", format!("s3://{}/site/", g.bucket));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("REHOST_CONFIG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret);
    let out = ok(&mut cmd);
    assert!(
        out.contains("docker-compose.yml: ok (project site, 9 services"),
        "{out}"
    );
    // Every backup is encrypted, and this host could restore them.
    assert!(
        out.contains("encryption: age, 1 recipient(s); identity file")
            && out.contains("ok (it opens new backups)"),
        "{out}"
    );
    assert!(!out.contains(&g.secret), "the secret was printed: {out}");
}
