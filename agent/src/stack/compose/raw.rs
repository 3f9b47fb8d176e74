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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(crate) struct RawBuild {
    pub(crate) context: Option<Value>,
    pub(crate) dockerfile: Option<Value>,
    pub(crate) args: Option<Value>,
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
