//! The compose loader against Compose itself: for every fixture under
//! `tests/fixtures/compose/`, `docker-compose config` (v1, the Debian package)
//! and rehost's loader read the same file with the same variables, and what
//! they decide must agree: image, build, environment, labels,
//! command/entrypoint, ports, mounts, networks, depends_on conditions,
//! healthcheck, replicas, restart, user, network and volume names.
//!
//! `tests/compose_canonical.py` turns Compose's output into canonical JSON
//! with Compose's own parsers; [`canonical`] does the same from rehost's
//! model. Also: `rehost check` reports compose errors with exit code 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The canonical model is one `json!` literal per service: deep macro recursion.
#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rehost::config::StackConfig;
use rehost::stack::compose;
use rehost::stack::model::{
    Mount, NetworkMode, Project, Protocol, PullPolicy, Restart, SecretSource,
};
use rehost_tests::rehost_bin;
use serde_json::{json, Value};

const PROJECT: &str = "site";
/// Where Debian's docker-compose finds its `compose` package.
const PYTHON: &str = "/usr/bin/python3";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/compose")
}

/// Compose v1 (`docker-compose` and its Python package) is there, or `None`
/// (skip locally, fail under `CI=true`). A Compose v2 binary does not do:
/// its `config` output is another format and it has no Python parsers.
fn docker_compose() -> Option<()> {
    let v1 = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"docker-compose version 1."));
    let parsers = Command::new(PYTHON)
        .args(["-c", "import compose.config.types, yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match v1 && parsers {
        true => Some(()),
        false if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "CI=true but Compose v1 (docker-compose with its Python package) is missing; scripts/install-tools.sh installs it (Debian package docker-compose)"
        ),
        false => {
            eprintln!("skipping: Compose v1 (Debian's docker-compose) not found; scripts/install-tools.sh installs it");
            None
        }
    }
}

