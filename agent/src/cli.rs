//! Command-line arguments, and the one place where they are turned into a
//! loaded configuration, an opened store and the selected state entries.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use indexmap::IndexMap;
use rehost_jobs::catalog::Selector;
use rehost_jobs::encryption::Encryption;
use rehost_jobs::state::{resolve_owner, StateKind as JobsKind, StateSpec};
use rehost_jobs::store::{self, ObjectStore};

use crate::cmd;
use crate::config::{self, Config, StateEntry, StateKind, DEFAULT_PROMETHEUS_API};

#[derive(Parser, Debug)]
#[command(
    name = "rehost",
    version,
    about = "Restore, back up and run the state of an immutable host",
    after_help = "Example (check the configuration and storage access, change nothing):\n  rehost -c /etc/rehost/rehost.yaml check"
)]
pub struct Args {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug)]
pub struct GlobalArgs {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "REHOST_CONFIG",
        default_value = "/etc/rehost/rehost.yaml"
    )]
    pub config: PathBuf,
    /// Show what would be uploaded, restored or deleted, and change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// More log output (-vv for even more).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-qq for errors only).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Back up state entries now (all of them unless NAMEs are given).
    #[command(
        after_help = "Example (back up acme and grafana now, whatever their schedules):\n  rehost backup acme grafana"
    )]
    Backup { names: Vec<String> },
    /// Restore state entries from storage, following each entry's `restore:` policy.
    #[command(
        after_help = "Example (restore acme as it was at 10:15 UTC on 23 November 2026):\n  rehost -c /etc/rehost/rehost.yaml restore acme --at \"2026-11-23 10:15\""
    )]
    Restore {
        names: Vec<String>,
        /// Restore even if the policy says not to (replaces the current content).
        #[arg(long)]
        force: bool,
        /// Restore this backup id instead of the newest (needs exactly one NAME).
        #[arg(long, conflicts_with = "at")]
        backup: Option<String>,
        /// Restore the newest backup made at or before TIME (RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in UTC).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Inspect the backups in storage.
    #[command(
        after_help = "Example (list the complete backups of acme):\n  rehost backups list acme"
    )]
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// Download a backup and check every checksum and archive entry, without restoring.
    #[command(
        after_help = "Example (verify one backup of acme, by the id `rehost backups list acme` shows):\n  rehost verify acme --backup g00000003-1a2b3c4d-00000042-20261123T101500.123Z"
    )]
    Verify {
        names: Vec<String>,
        /// Verify this backup id instead of the newest (needs exactly one NAME).
        #[arg(long)]
        backup: Option<String>,
    },
    /// Apply each entry's `keep:` retention policy now.
    #[command(
        after_help = "Example (show which backups of prometheus retention would delete, delete nothing):\n  rehost --dry-run prune prometheus"
    )]
    Prune { names: Vec<String> },
    /// Pull content into each `pull:` entry's dest now (all of them unless NAMEs are given).
    #[command(after_help = "Example (pull the site entry's content now):\n  rehost pull site")]
    Pull { names: Vec<String> },
    /// Every host's backups in the store: per state entry, the newest backup's age, size, generation and verification.
    ///
    /// Read-only: reads only the store (the `storage:` section; `host:` and
    /// `state:` are not used), takes no lock and needs no local state, so it
    /// runs anywhere the store is reachable (a monitoring host, CI). Exit 1
    /// when an entry has no complete backup, its newest one is older than its
    /// --max-age (default 25h), or that backup's manifest cannot be read.
    #[command(
        after_help = "Example (acme may be 2 hours old, every other entry a day; also metrics for a central Prometheus):\n  rehost fleet --max-age 25h --max-age acme=2h --metrics /var/lib/node_exporter/textfile/rehost-fleet.prom"
    )]
    Fleet {
        /// Only this host (repeatable); a named host without backups is shown as such.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// How old the newest backup may be: DURATION for every entry, ENTRY=DURATION for entries of that name (repeatable).
        #[arg(long = "max-age", value_name = "[ENTRY=]DURATION", value_parser = cmd::fleet::parse_max_age)]
        max_age: Vec<cmd::fleet::MaxAge>,
        /// Print one JSON document on stdout instead of a table (see the README).
        #[arg(long)]
        json: bool,
        /// Also write the view as node_exporter textfile metrics to FILE (atomically).
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
    },
    /// Validate the configuration and storage access; change nothing.
    #[command(
        after_help = "Example (check a configuration before installing it):\n  rehost -c ./rehost.yaml check"
    )]
    Check {
        /// Print one JSON document on stdout instead of lines (see the README).
        #[arg(long)]
        json: bool,
    },
    /// Register this host in the store (once per new host; idempotent).
    ///
    /// `boot` refuses to start when a `required` state entry has no backup
    /// and the store does not know the host (never registered, never backed
    /// up): a typo in `host:` then stops the boot, listing the hosts the
    /// store knows, instead of starting the stack on empty state.
    #[command(
        after_help = "Example (register the host before its first boot):\n  rehost -c /etc/rehost/rehost.yaml init"
    )]
    Init,
    /// Run the scheduled jobs (backups, pulls) until SIGTERM or SIGINT.
    ///
    /// Each job runs on its cron schedule (`state.NAME.backup`,
    /// `pull.NAME.schedule`, in the host's time zone) and once at start with
    /// `run_at_start: true`. A job never overlaps itself: a run due while the
    /// previous one is still going is skipped and logged. Each attempt is
    /// bounded by `timeout`; a failed one is retried up to `retries` times
    /// after 1 s, 2 s, 4 s … (at most 60 s); each run waits a random
    /// 0..`jitter` first. Only the run's final outcome goes to the metrics.
    /// On SIGTERM/SIGINT no new run starts, running ones get --grace to
    /// finish, the rest are abandoned and recorded as failed; exit 0.
    /// Refuses to run as root unless --allow-root.
    #[command(
        after_help = "Example (the daemon as the rehost user, giving running jobs 60 s to finish on SIGTERM):\n  runuser -u rehost -- rehost run --grace 60s"
    )]
    Run {
        /// Run even as root (the daemon needs only the state, content and metrics directories).
        #[arg(long)]
        allow_root: bool,
        /// How long running jobs may take to finish after SIGTERM/SIGINT.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Show the last success and attempt of every job, from the metrics files.
    ///
    /// Lists every configured job (backup of each state entry, pull of each
    /// pull entry; "never" without a metrics file yet) and any other job found
    /// in `metrics.textfile_dir`.
    ///
    /// Exit 1 if a scheduled job is stale: it never succeeded, or its last
    /// success is older than 2 x its schedule's period + its timeout (the
    /// period is the longest interval between two consecutive occurrences of
    /// its cron schedule). Exit 2 without a `metrics:` section.
    #[command(after_help = "Example (what ran when, exit 1 if a job is stale):\n  rehost status")]
    Status {
        /// Print one JSON document on stdout instead of a table (see the README).
        #[arg(long)]
        json: bool,
    },
    /// The boot sequence of a fresh VM: restore state, bring the stack up, run the jobs.
    ///
    /// Takes the boot lock (a second boot exits at once), waits for the
    /// Docker Engine (with a `stack:`), restores every state entry per its
    /// `restore:` policy concurrently (a missing backup is normal on a first
    /// boot; an unreachable store stops the boot when an entry is
    /// `required`; any other restore failure stops it before the stack
    /// starts), runs `up`, writes `rehost-boot.prom`, then — unless
    /// --no-run — replaces itself with `rehost run` as the `run_as` user.
    #[command(
        after_help = "Example (what rehost-boot.service runs: restore, start the stack, then stop):\n  rehost boot --no-run"
    )]
    Boot {
        /// Stop once the stack is up; do not start the jobs daemon.
        #[arg(long)]
        no_run: bool,
        /// How long to wait for the Docker Engine to answer.
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
        docker_timeout: std::time::Duration,
        /// Longest wait, in all, for healthchecks and depends_on conditions.
        #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = humantime::parse_duration)]
        wait_timeout: std::time::Duration,
    },
    /// Reconcile the Docker Engine with the stack's compose file (`stack:`).
    ///
    /// Builds the images whose build context changed, creates what is
    /// missing, recreates the services whose config or image changed (and
    /// restarts the services that depend on them), removes containers of
    /// services no longer in the file, starts in depends_on order and waits
    /// for healthchecks. On an unchanged stack it changes nothing. With
    /// --dry-run it prints the plan and changes nothing.
    #[command(
        after_help = "Example (print what up would build, create, recreate and remove; change nothing):\n  rehost --dry-run up"
    )]
    Up {
        /// Longest wait, in all, for healthchecks and depends_on conditions.
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
        wait_timeout: std::time::Duration,
    },
    /// Stop and remove the stack's containers and networks (`stack.project`).
    ///
    /// Named volumes hold data and are kept unless --volumes is given.
    /// External networks and volumes are never removed.
    #[command(
        after_help = "Example (remove the stack's containers and networks, keep its volumes):\n  rehost down"
    )]
    Down {
        /// Also remove the project's named volumes and the containers' anonymous volumes.
        #[arg(long)]
        volumes: bool,
    },
    /// Print the completion script for SHELL on stdout.
    ///
    /// Needs no configuration file. The Debian package installs the scripts
    /// for all three shells.
    #[command(
        after_help = "Example (bash completion for the current user, loaded by bash-completion):\n  rehost completions bash > ~/.local/share/bash-completion/completions/rehost"
    )]
    Completions { shell: cmd::completions::Shell },
}

