//! The `rehost` agent as a library: the binary in `main.rs` is a thin shell
//! around [`cli::run`], so that fuzz targets and tests can reach the config
//! and compose parsers without going through a process.

pub(crate) mod cleanup;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod generation;
pub mod interpolate;
pub mod logging;
pub mod notify;
pub mod output;
pub mod progress;
pub mod stack;

/// Exit codes (also in the README).
pub const EXIT_OK: u8 = 0;
pub const EXIT_JOB_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
/// Storage or the Docker Engine unreachable, or refusing access.
pub const EXIT_STORAGE: u8 = 3;
/// A newer generation of the host took over: this machine wrote nothing.
pub const EXIT_SUPERSEDED: u8 = 4;

/// Finds the most specific cause in the chain: configuration errors are usage
/// errors (2), a machine whose generation was superseded is 4, an unusable
/// store or Docker Engine is 3, anything else is a failed job (1).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if generation::is_superseded(err)
        || err.chain().any(|c| {
            matches!(
                c.downcast_ref(),
                Some(cmd::Failures {
                    superseded: true,
                    ..
                })
            )
        })
    {
        return EXIT_SUPERSEDED;
    }
    let mut code = EXIT_JOB_FAILED;
    for cause in err.chain() {
        if cause.downcast_ref::<config::ConfigError>().is_some()
            || cause
                .downcast_ref::<stack::compose::ComposeError>()
                .is_some()
            || cause.downcast_ref::<cli::UsageError>().is_some()
        {
            return EXIT_CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<rehost_jobs::Error>() {
            if e.is_storage_unavailable() {
                code = EXIT_STORAGE;
            }
        }
        if let Some(e) = cause.downcast_ref::<rehost_jobs::store::StoreError>() {
            if e.is_unavailable() {
                code = EXIT_STORAGE;
            }
        }
        if cause.downcast_ref::<stack::engine::Unreachable>().is_some() {
            code = EXIT_STORAGE;
        }
        if let Some(cmd::Failures {
            storage_unavailable: true,
            ..
        }) = cause.downcast_ref()
        {
            code = EXIT_STORAGE;
        }
    }
    code
}
