//! Whole-file tests of [`parse`]: every supported key in each of its forms,
//! and every error path with the line, column and key it reports.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::stack::model::*;

const FILE: &str = "/opt/stack/docker-compose.yml";

fn env(name: &str) -> Option<String> {
    match name {
        "DOMAIN" => Some("example.org".to_string()),
        "TAG" => Some("2.4".to_string()),
        "PWD" => Some("/home/op".to_string()),
        "HOME" => Some("/root".to_string()),
        "SECRET" => Some("s3cr3t".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Project, ComposeError> {
    parse(text, Path::new(FILE), Path::new("/opt/stack"), "site", &env)
}

fn ok(text: &str) -> Project {
    match load(text) {
        Ok(project) => project,
        Err(err) => panic!("{err}"),
    }
}

fn web(text: &str) -> Service {
    ok(text).services.shift_remove("web").unwrap()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_realistic_stack() {
    let text = "\
version: '3.8'
x-restart: &restart
  restart: unless-stopped
services:
  traefik:
    <<: *restart
    image: traefik:v3.1
    command:
      - --providers.docker=true
      - --certificatesresolvers.le.acme.email=ops@${DOMAIN}
    ports:
      - 80:80
      - 443:443
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock:ro
      - /srv/acme:/acme
    networks: [public, default]
  web:
    <<: *restart
    build: ./web
    image: site-web:${TAG}
    labels:
      traefik.http.routers.web.rule: Host(`${DOMAIN}`)
    volumes:
      - $PWD/www:/usr/local/apache2/htdocs:ro
    deploy:
      replicas: 3
    healthcheck:
      test: [CMD, httpd, -t]
      interval: 1m30s
    depends_on:
      - traefik
  node-exporter:
    image: prom/node-exporter
    network_mode: host
    command: --collector.textfile.directory=/srv/monitoring
networks:
  public:
    external: true
    name: traefik
";
    let p = ok(text);
    assert_eq!(p.name, "site");
    assert_eq!(p.compose_file, PathBuf::from(FILE));
    assert_eq!(
        p.services.keys().collect::<Vec<_>>(),
        ["traefik", "web", "node-exporter"]
    );
    let traefik = &p.services["traefik"];
    assert_eq!(traefik.restart, Restart::UnlessStopped);
    assert_eq!(
        traefik.command.as_deref(),
        Some(
            &strings(&[
                "--providers.docker=true",
                "--certificatesresolvers.le.acme.email=ops@example.org"
            ])[..]
        )
    );
    assert_eq!(
        traefik.networks.keys().collect::<Vec<_>>(),
        ["public", "default"]
    );
    let web = &p.services["web"];
    assert_eq!(web.image.as_deref(), Some("site-web:2.4"));
    assert_eq!(web.build, Some(Build::new(PathBuf::from("/opt/stack/web"))));
    assert_eq!(
        web.labels,
        map(&[("traefik.http.routers.web.rule", "Host(`example.org`)")])
    );
    assert_eq!(
        web.volumes,
        vec![Mount::Bind {
            source: PathBuf::from("/home/op/www"),
            target: "/usr/local/apache2/htdocs".to_string(),
            read_only: true,
            create_host_path: true,
        }]
    );
    assert_eq!(web.replicas, 3);
    assert_eq!(
        web.healthcheck,
        Some(Healthcheck {
            test: strings(&["CMD", "httpd", "-t"]),
            interval: Some(Duration::from_secs(90)),
            timeout: None,
            retries: None,
            start_period: None,
            start_interval: None,
        })
    );
    assert_eq!(
        web.networks.keys().collect::<Vec<_>>(),
        ["default"],
        "no networks: the implicit default"
    );
    assert_eq!(web.depends_on["traefik"].condition, Condition::Started);
    let exporter = &p.services["node-exporter"];
    assert_eq!(exporter.network_mode, Some(NetworkMode::Host));
    assert!(exporter.networks.is_empty());
    assert_eq!(exporter.restart, Restart::No);
    assert_eq!(exporter.replicas, 1);
    assert_eq!(p.networks.keys().collect::<Vec<_>>(), ["public", "default"]);
    assert_eq!(p.networks["public"].name, "traefik");
    assert!(p.networks["public"].external);
    assert_eq!(p.networks["default"].name, "site_default");
    assert!(p.volumes.is_empty());
}

#[test]
fn no_default_network_unless_a_service_uses_it() {
    let p = ok("services:\n  web:\n    image: x\n    network_mode: host\n");
    assert!(p.networks.is_empty());
    // A declared `default` is used as declared (here: joining another project's).
    let p = ok("services:\n  web:\n    image: x\nnetworks:\n  default:\n    external: true\n    name: proxy\n");
    assert_eq!(p.networks["default"].name, "proxy");
    assert!(p.networks["default"].external);
}

#[test]
fn environment_and_labels_in_both_forms() {
    let list = web("services:\n  web:\n    image: x\n    environment:\n      - A=1\n      - SECRET\n      - UNSET\n      - E=\n      - URL=https://${DOMAIN}/?a=b\n    labels:\n      - a=1\n      - bare\n");
    assert_eq!(
        list.environment,
        map(&[
            ("A", "1"),
            ("SECRET", "s3cr3t"),
            ("E", ""),
            ("URL", "https://example.org/?a=b")
        ])
    );
    assert_eq!(list.labels, map(&[("a", "1"), ("bare", "")]));
    let mapping = web("services:\n  web:\n    image: x\n    environment:\n      A: 1\n      SECRET:\n      UNSET:\n      F: 1.5\n      G: '$$HOME'\n    labels:\n      com.example.x: \"y\"\n");
    assert_eq!(
        mapping.environment,
        map(&[
            ("A", "1"),
            ("SECRET", "s3cr3t"),
            ("F", "1.5"),
            ("G", "$HOME")
        ])
    );
    assert_eq!(mapping.labels, map(&[("com.example.x", "y")]));
}

#[test]
fn env_files_come_first_and_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.env"),
        "A=from-file\nB=from-file\nC=${DOMAIN}\nD=kept\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.env"), "B=second-file\n").unwrap();
    let text = "services:\n  web:\n    image: x\n    env_file: [a.env, ./b.env]\n    environment:\n      A: override\n      D:\n";
    let p = parse(text, &dir.path().join("c.yml"), dir.path(), "p", &env).unwrap();
    assert_eq!(
        p.services["web"].environment,
        map(&[
            ("A", "override"),
            ("B", "second-file"),
            ("C", "example.org")
        ]),
        "a bare unset `D` removes the env_file value, as Compose v1 does"
    );
    let text = "services:\n  web:\n    image: x\n    env_file: missing.env\n";
    let err = parse(text, &dir.path().join("c.yml"), dir.path(), "p", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read {}: No such file or directory",
            dir.path().join("missing.env").display()
        )
    );
    std::fs::write(dir.path().join("bad.env"), "A=1\nnot a line\n").unwrap();
    let text = "services:\n  web:\n    image: x\n    env_file: bad.env\n";
    let err = parse(text, &dir.path().join("c.yml"), dir.path(), "p", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:1: expected `=` after not",
            dir.path().join("bad.env").display()
        )
    );
}

