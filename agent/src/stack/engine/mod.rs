//! [`Project`](super::model::Project) → Docker Engine, through its API
//! (bollard): no `docker-compose` binary; a registry only to pull an
//! `image:` that is missing.
//!
//! - [`connect`]: `DOCKER_HOST` / the default socket, a bounded ping, version
//!   negotiation; [`Unreachable`] (exit code 3) when the Engine is not there.
//! - `dockerignore`, `context`: the build context as Docker would send it,
//!   and its content hash; `images`: build (or find, or pull) each service's
//!   image, skipping a build whose context hash is already tagged; `auth`:
//!   registry credentials from Docker's `config.json`.
//! - `secrets`: a service's secrets and configs as mounts or copied files,
//!   and their digests for the config hash.
//! - `networks`, `volumes`: created when missing, labelled with the project.
//! - `spec`: one container's create request and its config hash.
//! - [`plan`]: pure reconcile planning (desired + observed → actions).
//! - `apply` ([`up`]): carry the plan out in dependency order, with health
//!   waits; `health`: the bounded waits; `containers`: the Engine calls.
//! - `down` ([`down()`], [`stop_services`], [`start_services`]).
//!
//! Everything rehost creates carries Compose's labels
//! (`com.docker.compose.project`, `.service`, `.container-number`,
//! `.oneoff`, `.config-hash`, `.project.working_dir`,
//! `.project.config_files`), so `docker ps` filters keep working and `up`
//! finds its containers again.

mod apply;
mod auth;
mod connect;
mod containers;
mod context;
mod dockerignore;
mod down;
mod health;
mod images;
mod labels;
mod networks;
pub mod plan;
mod secrets;
mod spec;
mod volumes;

pub use apply::{up, UpOptions, UpReport};
pub use connect::{connect, connect_to, Unreachable};
pub use down::{down, start_services, stop_services, DownOptions};
pub use health::NotReady;
pub use images::BuildFailed;
pub use volumes::mountpoint as volume_mountpoint;
