//! One container of a service as the Engine's create request: image, command,
//! environment, labels, ports, mounts, networks, restart policy, user and
//! healthcheck — and the config hash that `up` compares to decide whether an
//! existing container still matches.
//!
//! The hash covers the service's whole effective definition (with `replicas`
//! left out, so scaling does not recreate the replicas that stay), the ID of
//! the image it runs, and the Engine names of the networks and volumes it
//! uses. Anything that changes the container therefore changes the hash.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, HostConfigLogConfig, Mount as EngineMount, MountBindOptions, MountTmpfsOptions,
    MountTypeEnum, NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum,
};
use sha2::{Digest, Sha256};

use super::labels;
use super::secrets::{CopiedFile, Material};
use crate::stack::model::{Mount, NetworkMode, Project, Protocol, Restart, Service};

/// What creating one container takes.
#[derive(Debug, Clone)]
pub(crate) struct ContainerSpec {
    pub name: String,
    pub body: ContainerCreateBody,
    /// Networks beyond the first: an Engine older than API 1.44 takes one
    /// network at create time, the others are connected before the start.
    pub extra_networks: Vec<(String, EndpointSettings)>,
    /// Secrets and configs copied in after create, before start.
    pub copies: Vec<CopiedFile>,
}

/// `container_name:` when the service sets it, else
/// `<project>-<service>-<n>` as Compose v2 names containers.
pub(crate) fn container_name(project: &Project, service: &str, number: u32) -> String {
    match project
        .services
        .get(service)
        .and_then(|s| s.container_name.as_ref())
    {
        Some(name) => name.clone(),
        None => format!("{}-{service}-{number}", project.name),
    }
}