#[test]
fn pwd_is_an_ordinary_variable_empty_when_unset() {
    let text = "services:\n  web:\n    image: x\n    volumes: [\"$PWD/www:/www\"]\n";
    let no_pwd = |name: &str| (name != "PWD").then(|| env(name)).flatten();
    let p = parse(
        text,
        Path::new(FILE),
        Path::new("/opt/stack"),
        "site",
        &no_pwd,
    )
    .unwrap();
    assert_eq!(
        p.services["web"].volumes,
        vec![Mount::Bind {
            source: PathBuf::from("/www"),
            target: "/www".to_string(),
            read_only: false,
            create_host_path: true,
        }],
        "Compose v1 leaves an unset $PWD empty rather than using the project folder"
    );
}

#[test]
fn command_and_entrypoint_forms() {
    let s = web("services:\n  web:\n    image: x\n    command: sh -c 'echo \"$${HOME}\" && exec httpd'\n    entrypoint: [\"/bin/tini\", \"--\"]\n");
    assert_eq!(
        s.command,
        Some(strings(&["sh", "-c", "echo \"${HOME}\" && exec httpd"]))
    );
    assert_eq!(s.entrypoint, Some(strings(&["/bin/tini", "--"])));
    let s = web("services:\n  web:\n    image: x\n    entrypoint: ''\n    command:\n");
    assert_eq!(
        s.entrypoint,
        Some(vec![]),
        "an empty entrypoint clears the image's"
    );
    assert_eq!(s.command, None);
}

#[test]
fn ports_short_and_long() {
    let s = web("services:\n  web:\n    image: x\n    ports:\n      - \"35000-35100:80\"\n      - 127.0.0.1:9090:9090/udp\n      - 8080\n      - target: 443\n        published: \"8443\"\n");
    let one = |n| PortRange { start: n, end: n };
    assert_eq!(
        s.ports,
        vec![
            Port {
                host_ip: None,
                host: Some(PortRange {
                    start: 35000,
                    end: 35100
                }),
                container: one(80),
                protocol: Protocol::Tcp
            },
            Port {
                host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                host: Some(one(9090)),
                container: one(9090),
                protocol: Protocol::Udp
            },
            Port {
                host_ip: None,
                host: None,
                container: one(8080),
                protocol: Protocol::Tcp
            },
            Port {
                host_ip: None,
                host: Some(one(8443)),
                container: one(443),
                protocol: Protocol::Tcp
            },
        ]
    );
}

#[test]
fn volumes_short_long_and_named() {
    let p = ok("services:\n  web:\n    image: x\n    volumes:\n      - data:/data\n      - type: bind\n        source: ~/conf\n        target: /conf\n        read_only: true\n      - /cache\nvolumes:\n  data:\n    labels: {backup: 'yes'}\n");
    assert_eq!(
        p.services["web"].volumes,
        vec![
            Mount::Volume {
                name: "data".to_string(),
                target: "/data".to_string(),
                read_only: false
            },
            Mount::Bind {
                source: PathBuf::from("/root/conf"),
                target: "/conf".to_string(),
                read_only: true,
                create_host_path: false,
            },
            Mount::Anonymous {
                target: "/cache".to_string()
            },
        ]
    );
    assert_eq!(p.volumes["data"].name, "site_data");
    assert_eq!(p.volumes["data"].labels, map(&[("backup", "yes")]));
}

#[test]
fn networks_with_fixed_addresses() {
    let p = ok("services:\n  web:\n    image: x\n    networks:\n      back:\n        ipv4_address: 172.28.0.5\n        aliases: [www]\n      front:\nnetworks:\n  back:\n    internal: true\n    ipam:\n      config:\n        - subnet: 172.28.0.0/16\n  front:\n    driver: bridge\n");
    let s = &p.services["web"];
    assert_eq!(
        s.networks["back"],
        ServiceNetwork {
            ipv4_address: Some(Ipv4Addr::new(172, 28, 0, 5)),
            aliases: strings(&["www"])
        }
    );
    assert_eq!(s.networks["front"], ServiceNetwork::default());
    assert!(p.networks["back"].internal);
    assert_eq!(p.networks["back"].name, "site_back");
    assert!(!p.networks.contains_key("default"));
}

