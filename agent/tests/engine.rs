//! The stack engine against the real Docker Engine, with `Project`s built by
//! hand (the compose loader is tested on its own): the test stack comes up
//! and answers, a second `up` changes nothing, a changed service alone is
//! recreated (its dependents restarted), a removed service's container goes,
//! `down` leaves nothing; failing healthchecks and builds give clear errors.
//!
//! Needs Docker and the images of `scripts/test-images.sh`: under `CI=true`
//! their absence fails the test, elsewhere it is skipped with a reason.
//! Each test uses its own project name and removes what it made, even when
//! it fails (a drop guard).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use indexmap::IndexMap;
use rehost::stack::engine::{self, DownOptions, UpOptions};
use rehost::stack::model::*;
use rehost_tests::http_ok;

const IMAGES: [&str; 3] = [
    "rehost-test/busybox:latest",
    "rehost-test/prometheus:latest",
    "rehost-test/node-exporter:latest",
];

/// The Engine, or `None` (skip) outside CI when it or the test images are missing.
async fn docker() -> Option<Docker> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let docker = match engine::connect().await {
        Ok(d) => d,
        Err(e) if ci => panic!("CI=true but no Docker Engine: {e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            return None;
        }
    };
    for image in IMAGES {
        if docker.inspect_image(image).await.is_err() {
            let msg = format!(
                "test image {image} is missing: run scripts/test-images.sh (make test does)"
            );
            if ci {
                panic!("CI=true but {msg}");
            }
            eprintln!("skipping: {msg}");
            return None;
        }
    }
    Some(docker)
}

/// Removes everything labelled with the project (containers, networks,
/// volumes, built images) when dropped, also when the test panics, through
/// the docker CLI since Drop cannot await.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=com.docker.compose.project={}", self.0);
        // Built images are named after the project.
        let by_name = format!("reference={}-*", self.0);
        let ids = |args: &[&str]| -> Vec<String> {
            std::process::Command::new("docker")
                .args(args)
                .arg("--filter")
                .arg(if args[0] == "image" {
                    &by_name
                } else {
                    &filter
                })
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        for (list, rm) in [
            (vec!["ps", "-aq"], vec!["rm", "-f", "-v"]),
            (vec!["network", "ls", "-q"], vec!["network", "rm"]),
            (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
            (vec!["image", "ls", "-q"], vec!["image", "rm", "-f"]),
        ] {
            let found = ids(&list);
            if !found.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(&rm)
                    .args(&found)
                    .output();
            }
        }
    }
}

fn project_name(test: &str) -> String {
    format!("rehost-eng-{test}-{}", std::process::id())
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/stack")
}

/// `sh -c CMD` that exits on SIGTERM (a PID 1 without a handler ignores it,
/// and every stop would wait out its grace period).
fn shell(cmd: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("trap 'exit 0' TERM; {cmd} & wait"),
    ]
}

fn sleeper() -> Vec<String> {
    shell("sleep 300")
}

fn wget_check(url: &str) -> Healthcheck {
    Healthcheck {
        test: ["CMD", "wget", "-q", "-O", "/dev/null", url]
            .map(String::from)
            .to_vec(),
        interval: Some(Duration::from_millis(500)),
        timeout: Some(Duration::from_secs(2)),
        retries: Some(60),
        start_period: None,
        start_interval: None,
    }
}

fn ephemeral(container: u16) -> Port {
    Port {
        host_ip: Some("127.0.0.1".parse().unwrap()),
        host: None,
        container: PortRange {
            start: container,
            end: container,
        },
        protocol: Protocol::Tcp,
    }
}

fn healthy_dep() -> Dependency {
    Dependency {
        condition: Condition::Healthy,
        restart: false,
        required: true,
    }
}