/// The config hash of `service` running `image_id` with the secrets and
/// configs of `secrets` (see the module header; of their content, only
/// digests enter).
pub(crate) fn config_hash(
    project: &Project,
    service: &Service,
    image_id: &str,
    secrets: &Material,
) -> String {
    let mut s = service.clone();
    s.replicas = 0;
    let mut h = Sha256::new();
    h.update(b"rehost-config-v1\0");
    h.update(format!("{s:?}").as_bytes());
    h.update(format!("\0image={image_id}\0").as_bytes());
    for (target, digest) in &secrets.digests {
        h.update(format!("secret={target}={digest}\0").as_bytes());
    }
    for key in service.networks.keys() {
        if let Some(n) = project.networks.get(key) {
            h.update(format!("network={key}={}\0", n.name).as_bytes());
        }
    }
    for m in &service.volumes {
        if let Mount::Volume { name, .. } = m {
            if let Some(v) = project.volumes.get(name) {
                h.update(format!("volume={name}={}\0", v.name).as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// The create request of replica `number` of `service`, running `image`
/// (a name or tag the Engine knows), labelled with `hash`.
pub(crate) fn container_spec(
    project: &Project,
    service: &Service,
    number: u32,
    image: &str,
    hash: &str,
    secrets: &Material,
) -> Result<ContainerSpec, String> {
    let mut labels_map: HashMap<String, String> = service
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        (labels::PROJECT, project.name.clone()),
        (labels::SERVICE, service.name.clone()),
        (labels::NUMBER, number.to_string()),
        (labels::ONEOFF, "False".to_string()),
        (labels::CONFIG_HASH, hash.to_string()),
        (
            labels::WORKING_DIR,
            project.working_dir.to_string_lossy().into_owned(),
        ),
        (
            labels::CONFIG_FILES,
            std::iter::once(&project.compose_file)
                .chain(&project.override_files)
                .map(|f| f.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ] {
        labels_map.insert(k.to_string(), v);
    }

    let env: Vec<String> = service
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();

    let (mut exposed, bindings) = ports(service)?;
    for e in &service.settings.expose {
        if !exposed.contains(e) {
            exposed.push(e.clone());
        }
    }

    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    let mut mounts: Vec<EngineMount> = Vec::new();
    for m in &service.volumes {
        match m {
            // The Mounts API refuses a missing source, as Compose's long
            // syntax without `create_host_path` does; `Binds` creates it.
            Mount::Bind {
                source,
                target,
                read_only,
                create_host_path: false,
            } => mounts.push(EngineMount {
                target: Some(target.clone()),
                source: Some(source.to_string_lossy().into_owned()),
                typ: Some(MountTypeEnum::BIND),
                read_only: read_only.then_some(true),
                bind_options: Some(MountBindOptions {
                    create_mountpoint: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Mount::Tmpfs { target, size, mode } => mounts.push(EngineMount {
                target: Some(target.clone()),
                typ: Some(MountTypeEnum::TMPFS),
                tmpfs_options: (size.is_some() || mode.is_some()).then(|| MountTmpfsOptions {
                    size_bytes: size.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                    mode: mode.map(i64::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Mount::Bind {
                source,
                target,
                read_only,
                create_host_path: true,
            } => binds.push(format!(
                "{}:{target}{}",
                source.to_string_lossy(),
                if *read_only { ":ro" } else { "" }
            )),
            Mount::Volume {
                name,
                target,
                read_only,
            } => {
                let v = project.volumes.get(name).ok_or_else(|| {
                    format!(
                        "service `{}`: volume `{name}` is not declared",
                        service.name
                    )
                })?;
                binds.push(format!(
                    "{}:{target}{}",
                    v.name,
                    if *read_only { ":ro" } else { "" }
                ));
            }
            Mount::Anonymous { target } => anonymous.push(target.clone()),
        }
    }
    mounts.extend(secrets.mounts.iter().cloned());

    let mut network_mode = None;
    let mut endpoints: HashMap<String, EndpointSettings> = HashMap::new();
    let mut extra_networks = Vec::new();
    match &service.network_mode {
        Some(NetworkMode::Host) => network_mode = Some("host".to_string()),
        Some(NetworkMode::None) => network_mode = Some("none".to_string()),
        Some(NetworkMode::Bridge) => network_mode = Some("bridge".to_string()),
        Some(NetworkMode::Service(other)) => {
            network_mode = Some(format!("container:{}", container_name(project, other, 1)))
        }
        None => {
            for (i, (key, settings)) in service.networks.iter().enumerate() {
                let net = project.networks.get(key).ok_or_else(|| {
                    format!(
                        "service `{}`: network `{key}` is not declared",
                        service.name
                    )
                })?;
                let mut aliases = vec![service.name.clone()];
                aliases.extend(settings.aliases.iter().cloned());
                // Compose v2's links: on each network the linked service
                // shares, the alias names its (first) container for this one.
                let links: Vec<String> = service
                    .links
                    .iter()
                    .filter(|(other, _)| {
                        project
                            .services
                            .get(other)
                            .is_some_and(|o| o.networks.contains_key(key))
                    })
                    .map(|(other, alias)| format!("{}:{alias}", container_name(project, other, 1)))
                    .collect();
                let endpoint = EndpointSettings {
                    aliases: Some(aliases),
                    links: (!links.is_empty()).then_some(links),
                    ipam_config: settings.ipv4_address.map(|ip| EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                if i == 0 {
                    network_mode = Some(net.name.clone());
                    endpoints.insert(net.name.clone(), endpoint);
                } else {
                    extra_networks.push((net.name.clone(), endpoint));
                }
            }
        }
    }

    let restart_policy = RestartPolicy {
        name: Some(match service.restart {
            Restart::No => RestartPolicyNameEnum::NO,
            Restart::Always => RestartPolicyNameEnum::ALWAYS,
            Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            Restart::OnFailure(_) => RestartPolicyNameEnum::ON_FAILURE,
        }),
        maximum_retry_count: match service.restart {
            Restart::OnFailure(Some(n)) => Some(i64::from(n)),
            _ => None,
        },
    };

    let healthcheck = service.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: h.interval.map(nanos),
        timeout: h.timeout.map(nanos),
        retries: h.retries.map(i64::from),
        start_period: h.start_period.map(nanos),
        start_interval: h.start_interval.map(nanos),
    });

    // Host networking has no port mapping; the Engine rejects bindings there.
    let host_net = matches!(service.network_mode, Some(NetworkMode::Host));
    let set = &service.settings;
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let map = |m: &std::collections::BTreeMap<String, String>| {
        (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    };
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: set.hostname.clone(),
        domainname: set.domainname.clone(),
        working_dir: set.working_dir.clone(),
        tty: set.tty.then_some(true),
        open_stdin: set.stdin_open.then_some(true),
        stop_signal: set.stop_signal.clone(),
        // Whole seconds, as the Engine takes it; `down`, recreate and
        // restart stop with the container's own timeout.
        stop_timeout: set
            .stop_grace_period
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        cmd: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        env: Some(env),
        labels: Some(labels_map),
        user: service.user.clone(),
        exposed_ports: (!exposed.is_empty() && !host_net).then_some(exposed),
        volumes: (!anonymous.is_empty()).then_some(anonymous),
        healthcheck,
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            port_bindings: (!bindings.is_empty() && !host_net).then_some(bindings),
            mounts: (!mounts.is_empty()).then_some(mounts),
            network_mode,
            restart_policy: Some(restart_policy),
            extra_hosts: list(&set.extra_hosts),
            dns: list(&set.dns),
            dns_search: list(&set.dns_search),
            init: set.init,
            cap_add: list(&set.cap_add),
            cap_drop: list(&set.cap_drop),
            privileged: set.privileged.then_some(true),
            readonly_rootfs: set.read_only.then_some(true),
            security_opt: list(&set.security_opt),
            sysctls: map(&set.sysctls),
            ulimits: (!set.ulimits.is_empty()).then(|| {
                set.ulimits
                    .iter()
                    .map(|(name, u)| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            tmpfs: map(&set.tmpfs),
            shm_size: set.shm_size.map(int),
            devices: (!set.devices.is_empty()).then(|| {
                set.devices
                    .iter()
                    .map(|d| DeviceMapping {
                        path_on_host: Some(d.host.clone()),
                        path_in_container: Some(d.container.clone()),
                        cgroup_permissions: Some(d.permissions.clone()),
                    })
                    .collect()
            }),
            pid_mode: set.pid.clone(),
            ipc_mode: set.ipc.clone(),
            log_config: set.logging.as_ref().map(|l| HostConfigLogConfig {
                typ: l.driver.clone(),
                config: map(&l.options),
            }),
            memory: set.memory.map(int),
            memory_reservation: set.memory_reservation.map(int),
            nano_cpus: set.nano_cpus.map(int),
            pids_limit: set.pids_limit,
            runtime: set.runtime.clone(),
            group_add: list(&set.group_add),
            ..Default::default()
        }),
        networking_config: (!endpoints.is_empty()).then_some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    };
    Ok(ContainerSpec {
        name: container_name(project, &service.name, number),
        body,
        extra_networks,
        copies: secrets.copies.clone(),
    })
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

type Bindings = HashMap<String, Option<Vec<PortBinding>>>;

/// `ports:` as exposed ports and bindings. A host range with a single
/// container port is passed as a range: the Engine picks a free port of it
/// for each container, so replicas share the range. Equal-length ranges map
/// pairwise.
fn ports(service: &Service) -> Result<(Vec<String>, Bindings), String> {
    let mut exposed = Vec::new();
    let mut bindings: Bindings = HashMap::new();
    for p in &service.ports {
        let proto = match p.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        let count = u32::from(p.container.end) - u32::from(p.container.start) + 1;
        for i in 0..count {
            let cport = u32::from(p.container.start) + i;
            let key = format!("{cport}/{proto}");
            let host_port = match p.host {
                None => None,
                Some(h) if h.start == h.end => Some(h.start.to_string()),
                Some(h) if count == 1 => Some(format!("{}-{}", h.start, h.end)),
                Some(h) => {
                    let hcount = u32::from(h.end) - u32::from(h.start) + 1;
                    if hcount != count {
                        return Err(format!(
                            "service `{}`: port range {}-{} and container range {}-{} differ in length",
                            service.name, h.start, h.end, p.container.start, p.container.end
                        ));
                    }
                    Some((u32::from(h.start) + i).to_string())
                }
            };
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.map(|ip| ip.to_string()),
                    host_port,
                });
        }
    }
    Ok((exposed, bindings))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stack::model::*;
    use indexmap::IndexMap;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    pub(crate) fn service(name: &str) -> Service {
        Service::new(name, "rehost-test/busybox:latest")
    }

    pub(crate) fn project(name: &str, services: Vec<Service>) -> Project {
        Project {
            name: name.into(),
            compose_file: PathBuf::from("/srv/stack/docker-compose.yml"),
            override_files: Vec::new(),
            working_dir: PathBuf::from("/srv/stack"),
            services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
            networks: IndexMap::from([("default".to_string(), Network::project_default(name))]),
            volumes: IndexMap::new(),
            secrets: IndexMap::new(),
            warnings: Vec::new(),
        }
    }

    fn port(host: Option<(u16, u16)>, container: (u16, u16)) -> Port {
        Port {
            host_ip: None,
            host: host.map(|(start, end)| PortRange { start, end }),
            container: PortRange {
                start: container.0,
                end: container.1,
            },
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn labels_env_networks_and_restart() {
        let mut s = service("web");
        s.environment.insert("A".into(), "1".into());
        s.labels.insert("traefik.enable".into(), "true".into());
        s.restart = Restart::OnFailure(Some(3));
        s.networks
            .get_mut("default")
            .unwrap()
            .aliases
            .push("www".into());
        let p = project("site", vec![s.clone()]);
        let spec = container_spec(&p, &s, 2, "img", "h1", &Material::default()).unwrap();
        assert_eq!(spec.name, "site-web-2");
        let l = spec.body.labels.as_ref().unwrap();
        assert_eq!(l[labels::PROJECT], "site");
        assert_eq!(l[labels::SERVICE], "web");
        assert_eq!(l[labels::NUMBER], "2");
        assert_eq!(l[labels::ONEOFF], "False");
        assert_eq!(l[labels::CONFIG_HASH], "h1");
        assert_eq!(l[labels::CONFIG_FILES], "/srv/stack/docker-compose.yml");
        assert_eq!(l["traefik.enable"], "true");
        assert_eq!(spec.body.env, Some(vec!["A=1".to_string()]));
        let hc = spec.body.host_config.as_ref().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("site_default"));
        let rp = hc.restart_policy.as_ref().unwrap();
        assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(rp.maximum_retry_count, Some(3));
        let ep = &spec
            .body
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap()["site_default"];
        assert_eq!(ep.aliases, Some(vec!["web".to_string(), "www".to_string()]));
    }

    #[test]
    fn port_ranges_host_ips_and_ephemeral_ports() {
        let mut s = service("web");
        s.ports = vec![
            port(Some((35000, 35100)), (80, 80)),
            port(Some((8000, 8001)), (90, 91)),
            port(None, (443, 443)),
        ];
        s.ports[0].host_ip = Some("127.0.0.1".parse().unwrap());
        let (exposed, b) = ports(&s).unwrap();
        assert_eq!(exposed, vec!["80/tcp", "90/tcp", "91/tcp", "443/tcp"]);
        let one = |k: &str| b[k].as_ref().unwrap()[0].clone();
        assert_eq!(one("80/tcp").host_port.as_deref(), Some("35000-35100"));
        assert_eq!(one("80/tcp").host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(one("91/tcp").host_port.as_deref(), Some("8001"));
        assert_eq!(one("443/tcp").host_port, None);
        s.ports = vec![port(Some((8000, 8002)), (90, 91))];
        assert!(ports(&s).unwrap_err().contains("differ in length"));
    }

    #[test]
    fn mounts_healthcheck_and_network_modes() {
        let mut s = service("db");
        s.volumes = vec![
            Mount::Bind {
                source: "/srv/data".into(),
                target: "/data".into(),
                read_only: true,
                create_host_path: true,
            },
            Mount::Bind {
                source: "/srv/must-exist".into(),
                target: "/strict".into(),
                read_only: false,
                create_host_path: false,
            },
            Mount::Tmpfs {
                target: "/tmp".into(),
                size: Some(1 << 20),
                mode: Some(0o1777),
            },
            Mount::Volume {
                name: "cache".into(),
                target: "/cache".into(),
                read_only: false,
            },
            Mount::Anonymous {
                target: "/tmp/x".into(),
            },
        ];
        s.healthcheck = Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: Some(std::time::Duration::from_millis(500)),
            timeout: None,
            retries: Some(3),
            start_period: None,
            start_interval: None,
        });
        let mut p = project("site", vec![s.clone()]);
        p.volumes.insert(
            "cache".into(),
            Volume {
                name: "site_cache".into(),
                external: false,
                driver: "local".into(),
                driver_opts: BTreeMap::new(),
                labels: BTreeMap::new(),
            },
        );
        let spec = container_spec(&p, &s, 1, "img", "h", &Material::default()).unwrap();
        let hc = spec.body.host_config.as_ref().unwrap();
        assert_eq!(
            hc.binds,
            Some(vec![
                "/srv/data:/data:ro".to_string(),
                "site_cache:/cache".to_string()
            ])
        );
        assert_eq!(spec.body.volumes, Some(vec!["/tmp/x".to_string()]));
        let mounts = hc.mounts.as_ref().unwrap();
        assert_eq!(mounts[0].typ, Some(MountTypeEnum::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/srv/must-exist"));
        assert_eq!(mounts[1].typ, Some(MountTypeEnum::TMPFS));
        let tmpfs = mounts[1].tmpfs_options.as_ref().unwrap();
        assert_eq!(
            (tmpfs.size_bytes, tmpfs.mode),
            (Some(1 << 20), Some(0o1777))
        );
        let h = spec.body.healthcheck.as_ref().unwrap();
        assert_eq!(h.interval, Some(500_000_000));
        assert_eq!(h.retries, Some(3));

        s.networks.clear();
        s.network_mode = Some(NetworkMode::Host);
        s.ports = vec![port(Some((80, 80)), (80, 80))];
        let spec = container_spec(&p, &s, 1, "img", "h", &Material::default()).unwrap();
        let hc = spec.body.host_config.as_ref().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert!(hc.port_bindings.is_none());
        s.network_mode = Some(NetworkMode::Service("vpn".into()));
        let spec = container_spec(&p, &s, 1, "img", "h", &Material::default()).unwrap();
        assert_eq!(
            spec.body.host_config.unwrap().network_mode.as_deref(),
            Some("container:site-vpn-1")
        );
    }

    #[test]
    fn config_hash_ignores_scale_but_not_config_or_image() {
        let s = service("web");
        let p = project("site", vec![s.clone()]);
        let h = config_hash(&p, &s, "sha256:a", &Material::default());
        let mut scaled = s.clone();
        scaled.replicas = 3;
        assert_eq!(
            h,
            config_hash(&p, &scaled, "sha256:a", &Material::default())
        );
        assert_ne!(h, config_hash(&p, &s, "sha256:b", &Material::default()));
        let mut env = s.clone();
        env.environment.insert("X".into(), "1".into());
        assert_ne!(h, config_hash(&p, &env, "sha256:a", &Material::default()));
    }

    #[test]
    fn extra_networks_are_connected_after_create() {
        let mut s = service("web");
        s.networks.insert(
            "back".into(),
            ServiceNetwork {
                ipv4_address: Some("172.30.0.10".parse().unwrap()),
                aliases: vec![],
            },
        );
        let mut p = project("site", vec![s.clone()]);
        let mut back = p.networks["default"].clone();
        back.name = "site_back".into();
        p.networks.insert("back".into(), back);
        let spec = container_spec(&p, &s, 1, "img", "h", &Material::default()).unwrap();
        assert_eq!(spec.extra_networks.len(), 1);
        assert_eq!(spec.extra_networks[0].0, "site_back");
        assert_eq!(
            spec.extra_networks[0]
                .1
                .ipam_config
                .as_ref()
                .unwrap()
                .ipv4_address
                .as_deref(),
            Some("172.30.0.10")
        );
    }
}