#[test]
fn healthcheck_forms() {
    let hc = |body: &str| {
        web(&format!(
            "services:\n  web:\n    image: x\n    healthcheck:\n{body}"
        ))
        .healthcheck
        .unwrap()
    };
    let h = hc("      test: curl -f http://localhost/ || exit 1\n      interval: 30s\n      timeout: 5s\n      retries: 3\n      start_period: 1m\n      start_interval: 500ms\n");
    assert_eq!(
        h,
        Healthcheck {
            test: strings(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"]),
            interval: Some(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(5)),
            retries: Some(3),
            start_period: Some(Duration::from_secs(60)),
            start_interval: Some(Duration::from_millis(500)),
        }
    );
    assert_eq!(
        hc("      test: [CMD-SHELL, exit 0]\n").test,
        strings(&["CMD-SHELL", "exit 0"])
    );
    assert_eq!(hc("      disable: true\n").test, strings(&["NONE"]));
    assert_eq!(hc("      test: [NONE]\n").test, strings(&["NONE"]));
    // Only timings: the image's test is kept (an empty test).
    let h = hc("      interval: 10s\n      retries: '5'\n");
    assert!(h.test.is_empty());
    assert_eq!(h.retries, Some(5));
}

#[test]
fn depends_on_forms_and_restart_policies() {
    let p = ok("services:\n  web:\n    image: x\n    restart: on-failure:5\n    depends_on:\n      db:\n        condition: service_healthy\n      init:\n        condition: service_completed_successfully\n        restart: true\n      cache:\n      metrics:\n        condition: service_started\n        required: false\n  db:\n    image: x\n    restart: always\n  init:\n    image: x\n    restart: 'no'\n  cache:\n    image: x\n    restart: on-failure\n");
    let web = &p.services["web"];
    assert_eq!(web.restart, Restart::OnFailure(Some(5)));
    assert_eq!(p.services["db"].restart, Restart::Always);
    assert_eq!(p.services["init"].restart, Restart::No);
    assert_eq!(p.services["cache"].restart, Restart::OnFailure(None));
    let deps: Vec<(&str, Condition, bool, bool)> = web
        .depends_on
        .iter()
        .map(|(k, d)| (k.as_str(), d.condition, d.restart, d.required))
        .collect();
    assert_eq!(
        deps,
        vec![
            ("db", Condition::Healthy, false, true),
            ("init", Condition::CompletedSuccessfully, true, true),
            ("cache", Condition::Started, false, true),
            ("metrics", Condition::Started, false, false),
        ]
    );
}

#[test]
fn replicas_from_scale_or_deploy() {
    assert_eq!(
        web("services:\n  web:\n    image: x\n    scale: 0\n").replicas,
        0
    );
    assert_eq!(
        web("services:\n  web:\n    image: x\n    deploy: {replicas: '4'}\n").replicas,
        4
    );
    assert_eq!(
        web("services:\n  web:\n    image: x\n    scale: 2\n    deploy: {replicas: 2}\n").replicas,
        2
    );
}

#[test]
fn build_forms() {
    let s = web("services:\n  web:\n    build:\n      context: ../images/web\n      dockerfile: docker/Dockerfile.prod\n      args:\n        - VERSION=${TAG}\n        - SECRET\n        - UNSET\n");
    assert_eq!(
        s.build,
        Some(Build {
            context: PathBuf::from("/opt/images/web"),
            dockerfile: "docker/Dockerfile.prod".to_string(),
            args: map(&[("VERSION", "2.4"), ("SECRET", "s3cr3t")]),
            target: None,
            dockerfile_inline: None,
            labels: BTreeMap::new(),
            network: None,
            extra_hosts: Vec::new(),
            shm_size: None,
        })
    );
    assert_eq!(s.image, None);
    let s = web("services:\n  web:\n    build:\n      dockerfile: /opt/stack/web/Dockerfile\n");
    let build = s.build.unwrap();
    assert_eq!(build.context, PathBuf::from("/opt/stack"));
    assert_eq!(build.dockerfile, "web/Dockerfile");
}

#[test]
fn top_level_name_version_and_extensions_are_accepted() {
    let p = ok("name: other\nversion: \"3\"\nx-anything: {a: 1}\nservices:\n  web:\n    image: x\n    x-note: hi\nnetworks:\n  n:\n    x-y: 1\n");
    assert_eq!(p.name, "site", "stack.project wins over `name:`");
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with(&format!("{FILE}:1:1: name: ignored: the project is `site`")),
        "{:?}",
        p.warnings
    );
    assert!(ok("name: site\nservices:\n  web:\n    image: x\n")
        .warnings
        .is_empty());
}

/// (compose text, line, column, key, message or part of it)
type Case = (
    &'static str,
    Option<usize>,
    Option<usize>,
    Option<&'static str>,
    &'static str,
);

