//! The scheduler behind `rehost run`: every job (a backup of one state entry,
//! a pull of one pull entry) has its own loop that sleeps until the next cron
//! occurrence and then starts a run.
//!
//! Invariants:
//! - A job never overlaps itself: a run holds the job's lock for its whole
//!   life (jitter, attempts, backoff); an occurrence that finds the lock taken
//!   is skipped and logged (`warn`, with job and target), never queued.
//! - A run is: a random delay in `0..=jitter`, then up to `1 + retries`
//!   attempts, each bounded by `timeout`, with a backoff of 1 s, 2 s, 4 s …
//!   capped at 60 s between them. Every failed attempt is logged; only the
//!   run's final outcome is reported, once, through [`Reporter::finished`]
//!   (one metrics run and one notification per run). Its start is reported
//!   once too, alongside the attempts ([`Reporter::started`]), and its
//!   outcome only after that report ended.
//! - Each attempt gets a cancellation token. At its timeout (or when the
//!   runs are abandoned) the token is cancelled and the attempt is awaited
//!   for up to [`WIND_DOWN`] more, so that its blocking work stops, its
//!   `stop:` services start again and its upload is aborted *before* a retry
//!   or the exit; only an attempt still going after that is dropped. The next
//!   attempt never starts while the previous one is still winding down.
//! - After a successful run, the job's follow-up (a backup's prune, per
//!   `keep:`) runs within the same run, so it never overlaps the job, and is
//!   recorded under its own job name; its failure does not fail the run.
//! - Dropping a backup mid-way is safe: its manifest is written last, so an
//!   abandoned upload is an incomplete backup that does not exist for restore
//!   and that prune removes later.
//! - Shutdown is passed in as a future and fanned out as two tokens: `stop`
//!   (no new run, no new attempt, no jitter or backoff wait) when the future
//!   resolves, then `abandon` when the grace period is over; runs still going
//!   then are cancelled and recorded as failed. [`run`] returns at most
//!   `grace` + [`WIND_DOWN`] after the shutdown future resolved.

pub(crate) mod schedule;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::Done;
use crate::config::JobDefaults;
use schedule::{sleep_until_wall, Clock, Schedule, Wake};

/// First backoff between attempts; doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a cancelled attempt is awaited before it is dropped.
pub(crate) const WIND_DOWN: Duration = Duration::from_secs(10);

pub(crate) type JobFuture = Pin<Box<dyn Future<Output = anyhow::Result<Done>> + Send>>;
/// Starts one attempt of a job; the attempt should stop (soon) once the token
/// is cancelled.
pub(crate) type Op = Arc<dyn Fn(CancellationToken) -> JobFuture + Send + Sync>;
/// Told of every run: its start and its final outcome (metrics, notifications).
pub(crate) trait Reporter: Send + Sync {
    /// A run (or a follow-up) began; the future runs alongside its attempts.
    fn started(&self, job: &'static str, target: &str) -> BoxFuture<'static, ()>;
    /// A run (or a follow-up) ended, after its retries.
    fn finished(&self, outcome: &Outcome) -> BoxFuture<'static, ()>;
}

pub(crate) type Recorder = Arc<dyn Reporter>;

/// One scheduled job.
pub(crate) struct JobDef {
    /// `backup` or `pull`: the metrics' `job` label.
    pub job: &'static str,
    /// The entry's name: the metrics' `target` label.
    pub target: String,
    pub schedule: Option<Schedule>,
    pub run_at_start: bool,
    pub settings: JobDefaults,
    pub op: Op,
    /// Runs once after each successful run (a backup's prune).
    pub then: Option<FollowUp>,
}

/// Work that follows a successful run of a job, recorded as its own job.
pub(crate) struct FollowUp {
    /// The metrics' `job` label (`prune`).
    pub job: &'static str,
    pub op: Op,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub job: &'static str,
    pub target: String,
    /// When the first attempt started (after the jitter).
    pub started: SystemTime,
    pub duration: Duration,
    pub attempts: u32,
    /// Bytes moved, or the last attempt's error.
    pub result: Result<u64, String>,
}

/// What the daemon did, for tests and the final log line.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub started: u64,
    pub skipped: u64,
}

struct Control {
    clock: Arc<dyn Clock>,
    recorder: Recorder,
    /// No new runs, attempts or waits.
    stop: CancellationToken,
    /// Drop the runs still going.
    abandon: CancellationToken,
    runs: TaskTracker,
    started: AtomicU64,
    skipped: AtomicU64,
}