#[derive(Subcommand, Debug)]
pub enum BackupsCommand {
    /// List complete backups: id, time, size, files, checksum.
    #[command(
        after_help = "Example (the backups of every state entry, with another configuration):\n  rehost -c /etc/rehost/rehost.yaml backups list"
    )]
    List {
        name: Option<String>,
        /// Print one JSON document on stdout instead of a table (see the README).
        #[arg(long)]
        json: bool,
    },
}

/// A command line that parses but makes no sense (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What every command works with.
pub struct Ctx {
    pub config: Config,
    pub store: Arc<dyn ObjectStore>,
    /// `storage.encryption`, parsed once.
    pub encryption: Option<Arc<Encryption>>,
    pub dry_run: bool,
    /// Set once a newer generation of the host took over: final.
    pub superseded: std::sync::OnceLock<rehost_jobs::generation::Superseded>,
    /// Serializes the beginning of a pending generation ([`crate::generation`]).
    pub lineage: tokio::sync::Mutex<()>,
    /// `notify:`: told of every run the commands and the daemon record.
    pub notify: crate::notify::Notifier,
}

impl Ctx {
    fn load(global: &GlobalArgs) -> anyhow::Result<Self> {
        let config = config::load(&global.config)?;
        for warning in config::permissions::warnings(&config) {
            tracing::warn!("{warning}");
        }
        let store = store::open(&config.storage)
            .with_context(|| format!("open storage {}", config.storage.display_url()))?;
        let encryption = match &config.encryption {
            Some(e) => Some(Arc::new(e.build().context("storage.encryption")?)),
            None => None,
        };
        Ok(Ctx::new(config, store, encryption, global.dry_run))
    }