#[test]
fn every_error_names_file_line_column_and_key() {
    let cases: &[Case] = &[
        (
            "services:\n  web:\n    image: x\n    container_name: web\n    scale: 2\n",
            Some(4),
            Some(5),
            Some("services.web.container_name"),
            "a container name is unique, so the service cannot have 2 replicas",
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      placement: {}\n",
            Some(5),
            Some(7),
            Some("services.web.deploy.placement"),
            "`placement` is not supported by rehost",
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, x]\n      intervall: 1s\n",
            Some(6),
            Some(7),
            Some("services.web.healthcheck.intervall"),
            "`intervall` is not supported by rehost",
        ),
        (
            "secrets:\n  a: {external: true}\nservices:\n  web:\n    image: x\n",
            Some(2),
            Some(7),
            Some("secrets.a.external"),
            "external secrets are Swarm objects",
        ),
        (
            "services:\n  web:\n    image: [x]\n",
            Some(3),
            Some(5),
            Some("services.web.image"),
            "expected a string, got a list",
        ),
        (
            "services:\n  web:\n    image: x\n    ports:\n      - \"80:80\"\n      - \"99999:80\"\n",
            Some(6),
            Some(9),
            Some("services.web.ports[1]"),
            "\"99999\" is not a port number (1-65535)",
        ),
        (
            "services:\n  web:\n    image: x\n    ports: [\"80:80\", \"a:80\"]\n",
            Some(4),
            Some(22),
            Some("services.web.ports[1]"),
            "not a port number",
        ),
        (
            "services:\n  web:\n    image: x\n    ports:\n    - target: 80\n      published: 0\n",
            Some(6),
            Some(7),
            Some("services.web.ports[0].published"),
            "not a port number",
        ),
        (
            "services:\n  web:\n    image: x\n    volumes:\n      - ./a:/a\n      - type: bind\n        source: ./b\n        target: /b\n        volume: {nocopy: true}\n",
            Some(9),
            Some(9),
            Some("services.web.volumes[1].volume"),
            "`volume` is not supported by rehost",
        ),
        (
            "services:\n  web:\n    image: x\n    volumes:\n      - data:/data\n",
            Some(5),
            Some(9),
            Some("services.web.volumes[0]"),
            "the volume `data` is not declared under the top-level `volumes:`",
        ),
        (
            "services:\n  web:\n    image: x\n    networks: [front]\n",
            Some(4),
            Some(16),
            Some("services.web.networks[0]"),
            "the network `front` is not declared",
        ),
        (
            "services:\n  web:\n    image: x\n    depends_on: [db]\n",
            Some(4),
            Some(18),
            Some("services.web.depends_on[0]"),
            "no service `db` in this file",
        ),
        (
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on:\n      c:\n        condition: service_healthy\n  c:\n    image: x\n    depends_on:\n      - a\n",
            Some(13),
            Some(9),
            Some("services.c.depends_on[0]"),
            "dependency cycle: a → b → c → a",
        ),
        (
            "services:\n  web:\n    image: x\n    depends_on:\n      web:\n",
            Some(5),
            Some(7),
            Some("services.web.depends_on.web"),
            "dependency cycle: web → web",
        ),
        (
            "services:\n  web:\n    image: x\n    depends_on:\n      db: {condition: service_ready}\n  db:\n    image: x\n",
            Some(5),
            Some(12),
            Some("services.web.depends_on.db.condition"),
            "expected service_started, service_healthy or service_completed_successfully",
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, x]\n      interval: 90\n",
            Some(6),
            Some(7),
            Some("services.web.healthcheck.interval"),
            "expected a duration like \"1m30s\"",
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: [curl, x]\n",
            Some(5),
            Some(7),
            Some("services.web.healthcheck.test"),
            "expected a list starting with \"CMD\"",
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck:\n      disable: true\n      retries: 3\n",
            Some(5),
            Some(7),
            Some("services.web.healthcheck.disable"),
            "cannot be combined",
        ),
        (
            "services:\n  web:\n    image: x\n    networks:\n      n:\n        ipv4_address: 10.0.0.300\nnetworks:\n  n:\n",
            Some(6),
            Some(9),
            Some("services.web.networks.n.ipv4_address"),
            "expected an IPv4 address",
        ),
        (
            "services:\n  web:\n    image: x\n    networks:\n      n:\n        ipv4_address: 10.1.0.5\nnetworks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/16\n",
            Some(6),
            Some(9),
            Some("services.web.networks.n.ipv4_address"),
            "10.1.0.5 is not inside a subnet of the network `n`",
        ),
        (
            "services:\n  web:\n    image: x\nnetworks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/16\n        - subnet: 10.1.0.0\n",
            Some(9),
            Some(11),
            Some("networks.n.ipam.config[1].subnet"),
            "CIDR",
        ),
        (
            "services:\n  web:\n    image: ${IMAGE:?set IMAGE in stack.env}\n",
            Some(3),
            Some(5),
            Some("services.web.image"),
            "required variable IMAGE is missing a value: set IMAGE in stack.env",
        ),
        (
            "services:\n  web:\n    image: x\n    environment:\n      - A=${B\n",
            Some(5),
            Some(9),
            Some("services.web.environment[0]"),
            "unclosed `${`",
        ),
        (
            "services:\n  web:\n    image: x\n    network_mode: container:abc\n",
            Some(4),
            Some(5),
            Some("services.web.network_mode"),
            "containers outside the project are not supported",
        ),
        (
            "services:\n  web:\n    image: x\n    network_mode: host\n    networks: [default]\n",
            Some(5),
            Some(5),
            Some("services.web.networks"),
            "cannot be combined with `network_mode:`",
        ),
        (
            "services:\n  web:\n    image: x\n    network_mode: service:vpn\n",
            Some(4),
            Some(5),
            Some("services.web.network_mode"),
            "no service `vpn`",
        ),
        (
            "services:\n  web:\n    image: x\n    restart: sometimes\n",
            Some(4),
            Some(5),
            Some("services.web.restart"),
            "expected `no`, `always`",
        ),
        (
            "services:\n  web:\n    image: x\n    scale: 2\n    deploy:\n      replicas: 3\n",
            Some(4),
            Some(5),
            Some("services.web.scale"),
            "disagree",
        ),
        (
            "services:\n  web:\n    image: x\n    scale: -1\n",
            Some(4),
            Some(5),
            Some("services.web.scale"),
            "expected a whole number of 0 or more, got -1",
        ),
        (
            "services:\n  web:\n    command: echo\n",
            Some(2),
            Some(3),
            Some("services.web"),
            "a service needs `image:` or `build:`",
        ),
        (
            "services:\n  web:\n    build:\n      context: https://github.com/x/y.git\n",
            Some(4),
            Some(7),
            Some("services.web.build.context"),
            "must be a local folder",
        ),
        (
            "services:\n  web:\n    build:\n      context: web\n      dockerfile: ../Dockerfile\n",
            Some(5),
            Some(7),
            Some("services.web.build.dockerfile"),
            "must be inside the build context",
        ),
        (
            "services:\n  web:\n    image: x\n    command: echo 'unbalanced\n",
            Some(4),
            Some(5),
            Some("services.web.command"),
            "no closing quotation",
        ),
        (
            "services:\n  web:\n    image: x\n    labels:\n      enabled: true\n",
            Some(5),
            Some(7),
            Some("services.web.labels.enabled"),
            "quote it",
        ),
        (
            "services:\n  \"we b\":\n    image: x\n",
            Some(2),
            Some(3),
            Some("services.\"we b\""),
            "is not a valid name",
        ),
        (
            "services: {}\n",
            None,
            None,
            None,
            "no services",
        ),
        (
            "- a\n",
            None,
            None,
            None,
            "expected a mapping with `services:` at the top level, got a list",
        ),
        (
            "services:\n  web:\n    image: x\nnetworks:\n  proxy:\n    external: true\n    name: traefik\n    driver: bridge\n",
            Some(8),
            Some(5),
            Some("networks.proxy.driver"),
            "cannot be set with `external: true`",
        ),
        (
            "services:\n  web:\n    image: !override x\n",
            Some(3),
            Some(5),
            Some("services.web.image"),
            "YAML tags",
        ),
    ];
    for (text, line, column, key, message) in cases {
        let err = match load(text) {
            Ok(p) => panic!("input {text:?} loaded: {p:?}"),
            Err(err) => err,
        };
        let detail = err.detail();
        assert_eq!(
            (detail.line, detail.column, detail.key.as_deref()),
            (*line, *column, *key),
            "input {text:?}: {err}"
        );
        assert!(
            detail.message.contains(message),
            "input {text:?}: {err}\nwanted: {message}"
        );
        assert!(err.to_string().starts_with(FILE), "{err}");
    }
}