/// Runs `jobs` until `shutdown` resolves, then lets running jobs finish for
/// up to `grace` and abandons the rest.
pub(crate) async fn run(
    jobs: Vec<JobDef>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> Report {
    let ctl = Arc::new(Control {
        clock,
        recorder,
        stop: CancellationToken::new(),
        abandon: CancellationToken::new(),
        runs: TaskTracker::new(),
        started: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
    });
    let mut loops = JoinSet::new();
    for def in jobs {
        loops.spawn(job_loop(Arc::new(def), Arc::clone(&ctl)));
    }
    shutdown.await;
    ctl.stop.cancel();
    while loops.join_next().await.is_some() {}
    ctl.runs.close();
    if !ctl.runs.is_empty() {
        tracing::info!(
            running = ctl.runs.len(),
            grace_ms = grace.as_millis() as u64,
            "shutting down: no new runs; waiting for the running ones"
        );
    }
    if tokio::time::timeout(grace, ctl.runs.wait()).await.is_err() {
        tracing::warn!(
            running = ctl.runs.len(),
            "grace period over: abandoning the runs still going"
        );
        ctl.abandon.cancel();
        // Each run awaits its cancelled attempt for at most WIND_DOWN; the
        // margin covers recording the outcomes.
        let bound = WIND_DOWN + Duration::from_secs(2);
        if tokio::time::timeout(bound, ctl.runs.wait()).await.is_err() {
            tracing::error!(
                running = ctl.runs.len(),
                "runs still going after their cancellation; exiting anyway"
            );
        }
    }
    Report {
        started: ctl.started.load(Ordering::Relaxed),
        skipped: ctl.skipped.load(Ordering::Relaxed),
    }
}

/// One job's loop: start at boot if asked, then at every occurrence.
async fn job_loop(def: Arc<JobDef>, ctl: Arc<Control>) {
    let running = Arc::new(tokio::sync::Mutex::new(()));
    if def.run_at_start {
        start(&def, &ctl, &running, "start");
    }
    let Some(schedule) = &def.schedule else {
        return;
    };
    tracing::info!(job = def.job, target = %def.target, schedule = schedule.as_str(), "scheduled");
    let mut from = ctl.clock.now();
    loop {
        let Some(next) = schedule.next_after(from) else {
            tracing::warn!(job = def.job, target = %def.target, schedule = schedule.as_str(), "the schedule has no further occurrence");
            return;
        };
        let wake = tokio::select! {
            _ = ctl.stop.cancelled() => return,
            wake = sleep_until_wall(&ctl.clock, next) => wake,
        };
        if ctl.stop.is_cancelled() {
            return;
        }
        match wake {
            // From now: occurrences that a forward step jumped over are one
            // run, not a burst.
            Wake::Due => {
                start(&def, &ctl, &running, "schedule");
                from = ctl.clock.now();
            }
            Wake::SteppedBack { since } => {
                tracing::warn!(
                    job = def.job,
                    target = %def.target,
                    "the wall clock was stepped back: computing the next run again"
                );
                // Strictly after `from`: an occurrence exactly at `since` counts.
                from = since - chrono::Duration::milliseconds(1);
            }
        }
    }
}

/// Starts a run unless the previous one is still going.
fn start(
    def: &Arc<JobDef>,
    ctl: &Arc<Control>,
    running: &Arc<tokio::sync::Mutex<()>>,
    trigger: &'static str,
) {
    match Arc::clone(running).try_lock_owned() {
        Ok(guard) => {
            ctl.started.fetch_add(1, Ordering::Relaxed);
            let (def, ctl2) = (Arc::clone(def), Arc::clone(ctl));
            ctl.runs.spawn(async move {
                let _running = guard;
                run_once(&def, &ctl2, trigger).await;
            });
        }
        Err(_) => {
            ctl.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                job = def.job,
                target = %def.target,
                trigger,
                "skipping this run: the previous one is still going"
            );
        }
    }
}

/// The delay before attempt `failed + 1` after `failed` failed attempts.
pub(crate) fn backoff(failed: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failed.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// A random delay in `0..=max`.
pub(crate) fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
}

enum Attempt {
    Done(Done),
    Failed(anyhow::Error),
    Abandoned,
}

