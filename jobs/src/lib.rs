//! rehost's data path: object storage, streaming archives, backup, restore,
//! verification, retention and node_exporter textfile metrics. The CLI in
//! `agent/` only turns configuration into calls of this library.

pub mod acme;
pub mod archive;
pub mod backup;
mod bridge;
pub mod cancel;
pub mod catalog;
pub mod encryption;
pub mod error;
pub mod fleet;
pub mod fsutil;
pub mod generation;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod parts;
pub mod progress;
pub mod prometheus;
pub mod pull;
pub mod restore;
pub mod retention;
pub mod safefs;
pub mod sqlite;
pub mod state;
pub mod store;
mod unpack;
pub mod verify;

pub use error::{Error, Result};