#[test]
fn display_is_file_line_column_key_message() {
    let err =
        load("services:\n  web:\n    image: x\n    ports:\n      - \"80:80/sctp\"\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{FILE}:5:9: services.web.ports[0]: protocol \"sctp\" is not tcp or udp: expected a port like \"80\", \"8080:80\", \"127.0.0.1:8080:80/udp\" or \"35000-35100:80\", got \"80:80/sctp\"")
    );
    let err = load("services:\n  web: [\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{FILE}:3:1: invalid YAML:")),
        "{err}"
    );
}

#[test]
fn environment_values_are_never_echoed_in_errors() {
    // Container environments hold passwords: a bad entry names its key only.
    let err = load("services:\n  web:\n    image: x\n    environment: [\"BAD KEY=${SECRET}\"]\n")
        .unwrap_err();
    assert_eq!(
        err.detail().key.as_deref(),
        Some("services.web.environment[0]")
    );
    assert!(err.to_string().contains("\"BAD KEY\""), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn load_reads_the_stack_env_file_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("docker-compose.yml");
    std::fs::write(
        &compose,
        "services:\n  web:\n    image: httpd:${TAG}\n    environment: [\"WHO=${WHO}\"]\n    env_file: web.env\n",
    )
    .unwrap();
    // Compose v1 expands a service env file's variables from the process
    // environment only: TAG (from stack.env) is unknown there.
    std::fs::write(dir.path().join("web.env"), "IN_FILE=${TAG:-none}/${WHO}\n").unwrap();
    let env_path = dir.path().join("stack.env");
    std::fs::write(&env_path, "TAG=from-file\nWHO=file\n").unwrap();
    let stack = crate::config::StackConfig {
        compose: compose.clone(),
        overrides: Vec::new(),
        project: "demo".to_string(),
        env_file: Some(env_path.clone()),
        profiles: Vec::new(),
    };
    let process = |name: &str| (name == "WHO").then(|| "process".to_string());
    let p = super::load(&stack, &process).unwrap();
    assert_eq!(p.services["web"].image.as_deref(), Some("httpd:from-file"));
    assert_eq!(p.services["web"].environment["WHO"], "process");
    assert_eq!(p.services["web"].environment["IN_FILE"], "none/process");
    assert_eq!(p.working_dir, dir.path());
    assert_eq!(p.name, "demo");

    let missing = crate::config::StackConfig {
        compose: dir.path().join("nope.yml"),
        ..stack
    };
    let err = super::load(&missing, &process).unwrap_err();
    assert!(err.to_string().starts_with("cannot read "), "{err}");
    assert_eq!(err.detail().kind, crate::config::ConfigErrorKind::Read);
}

/// Not a fuzzer (that is the fuzz target's job), but a cheap guard that the
/// loader never panics on damaged real files: truncations, every line
/// removed, and odd characters put in at many places of the fixtures
/// (strided, to keep this test a few seconds long in a debug build).
#[test]
fn damaged_files_give_errors_not_panics() {
    let fixtures = [
        include_str!("../../../../tests/fixtures/compose/site/docker-compose.yml"),
        include_str!("../../../../tests/fixtures/compose/monitoring/docker-compose.yml"),
        include_str!("../../../../tests/fixtures/compose/interpolation/docker-compose.yml"),
    ];
    let mut runs = 0;
    let mut try_load = |text: &str| {
        runs += 1;
        // Ok or Err are both fine; a panic fails the test.
        let _ = load(text);
    };
    for text in fixtures {
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &end in boundaries.iter().step_by(4) {
            try_load(&text[..end]);
        }
        let lines: Vec<&str> = text.lines().collect();
        for skip in 0..lines.len() {
            let damaged: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, l)| (i != skip).then_some(*l))
                .collect();
            try_load(&damaged.join("\n"));
        }
        for (n, &at) in boundaries.iter().enumerate().step_by(13) {
            let odd = ["-", ":", "[", "{", "$", "\"", " ", "\n", "é", "\t", "#"][n % 11];
            try_load(&format!("{}{odd}{}", &text[..at], &text[at..]));
        }
    }
    assert!(runs > 2000, "only {runs} variants tried");
}