async fn run_once(def: &JobDef, ctl: &Control, trigger: &'static str) {
    let (job, target, settings) = (def.job, def.target.as_str(), &def.settings);
    let delay = jitter(settings.jitter);
    if !delay.is_zero() {
        tracing::debug!(
            job,
            target,
            delay_ms = delay.as_millis() as u64,
            "jitter before the run"
        );
        tokio::select! {
            _ = ctl.stop.cancelled() => {
                tracing::info!(job, target, "shutdown during the jitter delay: run not started");
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!(job, target, trigger, "{job} started");
    let started = SystemTime::now();
    let clock = Instant::now();
    let run = async {
        let (result, attempts) = attempts_of(def, ctl).await;
        (result, attempts, clock.elapsed())
    };
    let ((), (result, attempts, duration)) = tokio::join!(ctl.recorder.started(job, target), run);
    let duration_ms = duration.as_millis() as u64;
    let result = match result {
        Ok(done) => {
            tracing::info!(
                job,
                target,
                result = "ok",
                duration_ms,
                bytes = done.bytes,
                attempts,
                "{job} {target}: {}",
                done.message
            );
            Ok(done.bytes)
        }
        // Said once, when it was found (`generation::for_writing`), not at
        // every scheduled run; the metrics still record each failed run.
        Err(e) if crate::generation::is_superseded(&e) => {
            tracing::debug!(
                job,
                target,
                result = "failed",
                "{job} {target} refused: {e:#}"
            );
            Err(format!("{e:#}"))
        }
        Err(e) => {
            tracing::error!(
                job,
                target,
                result = "failed",
                duration_ms,
                bytes = 0u64,
                attempts,
                "{job} {target} failed: {e:#}"
            );
            Err(format!("{e:#}"))
        }
    };
    let succeeded = result.is_ok();
    let outcome = Outcome {
        job,
        target: def.target.clone(),
        started,
        duration,
        attempts,
        result,
    };
    ctl.recorder.finished(&outcome).await;
    if let Some(then) = def.then.as_ref().filter(|_| succeeded) {
        follow_up(then, target, settings.timeout, ctl).await;
    }
}

/// The attempts of one run (see the module header): the last one's result
/// and how many were made.
async fn attempts_of(def: &JobDef, ctl: &Control) -> (anyhow::Result<Done>, u32) {
    let (job, target, settings) = (def.job, def.target.as_str(), &def.settings);
    let mut attempts = 0u32;
    let result = loop {
        attempts += 1;
        let attempt = attempt_once(job, target, &def.op, settings.timeout, ctl).await;
        match attempt {
            Attempt::Done(done) => break Ok(done),
            Attempt::Abandoned => {
                break Err(anyhow::anyhow!(
                    "abandoned: still running when the shutdown grace period ended"
                ))
            }
            // A takeover is final: retrying cannot help.
            Attempt::Failed(e)
                if attempts <= settings.retries
                    && !ctl.stop.is_cancelled()
                    && !crate::generation::is_superseded(&e) =>
            {
                let wait = backoff(attempts);
                tracing::warn!(
                    job,
                    target,
                    attempt = attempts,
                    retry_in_ms = wait.as_millis() as u64,
                    "attempt failed, will retry: {e:#}"
                );
                tokio::select! {
                    _ = ctl.stop.cancelled() => break Err(e.context("not retried: shutting down")),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Attempt::Failed(e) => break Err(e),
        }
    };
    (result, attempts)
}

/// One attempt of `op`, bounded by `timeout` and by the abandon token; a
/// cancelled attempt is awaited for up to [`WIND_DOWN`] (see the module header).
async fn attempt_once(
    job: &'static str,
    target: &str,
    op: &Op,
    timeout: Duration,
    ctl: &Control,
) -> Attempt {
    let token = ctl.abandon.child_token();
    let mut fut = op(token.clone());
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let ended = tokio::select! {
        biased;
        _ = ctl.abandon.cancelled() => Attempt::Abandoned,
        r = &mut fut => return match r {
            Ok(done) => Attempt::Done(done),
            Err(e) => Attempt::Failed(e),
        },
        _ = &mut deadline => Attempt::Failed(anyhow::anyhow!(
            "timed out after {}",
            humantime::format_duration(timeout)
        )),
    };
    token.cancel();
    match tokio::time::timeout(WIND_DOWN, fut).await {
        Ok(r) => tracing::debug!(job, target, ok = r.is_ok(), "cancelled attempt ended"),
        Err(_) => tracing::error!(
            job,
            target,
            wind_down_ms = WIND_DOWN.as_millis() as u64,
            "the cancelled attempt did not end; dropped"
        ),
    }
    ended
}

/// Runs `then` once after a successful run, recorded under its own job name.
async fn follow_up(then: &FollowUp, target: &str, timeout: Duration, ctl: &Control) {
    let job = then.job;
    if ctl.stop.is_cancelled() {
        tracing::info!(job, target, "shutting down: {job} not started");
        return;
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let (attempt, duration) = {
        let run = async {
            let attempt = attempt_once(job, target, &then.op, timeout, ctl).await;
            (attempt, clock.elapsed())
        };
        let ((), ended) = tokio::join!(ctl.recorder.started(job, target), run);
        ended
    };
    let result = match attempt {
        Attempt::Done(done) => {
            tracing::info!(
                job,
                target,
                result = "ok",
                duration_ms = duration.as_millis() as u64,
                bytes = done.bytes,
                "{job} {target}: {}",
                done.message
            );
            Ok(done.bytes)
        }
        Attempt::Failed(e) => {
            tracing::error!(
                job,
                target,
                result = "failed",
                duration_ms = duration.as_millis() as u64,
                "{job} {target} failed: {e:#}"
            );
            Err(format!("{e:#}"))
        }
        Attempt::Abandoned => {
            tracing::error!(
                job,
                target,
                result = "failed",
                "{job} {target} abandoned: still running when the shutdown grace period ended"
            );
            Err("abandoned: still running when the shutdown grace period ended".to_string())
        }
    };
    let outcome = Outcome {
        job,
        target: target.to_string(),
        started,
        duration,
        attempts: 1,
        result,
    };
    ctl.recorder.finished(&outcome).await;
}