/// The only variables either side sees: no `AWS_*`, no user's `DOMAIN`.
fn variables(dir: &Path) -> BTreeMap<String, String> {
    [
        ("PATH", "/usr/bin:/bin".to_string()),
        ("HOME", "/home/operator".to_string()),
        ("PWD", dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn compose_config(dir: &Path) -> Value {
    let out = Command::new("docker-compose")
        .env_clear()
        .envs(variables(dir))
        .current_dir(dir)
        .arg("--env-file")
        .arg(dir.join("stack.env"))
        .arg("--project-directory")
        .arg(dir)
        .args(["-p", PROJECT, "-f"])
        .arg(dir.join("docker-compose.yml"))
        .arg("config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-compose config on {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(PYTHON)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("compose_canonical.py"))
        .arg(PROJECT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let canonical = child.wait_with_output().unwrap();
    assert!(
        canonical.status.success(),
        "compose_canonical.py failed: {}",
        String::from_utf8_lossy(&canonical.stderr)
    );
    serde_json::from_slice(&canonical.stdout).unwrap()
}

fn rehost_load(dir: &Path) -> Project {
    let vars = variables(dir);
    // A fixture's `profiles` file lists the profiles to enable (Compose's
    // `config` prints every service, whatever its profiles).
    let profiles = std::fs::read_to_string(dir.join("profiles"))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let stack = StackConfig {
        compose: dir.join("docker-compose.yml"),
        overrides: Vec::new(),
        project: PROJECT.to_string(),
        env_file: Some(dir.join("stack.env")),
        profiles,
    };
    compose::load(&stack, &|name| vars.get(name).cloned()).unwrap_or_else(|err| panic!("{err}"))
}

/// rehost's model in the shape `compose_canonical.py` prints.
fn canonical(p: &Project) -> Value {
    let services: serde_json::Map<String, Value> = p
        .services
        .iter()
        .map(|(name, s)| {
            let ports: Vec<Value> = s
                .ports
                .iter()
                .flat_map(|port| {
                    let ip = port.host_ip.map(|ip| ip.to_string());
                    let protocol = match port.protocol {
                        Protocol::Tcp => "tcp",
                        Protocol::Udp => "udp",
                    };
                    let c = port.container;
                    // Compose lists a container range as one entry per port.
                    if c.end > c.start {
                        (0..=(c.end - c.start))
                            .map(|i| {
                                json!({
                                    "ip": ip,
                                    "published": port.host.map(|h| (h.start + i).to_string()),
                                    "target": c.start + i,
                                    "protocol": protocol,
                                })
                            })
                            .collect::<Vec<_>>()
                    } else {
                        let published = port.host.map(|h| {
                            if h.start == h.end {
                                h.start.to_string()
                            } else {
                                format!("{}-{}", h.start, h.end)
                            }
                        });
                        vec![json!({"ip": ip, "published": published, "target": c.start, "protocol": protocol})]
                    }
                })
                .collect();
            let mounts: Vec<Value> = s
                .volumes
                .iter()
                .map(|m| match m {
                    Mount::Bind {
                        source,
                        target,
                        read_only,
                        ..
                    } => json!({"bind": source, "target": target, "ro": read_only}),
                    Mount::Volume {
                        name,
                        target,
                        read_only,
                    } => json!({"volume": name, "target": target, "ro": read_only}),
                    Mount::Anonymous { target } => json!({ "anonymous": target }),
                    Mount::Tmpfs { target, size, .. } => json!({"tmpfs": target, "size": size}),
                })
                .collect();
            let networks: serde_json::Map<String, Value> = s
                .networks
                .iter()
                .map(|(k, n)| {
                    (
                        k.clone(),
                        json!({"ipv4": n.ipv4_address.map(|ip| ip.to_string()), "aliases": n.aliases}),
                    )
                })
                .collect();
            let network_mode = s.network_mode.as_ref().map(|m| match m {
                NetworkMode::Host => "host".to_string(),
                NetworkMode::None => "none".to_string(),
                NetworkMode::Bridge => "bridge".to_string(),
                NetworkMode::Service(s) => format!("service:{s}"),
            });
            let restart = match s.restart {
                Restart::No => "no".to_string(),
                Restart::Always => "always".to_string(),
                Restart::UnlessStopped => "unless-stopped".to_string(),
                Restart::OnFailure(None) => "on-failure".to_string(),
                Restart::OnFailure(Some(n)) => format!("on-failure:{n}"),
            };
            let nanos = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64);
            let healthcheck = s.healthcheck.as_ref().map(|h| {
                json!({
                    "test": h.test,
                    "interval": nanos(h.interval),
                    "timeout": nanos(h.timeout),
                    "retries": h.retries,
                    "start_period": nanos(h.start_period),
                })
            });
            let depends_on: serde_json::Map<String, Value> = s
                .depends_on
                .iter()
                .map(|(k, d)| {
                    let condition = match d.condition {
                        rehost::stack::model::Condition::Started => "service_started",
                        rehost::stack::model::Condition::Healthy => "service_healthy",
                        rehost::stack::model::Condition::CompletedSuccessfully => {
                            "service_completed_successfully"
                        }
                    };
                    (k.clone(), json!(condition))
                })
                .collect();
            let build = s.build.as_ref().map(|b| {
                json!({
                    "context": b.context,
                    "dockerfile": b.dockerfile,
                    "args": b.args,
                    "target": b.target,
                    "labels": b.labels,
                    "network": b.network,
                    "extra_hosts": b.extra_hosts,
                    "shm_size": b.shm_size,
                })
            });
            let t = &s.settings;
            let pull_policy = match s.pull_policy {
                PullPolicy::Always => "always",
                PullPolicy::Missing => "missing",
                PullPolicy::Never => "never",
                PullPolicy::Build => "build",
            };
            let settings = json!({
                "container_name": s.container_name,
                "hostname": t.hostname,
                "domainname": t.domainname,
                "expose": t.expose,
                "links": s.links.iter().map(|(a, b)| vec![a, b]).collect::<Vec<_>>(),
                "extra_hosts": t.extra_hosts,
                "dns": t.dns,
                "dns_search": t.dns_search,
                "working_dir": t.working_dir,
                "stdin_open": t.stdin_open,
                "tty": t.tty,
                "init": t.init,
                "stop_signal": t.stop_signal,
                "stop_grace_period": nanos(t.stop_grace_period),
                "cap_add": t.cap_add,
                "cap_drop": t.cap_drop,
                "privileged": t.privileged,
                "read_only": t.read_only,
                "security_opt": t.security_opt,
                "sysctls": t.sysctls,
                "ulimits": t.ulimits.iter().map(|(k, u)| (k.clone(), json!([u.soft, u.hard]))).collect::<serde_json::Map<_, _>>(),
                "tmpfs": t.tmpfs,
                "shm_size": t.shm_size,
                "devices": t.devices.iter().map(|d| format!("{}:{}:{}", d.host, d.container, d.permissions)).collect::<Vec<_>>(),
                "pid": t.pid,
                "ipc": t.ipc,
                "logging": t.logging.as_ref().map(|l| json!({"driver": l.driver, "options": l.options})),
                "memory": t.memory,
                "memory_reservation": t.memory_reservation,
                "nano_cpus": t.nano_cpus,
                "pids_limit": t.pids_limit,
                "runtime": t.runtime,
                "group_add": t.group_add,
                "profiles": s.profiles,
                "pull_policy": pull_policy,
                "secrets": s.secrets.iter().map(|m| json!({
                    "source": m.source,
                    "target": m.target,
                    "uid": m.uid,
                    "gid": m.gid,
                    "mode": m.mode,
                })).collect::<Vec<_>>(),
            });
            let service = json!({
                "image": s.image,
                "build": build,
                "command": s.command,
                "entrypoint": s.entrypoint,
                "environment": s.environment,
                "labels": s.labels,
                "ports": ports,
                "mounts": mounts,
                "networks": networks,
                "network_mode": network_mode,
                "restart": restart,
                "user": s.user,
                "healthcheck": healthcheck,
                "replicas": s.replicas,
                "depends_on": depends_on,
                "settings": settings,
            });
            (name.clone(), service)
        })
        .collect();
    let networks: serde_json::Map<String, Value> = p
        .networks
        .iter()
        .map(|(k, n)| {
            let subnets: Vec<Value> = n
                .subnets
                .iter()
                .map(|s| json!({"subnet": s.subnet, "gateway": s.gateway.map(|g| g.to_string())}))
                .collect();
            (
                k.clone(),
                json!({
                    "name": n.name,
                    "external": n.external,
                    "driver": n.driver,
                    "internal": n.internal,
                    "subnets": subnets,
                }),
            )
        })
        .collect();
    let volumes: serde_json::Map<String, Value> = p
        .volumes
        .iter()
        .map(|(k, v)| (k.clone(), json!({"name": v.name, "external": v.external})))
        .collect();
    let secrets: serde_json::Map<String, Value> = p
        .secrets
        .iter()
        .map(|(k, source)| {
            let file = match source {
                SecretSource::File(path) => Some(path.display().to_string()),
                _ => None,
            };
            (k.clone(), json!({ "file": file }))
        })
        .collect();
    json!({"services": services, "networks": networks, "volumes": volumes, "secrets": secrets})
}

#[test]
fn interpolation_and_normalisation_match_docker_compose_config() {
    let Some(()) = docker_compose() else { return };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("docker-compose.yml").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 4,
        "fixtures missing in {}",
        fixtures().display()
    );
    for dir in dirs {
        let want = compose_config(&dir);
        let got = canonical(&rehost_load(&dir));
        let services = want["services"].as_object().unwrap();
        assert_eq!(
            got["services"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>()
                .len(),
            services.len(),
            "{}: services",
            dir.display()
        );
        // Service by service, so that a difference is readable.
        for (name, want_service) in services {
            assert_eq!(
                &got["services"][name],
                want_service,
                "{}: service `{name}`: rehost (left) vs docker-compose config (right)",
                dir.display()
            );
        }
        assert_eq!(
            got["networks"],
            want["networks"],
            "{}: networks",
            dir.display()
        );
        assert_eq!(
            got["volumes"],
            want["volumes"],
            "{}: volumes",
            dir.display()
        );
        assert_eq!(
            got["secrets"],
            want["secrets"],
            "{}: secrets and configs",
            dir.display()
        );
    }
}

/// A configuration with `file://` storage (no Garage needed) and a stack.
fn check_env(compose_text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(dir.path().join("docker-compose.yml"), compose_text).unwrap();
    std::fs::write(dir.path().join("stack.env"), "TAG=2.4\n").unwrap();
    let config = dir.path().join("rehost.yaml");
    std::fs::write(
        &config,
        format!(
            "host: h\nstorage:\n  url: file://{}\nstack:\n  compose: docker-compose.yml\n  project: site\n  env_file: stack.env\n",
            store.display()
        ),
    )
    .unwrap();
    (dir, config)
}

fn rehost_check(config: &Path) -> std::process::Output {
    Command::new(rehost_bin())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("-c")
        .arg(config)
        .arg("check")
        .output()
        .unwrap()
}

#[test]
fn check_loads_the_compose_file_and_reports_its_errors_with_exit_2() {
    let (dir, config) =
        check_env("services:\n  web:\n    image: httpd:${TAG}\n    ports: [\"80:80\"]\n");
    let out = rehost_check(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stack ")
            && stdout.contains("ok (project site, 1 services, 1 networks, 0 volumes)"),
        "{stdout}"
    );

    let compose = dir.path().join("docker-compose.yml");
    std::fs::write(
        &compose,
        "services:\n  web:\n    image: x\n    ports:\n      - \"80:80\"\n      - \"99999:80\"\n",
    )
    .unwrap();
    let out = rehost_check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:6:9: services.web.ports[1]: \"99999\" is not a port number",
            compose.display()
        )),
        "{stderr}"
    );

    std::fs::write(
        &compose,
        "services:\n  web:\n    image: x\n    volumes_from: [db]\n",
    )
    .unwrap();
    let out = rehost_check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains(":4:5: services.web.volumes_from: `volumes_from` is not supported by rehost"),
        "{stderr}"
    );

    std::fs::remove_file(&compose).unwrap();
    let out = rehost_check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read {}", compose.display())),
        "{stderr}"
    );
}
