//! The disaster-recovery drill (issue 6), against real Garage, the real Docker
//! Engine and a real Prometheus in a container:
//!
//! 1. empty bucket, fresh directories: `rehost boot --no-run` brings the stack
//!    up; content is pulled and served; first backups are written;
//! 2. Prometheus scrapes for a while; backups again; acme.json's bytes and a
//!    query result are recorded;
//! 3. everything is destroyed: containers, networks, every local directory;
//! 4. `rehost boot --no-run` again: acme.json is byte-identical with mode
//!    0600, Prometheus answers the old query with the old samples, the site
//!    serves the same content, metrics files are back;
//! 5. with storage unreachable and a `required` entry, boot fails before
//!    starting anything.
//!
//! The drill prints its timings (restore, up, total) for the README.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rehost_tests::faultproxy::{Fault, FaultProxy, Rule};
use rehost_tests::{docker, free_port, garage, http_get, output_ok, rehost_bin, S3cmd, TestEnv};

/// Waits (bounded) until `f` returns `Some`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A PromQL instant query's single value, as text (exact comparison).
fn query(port: u16, promql: &str, at: f64) -> Option<String> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http_get(port, &format!("/api/v1/query?query={q}&time={at:.3}")).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    let first = result.first()?;
    first["value"][1].as_str().map(str::to_string)
}

