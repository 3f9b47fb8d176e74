//! `rehost`: restores a host's state from object storage, backs it up, and
//! (in later versions) runs the stack and the scheduled jobs. `main` sets up
//! logging, runs one command, prints the error chain and maps it to an exit
//! code that systemd and cloud-init understand.

use std::process::ExitCode;

use clap::Parser;
use rehost::{cli, exit_code, logging, progress, EXIT_CONFIG, EXIT_JOB_FAILED, EXIT_OK};

/// Longest wait for blocking threads once the command has returned.
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    bound_allocator_memory();
    let args = cli::Args::parse();
    progress::init(&args.global);
    if let Err(e) = logging::init(&args.global) {
        eprintln!("rehost: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rehost: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_JOB_FAILED);
        }
    };
    let result = runtime.block_on(cli::run(args));
    // Dropping the runtime would wait for every blocking task, however long;
    // the commands await theirs, and one still stuck in a system call (a
    // cancelled job's read on a hung disk) must not keep `rehost run` from
    // exiting within its grace period. Exiting with it is safe: every output
    // is written to a temporary name and renamed.
    runtime.shutdown_timeout(SHUTDOWN_BOUND);
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("rehost: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The backup and restore pipelines allocate and free megabyte buffers on
/// several threads. By default glibc raises its mmap threshold after the first
/// such free and gives every thread its own arena, so freed buffers stay in
/// fragmented heaps: a 1 GiB backup peaked at 80-100 MiB RSS. A fixed
/// threshold returns large buffers to the system on free, and two arenas
/// bound the rest: 45 MiB on the same backup, at the same speed. (mimalloc
/// was tried and peaked higher.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn bound_allocator_memory() {
    // SAFETY: mallopt only changes allocator tunables; it is called first
    // thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_allocator_memory() {}