    pub fn new(
        config: Config,
        store: Arc<dyn ObjectStore>,
        encryption: Option<Arc<Encryption>>,
        dry_run: bool,
    ) -> Self {
        let notify = crate::notify::Notifier::new(&config, dry_run);
        Ctx {
            config,
            store,
            encryption,
            dry_run,
            superseded: std::sync::OnceLock::new(),
            lineage: tokio::sync::Mutex::new(()),
            notify,
        }
    }

    /// The state entries NAMEs select (all when empty), in configuration order.
    pub fn states(&self, names: &[String]) -> anyhow::Result<Vec<&StateEntry>> {
        self.select(&self.config.state, "state", names)
    }

    /// The entries of `map` NAMEs select (all when empty), in configuration
    /// order; an unknown name is a usage error listing the known ones.
    pub fn select<'a, T>(
        &self,
        map: &'a IndexMap<String, T>,
        kind: &str,
        names: &[String],
    ) -> anyhow::Result<Vec<&'a T>> {
        if names.is_empty() {
            return Ok(map.values().collect());
        }
        names
            .iter()
            .map(|n| {
                map.get(n).ok_or_else(|| {
                    let known: Vec<&str> = map.keys().map(String::as_str).collect();
                    UsageError(format!(
                        "no {kind} entry `{n}` in {} (known: {})",
                        self.config.path.display(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                    .into()
                })
            })
            .collect()
    }

    /// [`Self::spec`] with the real path of a `volume:` entry: the volume's
    /// mountpoint, asked of the Engine (created first when `create`, as a
    /// restore into a volume that does not exist yet needs).
    pub async fn resolve(&self, entry: &StateEntry, create: bool) -> anyhow::Result<StateSpec> {
        let mut spec = self.spec(entry)?;
        if let (Some(key), Some(stack)) = (&entry.volume, &self.config.stack) {
            let project = crate::stack::compose::load(stack, &|n| std::env::var(n).ok())?;
            let docker = crate::stack::engine::connect().await?;
            spec.path = crate::stack::engine::volume_mountpoint(&docker, &project, key, create)
                .await
                .with_context(|| format!("state `{}`: volume `{key}`", entry.name))?;
        }
        Ok(spec)
    }

    pub fn spec(&self, entry: &StateEntry) -> anyhow::Result<StateSpec> {
        let owner = match &entry.owner {
            Some(o) => Some(resolve_owner(o).with_context(|| format!("state `{}`", entry.name))?),
            None => None,
        };
        let kind = match entry.kind {
            StateKind::Files => JobsKind::Files,
            StateKind::Prometheus => JobsKind::Prometheus {
                api: entry
                    .api
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PROMETHEUS_API.to_string()),
            },
            StateKind::Sqlite => JobsKind::Sqlite {
                databases: entry.databases.clone(),
            },
            StateKind::Acme => JobsKind::Acme,
        };
        Ok(StateSpec {
            name: entry.name.clone(),
            path: entry.path.clone(),
            mode: entry.mode,
            owner,
            kind,
            encryption: self.encryption.clone(),
            generation: None,
        })
    }
}

