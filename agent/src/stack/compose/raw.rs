//! The compose file's structure as serde types: which keys exist where.
//!
//! Invariants:
//! - Every struct has `deny_unknown_fields`: a key rehost does not support is
//!   an error naming it (and the keys allowed there), never ignored.
//! - Leaves stay [`Value`]s: many Compose keys take several forms (string or
//!   list, list or mapping), and the normalising stage reads them with
//!   messages that say which forms are allowed.
//! - Extension keys (`x-*`) are removed before this stage (see `tree`).

use indexmap::IndexMap;
use serde::Deserialize;
use serde_yaml::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawFile {
    /// Obsolete; accepted and ignored, as Compose does.
    #[allow(
        dead_code,
        reason = "accepted so that old files load; its value means nothing"
    )]
    pub(crate) version: Option<Value>,
    pub(crate) name: Option<Value>,
    pub(crate) services: Option<IndexMap<String, Option<RawService>>>,
    pub(crate) networks: Option<IndexMap<String, Option<RawNetwork>>>,
    pub(crate) volumes: Option<IndexMap<String, Option<RawVolume>>>,
    pub(crate) secrets: Option<IndexMap<String, Option<RawSecret>>>,
    pub(crate) configs: Option<IndexMap<String, Option<RawSecret>>>,
}

/// A top-level `secrets:` or `configs:` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawSecret {
    pub(crate) file: Option<Value>,
    pub(crate) environment: Option<Value>,
    /// Configs only (checked by the loader).
    pub(crate) content: Option<Value>,
    pub(crate) name: Option<Value>,
    /// Refused with a reason by the loader (rehost runs no Swarm).
    pub(crate) external: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawService {
    pub(crate) build: Option<Value>,
    pub(crate) image: Option<Value>,
    pub(crate) command: Option<Value>,
    pub(crate) entrypoint: Option<Value>,
    pub(crate) environment: Option<Value>,
    pub(crate) env_file: Option<Value>,
    pub(crate) labels: Option<Value>,
    pub(crate) ports: Option<Value>,
    pub(crate) volumes: Option<Value>,
    pub(crate) networks: Option<Value>,
    pub(crate) network_mode: Option<Value>,
    pub(crate) restart: Option<Value>,
    pub(crate) user: Option<Value>,
    pub(crate) healthcheck: Option<RawHealthcheck>,
    pub(crate) scale: Option<Value>,
    pub(crate) deploy: Option<RawDeploy>,
    pub(crate) depends_on: Option<Value>,
    pub(crate) container_name: Option<Value>,
    pub(crate) hostname: Option<Value>,
    pub(crate) domainname: Option<Value>,
    pub(crate) expose: Option<Value>,
    pub(crate) links: Option<Value>,
    pub(crate) extra_hosts: Option<Value>,
    pub(crate) dns: Option<Value>,
    pub(crate) dns_search: Option<Value>,
    pub(crate) working_dir: Option<Value>,
    pub(crate) stdin_open: Option<Value>,
    pub(crate) tty: Option<Value>,
    pub(crate) init: Option<Value>,
    pub(crate) stop_signal: Option<Value>,
    pub(crate) stop_grace_period: Option<Value>,
    pub(crate) cap_add: Option<Value>,
    pub(crate) cap_drop: Option<Value>,
    pub(crate) privileged: Option<Value>,
    pub(crate) read_only: Option<Value>,
    pub(crate) security_opt: Option<Value>,
    pub(crate) sysctls: Option<Value>,
    pub(crate) ulimits: Option<Value>,
    pub(crate) tmpfs: Option<Value>,
    pub(crate) shm_size: Option<Value>,
    pub(crate) devices: Option<Value>,
    pub(crate) pid: Option<Value>,
    pub(crate) ipc: Option<Value>,
    pub(crate) logging: Option<RawLogging>,
    pub(crate) mem_limit: Option<Value>,
    pub(crate) mem_reservation: Option<Value>,
    pub(crate) cpus: Option<Value>,
    pub(crate) pids_limit: Option<Value>,
    pub(crate) group_add: Option<Value>,
    pub(crate) platform: Option<Value>,
    pub(crate) runtime: Option<Value>,
    pub(crate) profiles: Option<Value>,
    pub(crate) secrets: Option<Value>,
    pub(crate) configs: Option<Value>,
    pub(crate) pull_policy: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawLogging {
    pub(crate) driver: Option<Value>,
    pub(crate) options: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawBuild {
    pub(crate) context: Option<Value>,
    pub(crate) dockerfile: Option<Value>,
    pub(crate) args: Option<Value>,
    pub(crate) target: Option<Value>,
    pub(crate) dockerfile_inline: Option<Value>,
    pub(crate) labels: Option<Value>,
    pub(crate) network: Option<Value>,
    pub(crate) extra_hosts: Option<Value>,
    pub(crate) shm_size: Option<Value>,
    /// Accepted and not used: the classic builder rehost drives takes
    /// `cache_from` only for images already pulled, which it leaves alone.
    pub(crate) cache_from: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawHealthcheck {
    pub(crate) test: Option<Value>,
    pub(crate) interval: Option<Value>,
    pub(crate) timeout: Option<Value>,
    pub(crate) retries: Option<Value>,
    pub(crate) start_period: Option<Value>,
    pub(crate) start_interval: Option<Value>,
    pub(crate) disable: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawDeploy {
    pub(crate) replicas: Option<Value>,
    pub(crate) resources: Option<RawResources>,
    pub(crate) restart_policy: Option<RawRestartPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawRestartPolicy {
    pub(crate) condition: Option<Value>,
    pub(crate) max_attempts: Option<Value>,
    pub(crate) delay: Option<Value>,
    pub(crate) window: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawResources {
    pub(crate) limits: Option<RawResourceSet>,
    pub(crate) reservations: Option<RawResourceSet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawResourceSet {
    pub(crate) cpus: Option<Value>,
    pub(crate) memory: Option<Value>,
    pub(crate) pids: Option<Value>,
}

/// One entry of the mapping form of `depends_on`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawDependency {
    pub(crate) condition: Option<Value>,
    pub(crate) restart: Option<Value>,
    pub(crate) required: Option<Value>,
}

/// One entry of the mapping form of a service's `networks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawServiceNetwork {
    pub(crate) ipv4_address: Option<Value>,
    pub(crate) aliases: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawNetwork {
    pub(crate) name: Option<Value>,
    pub(crate) driver: Option<Value>,
    pub(crate) internal: Option<Value>,
    pub(crate) ipam: Option<RawIpam>,
    pub(crate) external: Option<Value>,
    pub(crate) labels: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawIpam {
    pub(crate) driver: Option<Value>,
    pub(crate) config: Option<Vec<RawIpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawIpamConfig {
    pub(crate) subnet: Option<Value>,
    pub(crate) gateway: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawVolume {
    pub(crate) name: Option<Value>,
    pub(crate) driver: Option<Value>,
    pub(crate) driver_opts: Option<Value>,
    pub(crate) external: Option<Value>,
    pub(crate) labels: Option<Value>,
}
