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
    },
    /// A named volume of the project (key of [`Project::volumes`]).
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    /// `- /data` with no source: an anonymous volume.
    Anonymous { target: String },
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
