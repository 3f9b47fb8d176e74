//! `rehost boot`: what a fresh VM runs once (from cloud-init or
//! `rehost-boot.service`). In order, each step logged with its duration:
//!
//! 1. take the boot lock (a second `boot` exits at once, naming the holder);
//! 2. wait for the Docker Engine (only with a `stack:`), bounded;
//! 3. check that storage answers: if it does not and a `required` entry
//!    would be restored, stop here — nothing has been started. If it answers
//!    but does not know the host (no `rehost init`, no backup) while an entry
//!    is `required`, stop too, listing the hosts it knows (a typo in `host:`).
//!    Then begin a new generation of the host (in the store, then in
//!    `state_dir`): from here on the machine that ran the host before can no
//!    longer back up or prune. Unreachable without a required entry: the
//!    local record says "pending" and the first backup begins it;
//! 4. restore every state entry per its `restore:` policy, concurrently
//!    (they are independent trees); a missing backup is normal on a first
//!    boot. Each decision is recorded in `state_dir`: an entry is backed up
//!    only after it. Any other restore failure stops the boot before the
//!    stack starts: an application started on empty state would soon be
//!    backed up as the newest backup, and retention would then prune the
//!    good ones;
//! 5. `up` the stack;
//! 6. write `rehost-boot.prom`, notify (`boot`, and each restore as its own
//!    run), then, unless `--no-run`, replace this process with `rehost run`
//!    as the `run_as` user.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use rehost_jobs::catalog::Selector;
use rehost_jobs::generation;
use rehost_jobs::lock::StateLock;
use rehost_jobs::metrics;

use crate::cli::{Ctx, GlobalArgs, LogFormat, UsageError};
use crate::config::StateEntry;
use crate::stack::{compose, engine};

pub struct BootOptions {
    pub no_run: bool,
    /// How long to wait for the Docker Engine to answer.
    pub docker_timeout: Duration,
    /// How long `up` may wait for health checks.
    pub wait_timeout: Duration,
}

pub async fn run(ctx: &Ctx, global: &GlobalArgs, opts: &BootOptions) -> anyhow::Result<()> {
    let daemon_user = if opts.no_run || ctx.dry_run {
        None
    } else {
        Some(daemon_user(ctx)?)
    };
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut steps: Vec<(&'static str, Duration)> = Vec::new();
    let run = async {
        let result = boot(ctx, opts, &mut steps).await;
        (result, clock.elapsed())
    };
    let ((), (result, duration)) = tokio::join!(ctx.notify.started("boot", ""), run);
    let summary: Vec<String> = steps
        .iter()
        .map(|(s, d)| format!("{s} {:.1}s", d.as_secs_f64()))
        .collect();
    match &result {
        Ok(()) => println!(
            "boot: done in {:.1}s ({})",
            duration.as_secs_f64(),
            summary.join(", ")
        ),
        Err(_) => tracing::error!(
            duration_ms = duration.as_millis() as u64,
            "boot failed after {}",
            if summary.is_empty() {
                "no completed step".to_string()
            } else {
                summary.join(", ")
            }
        ),
    }
    if !ctx.dry_run {
        if let Some(m) = &ctx.config.metrics {
            let run = metrics::Run {
                started,
                duration,
                ok: result.is_ok(),
                bytes: 0,
            };
            // Never fatal: a boot that failed here after the stack is up
            // would keep `rehost.service` (which requires the boot unit)
            // from starting, and nothing would be backed up. `rehost status`
            // and `rehost check` report the directory.
            if let Err(e) = metrics::record_boot(&m.textfile_dir, &run, &steps) {
                tracing::error!(
                    dir = %m.textfile_dir.display(),
                    "cannot write the boot metrics (the boot itself is not affected): {e:#}"
                );
            }
        }
    }
    // Before the exec below, which would end the deliveries.
    let outcome = result.as_ref().map(|()| 0).map_err(|e| format!("{e:#}"));
    ctx.notify
        .finished("boot", "", started, duration, outcome)
        .await;
    result?;
    match daemon_user {
        Some(user) => Err(exec_daemon(ctx, global, &user)),
        None => Ok(()),
    }
}

async fn boot(
    ctx: &Ctx,
    opts: &BootOptions,
    steps: &mut Vec<(&'static str, Duration)>,
) -> anyhow::Result<()> {
    let _lock = StateLock::acquire(&lock_anchor(ctx), "boot", !ctx.dry_run)
        .context("take the boot lock (one `rehost boot` at a time)")?;

    let mut docker = None;
    if ctx.config.stack.is_some() {
        let t = Instant::now();
        docker = Some(wait_for_docker(opts.docker_timeout).await?);
        step(steps, "docker", t, "Docker Engine answers");
    }

    let t = Instant::now();
    restore_all(ctx).await?;
    step(steps, "restore", t, "state restored");

    if let (Some(stack), Some(docker)) = (&ctx.config.stack, &docker) {
        let t = Instant::now();
        let project = compose::load(stack, &|name| std::env::var(name).ok())?;
        super::up::up(ctx, docker, &project, opts.wait_timeout)
            .await
            .with_context(|| format!("up the stack of {}", stack.compose.display()))?;
        step(steps, "up", t, "stack up");
    }
    Ok(())
}

/// The boot lock lives in systemd's `RuntimeDirectory=` when there is one
/// (`/etc` is read-only under `ProtectSystem=full`), else next to the config.
/// Returns a path whose *parent* is that directory, as [`StateLock`] wants.
fn lock_anchor(ctx: &Ctx) -> std::path::PathBuf {
    let runtime = std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next().map(str::to_string))
        })
        .filter(|s| !s.is_empty());
    match runtime {
        Some(dir) => std::path::Path::new(&dir).join("boot"),
        None => ctx.config.path.clone(),
    }
}

