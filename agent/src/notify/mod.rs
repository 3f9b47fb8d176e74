//! Notifications (`notify:`): webhooks and healthchecks.io-style pings told
//! when a run starts, succeeds or fails.
//!
//! What sends what: every run that rehost records in the metrics is
//! notified, by the commands and by the daemon alike — `backup`, `pull`,
//! `restore`, `verify` and `prune` (one run per entry), the daemon's
//! scheduled backups, pulls, verifies and the prunes after backups (one run
//! per run, whatever its retries), and `boot` as a whole (job `boot`, empty
//! target; its restores are runs of their own). `--dry-run` sends nothing.
//!
//! Invariants:
//! - A notification never fails a run nor changes its outcome or exit code:
//!   every problem is logged (and counted in the delivery metrics,
//!   `job="notify"`), never returned.
//! - Each delivery is bounded: at most `1 + retries` attempts of at most
//!   `timeout` each, [`backoff`] apart. The start of a run is sent alongside
//!   the run, never before it; its end is sent once both are over, so that a
//!   receiver sees `start` before the outcome, and a receiver that hangs
//!   delays the end of a command by at most the bound of its deliveries.
//! - A target's URL is shown as `scheme://host[:port]` only ([`NotifyUrl`]).

mod http;
mod message;
mod url;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::{Config, NotifyEvent, NotifyTarget};
use message::Event;
pub use url::NotifyUrl;

/// The metrics' `job` label of deliveries (`target`: the target's name).
pub const METRICS_JOB: &str = "notify";
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The configured targets, and what delivering to them needs.
pub struct Notifier {
    host: String,
    targets: Vec<NotifyTarget>,
    /// `--dry-run`: nothing is sent.
    dry_run: bool,
    metrics_dir: Option<PathBuf>,
    /// Built at the first https:// delivery.
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    /// Deliveries to one target may end at once, and its metrics file is
    /// read, updated and replaced: one at a time.
    metrics: Mutex<()>,
}

impl Notifier {
    pub fn new(config: &Config, dry_run: bool) -> Notifier {
        Notifier {
            host: config.host.clone(),
            targets: config.notify.clone(),
            dry_run,
            metrics_dir: config.metrics.as_ref().map(|m| m.textfile_dir.clone()),
            tls: OnceLock::new(),
            metrics: Mutex::new(()),
        }
    }

    /// Tells the targets that want it that a run of `job` on `target` began.
    pub async fn started(&self, job: &str, target: &str) {
        self.send(Event {
            job: job.to_string(),
            target: target.to_string(),
            event: NotifyEvent::Start,
            time: Utc::now(),
            duration: Duration::ZERO,
            bytes: 0,
            error: None,
        })
        .await;
    }

    /// Tells the targets that want it how a run that began at `started` and
    /// took `duration` ended: the bytes it moved, or its error.
    pub async fn finished(
        &self,
        job: &str,
        target: &str,
        started: SystemTime,
        duration: Duration,
        result: Result<u64, String>,
    ) {
        let (event, bytes, error) = match result {
            Ok(bytes) => (NotifyEvent::Success, bytes, None),
            Err(e) => (NotifyEvent::Failure, 0, Some(e)),
        };
        self.send(Event {
            job: job.to_string(),
            target: target.to_string(),
            event,
            // When it ended, not when this is sent (maybe after a slow `start`).
            time: DateTime::<Utc>::from(started + duration),
            duration,
            bytes,
            error,
        })
        .await;
    }

    /// Delivers `event` to every target that wants it, all at once.
    async fn send(&self, event: Event) {
        if self.dry_run {
            return;
        }
        let deliveries = self
            .targets
            .iter()
            .filter(|t| t.wants(event.event, &event.job, &event.target))
            .map(|t| self.deliver(t, &event));
        futures::future::join_all(deliveries).await;
    }

    async fn deliver(&self, target: &NotifyTarget, event: &Event) {
        let started = SystemTime::now();
        let clock = Instant::now();
        let (result, size) = match self.attempts(target, event).await {
            Ok((attempts, size)) => {
                tracing::debug!(
                    notify = %target.name,
                    destination = %target.url,
                    event = event.event.as_str(),
                    job = %event.job,
                    target = %event.target,
                    attempts,
                    "notification sent"
                );
                (true, size)
            }
            Err(e) => {
                tracing::error!(
                    notify = %target.name,
                    destination = %target.url,
                    event = event.event.as_str(),
                    job = %event.job,
                    target = %event.target,
                    "notification not delivered (the run is not affected): {e}"
                );
                (false, 0)
            }
        };
        self.record(target, started, clock.elapsed(), result, size);
    }

    /// Up to `1 + retries` attempts; the number made and the body's size, or
    /// why the last one failed.
    async fn attempts(&self, target: &NotifyTarget, event: &Event) -> Result<(u32, u64), String> {
        let request = message::request(target, &self.host, event)?;
        let tls = if request.url.tls() {
            Some(self.tls_config()?)
        } else {
            None
        };
        let body = Bytes::from(request.body);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = tokio::time::timeout(
                target.timeout,
                http::post(
                    &request.url,
                    tls.clone(),
                    request.content_type,
                    body.clone(),
                ),
            )
            .await;
            let (error, retryable) = match sent {
                Ok(Ok(status)) if (200..300).contains(&status) => {
                    return Ok((attempt, body.len() as u64))
                }
                // A redirect is not followed: a ping URL that moved is a
                // configuration to fix, not something to guess.
                Ok(Ok(status)) => (
                    format!("HTTP {status}"),
                    matches!(status, 408 | 429 | 500..=599),
                ),
                Ok(Err(e)) => (e, true),
                Err(_) => (
                    format!(
                        "no answer within {} (notify timeout)",
                        humantime::format_duration(target.timeout)
                    ),
                    true,
                ),
            };
            if !retryable || attempt > target.retries {
                let tries = if attempt == 1 {
                    "1 attempt".to_string()
                } else {
                    format!("{attempt} attempts")
                };
                return Err(format!("{error} (after {tries})"));
            }
            let wait = backoff(attempt);
            tracing::warn!(
                notify = %target.name,
                destination = %target.url,
                event = event.event.as_str(),
                job = %event.job,
                target = %event.target,
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                "notification attempt failed, will retry: {error}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls.get_or_init(http::tls_config).clone()
    }

    /// The delivery as a run of job `notify` on the target's name, so that
    /// failed deliveries show in `rehost status` and can be alerted on like
    /// any job.
    fn record(
        &self,
        target: &NotifyTarget,
        started: SystemTime,
        duration: Duration,
        ok: bool,
        size: u64,
    ) {
        let Some(dir) = &self.metrics_dir else {
            return;
        };
        let run = rehost_jobs::metrics::Run {
            started,
            duration,
            ok,
            bytes: size,
        };
        let _one_at_a_time = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = rehost_jobs::metrics::record(dir, METRICS_JOB, &target.name, &run) {
            tracing::error!(
                notify = %target.name,
                "cannot record the notification's metrics in {}: {e}",
                dir.display()
            );
        }
    }
}

/// The wait after `failed` failed attempts: 1 s, 2 s, 4 s, … at most 10 s.
fn backoff(failed: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failed.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests;