/// Which backup `--backup`/`--at` select for `names`.
pub fn selector(
    names: &[String],
    backup: Option<String>,
    at: Option<String>,
) -> anyhow::Result<Selector> {
    match (backup, at) {
        (Some(id), _) => {
            if names.len() != 1 {
                return Err(UsageError("--backup needs exactly one state NAME".into()).into());
            }
            Ok(Selector::Id(id))
        }
        (None, Some(t)) => Ok(Selector::At(parse_time(&t)?)),
        (None, None) => Ok(Selector::Latest),
    }
}

fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(23, 59, 59) {
            return Ok(t.and_utc());
        }
    }
    Err(UsageError(format!(
        "--at {s:?}: expected a time like 2026-11-23T10:15:00Z or \"2026-11-23 10:15\" (UTC)"
    ))
    .into())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ctx = match args.command {
        // Needs no configuration: it works before /etc/rehost exists.
        Command::Completions { shell } => return cmd::completions::run(shell),
        _ => Ctx::load(&args.global)?,
    };
    match args.command {
        Command::Backup { names } => cmd::backup::run(&ctx, &names).await,
        Command::Restore {
            names,
            force,
            backup,
            at,
        } => {
            let selector = selector(&names, backup, at)?;
            cmd::restore::run(&ctx, &names, force, selector).await
        }
        Command::Backups {
            command: BackupsCommand::List { name, json },
        } => cmd::backups::list(&ctx, name, json).await,
        Command::Verify { names, backup } => {
            let selector = selector(&names, backup, None)?;
            cmd::verify::run(&ctx, &names, selector).await
        }
        Command::Prune { names } => cmd::prune::run(&ctx, &names).await,
        Command::Pull { names } => cmd::pull::run(&ctx, &names).await,
        Command::Check { json } => cmd::check::run(&ctx, json).await,
        Command::Fleet {
            hosts,
            max_age,
            json,
            metrics,
        } => cmd::fleet::run(&ctx, &hosts, &max_age, json, metrics.as_deref()).await,
        Command::Init => cmd::init::run(&ctx).await,
        Command::Run { allow_root, grace } => cmd::run::run(ctx, allow_root, grace).await,
        Command::Status { json } => cmd::status::run(&ctx, json).await,
        Command::Boot {
            no_run,
            docker_timeout,
            wait_timeout,
        } => {
            let opts = cmd::boot::BootOptions {
                no_run,
                docker_timeout,
                wait_timeout,
            };
            cmd::boot::run(&ctx, &args.global, &opts).await
        }
        Command::Up { wait_timeout } => cmd::up::run(&ctx, wait_timeout).await,
        Command::Down { volumes } => cmd::down::run(&ctx, volumes).await,
        Command::Completions { shell } => cmd::completions::run(shell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_utc() {
        let t = parse_time("2026-11-23 10:15").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T10:15:00+00:00");
        let t = parse_time("2026-11-23T10:15:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T09:15:00+00:00");
        assert_eq!(
            parse_time("2026-11-23").unwrap().to_rfc3339(),
            "2026-11-23T23:59:59+00:00"
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn backup_id_needs_one_name() {
        assert!(selector(&[], Some("x".into()), None).is_err());
        assert_eq!(
            selector(&["acme".into()], Some("x".into()), None).unwrap(),
            Selector::Id("x".into())
        );
    }

    /// Every command's --help ends with one example, and the example is a
    /// command line that parses as that very command (so each flag in it
    /// exists and each value is accepted).
    #[test]
    fn every_command_has_an_example_that_parses() {
        use clap::CommandFactory;
        fn commands(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
            let help = cmd.get_after_help().map(|h| h.to_string());
            let name = format!("rehost {}", path.join(" "));
            out.push((
                path.clone(),
                help.unwrap_or_else(|| panic!("`{name}` has no example")),
            ));
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                commands(sub, p, out);
            }
        }
        let mut all = Vec::new();
        commands(&Args::command(), Vec::new(), &mut all);
        assert!(all.len() > 15, "{all:?}");
        for (path, help) in all {
            let lines: Vec<&str> = help.lines().collect();
            assert!(
                lines.len() == 2 && lines[0].starts_with("Example (") && lines[0].ends_with("):"),
                "{path:?}: expected `Example (what it does):` and one command line, got {help:?}"
            );
            // The words from `rehost` to a redirection or pipe, quotes removed.
            let mut words = Vec::new();
            let mut word: Option<String> = None;
            let mut quoted = false;
            for c in lines[1].trim().chars() {
                match c {
                    '"' => {
                        quoted = !quoted;
                        word.get_or_insert_with(String::new);
                    }
                    c if c.is_whitespace() && !quoted => words.extend(word.take()),
                    c => word.get_or_insert_with(String::new).push(c),
                }
            }
            words.extend(word);
            // `rehost …`, or a command that runs it after `--` (runuser).
            let start = match words.iter().position(|w| w == "--") {
                Some(i) if words[0] != "rehost" => i + 1,
                _ => 0,
            };
            assert_eq!(words[start], "rehost", "{path:?}: {words:?}");
            let end = words
                .iter()
                .position(|w| w == ">" || w == "|")
                .unwrap_or(words.len());
            let words = &words[start..end];
            let matches = Args::command()
                .try_get_matches_from(words)
                .unwrap_or_else(|e| panic!("{path:?}: example {words:?} does not parse: {e}"));
            let mut parsed = Vec::new();
            let mut m = &matches;
            while let Some((name, sub)) = m.subcommand() {
                parsed.push(name.to_string());
                m = sub;
            }
            // A command with subcommands may show one of them.
            assert!(
                parsed.starts_with(&path),
                "{path:?}: example {words:?} runs {parsed:?}"
            );
            if let Command::Restore { at: Some(t), .. } =
                Args::try_parse_from(words).unwrap().command
            {
                parse_time(&t).unwrap();
            }
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