#[test]
fn service_settings_in_every_form() {
    let text = "\
services:
  db:
    image: postgres
  web:
    image: x
    container_name: site-web
    hostname: web1
    domainname: example.org
    expose: [80, '9000-9001/udp']
    links: [db, 'db:database']
    extra_hosts: ['gw:10.0.0.1']
    dns: 1.1.1.1
    dns_search: [example.org]
    working_dir: /app
    stdin_open: true
    tty: 'yes'
    init: true
    stop_signal: SIGQUIT
    stop_grace_period: 1m30s
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    privileged: false
    read_only: true
    security_opt: ['no-new-privileges:true']
    sysctls: {net.core.somaxconn: 1024}
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    tmpfs: /run
    shm_size: 64m
    devices: ['/dev/fuse']
    pid: host
    ipc: shareable
    logging: {driver: json-file, options: {max-size: 10m}}
    mem_limit: 512m
    cpus: 0.5
    platform: linux/amd64
    runtime: runc
    pull_policy: always
    deploy:
      resources:
        limits: {memory: 512M, pids: 100}
        reservations: {memory: 128m, cpus: '0.1'}
";
    let p = ok(text);
    let s = &p.services["web"];
    assert_eq!(s.container_name.as_deref(), Some("site-web"));
    assert_eq!(
        s.links,
        vec![
            ("db".to_string(), "db".to_string()),
            ("db".to_string(), "database".to_string())
        ]
    );
    assert_eq!(s.pull_policy, PullPolicy::Always);
    let t = &s.settings;
    assert_eq!(t.hostname.as_deref(), Some("web1"));
    assert_eq!(t.domainname.as_deref(), Some("example.org"));
    assert_eq!(t.expose, strings(&["80/tcp", "9000/udp", "9001/udp"]));
    assert_eq!(t.extra_hosts, strings(&["gw:10.0.0.1"]));
    assert_eq!(t.dns, strings(&["1.1.1.1"]));
    assert_eq!(t.dns_search, strings(&["example.org"]));
    assert_eq!(t.working_dir.as_deref(), Some("/app"));
    assert!(t.stdin_open && t.tty && !t.privileged && t.read_only);
    assert_eq!(t.init, Some(true));
    assert_eq!(t.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(t.stop_grace_period, Some(Duration::from_secs(90)));
    assert_eq!(t.cap_add, strings(&["NET_ADMIN"]));
    assert_eq!(t.cap_drop, strings(&["ALL"]));
    assert_eq!(t.security_opt, strings(&["no-new-privileges:true"]));
    assert_eq!(t.sysctls, map(&[("net.core.somaxconn", "1024")]));
    assert_eq!(
        t.ulimits["nofile"],
        Ulimit {
            soft: 1024,
            hard: 2048
        }
    );
    assert_eq!(t.tmpfs, map(&[("/run", "")]));
    assert_eq!(t.shm_size, Some(64 << 20));
    assert_eq!(t.devices[0].host, "/dev/fuse");
    assert_eq!(t.pid.as_deref(), Some("host"));
    assert_eq!(t.ipc.as_deref(), Some("shareable"));
    let logging = t.logging.as_ref().unwrap();
    assert_eq!(logging.driver.as_deref(), Some("json-file"));
    assert_eq!(logging.options, map(&[("max-size", "10m")]));
    assert_eq!(t.memory, Some(512 << 20));
    assert_eq!(t.memory_reservation, Some(128 << 20));
    assert_eq!(t.nano_cpus, Some(500_000_000));
    assert_eq!(t.pids_limit, Some(100));
    assert_eq!(t.runtime.as_deref(), Some("runc"));
    // Accepted without effect: said with the place.
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with(&format!("{FILE}:35:5: services.web.platform: ignored")),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings[1].contains("services.web.deploy.resources.reservations.cpus: ignored"),
        "{:?}",
        p.warnings
    );
    // Nothing set: every setting at its default.
    assert_eq!(p.services["db"].settings, Settings::default());
}

#[test]
fn build_target_args_and_inline_dockerfile() {
    let s = web("services:\n  web:\n    build:\n      context: .\n      target: prod\n      args: {A: '1'}\n      labels: [org.x=y]\n      network: host\n      extra_hosts: {gw: 10.0.0.1}\n      shm_size: '1g'\n      cache_from: [x]\n");
    let b = s.build.unwrap();
    assert_eq!(b.target.as_deref(), Some("prod"));
    assert_eq!(b.args, map(&[("A", "1")]));
    assert_eq!(b.labels, map(&[("org.x", "y")]));
    assert_eq!(b.network.as_deref(), Some("host"));
    assert_eq!(b.extra_hosts, strings(&["gw:10.0.0.1"]));
    assert_eq!(b.shm_size, Some(1 << 30));
    let s =
        web("services:\n  web:\n    build:\n      dockerfile_inline: |\n        FROM scratch\n");
    let b = s.build.unwrap();
    assert_eq!(b.dockerfile, INLINE_DOCKERFILE);
    assert_eq!(b.dockerfile_inline.as_deref(), Some("FROM scratch\n"));
}

