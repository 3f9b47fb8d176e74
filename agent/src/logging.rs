//! Logs go to stderr as `tracing` events, text or JSON. `-v`/`-q` move the
//! level of rehost's own events; libraries stay at `warn` unless `RUST_LOG`
//! says otherwise. Progress bars, when drawn, are lifted for each line
//! ([`crate::progress::LogWriter`]).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

pub fn init(args: &GlobalArgs) -> anyhow::Result<()> {
    let level = match i16::from(args.verbose) - i16::from(args.quiet) {
        i16::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(spec)?,
        _ => EnvFilter::try_new(format!("warn,rehost={level},rehost_jobs={level}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Through the progress bars, when there are any.
        .with_writer(crate::progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
