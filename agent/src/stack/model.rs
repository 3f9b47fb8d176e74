//! The stack as the engine needs it: a compose file after interpolation,
//! `env_file` merging, defaults and path resolution. Nothing here refers back
//! to YAML; the compose loader produces it and the engine consumes it, so
//! either side can be tested without the other.
//!
//! Invariants the loader guarantees (the engine relies on them):
//! - every path is absolute (bind sources, build contexts, dockerfiles given
//!   relative to the compose file's folder are resolved);
//! - every name a service refers to (network, named volume, `depends_on`
//!   target) exists in the project, and `depends_on` has no cycle;
//! - `replicas >= 0`; ports are valid (1..=65535) and ranges have matching
//!   lengths where Compose requires it;
//! - maps are in the order of the file, so the output (and the config hash
//!   computed from it) is deterministic.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

/// A compose project: what `up` reconciles the Engine with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// `stack.project` (`com.docker.compose.project` label value).
    pub name: String,
    /// Absolute path of the compose file (for messages and the
    /// `com.docker.compose.project.config_files` label).
    pub compose_file: PathBuf,
    /// `stack.compose`'s other files, merged onto the first in this order,
    /// and files that `extends:` read (for the `config_files` label).
    pub override_files: Vec<PathBuf>,
    /// Its folder: what relative paths were resolved against.
    pub working_dir: PathBuf,
    /// In the order of the file.
    pub services: IndexMap<String, Service>,
    /// Keyed by the name used in the compose file. Contains `default` when
    /// a service without `network_mode` lists no networks (Compose's implicit
    /// default network), and only then unless the file declares it.
    pub networks: IndexMap<String, Network>,
    /// Named volumes, keyed by the name used in the compose file.
    pub volumes: IndexMap<String, Volume>,
    /// Top-level `secrets:` and `configs:` that enabled services use, keyed
    /// by `secrets.NAME` / `configs.NAME`.
    pub secrets: IndexMap<String, SecretSource>,
    /// Keys the loader accepted without applying them, one line each
    /// (`FILE:LINE:COL: KEY: why`), for `check` and `up` to warn about.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `image:`; with `build:` too it is the tag given to the built image.
    pub image: Option<String>,
    pub build: Option<Build>,
    /// `None` keeps the image's; the string form is split like a shell does
    /// (Compose uses shlex).
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `env_file` values first, then `environment` (which wins). A bare
    /// `FOO` in `environment` takes the value from the loader's environment
    /// and is left out when unset, as Compose does.
    pub environment: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Mount>,
    /// Networks the service joins, keyed by the project's network name.
    /// Empty when `network_mode` is set.
    pub networks: IndexMap<String, ServiceNetwork>,
    pub network_mode: Option<NetworkMode>,
    pub restart: Restart,
    pub user: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    /// `scale`, or `deploy.replicas`; 1 when neither is given.
    pub replicas: u32,
    pub depends_on: IndexMap<String, Dependency>,
    /// `container_name:` (only with one replica, as Compose requires).
    pub container_name: Option<String>,
    /// `links:` as (service, alias): the alias resolves to that service's
    /// container from this one, and the service is started first.
    pub links: Vec<(String, String)>,
    /// `profiles:`; the loader drops services none of whose profiles is
    /// enabled, so a loaded project only holds services that run.
    pub profiles: Vec<String>,
    /// `secrets:` and `configs:` of the service, as files in the container.
    pub secrets: Vec<SecretMount>,
    pub pull_policy: PullPolicy,
    /// Every other container setting (kernel, resources, process).
    pub settings: Settings,
}