#[test]
fn secrets_and_configs_from_files_and_variables() {
    let text = "\
secrets:
  db_password: {file: ./secrets/db.txt}
  api_key: {environment: SECRET}
  unused: {file: /nope}
configs:
  app: {content: 'a: 1'}
services:
  web:
    image: x
    secrets: [db_password, {source: api_key, target: key, uid: '1000', mode: 0400}]
    configs: [{source: app, target: /etc/app.yml}]
";
    let p = ok(text);
    let s = &p.services["web"];
    assert_eq!(
        s.secrets,
        vec![
            SecretMount {
                source: "secrets.db_password".into(),
                target: "/run/secrets/db_password".into(),
                uid: None,
                gid: None,
                mode: 0o444
            },
            SecretMount {
                source: "secrets.api_key".into(),
                target: "/run/secrets/key".into(),
                uid: Some(1000),
                gid: None,
                mode: 0o400
            },
            SecretMount {
                source: "configs.app".into(),
                target: "/etc/app.yml".into(),
                uid: None,
                gid: None,
                mode: 0o444
            },
        ]
    );
    assert_eq!(
        p.secrets["secrets.db_password"],
        SecretSource::File(PathBuf::from("/opt/stack/secrets/db.txt"))
    );
    assert!(!p.secrets.contains_key("secrets.unused"));
    // The value of a variable secret never prints.
    assert!(!format!("{p:?}").contains("s3cr3t"));

    let err = load("secrets:\n  k: {environment: SECRET}\nservices:\n  web:\n    image: x\n    read_only: true\n    secrets: [k]\n").unwrap_err();
    let d = err.detail();
    assert_eq!(d.key.as_deref(), Some("services.web.read_only"));
    assert!(d.message.contains("read-only"), "{}", d.message);
    assert!(!err.to_string().contains("s3cr3t"));
    let err =
        load("secrets:\n  k: {environment: NOPE}\nservices:\n  web:\n    image: x\n").unwrap_err();
    assert_eq!(err.detail().line, Some(2));
    assert_eq!(err.detail().key.as_deref(), Some("secrets.k.environment"));
}

#[test]
fn profiles_select_services() {
    let text = "\
services:
  web:
    image: x
    depends_on:
      debug: {condition: service_started, required: false}
  debug:
    image: y
    profiles: [debug]
  tools:
    image: z
    profiles: [tools, debug]
";
    let off = ok(text);
    assert_eq!(off.services.keys().collect::<Vec<_>>(), ["web"]);
    assert!(off.services["web"].depends_on.is_empty());
    let on = parse_profiles(
        text,
        Path::new(FILE),
        Path::new("/opt/stack"),
        "site",
        &["debug".to_string()],
        &env,
    )
    .unwrap();
    assert_eq!(
        on.services.keys().collect::<Vec<_>>(),
        ["web", "debug", "tools"]
    );
    assert!(on.services["web"].depends_on.contains_key("debug"));

    let err = load("services:\n  web:\n    image: x\n    links: [debug]\n  debug:\n    image: y\n    profiles: [debug]\n").unwrap_err();
    assert_eq!(err.detail().key.as_deref(), Some("services.web.links[0]"));
    assert!(
        err.detail().message.contains("not enabled"),
        "{}",
        err.detail().message
    );
    let err = load("services:\n  web:\n    image: x\n    depends_on: [debug]\n  debug:\n    image: y\n    profiles: [debug]\n").unwrap_err();
    assert_eq!(
        err.detail().key.as_deref(),
        Some("services.web.depends_on[0]")
    );
    assert_eq!(
        (err.detail().line, err.detail().column),
        (Some(4), Some(18))
    );
}

#[test]
fn new_keys_refuse_bad_values_with_their_place() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "    links: [nope]\n",
            "services.web.links[0]",
            "no service `nope`",
        ),
        (
            "    mem_limit: lots\n",
            "services.web.mem_limit",
            "expected a size",
        ),
        (
            "    mem_limit: 1g\n    deploy: {resources: {limits: {memory: 2g}}}\n",
            "services.web.deploy.resources.limits.memory",
            "disagrees with `mem_limit`",
        ),
        (
            "    pid: 'service:db'\n",
            "services.web.pid",
            "not supported by rehost",
        ),
        (
            "    container_name: '-x'\n",
            "services.web.container_name",
            "not a valid container name",
        ),
        (
            "    pull_policy: build\n",
            "services.web.pull_policy",
            "needs `build:`",
        ),
        (
            "    pull_policy: sometimes\n",
            "services.web.pull_policy",
            "expected `always`",
        ),
        (
            "    profiles: ['a b']\n",
            "services.web.profiles[0]",
            "not a valid profile name",
        ),
        (
            "    secrets: [nope]\n",
            "services.web.secrets[0]",
            "not declared",
        ),
        (
            "    stop_grace_period: soon\n",
            "services.web.stop_grace_period",
            "expected a duration",
        ),
        (
            "    ulimits: {nofile: {soft: 1}}\n",
            "services.web.ulimits.nofile",
            "hard",
        ),
        (
            "    cap_add: NET_ADMIN\n",
            "services.web.cap_add",
            "expected a list",
        ),
        (
            "    ipc: 'container:x'\n",
            "services.web.ipc",
            "not supported by rehost",
        ),
    ];
    for (extra, key, message) in cases {
        let text = format!("services:\n  db:\n    image: d\n  web:\n    image: x\n{extra}");
        let err = load(&text).unwrap_err();
        let d = err.detail();
        assert_eq!(d.key.as_deref(), Some(*key), "{text}: {err}");
        assert!(d.line.is_some(), "{text}: {err}");
        assert!(d.message.contains(message), "{text}: {err}");
    }
}

/// Files on disk, loaded as `stack.compose` lists them.
fn load_files(
    files: &[(&str, &str)],
    compose: &[&str],
) -> (tempfile::TempDir, Result<Project, ComposeError>) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let mut paths = compose.iter().map(|c| dir.path().join(c));
    let stack = crate::config::StackConfig {
        compose: paths.next().unwrap(),
        overrides: paths.collect(),
        project: "site".to_string(),
        env_file: None,
        profiles: Vec::new(),
    };
    let result = super::load(&stack, &env);
    (dir, result)
}