fn project_containers(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes the project's containers and networks whatever happened.
struct Cleanup {
    env_config: std::path::PathBuf,
    project: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(rehost_bin())
            .arg("-c")
            .arg(&self.env_config)
            .args(["down", "--volumes"])
            .output();
        for id in project_containers(&self.project) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
}

fn compose_file(dir: &Path) -> String {
    // busybox httpd answers 404 on `/` until content is pulled: healthy means
    // "serving", not "has content".
    format!(
        r#"services:
  web:
    image: rehost-test/busybox:latest
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    volumes:
      - {www}:/www:ro
    ports:
      - "127.0.0.1:${{WEB_PORT}}:80"
    healthcheck:
      test: ["CMD-SHELL", "wget -S -O /dev/null http://127.0.0.1/ 2>&1 | grep -q 'HTTP/1.[01] [24]0[04]'"]
      interval: 1s
      timeout: 2s
      retries: 30
  prometheus:
    image: rehost-test/prometheus:latest
    command:
      - --config.file=/etc/prometheus/prometheus.yml
      - --storage.tsdb.path=/prometheus
      - --web.listen-address=:9090
      - --web.enable-admin-api
    volumes:
      - {prom}:/prometheus
      - {promcfg}:/etc/prometheus/prometheus.yml:ro
    ports:
      - "127.0.0.1:${{PROM_PORT}}:9090"
    depends_on:
      web:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"]
      interval: 1s
      timeout: 2s
      retries: 60
"#,
        www = dir.join("root/www").display(),
        prom = dir.join("root/prometheus").display(),
        promcfg = dir.join("stack/prometheus.yml").display(),
    )
}

#[test]
fn disaster_recovery_drill() {
    let Some(g) = garage() else { return };
    if !docker::available() {
        return;
    }
    docker::test_images();
    let drill = Instant::now();

    let prom_port = free_port();
    let web_port = free_port();
    let env = TestEnv::new(&g, "");
    let dir = env.dir.path().to_path_buf();
    let project = format!("drill{}", std::process::id());
    let _cleanup = Cleanup {
        env_config: env.config.clone(),
        project: project.clone(),
    };
    std::fs::create_dir_all(dir.join("stack")).unwrap();
    std::fs::write(dir.join("stack/docker-compose.yml"), compose_file(&dir)).unwrap();
    std::fs::write(
        dir.join("stack/prometheus.yml"),
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:9090']\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("stack/stack.env"),
        format!("WEB_PORT={web_port}\nPROM_PORT={prom_port}\n"),
    )
    .unwrap();

    // Content in the bucket, as a CI job would upload it.
    let s3 = S3cmd::new(&g, &dir).expect("s3cmd (CI installs it)");
    let site = dir.join("site-src");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::write(
        site.join("index.html"),
        format!("<h1>drill {project}</h1>\n"),
    )
    .unwrap();
    std::fs::write(site.join("css/site.css"), "body { color: teal }\n").unwrap();
    let content_url = format!("s3://{}/{}/content/", g.bucket, env.prefix);
    s3.run(&["sync", &format!("{}/", site.display()), &content_url]);

    let state = format!(
        r#"  acme:
    path: {root}/acme/acme.json
    mode: "0600"
    restore: if-missing
    required: true
  prometheus:
    path: {root}/prometheus
    kind: prometheus
    api: http://127.0.0.1:{prom_port}
    restore: if-missing
pull:
  site:
    source: s3://{bucket}/{prefix}/content/
    dest: {root}/www
    delete_removed: true
stack:
  compose: {dir}/stack/docker-compose.yml
  project: {project}
  env_file: {dir}/stack/stack.env"#,
        root = dir.join("root").display(),
        bucket = g.bucket,
        prefix = env.prefix,
        dir = dir.display(),
    );
    env.write_config(&g, &g.endpoint, &state);
    // Provisioning leaves an acme.json (Traefik fills it on first start).
    std::fs::create_dir_all(dir.join("root/acme")).unwrap();
    let acme = dir.join("root/acme/acme.json");
    std::fs::write(&acme, format!("{{\"le\":{{\"Account\":\"{project}\"}}}}\n")).unwrap();
    std::fs::set_permissions(&acme, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(dir.join("root/prometheus")).unwrap();
    std::fs::create_dir_all(dir.join("root/www")).unwrap();

    // 0. The new host is registered once (Terraform would run this): its
    // `required` entry makes boot refuse a host the store does not know.
    env.rehost(&["init"]).expect(0);

    // 1. First boot ever: nothing to restore, the stack comes up.
    let first = env.rehost(&["boot", "--no-run"]);
    first.expect(0);
    println!("first boot:\n{}", first.stdout());
    assert!(
        first.stdout().contains("no backup in storage yet"),
        "{}",
        first.all()
    );
    wait_for("the web server", Duration::from_secs(30), || {
        http_get(web_port, "/").ok()
    });
    env.rehost(&["pull"]).expect(0);
    let page = wait_for("the pulled page", Duration::from_secs(30), || {
        http_get(web_port, "/index.html")
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    assert_eq!(page.1, std::fs::read(site.join("index.html")).unwrap());
    env.rehost(&["backup"]).expect(0);

    // 2. Samples accumulate; back up again and record what must come back.
    wait_for("Prometheus to answer", Duration::from_secs(60), || {
        query(prom_port, "up", now())
    });
    std::thread::sleep(Duration::from_secs(8));
    // A moment safely before the snapshot: every sample up to it is in the
    // backup (samples scraped after the snapshot are not, and must not count).
    let at = now() - 2.0;
    env.rehost(&["backup"]).expect(0);
    let promql = r#"count_over_time(up{job="prometheus"}[10m])"#;
    let samples = wait_for("a query result", Duration::from_secs(30), || {
        query(prom_port, promql, at)
    });
    assert!(
        samples.parse::<f64>().unwrap() >= 3.0,
        "only {samples} samples scraped"
    );
    let acme_bytes = std::fs::read(&acme).unwrap();
    println!(
        "recorded: acme.json {} bytes, {samples} samples at {at}",
        acme_bytes.len()
    );

    // 3. Destroy the host: containers, networks, every local directory.
    env.rehost(&["down"]).expect(0);
    assert!(project_containers(&project).is_empty());
    std::fs::remove_dir_all(dir.join("root")).unwrap();
    std::fs::remove_dir_all(env.metrics()).unwrap();
    std::fs::remove_dir_all(env.state_dir()).unwrap();

    // 4. Boot the "new VM".
    let second = env.rehost(&["boot", "--no-run"]);
    second.expect(0);
    println!("second boot:\n{}", second.stdout());
    assert_eq!(std::fs::read(&acme).unwrap(), acme_bytes, "acme.json bytes");
    let mode = std::fs::metadata(&acme).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "acme.json mode {mode:o}");
    let restored = wait_for(
        "Prometheus on restored data",
        Duration::from_secs(60),
        || query(prom_port, promql, at),
    );
    assert_eq!(restored, samples, "samples of {promql} at {at}");
    env.rehost(&["pull"]).expect(0);
    let page = wait_for("the page after recovery", Duration::from_secs(30), || {
        http_get(web_port, "/index.html")
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    assert_eq!(page.1, std::fs::read(site.join("index.html")).unwrap());
    assert!(env.metrics().join("rehost-boot.prom").exists());
    assert!(env.metrics().join("rehost-restore-acme.prom").exists());
    rehost_tests::promtool_check(&env.metrics().join("rehost-boot.prom"));

    // 5. Storage unreachable with a required entry: nothing starts.
    env.rehost(&["down"]).expect(0);
    std::fs::remove_dir_all(dir.join("root")).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    env.write_config(&g, &dead, &state);
    let refused = env.rehost(&["boot", "--no-run"]);
    refused.expect(3);
    assert!(refused.all().contains("required"), "{}", refused.all());
    assert!(
        project_containers(&project).is_empty(),
        "boot started containers although storage was unreachable"
    );

    println!(
        "DR drill timings: {} | {} | whole drill {:.1}s",
        timing_line(&first.stdout()),
        timing_line(&second.stdout()),
        drill.elapsed().as_secs_f64()
    );
}

fn timing_line(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("boot: done"))
        .unwrap_or("boot: (no timing line)")
        .to_string()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Garage, the Docker Engine and the test images; a scratch host and a
/// project name whose containers, networks and volumes go with the guard.
fn stack_env(name: &str) -> Option<(rehost_tests::Garage, TestEnv, String, Cleanup)> {
    let g = garage()?;
    if !docker::available() {
        return None;
    }
    docker::test_images();
    let env = TestEnv::new(&g, "");
    let project = format!("{name}{}", std::process::id());
    let cleanup = Cleanup {
        env_config: env.config.clone(),
        project: project.clone(),
    };
    Some((g, env, project, cleanup))
}

fn started_at(project: &str) -> String {
    let ids = project_containers(project);
    assert_eq!(ids.len(), 1, "containers of {project}: {ids:?}");
    let out = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.StartedAt}}",
            &ids[0],
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `stop:` on a state entry: the service is stopped for the backup and
/// started again afterwards, also when the backup fails; an unknown service
/// stops nothing.
/// The `stop:` tests' stack: one busybox service `app` that exits on TERM,
/// with `data/app.db` bind-mounted; returns the test's folder.
fn app_stack(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.dir.path().to_path_buf();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/app.db"), "rows\n").unwrap();
    std::fs::write(
        dir.join("compose.yml"),
        format!(
            "services:\n  app:\n    image: rehost-test/busybox:latest\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n    volumes:\n      - {}:/data\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    dir
}

#[test]
fn services_are_stopped_for_a_backup_and_started_again() {
    let Some((g, env, project, _cleanup)) = stack_env("stop") else {
        return;
    };
    let dir = app_stack(&env);
    let state = |stop: &str| {
        format!(
            "  data:\n    path: {}/data\n    stop: [{stop}]\nstack:\n  compose: {}/compose.yml\n  project: {project}",
            dir.display(),
            dir.display()
        )
    };
    env.write_config(&g, &g.endpoint, &state("app"));
    env.rehost(&["up"]).expect(0);
    let before = started_at(&project);
    assert!(before.starts_with("true "), "{before}");

    let run = env.rehost(&["backup"]);
    run.expect(0);
    let after = started_at(&project);
    assert!(after.starts_with("true "), "not running again: {after}");
    assert_ne!(
        after, before,
        "the container was not stopped for the backup"
    );

    // Storage down: the backup fails before anything is stopped (the
    // generation check reads the store first), and the service keeps running.
    std::fs::write(dir.join("data/app.db"), "more rows\n").unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    env.write_config(&g, &dead, &state("app"));
    env.rehost(&["backup"]).expect(3);
    let again = started_at(&project);
    assert_eq!(
        again, after,
        "the service was stopped for a backup that could not run"
    );

    // An unknown service: nothing is stopped, the backup does not run.
    env.write_config(&g, &g.endpoint, &state("app, nope"));
    let run = env.rehost(&["backup"]);
    run.expect(1);
    assert!(run.stderr().contains("service `nope`"), "{}", run.stderr());
    assert_eq!(started_at(&project), again, "a container was restarted");
}

/// `rehost run` as root, clean environment.
/// `stop:` services are started again when the daemon cancels the backup:
/// at its timeout, and at the end of the grace period after SIGTERM. The
/// store stalls every upload (faultproxy: PUT and POST), so the backup never
/// finishes; its reads answer, so the backup gets as far as stopping the
/// service (a store that does not answer at all stops nothing).
#[test]
fn stop_services_run_again_after_a_timeout_or_sigterm_on_a_stalled_store() {
    let Some((g, env, project, _cleanup)) = stack_env("stopcancel") else {
        return;
    };
    let proxy = FaultProxy::start(
        &g.endpoint,
        vec![
            Rule::always(Fault::Stall).method("PUT"),
            Rule::always(Fault::Stall).method("POST"),
        ],
    );
    let dir = app_stack(&env);
    let state = |timeout: &str| {
        format!(
            "  data:\n    path: {}/data\n    stop: [app]\n    run_at_start: true\n    timeout: {timeout}\nstack:\n  compose: {}/compose.yml\n  project: {project}",
            dir.display(),
            dir.display()
        )
    };
    env.write_config(&g, &g.endpoint, &state("5s"));
    env.rehost(&["up"]).expect(0);
    let before = started_at(&project);
    assert!(before.starts_with("true "), "{before}");
    env.write_config(&g, &proxy.endpoint(), &state("5s"));

    // Timeout: the service was stopped, the backup timed out, it runs again.
    let mut d = rehost_tests::run_daemon(&env, "5s");
    assert!(
        d.wait_log(Duration::from_secs(60), |l| l
            .contains("timed out after 5s")),
        "{}",
        d.log()
    );
    let after = wait_for("app running again", Duration::from_secs(30), || {
        let now = started_at(&project);
        (now.starts_with("true ") && now != before).then_some(now)
    });
    let (code, _) = d.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", d.log());

    // SIGTERM with a backup that would run for 10 minutes: after the grace
    // period it is cancelled, and the service runs again before the exit.
    env.write_config(&g, &proxy.endpoint(), &state("10m"));
    let mut d = rehost_tests::run_daemon(&env, "2s");
    wait_for(
        "app stopped for the backup",
        Duration::from_secs(60),
        || started_at(&project).starts_with("false ").then_some(()),
    );
    let (code, took) = d.terminate(Duration::from_secs(2 + 20));
    println!("exit {took:?} after SIGTERM (grace 2 s)");
    assert_eq!(code, 0, "{}", d.log());
    let last = started_at(&project);
    assert!(
        last.starts_with("true ") && last != after,
        "app not running after the daemon exited: {last}\n{}",
        d.log()
    );
    drop(proxy);
}

fn volume_labels(name: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["volume", "inspect", "--format", "{{json .Labels}}", name])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `volume:` on a state entry: backed up from the volume's mountpoint; on a
/// new host `boot` creates the volume with the project's labels, restores
/// into it, and `up` adopts it (the container sees the restored file).
#[test]
fn state_in_a_named_volume_survives_a_rebuild() {
    let Some((g, env, project, _cleanup)) = stack_env("vol") else {
        return;
    };
    let dir = env.dir.path().to_path_buf();
    std::fs::write(
        dir.join("compose.yml"),
        "services:\n  app:\n    image: rehost-test/busybox:latest\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n    volumes:\n      - appdata:/data\nvolumes:\n  appdata: {}\n",
    )
    .unwrap();
    let state = format!(
        "  appdata:\n    volume: appdata\nstack:\n  compose: {}/compose.yml\n  project: {project}",
        dir.display()
    );
    env.write_config(&g, &g.endpoint, &state);
    env.rehost(&["check"]).expect(0);

    // Before `up` there is no volume to back up: a clear error.
    let early = env.rehost(&["backup"]);
    early.expect(1);
    assert!(early.stderr().contains("creates it"), "{}", early.stderr());

    env.rehost(&["up"]).expect(0);
    let ids = project_containers(&project);
    let exec =
        |args: &[&str]| output_ok(Command::new("docker").arg("exec").arg(&ids[0]).args(args));
    exec(&[
        "sh",
        "-c",
        "echo 'precious' > /data/state.txt && mkdir -p /data/sub && echo x > /data/sub/y",
    ]);
    env.rehost(&["backup"]).expect(0);

    // The host is rebuilt: containers and the volume are gone.
    env.rehost(&["down", "--volumes"]).expect(0);
    let volume = format!("{project}_appdata");
    assert!(volume_labels(&volume).is_none(), "volume still there");

    env.rehost(&["boot", "--no-run"]).expect(0);
    let labels = volume_labels(&volume).expect("boot created the volume");
    assert!(
        labels.contains(&format!("\"com.docker.compose.project\":\"{project}\"")),
        "{labels}"
    );
    let ids = project_containers(&project);
    assert_eq!(ids.len(), 1);
    let out = Command::new("docker")
        .args(["exec", &ids[0], "cat", "/data/state.txt", "/data/sub/y"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "precious\nx\n");
}