fn step(steps: &mut Vec<(&'static str, Duration)>, name: &'static str, t: Instant, what: &str) {
    let d = t.elapsed();
    tracing::info!(
        step = name,
        duration_ms = d.as_millis() as u64,
        "boot: {what}"
    );
    steps.push((name, d));
}

/// The Engine may still be starting (cloud-init installs it minutes before):
/// retry once a second until `timeout`.
async fn wait_for_docker(timeout: Duration) -> anyhow::Result<bollard::Docker> {
    let deadline = Instant::now() + timeout;
    let mut logged = false;
    loop {
        match engine::connect().await {
            Ok(docker) => return Ok(docker),
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow::Error::new(e).context(format!(
                    "waited {} for the Docker Engine",
                    humantime::format_duration(timeout)
                )))
            }
            Err(e) => {
                if !logged {
                    tracing::info!("waiting for the Docker Engine: {e}");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Begins this machine's generation and restores every entry concurrently.
/// Storage is probed first so that an unreachable store with a `required`
/// entry stops the boot with one clear message rather than one per entry.
async fn restore_all(ctx: &Ctx) -> anyhow::Result<()> {
    let c = &ctx.config;
    if c.state.is_empty() {
        return Ok(());
    }
    let entries: Vec<&StateEntry> = c
        .state
        .values()
        .filter(|e| e.restore != rehost_jobs::restore::RestorePolicy::Never)
        .collect();
    let required: Vec<&str> = entries
        .iter()
        .filter(|e| e.required)
        .map(|e| e.name.as_str())
        .collect();
    let listing = match ctx.store.list(&format!("{}/", c.host)).await {
        Ok(listing) => listing,
        Err(e) if e.is_unavailable() && required.is_empty() => {
            tracing::warn!(
                "storage {} is unreachable ({e}); no entry is `required`, so the stack starts \
                 without restoring anything, and nothing is backed up until the store answers",
                c.storage.display_url()
            );
            if !ctx.dry_run {
                write_local(ctx, None)?;
            }
            return Ok(());
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "storage {} must answer before boot restores {} (required); nothing was started",
                c.storage.display_url(),
                required.join(", ")
            )))
        }
    };
    if listing.is_empty() && !required.is_empty() {
        let known = generation::known_hosts(ctx.store.as_ref()).await?;
        anyhow::bail!(
            "host `{}` is unknown to {}: it was never registered (`rehost init`) nor backed up, \
             so {} (required) cannot be restored. A typo in `host:` of {}? The store knows: {}. \
             For a new host, run `rehost init` once. Nothing was started",
            c.host,
            ctx.store.url(),
            required.join(", "),
            c.path.display(),
            if known.is_empty() {
                "no host".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    let generation = if ctx.dry_run {
        None
    } else {
        let record = generation::begin(ctx.store.as_ref(), &c.host, chrono::Utc::now())
            .await
            .context("begin a new generation of the host")?;
        write_local(ctx, Some(record.id.clone()))?;
        tracing::info!(generation = %record.id, "boot: began a new generation of host {}; a machine running an older one can no longer back up or prune", c.host);
        Some(record.id)
    };
    if let Some(g) = &generation {
        for entry in c.state.values().filter(|e| !entries.contains(e)) {
            crate::generation::record_decision(ctx, &entry.name, g, "restore: never".into())?;
        }
    }
    let generation = generation.as_deref();
    let runs = entries.iter().map(|entry| async move {
        let started = SystemTime::now();
        let clock = Instant::now();
        let restore = async {
            let result = restore_one(ctx, entry, generation).await;
            (result, clock.elapsed())
        };
        let ((), (result, duration)) =
            tokio::join!(ctx.notify.started("restore", &entry.name), restore);
        let run = metrics::Run {
            started,
            duration,
            ok: result.is_ok(),
            bytes: *result.as_ref().unwrap_or(&0),
        };
        if let Err(e) = super::record(ctx, "restore", &entry.name, run) {
            tracing::warn!("restore {}: {e:#}", entry.name);
        }
        let outcome = result.as_ref().copied().map_err(|e| format!("{e:#}"));
        ctx.notify
            .finished("restore", &entry.name, started, duration, outcome)
            .await;
        (entry.name.as_str(), result)
    });
    let mut failed = Vec::new();
    for (name, result) in futures::future::join_all(runs).await {
        if let Err(e) = result {
            tracing::error!(target = name, "restore {name} failed: {e:#}");
            failed.push((name, e));
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => {
            let (name, e) = failed.remove(0);
            Err(e.context(format!(
                "restore {name}: boot stops before starting the stack"
            )))
        }
        n => Err(anyhow::anyhow!(
            "{n} state entries could not be restored ({}); boot stops before starting the stack",
            failed
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

async fn restore_one(
    ctx: &Ctx,
    entry: &StateEntry,
    generation: Option<&str>,
) -> anyhow::Result<u64> {
    let done = super::restore::restore_one(ctx, entry, false, Selector::Latest).await?;
    println!("{}: {}", entry.name, done.message);
    if let Some(g) = generation {
        crate::generation::record_decision(ctx, &entry.name, g, done.message)?;
    }
    Ok(done.bytes)
}

/// This machine's generation record (`None`: pending, the store did not
/// answer). `state_dir` is created for the daemon's user when missing.
fn write_local(ctx: &Ctx, generation: Option<String>) -> anyhow::Result<()> {
    let c = &ctx.config;
    if !c.state_dir.exists() {
        std::fs::create_dir_all(&c.state_dir)
            .with_context(|| format!("create state_dir {}", c.state_dir.display()))?;
        // Root creates it; the daemon (run_as) writes into it later.
        if let Some(user) = c
            .run_as
            .as_deref()
            .and_then(|n| nix::unistd::User::from_name(n).ok().flatten())
        {
            if nix::unistd::geteuid().is_root() {
                nix::unistd::chown(&c.state_dir, Some(user.uid), Some(user.gid)).with_context(
                    || format!("chown state_dir {} to {}", c.state_dir.display(), user.name),
                )?;
            }
        }
    }
    generation::write_local(
        &c.state_dir,
        &generation::LocalRecord {
            host: c.host.clone(),
            store: ctx.store.url(),
            generation,
            started: chrono::Utc::now(),
        },
    )
    .context("record this machine's generation")
}

struct DaemonUser {
    name: String,
    uid: u32,
    gid: u32,
    home: std::path::PathBuf,
}

/// Checked before anything runs, so that a missing user is not discovered
/// after a ten-minute restore.
fn daemon_user(ctx: &Ctx) -> anyhow::Result<DaemonUser> {
    let Some(name) = &ctx.config.run_as else {
        return Err(UsageError(format!(
            "{}: `run_as` is not set, so boot has no unprivileged user to hand the daemon to (set it, or use --no-run)",
            ctx.config.path.display()
        ))
        .into());
    };
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("look up run_as user `{name}`"))?
        .ok_or_else(|| {
            UsageError(format!(
                "{}: run_as: no user `{name}` on this host",
                ctx.config.path.display()
            ))
        })?;
    if user.uid.is_root() {
        return Err(UsageError(format!(
            "{}: run_as: `{name}` is root; the daemon must run unprivileged",
            ctx.config.path.display()
        ))
        .into());
    }
    Ok(DaemonUser {
        name: name.clone(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    })
}

/// Replaces this process with `rehost run` as `user` (uid, gid, no
/// supplementary groups — the daemon needs no Docker access). Returns only on
/// failure.
fn exec_daemon(ctx: &Ctx, global: &GlobalArgs, user: &DaemonUser) -> anyhow::Error {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return anyhow::Error::new(e).context("find the rehost binary to exec"),
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--config").arg(&ctx.config.path);
    if let LogFormat::Json = global.log_format {
        cmd.args(["--log-format", "json"]);
    }
    for _ in 0..global.verbose {
        cmd.arg("-v");
    }
    for _ in 0..global.quiet {
        cmd.arg("-q");
    }
    cmd.arg("run")
        .uid(user.uid)
        .gid(user.gid)
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name);
    tracing::info!(user = %user.name, uid = user.uid, "boot: handing over to `rehost run`");
    let e = cmd.exec();
    anyhow::Error::new(e).context(format!("exec {} run as user {}", exe.display(), user.name))
}