#[test]
fn several_files_merge_with_compose_override_rules() {
    let (dir, p) = load_files(
        &[
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: httpd:${TAG}\n    environment: [A=1, B=2]\n    ports: ['80:80']\n    volumes: ['./www:/www']\n",
            ),
            (
                "override/prod.yml",
                "services:\n  web:\n    environment: {B: '3'}\n    ports: ['443:443']\n    volumes: ['./prod-www:/www:ro']\n  cache:\n    image: redis\n",
            ),
        ],
        &["docker-compose.yml", "override/prod.yml"],
    );
    let p = p.unwrap();
    let web = &p.services["web"];
    assert_eq!(web.image.as_deref(), Some("httpd:2.4"));
    assert_eq!(web.environment, map(&[("A", "1"), ("B", "3")]));
    assert_eq!(web.ports.len(), 2);
    // Relative to the first file's folder, as Compose resolves every file.
    assert_eq!(
        web.volumes,
        vec![Mount::Bind {
            source: dir.path().join("prod-www"),
            target: "/www".into(),
            read_only: true,
            create_host_path: true,
        }]
    );
    assert!(p.services.contains_key("cache"));
    assert_eq!(p.override_files, vec![dir.path().join("override/prod.yml")]);

    // An error in the second file is located there.
    let (dir, err) = load_files(
        &[
            ("a.yml", "services:\n  web:\n    image: x\n"),
            ("b.yml", "services:\n  web:\n    ports: ['99999:80']\n"),
        ],
        &["a.yml", "b.yml"],
    );
    let err = err.unwrap_err();
    assert_eq!(err.detail().file, dir.path().join("b.yml"));
    assert_eq!(
        (err.detail().line, err.detail().column),
        (Some(3), Some(13))
    );
}

#[test]
fn extends_from_the_same_file_and_another() {
    let (dir, p) = load_files(
        &[
            (
                "stack/docker-compose.yml",
                "\
services:
  base:
    image: x
    environment: {A: '1'}
    cap_drop: [ALL]
  web:
    extends: base
    environment: {B: '2'}
  worker:
    extends:
      file: ../common/services.yml
      service: app
    command: [work]
",
            ),
            (
                "common/services.yml",
                "services:\n  root:\n    image: y\n    labels: {tier: root}\n  app:\n    extends: root\n    build: ./app\n    env_file: ./app.env\n    volumes: ['./data:/data']\n",
            ),
            ("common/app.env", "FROM_FILE=1\n"),
            ("common/app/Dockerfile", "FROM scratch\n"),
        ],
        &["stack/docker-compose.yml"],
    );
    let p = p.unwrap();
    let web = &p.services["web"];
    assert_eq!(web.image.as_deref(), Some("x"));
    assert_eq!(web.environment, map(&[("A", "1"), ("B", "2")]));
    assert_eq!(web.settings.cap_drop, strings(&["ALL"]));
    let worker = &p.services["worker"];
    assert_eq!(worker.image.as_deref(), Some("y"));
    assert_eq!(worker.labels, map(&[("tier", "root")]));
    assert_eq!(worker.command, Some(strings(&["work"])));
    // The base's relative paths are its own file's.
    let common = dir.path().join("common");
    assert_eq!(worker.build.as_ref().unwrap().context, common.join("app"));
    assert_eq!(worker.environment, map(&[("FROM_FILE", "1")]));
    assert!(
        matches!(&worker.volumes[0], Mount::Bind { source, .. } if *source == common.join("data"))
    );

    let (_dir, err) = load_files(
        &[(
            "docker-compose.yml",
            "services:\n  a:\n    image: x\n    extends: b\n  b:\n    extends: a\n",
        )],
        &["docker-compose.yml"],
    );
    let err = err.unwrap_err();
    assert!(err.detail().message.contains("cycle"), "{err}");
    let (_dir, err) = load_files(
        &[(
            "docker-compose.yml",
            "services:\n  a:\n    extends: {service: nope}\n",
        )],
        &["docker-compose.yml"],
    );
    let err = err.unwrap_err();
    assert_eq!(err.detail().key.as_deref(), Some("services.a.extends"));
    assert_eq!(err.detail().line, Some(3));
}

#[test]
fn deploy_restart_policy_and_desktop_volume_flags() {
    let p = ok("services:\n  web:\n    image: x\n    volumes: ['./a:/a:cached']\n    deploy:\n      restart_policy: {condition: on-failure, max_attempts: 3, delay: 5s}\n");
    assert_eq!(p.services["web"].restart, Restart::OnFailure(Some(3)));
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("deploy.restart_policy.delay: ignored"),
        "{:?}",
        p.warnings
    );
    let p = ok("services:\n  web:\n    image: x\n    deploy: {restart_policy: {}}\n");
    assert_eq!(p.services["web"].restart, Restart::Always);
    let p = ok("services:\n  web:\n    image: x\n    restart: 'no'\n    deploy: {restart_policy: {condition: any}}\n");
    assert_eq!(p.services["web"].restart, Restart::No);
    assert!(
        p.warnings[0].contains("`restart:` is given too"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn env_file_long_form_with_required() {
    let (_dir, p) = load_files(
        &[
            ("docker-compose.yml", "services:\n  web:\n    image: x\n    env_file:\n      - a.env\n      - {path: missing.env, required: false}\n"),
            ("a.env", "A=1\n"),
        ],
        &["docker-compose.yml"],
    );
    assert_eq!(p.unwrap().services["web"].environment, map(&[("A", "1")]));
    let (_dir, err) = load_files(
        &[(
            "docker-compose.yml",
            "services:\n  web:\n    image: x\n    env_file: [{path: missing.env}]\n",
        )],
        &["docker-compose.yml"],
    );
    assert!(err.unwrap_err().to_string().contains("missing.env"));
}

#[test]
fn files_that_are_not_regular_are_refused_not_read() {
    let err = load("services:\n  web:\n    extends: {file: /dev/zero, service: x}\n").unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = load("services:\n  web:\n    image: x\n    env_file: /dev/zero\n").unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