/// The test stack of `tests/fixtures/stack` as the loader would produce it.
fn stack(name: &str) -> Project {
    let dir = fixtures().canonicalize().unwrap();
    let mut web = Service::new("web", "unused");
    web.image = None;
    web.build = Some(Build {
        args: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        ..Build::new(dir.join("web"))
    });
    web.environment.insert("SITE".into(), "test".into());
    web.ports = vec![ephemeral(80)];
    web.healthcheck = Some(wget_check("http://127.0.0.1/"));

    let mut prom = Service::new("prometheus", "rehost-test/prometheus:latest");
    prom.volumes = vec![Mount::Bind {
        source: dir.join("prometheus/prometheus.yml"),
        target: "/etc/prometheus/prometheus.yml".into(),
        read_only: true,
        create_host_path: true,
    }];
    prom.ports = vec![ephemeral(9090)];
    prom.depends_on.insert("web".into(), healthy_dep());
    prom.healthcheck = Some(wget_check("http://127.0.0.1:9090/-/ready"));

    let mut exporter = Service::new("exporter", "rehost-test/node-exporter:latest");
    exporter
        .environment
        .insert("ROLE".into(), "exporter".into());
    exporter
        .depends_on
        .insert("prometheus".into(), healthy_dep());

    Project {
        name: name.into(),
        compose_file: dir.join("docker-compose.yml"),
        override_files: Vec::new(),
        working_dir: dir.clone(),
        services: IndexMap::from([
            ("web".to_string(), web),
            ("prometheus".to_string(), prom),
            ("exporter".to_string(), exporter),
        ]),
        networks: IndexMap::from([("default".to_string(), Network::project_default(name))]),
        volumes: IndexMap::new(),
        secrets: IndexMap::new(),
        warnings: Vec::new(),
    }
}

fn opts() -> UpOptions {
    UpOptions {
        dry_run: false,
        wait_timeout: Duration::from_secs(90),
    }
}

/// Container name → (ID, StartedAt) of the project's containers.
async fn containers(docker: &Docker, project: &str) -> HashMap<String, (String, String)> {
    let list = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("com.docker.compose.project={project}")],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut out = HashMap::new();
    for c in list {
        let id = c.id.unwrap();
        let info = docker.inspect_container(&id, None).await.unwrap();
        let name = info.name.unwrap().trim_start_matches('/').to_string();
        let started = info.state.unwrap().started_at.unwrap_or_default();
        out.insert(name, (id, started));
    }
    out
}

