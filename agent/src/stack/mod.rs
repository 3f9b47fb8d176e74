//! The host's stack: a standard `docker-compose.yml` (the subset in SPEC.md)
//! reconciled with the Docker Engine through its API.
//!
//! - [`model`]: the project after loading — what both halves agree on.
//! - `compose`: YAML → [`model::Project`] (interpolation, `env_file`, paths).
//! - `engine`: [`model::Project`] → containers, networks, volumes, images.

#![allow(
    dead_code,
    reason = "the compose loader and the engine land separately"
)]

pub mod compose;
pub mod engine;
pub mod model;