impl Service {
    /// A service running `image` with every other key at Compose's default:
    /// one replica on the project's `default` network.
    pub fn new(name: &str, image: &str) -> Service {
        Service {
            name: name.to_string(),
            image: Some(image.to_string()),
            build: None,
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            labels: BTreeMap::new(),
            ports: vec![],
            volumes: vec![],
            networks: IndexMap::from([("default".to_string(), ServiceNetwork::default())]),
            network_mode: None,
            restart: Restart::No,
            user: None,
            healthcheck: None,
            replicas: 1,
            depends_on: IndexMap::new(),
            container_name: None,
            links: Vec::new(),
            profiles: Vec::new(),
            secrets: Vec::new(),
            pull_policy: PullPolicy::Missing,
            settings: Settings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Build {
    /// Absolute.
    pub context: PathBuf,
    /// Relative to the context, as the Engine's build API expects
    /// (`Dockerfile` by default).
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    /// `target:`: the stage of a multi-stage Dockerfile to build.
    pub target: Option<String>,
    /// `dockerfile_inline:`: the Dockerfile's text, sent in the context
    /// under the name in `dockerfile`.
    pub dockerfile_inline: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `network:` the build steps run on (`host`, `none`, a network name).
    pub network: Option<String>,
    /// `extra_hosts:` as `host:ip`.
    pub extra_hosts: Vec<String>,
    pub shm_size: Option<u64>,
}

impl Build {
    /// A build of `context` with its `Dockerfile` and every other key at
    /// Compose's default.
    pub fn new(context: PathBuf) -> Build {
        Build {
            context,
            dockerfile: "Dockerfile".to_string(),
            args: BTreeMap::new(),
            target: None,
            dockerfile_inline: None,
            labels: BTreeMap::new(),
            network: None,
            extra_hosts: Vec::new(),
            shm_size: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One `ports:` entry. A range of host ports with a single container port
/// (`"35000-35100:80"`) gives each replica one free host port of the range;
/// equal-length ranges map pairwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub host_ip: Option<IpAddr>,
    /// Inclusive; `None` lets the Engine pick an ephemeral port.
    pub host: Option<PortRange>,
    pub container: PortRange,
    pub protocol: Protocol,
}

/// Inclusive range; a single port has `start == end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// A host path (absolute after resolution).
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
        /// Create a missing source folder (short syntax; long syntax with
        /// `bind.create_host_path: true`).
        create_host_path: bool,
    },
    /// A named volume of the project (key of [`Project::volumes`]).
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    /// `- /data` with no source: an anonymous volume.
    Anonymous { target: String },
    /// `type: tmpfs`: a memory file system.
    Tmpfs {
        target: String,
        size: Option<u64>,
        mode: Option<u32>,
    },
}

/// A `bind` mount whose source must exist: the long syntax without
/// `bind.create_host_path: true` (the short syntax creates a missing source,
/// as the Engine's `Binds` do).
pub fn bind_must_exist(mount: &Mount) -> bool {
    matches!(
        mount,
        Mount::Bind {
            create_host_path: false,
            ..
        }
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub ipv4_address: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    Host,
    None,
    Bridge,
    /// `service:NAME`: share another service's network namespace.
    Service(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Restart {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// `on-failure[:max]`
    OnFailure(Option<u32>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    /// Exactly what the Engine's `Healthcheck.Test` takes:
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]` (a string `test:`
    /// becomes `CMD-SHELL`; `disable: true` becomes `NONE`). Empty when the
    /// file gives only timings: the image's own test is kept, which is what
    /// the Engine does with an empty `Test`.
    pub test: Vec<String>,
    /// `None` = the Engine's default.
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    #[default]
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    pub condition: Condition,
    /// Compose's `restart:` under `depends_on`; rehost restarts dependents of
    /// a recreated service either way (see the engine), this is kept for the
    /// config hash only.
    pub restart: bool,
    /// `required: false` lets `up` go on when the dependency is not in the
    /// project.
    pub required: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// The Engine's name: `<project>_<key>`, or `name:` when given (and always
    /// for `external`).
    pub name: String,
    /// `external: true`: must exist; never created or removed by rehost.
    pub external: bool,
    /// `bridge` when not given.
    pub driver: String,
    pub internal: bool,
    pub subnets: Vec<Subnet>,
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// Compose's implicit `default` network of `project`: a plain bridge
    /// named `<project>_default`.
    pub fn project_default(project: &str) -> Network {
        Network {
            name: format!("{project}_default"),
            external: false,
            driver: "bridge".to_string(),
            internal: false,
            subnets: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// CIDR, e.g. `172.28.0.0/16` (checked by the loader).
    pub subnet: String,
    pub gateway: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// The Engine's name: `<project>_<key>`, or `name:` when given.
    pub name: String,
    pub external: bool,
    /// `local` when not given.
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// `pull_policy:` of a service (Compose's default is `missing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    #[default]
    Missing,
    Never,
    /// Build the image (the service needs `build:`), never pull it.
    Build,
}

/// Where a secret's or config's content comes from. A file's content is
/// read by the engine when it creates containers; a variable's value is kept
/// as [`Redacted`], which never prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `file:`, absolute.
    File(PathBuf),
    /// `environment:`: a variable of rehost's environment (or of
    /// `stack.env_file`), read by the loader.
    Environment { variable: String, value: Redacted },
    /// `content:` (configs only): inline text, which is not a secret.
    Content(String),
}

/// One `secrets:` or `configs:` entry of a service: a read-only file in the
/// container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMount {
    /// Key of [`Project::secrets`] (`secrets.NAME` or `configs.NAME`).
    pub source: String,
    /// Absolute path in the container (`/run/secrets/NAME` by default for a
    /// secret, `/NAME` for a config).
    pub target: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `0o444` unless given.
    pub mode: u32,
}

/// Container settings beyond the common keys; `Default` is Compose's default
/// for every one (nothing set: the Engine's defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// `expose:` as `PORT/PROTO` (ranges expanded).
    pub expose: Vec<String>,
    /// `extra_hosts:` as `host:ip`.
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub working_dir: Option<String>,
    pub stdin_open: bool,
    pub tty: bool,
    pub init: Option<bool>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Duration>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub security_opt: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    /// `tmpfs:` (the service key): path → mount options (may be empty).
    pub tmpfs: BTreeMap<String, String>,
    pub shm_size: Option<u64>,
    pub devices: Vec<Device>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub logging: Option<Logging>,
    /// Bytes: `mem_limit` or `deploy.resources.limits.memory`.
    pub memory: Option<u64>,
    /// Bytes: `mem_reservation` or `deploy.resources.reservations.memory`.
    pub memory_reservation: Option<u64>,
    /// Billionths of a CPU: `cpus` or `deploy.resources.limits.cpus`.
    pub nano_cpus: Option<u64>,
    pub pids_limit: Option<i64>,
    pub runtime: Option<String>,
    pub group_add: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub host: String,
    pub container: String,
    /// `rwm` unless given.
    pub permissions: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logging {
    /// `None` keeps the Engine's default driver.
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// A secret value: compared and hashed like a string, never printed (its
/// `Debug` says `<redacted>`), so that logging or hashing a model cannot show
/// it.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