async fn host_port(docker: &Docker, container: &str, port: &str) -> u16 {
    let info = docker.inspect_container(container, None).await.unwrap();
    let ports = info.network_settings.unwrap().ports.unwrap();
    let binding = ports[port].as_ref().unwrap()[0].clone();
    binding.host_port.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_comes_up_reconciles_minimally_and_goes_down() {
    let Some(docker) = docker().await else { return };
    let name = project_name("stack");
    let _cleanup = Cleanup(name.clone());
    let mut project = stack(&name);

    // Cold: everything is created, in dependency order, and healthy.
    let clock = Instant::now();
    let report = engine::up(&docker, &project, &opts()).await.unwrap();
    eprintln!("cold up: {:?}", clock.elapsed());
    assert_eq!(report.changes(), 3, "{:#?}", report.lines);
    let first = containers(&docker, &name).await;
    let web = format!("{name}-web-1");
    let prom = format!("{name}-prometheus-1");
    let exporter = format!("{name}-exporter-1");
    assert_eq!(first.len(), 3, "{first:?}");
    for c in [&web, &prom, &exporter] {
        assert!(first.contains_key(c), "{c} missing: {first:?}");
    }

    // It answers on its ports, and Prometheus scrapes web over the project network.
    let web_port = host_port(&docker, &web, "80/tcp").await;
    let body = http_ok(web_port, "/greeting.txt").unwrap();
    assert_eq!(body.trim(), "hello from rehost");
    let prom_port = host_port(&docker, &prom, "9090/tcp").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = http_ok(prom_port, "/api/v1/query?query=rehost_test_web_up").unwrap_or_default();
        if q.contains("\"value\"") && q.contains("\"1\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped web: {q}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Warm: nothing changes, not even a restart.
    let clock = Instant::now();
    let report = engine::up(&docker, &project, &opts()).await.unwrap();
    eprintln!("warm up: {:?}", clock.elapsed());
    assert_eq!(report.changes(), 0, "{:#?}", report.lines);
    assert_eq!(containers(&docker, &name).await, first);

    // One service's environment changed: that service alone is recreated.
    project.services["exporter"]
        .environment
        .insert("ROLE".into(), "changed".into());
    let report = engine::up(&docker, &project, &opts()).await.unwrap();
    assert_eq!(report.changes(), 1, "{:#?}", report.lines);
    let after = containers(&docker, &name).await;
    assert_ne!(after[&exporter].0, first[&exporter].0);
    assert_eq!(after[&web], first[&web]);
    assert_eq!(after[&prom], first[&prom]);

    // web's environment changed: web is recreated, Prometheus (which depends
    // on it) restarted in place, the exporter untouched.
    project.services["web"]
        .environment
        .insert("SITE".into(), "changed".into());
    let report = engine::up(&docker, &project, &opts()).await.unwrap();
    assert_eq!(report.changes(), 2, "{:#?}", report.lines);
    let again = containers(&docker, &name).await;
    assert_ne!(again[&web].0, after[&web].0, "web not recreated");
    assert_eq!(
        again[&prom].0, after[&prom].0,
        "prometheus recreated instead of restarted"
    );
    assert_ne!(again[&prom].1, after[&prom].1, "prometheus not restarted");
    assert_eq!(again[&exporter], after[&exporter]);

    // A service removed from the project: its container goes.
    project.services.shift_remove("exporter");
    let report = engine::up(&docker, &project, &opts()).await.unwrap();
    assert_eq!(report.changes(), 1, "{:#?}", report.lines);
    let left = containers(&docker, &name).await;
    assert!(!left.contains_key(&exporter), "{left:?}");
    assert_eq!(left.len(), 2);

    // A dry run reports and changes nothing.
    project.services["web"]
        .environment
        .insert("SITE".into(), "dry".into());
    let dry = engine::up(
        &docker,
        &project,
        &UpOptions {
            dry_run: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert!(
        dry.lines.iter().any(|l| l.starts_with("recreate web")),
        "{:#?}",
        dry.lines
    );
    assert_eq!(containers(&docker, &name).await, left);

    // down: no container, no network left.
    let lines = engine::down(&docker, &name, DownOptions::default())
        .await
        .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("remove network {name}_default")),
        "{lines:?}"
    );
    assert!(containers(&docker, &name).await.is_empty());
    assert!(docker
        .inspect_network(&format!("{name}_default"), None)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_healthcheck_names_the_service_and_its_last_output() {
    let Some(docker) = docker().await else { return };
    let name = project_name("unhealthy");
    let _cleanup = Cleanup(name.clone());
    let mut project = stack(&name);
    project.services.clear();
    let mut bad = Service::new("bad", "rehost-test/busybox:latest");
    bad.command = Some(sleeper());
    bad.healthcheck = Some(Healthcheck {
        test: vec!["CMD-SHELL".into(), "echo probe-said-no; exit 1".into()],
        interval: Some(Duration::from_millis(200)),
        timeout: Some(Duration::from_secs(1)),
        retries: Some(2),
        start_period: None,
        start_interval: None,
    });
    let mut after = Service::new("after", "rehost-test/busybox:latest");
    after.command = Some(sleeper());
    after.depends_on.insert("bad".into(), healthy_dep());
    project.services.insert("bad".into(), bad);
    project.services.insert("after".into(), after);

    let err = engine::up(&docker, &project, &opts()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("service `bad` is unhealthy"), "{msg}");
    assert!(msg.contains("probe-said-no"), "{msg}");
    assert!(msg.contains("`after` depends on `bad`"), "{msg}");
    assert!(err
        .chain()
        .any(|c| c.downcast_ref::<engine::NotReady>().is_some()));
    // The dependent was never created.
    let made = containers(&docker, &name).await;
    assert!(!made.contains_key(&format!("{name}-after-1")), "{made:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_build_shows_the_failing_step_output() {
    let Some(docker) = docker().await else { return };
    let name = project_name("badbuild");
    let _cleanup = Cleanup(name.clone());
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM rehost-test/busybox:latest\nRUN echo fine\nRUN echo the-step-output-marker && exit 3\n",
    )
    .unwrap();
    let mut project = stack(&name);
    project.services.clear();
    let mut s = Service::new("broken", "unused");
    s.image = None;
    s.build = Some(Build::new(ctx.path().to_path_buf()));
    project.services.insert("broken".into(), s);
    let err = engine::up(&docker, &project, &opts()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("build of service `broken` failed"), "{msg}");
    assert!(msg.contains("the-step-output-marker"), "{msg}");
    assert!(msg.contains("Step 3/"), "{msg}");
    assert!(
        !msg.contains("echo fine\n ---> "),
        "earlier steps leak into the error: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_context_is_not_rebuilt_and_changed_one_is() {
    let Some(docker) = docker().await else { return };
    let name = project_name("rebuild");
    let _cleanup = Cleanup(name.clone());
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM rehost-test/busybox:latest\nCOPY msg /msg\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 300 & wait\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("msg"), "one").unwrap();
    std::fs::write(ctx.path().join(".dockerignore"), "scratch/\n").unwrap();
    let mut project = stack(&name);
    project.services.clear();
    let mut s = Service::new("app", "unused");
    s.image = Some(format!("{name}-named:v1"));
    s.build = Some(Build::new(ctx.path().to_path_buf()));
    project.services.insert("app".into(), s);

    let r = engine::up(&docker, &project, &opts()).await.unwrap();
    assert!(
        r.lines.iter().any(|l| l.starts_with("built")),
        "{:#?}",
        r.lines
    );
    // `image:` is tagged onto the build.
    assert!(docker
        .inspect_image(&format!("{name}-named:v1"))
        .await
        .is_ok());
    // An ignored file does not trigger a build.
    std::fs::create_dir(ctx.path().join("scratch")).unwrap();
    std::fs::write(ctx.path().join("scratch/x"), "noise").unwrap();
    let r = engine::up(&docker, &project, &opts()).await.unwrap();
    assert!(
        !r.lines.iter().any(|l| l.starts_with("built")),
        "{:#?}",
        r.lines
    );
    assert_eq!(r.changes(), 0);
    // A changed file does, and the container follows the new image.
    std::fs::write(ctx.path().join("msg"), "two").unwrap();
    let r = engine::up(&docker, &project, &opts()).await.unwrap();
    assert!(
        r.lines.iter().any(|l| l.starts_with("built")),
        "{:#?}",
        r.lines
    );
    assert_eq!(r.changes(), 1, "{:#?}", r.lines);

    engine::down(&docker, &name, DownOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_ports_networks_and_volumes() {
    let Some(docker) = docker().await else { return };
    let name = project_name("scale");
    let _cleanup = Cleanup(name.clone());
    let mut project = stack(&name);
    project.services.clear();
    // Three httpd replicas on one host port range, as behind a load balancer.
    let mut web = Service::new("web", "rehost-test/busybox:latest");
    web.command = Some(shell("httpd -f -p 80 -h /etc"));
    web.replicas = 3;
    web.ports = vec![Port {
        host_ip: Some("127.0.0.1".parse().unwrap()),
        host: Some(PortRange {
            start: 35000,
            end: 35100,
        }),
        container: PortRange { start: 80, end: 80 },
        protocol: Protocol::Tcp,
    }];
    // A fixed address on an internal network with a subnet, and a named volume.
    let mut db = Service::new("db", "rehost-test/busybox:latest");
    db.command = Some(sleeper());
    db.networks.insert(
        "back".into(),
        ServiceNetwork {
            ipv4_address: Some("172.31.250.10".parse().unwrap()),
            aliases: vec!["database".into()],
        },
    );
    db.volumes = vec![Mount::Volume {
        name: "data".into(),
        target: "/data".into(),
        read_only: false,
    }];
    db.user = Some("65534:65534".into());
    db.restart = Restart::UnlessStopped;
    project.services.insert("web".into(), web);
    project.services.insert("db".into(), db);
    project.networks.insert(
        "back".into(),
        Network {
            name: format!("{name}_back"),
            external: false,
            driver: "bridge".into(),
            internal: true,
            subnets: vec![Subnet {
                subnet: "172.31.250.0/24".into(),
                gateway: None,
            }],
            labels: BTreeMap::new(),
        },
    );
    project.volumes.insert(
        "data".into(),
        Volume {
            name: format!("{name}_data"),
            external: false,
            driver: "local".into(),
            driver_opts: BTreeMap::new(),
            labels: BTreeMap::new(),
        },
    );

    engine::up(&docker, &project, &opts()).await.unwrap();
    let mut ports = Vec::new();
    for n in 1..=3 {
        let p = host_port(&docker, &format!("{name}-web-{n}"), "80/tcp").await;
        assert!((35000..=35100).contains(&p), "{p}");
        http_ok(p, "/passwd").unwrap();
        ports.push(p);
    }
    ports.dedup();
    assert_eq!(ports.len(), 3, "replicas share a host port: {ports:?}");
    let db_info = docker
        .inspect_container(&format!("{name}-db-1"), None)
        .await
        .unwrap();
    let nets = db_info.network_settings.unwrap().networks.unwrap();
    assert_eq!(
        nets[&format!("{name}_back")].ip_address.as_deref(),
        Some("172.31.250.10")
    );
    assert!(nets.contains_key(&format!("{name}_default")));
    assert_eq!(db_info.config.unwrap().user.as_deref(), Some("65534:65534"));
    let net = docker
        .inspect_network(&format!("{name}_back"), None)
        .await
        .unwrap();
    assert_eq!(net.internal, Some(true));

    // Scale down to one: replicas 2 and 3 go, 1 stays.
    let before = containers(&docker, &name).await;
    project.services["web"].replicas = 1;
    let r = engine::up(&docker, &project, &opts()).await.unwrap();
    assert_eq!(r.changes(), 2, "{:#?}", r.lines);
    let after = containers(&docker, &name).await;
    assert_eq!(
        after[&format!("{name}-web-1")],
        before[&format!("{name}-web-1")]
    );
    assert!(!after.contains_key(&format!("{name}-web-2")));

    // down keeps the volume, down --volumes removes it.
    engine::down(&docker, &name, DownOptions::default())
        .await
        .unwrap();
    assert!(docker.inspect_volume(&format!("{name}_data")).await.is_ok());
    let lines = engine::down(
        &docker,
        &name,
        DownOptions {
            volumes: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        lines.contains(&format!("remove volume {name}_data")),
        "{lines:?}"
    );
    assert!(docker
        .inspect_volume(&format!("{name}_data"))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_services_for_a_backup() {
    let Some(docker) = docker().await else { return };
    let name = project_name("quiesce");
    let _cleanup = Cleanup(name.clone());
    let mut project = stack(&name);
    project.services.clear();
    for s in ["db", "web"] {
        let mut svc = Service::new(s, "rehost-test/busybox:latest");
        svc.command = Some(sleeper());
        project.services.insert(s.into(), svc);
    }
    engine::up(&docker, &project, &opts()).await.unwrap();
    let running = |c: String| {
        let docker = docker.clone();
        async move {
            let info = docker.inspect_container(&c, None).await.unwrap();
            info.state.unwrap().running.unwrap()
        }
    };
    let err = engine::stop_services(&docker, &name, &["nope".into()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("service `nope`"), "{err}");
    assert!(
        running(format!("{name}-db-1")).await,
        "an unknown service stopped something"
    );

    let ids = engine::stop_services(&docker, &name, &["db".into()])
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert!(!running(format!("{name}-db-1")).await);
    assert!(running(format!("{name}-web-1")).await);
    engine::start_services(&docker, &ids).await.unwrap();
    assert!(running(format!("{name}-db-1")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_successfully_external_networks_and_host_network() {
    let Some(docker) = docker().await else { return };
    let name = project_name("oneshot");
    let _cleanup = Cleanup(name.clone());
    // A network made by "another project": joined, never created or removed.
    let shared = format!("{name}-shared");
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: shared.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    struct DropNet(String);
    impl Drop for DropNet {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", &self.0])
                .output();
        }
    }
    let _net = DropNet(shared.clone());

    let mut project = stack(&name);
    project.services.clear();
    project.networks.insert(
        "shared".into(),
        Network {
            name: shared.clone(),
            external: true,
            driver: "bridge".into(),
            internal: false,
            subnets: vec![],
            labels: BTreeMap::new(),
        },
    );
    let mut init = Service::new("init", "rehost-test/busybox:latest");
    init.command = Some(["sh", "-c", "exit 0"].map(String::from).to_vec());
    let mut app = Service::new("app", "rehost-test/busybox:latest");
    app.command = Some(sleeper());
    app.networks
        .insert("shared".into(), ServiceNetwork::default());
    app.depends_on.insert(
        "init".into(),
        Dependency {
            condition: Condition::CompletedSuccessfully,
            restart: false,
            required: true,
        },
    );
    let mut host = Service::new("hostnet", "rehost-test/busybox:latest");
    host.command = Some(sleeper());
    host.networks.clear();
    host.network_mode = Some(NetworkMode::Host);
    project.services.insert("init".into(), init);
    project.services.insert("app".into(), app);
    project.services.insert("hostnet".into(), host);

    engine::up(&docker, &project, &opts()).await.unwrap();
    let app_info = docker
        .inspect_container(&format!("{name}-app-1"), None)
        .await
        .unwrap();
    assert!(app_info.state.unwrap().running.unwrap());
    let nets = app_info.network_settings.unwrap().networks.unwrap();
    assert!(nets.contains_key(&shared), "{:?}", nets.keys());
    let host_info = docker
        .inspect_container(&format!("{name}-hostnet-1"), None)
        .await
        .unwrap();
    assert_eq!(
        host_info.host_config.unwrap().network_mode.as_deref(),
        Some("host")
    );

    // down leaves the external network alone.
    engine::down(&docker, &name, DownOptions::default())
        .await
        .unwrap();
    assert!(docker.inspect_network(&shared, None).await.is_ok());

    // A one-shot that fails stops what depends on it, with its exit code.
    project.services["init"].command = Some(["sh", "-c", "exit 3"].map(String::from).to_vec());
    let err = engine::up(&docker, &project, &opts()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("service `init` did not complete successfully: exited with code 3"),
        "{msg}"
    );
    assert!(docker
        .inspect_container(&format!("{name}-app-1"), None)
        .await
        .is_err());

    // An external network that does not exist is named.
    project.networks["shared"].name = format!("{name}-missing");
    let err = engine::up(&docker, &project, &opts()).await.unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!("no network named {name}-missing")),
        "{err:#}"
    );
}
