//! The scheduling logic under `tokio::time::pause()`: the wall clock the
//! scheduler reads is derived from tokio's clock, so a minute of schedule
//! takes no real time and every instant is exact.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{sleep, Instant};

use super::schedule::{Clock, Schedule};
use super::*;

/// Wall time = a fixed start (a quarter second past a whole second, so that
/// occurrences never tie with the start) + tokio's elapsed time.
struct TokioClock {
    wall: DateTime<Utc>,
    base: Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.wall + chrono::Duration::from_std(self.base.elapsed()).unwrap()
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock {
        wall: DateTime::parse_from_rfc3339("2026-01-01T00:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc),
        base: Instant::now(),
    })
}

fn settings(timeout: u64, retries: u32, jitter: u64) -> JobDefaults {
    JobDefaults {
        timeout: Duration::from_secs(timeout),
        retries,
        jitter: Duration::from_secs(jitter),
    }
}

fn job(schedule: Option<&str>, run_at_start: bool, settings: JobDefaults, op: Op) -> JobDef {
    JobDef {
        job: "backup",
        target: "acme".into(),
        schedule: schedule.map(|s| Schedule::parse(s).unwrap()),
        run_at_start,
        settings,
        op,
        then: None,
    }
}

/// Collects the reported outcomes (and counts the reported starts).
struct Collect {
    seen: Arc<Mutex<Vec<Outcome>>>,
    starts: Arc<AtomicU32>,
}

impl Reporter for Collect {
    fn started(
        &self,
        _job: &'static str,
        _target: &str,
    ) -> futures::future::BoxFuture<'static, ()> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }

    fn finished(&self, o: &Outcome) -> futures::future::BoxFuture<'static, ()> {
        self.seen.lock().unwrap().push(Outcome {
            job: o.job,
            target: o.target.clone(),
            started: o.started,
            duration: o.duration,
            attempts: o.attempts,
            result: o.result.clone(),
        });
        Box::pin(async {})
    }
}

fn recorder() -> (Recorder, Arc<Mutex<Vec<Outcome>>>) {
    let (rec, seen, _starts) = counting_recorder();
    (rec, seen)
}

fn counting_recorder() -> (Recorder, Arc<Mutex<Vec<Outcome>>>, Arc<AtomicU32>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let starts = Arc::new(AtomicU32::new(0));
    let rec: Recorder = Arc::new(Collect {
        seen: Arc::clone(&seen),
        starts: Arc::clone(&starts),
    });
    (rec, seen, starts)
}

fn done() -> Done {
    Done {
        message: "ok".into(),
        bytes: 7,
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_never_overlaps_itself_and_skips_are_counted() {
    let current = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let (c, m) = (Arc::clone(&current), Arc::clone(&most));
    let op: Op = Arc::new(move |_| {
        let (c, m) = (Arc::clone(&c), Arc::clone(&m));
        Box::pin(async move {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            sleep(Duration::from_millis(2500)).await;
            c.fetch_sub(1, Ordering::SeqCst);
            Ok(done())
        })
    });
    let (rec, seen) = recorder();
    let report = run(
        vec![job(Some("* * * * * *"), false, settings(60, 0, 0), op)],
        clock(),
        rec,
        Duration::from_secs(5),
        sleep(Duration::from_secs(10)),
    )
    .await;
    // Occurrences at 1..=10 s; runs of 2.5 s start at 1, 4, 7 and 10, and the
    // two occurrences inside each run are skipped.
    assert_eq!(most.load(Ordering::SeqCst), 1, "two runs overlapped");
    assert_eq!((report.started, report.skipped), (4, 6), "{report:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for o in seen.iter() {
        assert_eq!(o.result, Ok(7));
        assert_eq!(o.duration, Duration::from_millis(2500));
        assert_eq!(o.attempts, 1);
    }
}

/// Sets its flag when dropped: proves the timed-out future was dropped.
struct DropFlag(Arc<AtomicU32>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_that_ignores_its_cancellation_is_dropped_after_the_wind_down() {
    let dropped = Arc::new(AtomicU32::new(0));
    let d = Arc::clone(&dropped);
    let op: Op = Arc::new(move |_| {
        let flag = DropFlag(Arc::clone(&d));
        Box::pin(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok(done())
        })
    });
    let (rec, seen) = recorder();
    let t0 = Instant::now();
    run(
        vec![job(None, true, settings(3, 0, 0), op)],
        clock(),
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_secs(20)),
    )
    .await;
    assert_eq!(t0.elapsed(), Duration::from_secs(20), "no grace was needed");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    // It ignored its cancellation: awaited for WIND_DOWN, then dropped.
    assert_eq!(seen[0].duration, Duration::from_secs(3) + WIND_DOWN);
    let err = seen[0].result.clone().unwrap_err();
    assert!(err.contains("timed out after 3s"), "{err}");
}

#[test]
fn backoff_doubles_from_one_second_up_to_a_minute() {
    let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_only_the_final_outcome_is_recorded() {
    let t0 = Instant::now();
    let attempts_at = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&attempts_at);
    let op: Op = Arc::new(move |_| {
        a.lock().unwrap().push(t0.elapsed().as_secs());
        Box::pin(async { Err(anyhow::anyhow!("storage down")) })
    });
    let (rec, seen, starts) = counting_recorder();
    run(
        vec![job(None, true, settings(60, 3, 0), op)],
        clock(),
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_secs(20)),
    )
    .await;
    assert_eq!(*attempts_at.lock().unwrap(), [0, 1, 3, 7]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one run, one metrics record");
    assert_eq!(starts.load(Ordering::SeqCst), 1, "one run, one start");
    assert_eq!(seen[0].attempts, 4);
    assert_eq!(seen[0].duration, Duration::from_secs(7));
    assert_eq!(seen[0].result, Err("storage down".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_records_one_success() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let op: Op = Arc::new(move |_| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n < 2 {
                Err(anyhow::anyhow!("flaky"))
            } else {
                Ok(done())
            }
        })
    });
    let (rec, seen) = recorder();
    run(
        vec![job(None, true, settings(60, 5, 0), op)],
        clock(),
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_secs(20)),
    )
    .await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].attempts, seen[0].result.clone()), (3, Ok(7)));
}

#[test]
fn jitter_stays_within_its_bounds() {
    assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    let max = Duration::from_secs(5);
    let samples: Vec<Duration> = (0..2000).map(|_| jitter(max)).collect();
    assert!(samples.iter().all(|d| *d <= max));
    assert!(samples.iter().any(|d| *d < Duration::from_secs(1)));
    assert!(samples.iter().any(|d| *d > Duration::from_secs(4)));
}

#[tokio::test(start_paused = true)]
async fn a_run_starts_after_its_jitter_and_never_later() {
    let t0 = Instant::now();
    let started_at = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&started_at);
    let op: Op = Arc::new(move |_| {
        s.lock().unwrap().push(t0.elapsed());
        Box::pin(async { Ok(done()) })
    });
    let (rec, _seen) = recorder();
    run(
        vec![job(Some("*/10 * * * * *"), true, settings(60, 0, 4), op)],
        clock(),
        rec,
        Duration::from_secs(30),
        // Before the run due at 59.75 s, which a short jitter would let start.
        sleep(Duration::from_secs(58)),
    )
    .await;
    let started_at = started_at.lock().unwrap();
    // At start, then at 10, 20, … 50 s of wall time (9.75 s, 19.75 s … of tokio time).
    assert_eq!(started_at.len(), 6, "{started_at:?}");
    for (i, at) in started_at.iter().enumerate() {
        let due = if i == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(i as u64 * 10_000 - 250)
        };
        assert!(
            *at >= due && *at <= due + Duration::from_secs(4),
            "run {i} at {at:?}, due {due:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_running_jobs_then_abandons_them() {
    let slow: Op = Arc::new(|_| {
        Box::pin(async {
            sleep(Duration::from_secs(100)).await;
            Ok(done())
        })
    });
    let quick: Op = Arc::new(|_| {
        Box::pin(async {
            sleep(Duration::from_secs(3)).await;
            Ok(done())
        })
    });
    let mut slow_job = job(None, true, settings(600, 0, 0), slow);
    slow_job.target = "slow".into();
    let quick_job = job(None, true, settings(600, 0, 0), quick);
    let (rec, seen) = recorder();
    let t0 = Instant::now();
    run(
        vec![slow_job, quick_job],
        clock(),
        rec,
        Duration::from_secs(5),
        sleep(Duration::from_secs(1)),
    )
    .await;
    // 1 s + 5 s of grace, then the slow run (which ignores its cancellation)
    // is awaited for WIND_DOWN and dropped.
    assert_eq!(t0.elapsed(), Duration::from_secs(6) + WIND_DOWN);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let quick = seen.iter().find(|o| o.target == "acme").unwrap();
    assert_eq!(quick.result, Ok(7));
    let slow = seen.iter().find(|o| o.target == "slow").unwrap();
    assert!(
        slow.result.clone().unwrap_err().contains("abandoned"),
        "{slow:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_retrying_and_starts_nothing_new() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let op: Op = Arc::new(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(anyhow::anyhow!("down")) })
    });
    let (rec, seen) = recorder();
    let t0 = Instant::now();
    let report = run(
        vec![job(Some("* * * * * *"), true, settings(60, 10, 0), op)],
        clock(),
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_millis(2500)),
    )
    .await;
    // Attempts at 0, 1 and 3 s would be the plan; shutdown at 2.5 s ends the
    // backoff wait, so the run ends there after two attempts.
    assert_eq!(t0.elapsed(), Duration::from_millis(2500));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(report.started, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0]
        .result
        .clone()
        .unwrap_err()
        .contains("not retried: shutting down"));
}

/// An op that honours its token: it takes `work` to finish, and `wind_down`
/// to stop once cancelled; it counts how many attempts run at once.
fn cancellable(
    work: Duration,
    wind_down: Duration,
    current: Arc<AtomicU32>,
    most: Arc<AtomicU32>,
    starts: Arc<Mutex<Vec<Duration>>>,
    t0: Instant,
) -> Op {
    Arc::new(move |token: CancellationToken| {
        let (c, m, s) = (Arc::clone(&current), Arc::clone(&most), Arc::clone(&starts));
        Box::pin(async move {
            s.lock().unwrap().push(t0.elapsed());
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let result = tokio::select! {
                _ = sleep(work) => Ok(done()),
                _ = token.cancelled() => {
                    sleep(wind_down).await;
                    Err(anyhow::anyhow!("cancelled"))
                }
            };
            c.fetch_sub(1, Ordering::SeqCst);
            result
        })
    })
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_cancelled_and_awaited_before_its_retry() {
    let t0 = Instant::now();
    let (current, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let starts = Arc::new(Mutex::new(Vec::new()));
    let op = cancellable(
        Duration::from_secs(100),
        Duration::from_secs(2),
        current,
        Arc::clone(&most),
        Arc::clone(&starts),
        t0,
    );
    let (rec, seen) = recorder();
    run(
        vec![job(None, true, settings(3, 1, 0), op)],
        clock(),
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_secs(30)),
    )
    .await;
    // Timeout at 3 s, 2 s of winding down, 1 s of backoff: the retry starts
    // at 6 s, not at 4 s while the first attempt still runs.
    assert_eq!(
        *starts.lock().unwrap(),
        [Duration::ZERO, Duration::from_secs(6)]
    );
    assert_eq!(most.load(Ordering::SeqCst), 1, "attempts overlapped");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].duration, Duration::from_secs(11));
    assert!(seen[0]
        .result
        .clone()
        .unwrap_err()
        .contains("timed out after 3s"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_the_runs_after_the_grace_and_returns_once_they_stopped() {
    let t0 = Instant::now();
    let (current, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let starts = Arc::new(Mutex::new(Vec::new()));
    let op = cancellable(
        Duration::from_secs(1000),
        Duration::from_secs(3),
        Arc::clone(&current),
        most,
        starts,
        t0,
    );
    let (rec, seen) = recorder();
    run(
        vec![job(None, true, settings(600, 0, 0), op)],
        clock(),
        rec,
        Duration::from_secs(5),
        sleep(Duration::from_secs(1)),
    )
    .await;
    // Shutdown at 1 s, 5 s of grace, then 3 s for the run to stop.
    assert_eq!(t0.elapsed(), Duration::from_secs(9));
    assert_eq!(current.load(Ordering::SeqCst), 0, "the attempt had ended");
    let seen = seen.lock().unwrap();
    assert!(seen[0].result.clone().unwrap_err().contains("abandoned"));
}

#[tokio::test(start_paused = true)]
async fn a_successful_run_is_followed_by_its_prune_and_a_failed_one_is_not() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    // Backups at 1, 2, 3, 4 s: the 2nd and 4th fail.
    let op: Op = Arc::new(move |_| {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if n % 2 == 0 {
                Err(anyhow::anyhow!("storage down"))
            } else {
                Ok(done())
            }
        })
    });
    let prunes = Arc::new(AtomicU32::new(0));
    let p = Arc::clone(&prunes);
    let prune: Op = Arc::new(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(done()) })
    });
    let mut backup = job(Some("* * * * * *"), false, settings(60, 0, 0), op);
    backup.then = Some(FollowUp {
        job: "prune",
        op: prune,
    });
    let (rec, seen, starts) = counting_recorder();
    run(
        vec![backup],
        clock(),
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_millis(4500)),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(prunes.load(Ordering::SeqCst), 2);
    let seen = seen.lock().unwrap();
    let jobs: Vec<(&str, bool)> = seen.iter().map(|o| (o.job, o.result.is_ok())).collect();
    assert_eq!(
        jobs,
        [
            ("backup", true),
            ("prune", true),
            ("backup", false),
            ("backup", true),
            ("prune", true),
            ("backup", false),
        ]
    );
    assert!(seen.iter().all(|o| o.target == "acme"));
    assert_eq!(
        starts.load(Ordering::SeqCst),
        6,
        "every run and prune starts once"
    );
}

/// A [`Reporter`] whose start report takes `delay` (a hanging notification
/// receiver), noting when each report happens.
struct SlowStart {
    delay: Duration,
    t0: Instant,
    events: Arc<Mutex<Vec<(&'static str, u64)>>>,
}

impl Reporter for SlowStart {
    fn started(
        &self,
        _job: &'static str,
        _target: &str,
    ) -> futures::future::BoxFuture<'static, ()> {
        let (delay, t0, events) = (self.delay, self.t0, Arc::clone(&self.events));
        Box::pin(async move {
            sleep(delay).await;
            events
                .lock()
                .unwrap()
                .push(("start reported", t0.elapsed().as_secs()));
        })
    }

    fn finished(&self, o: &Outcome) -> futures::future::BoxFuture<'static, ()> {
        self.events
            .lock()
            .unwrap()
            .push(("outcome reported", self.t0.elapsed().as_secs()));
        assert_eq!(o.duration, Duration::from_secs(1), "the run's own duration");
        Box::pin(async {})
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_start_report_runs_alongside_the_run_and_before_its_outcome() {
    let t0 = Instant::now();
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    let op: Op = Arc::new(move |_| {
        let e = Arc::clone(&e);
        Box::pin(async move {
            e.lock().unwrap().push(("attempt", t0.elapsed().as_secs()));
            sleep(Duration::from_secs(1)).await;
            Ok(done())
        })
    });
    let rec: Recorder = Arc::new(SlowStart {
        delay: Duration::from_secs(5),
        t0,
        events: Arc::clone(&events),
    });
    run(
        vec![job(None, true, settings(60, 0, 0), op)],
        clock(),
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_secs(20)),
    )
    .await;
    assert_eq!(
        *events.lock().unwrap(),
        [
            ("attempt", 0),
            ("start reported", 5),
            ("outcome reported", 5)
        ]
    );
}

/// Wall time = [`TokioClock`]'s, plus an offset that a test steps.
struct SteppedClock {
    inner: TokioClock,
    offset_secs: std::sync::atomic::AtomicI64,
}

impl Clock for SteppedClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now() + chrono::Duration::seconds(self.offset_secs.load(Ordering::SeqCst))
    }
}

/// Runs a job every 10 minutes (at :00 seconds) for `minutes` of tokio time,
/// with the wall clock stepped by `step_secs` at 5 s; returns the tokio times
/// of the runs.
async fn runs_around_a_clock_step(step_secs: i64, minutes: u64) -> Vec<Duration> {
    let t0 = Instant::now();
    let clock = Arc::new(SteppedClock {
        inner: TokioClock {
            wall: DateTime::parse_from_rfc3339("2026-01-01T00:00:00.250Z")
                .unwrap()
                .with_timezone(&Utc),
            base: t0,
        },
        offset_secs: std::sync::atomic::AtomicI64::new(0),
    });
    let stepper = Arc::clone(&clock);
    tokio::spawn(async move {
        sleep(Duration::from_secs(5)).await;
        stepper.offset_secs.store(step_secs, Ordering::SeqCst);
    });
    let runs = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&runs);
    let op: Op = Arc::new(move |_| {
        r.lock().unwrap().push(t0.elapsed());
        Box::pin(async { Ok(done()) })
    });
    let (rec, _seen) = recorder();
    run(
        vec![job(Some("0 */10 * * * *"), false, settings(60, 0, 0), op)],
        clock,
        rec,
        Duration::from_secs(30),
        sleep(Duration::from_secs(minutes * 60)),
    )
    .await;
    let runs = runs.lock().unwrap().clone();
    runs
}

#[tokio::test(start_paused = true)]
async fn a_backward_clock_step_never_skips_the_next_occurrence() {
    // The clock read 00:00 but the true time was 22:59:59: corrected at 5 s
    // (NTP after boot). The occurrence 23:00 comes 1 s of true time later;
    // it runs once the step is noticed (within 30 s), rather than the
    // scheduler waiting for 00:10, one hour and ten minutes later.
    let runs = runs_around_a_clock_step(-3606, 15).await;
    assert!(!runs.is_empty(), "no run in 15 minutes");
    assert!(runs[0] <= Duration::from_secs(40), "{runs:?}");
    // Then every 10 minutes of the new time: 23:10 at about 11 min.
    assert_eq!(runs.len(), 2, "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn a_forward_clock_step_runs_once_not_a_burst() {
    // One hour forward: the six occurrences jumped over are one run, then
    // the schedule goes on from the new time.
    let runs = runs_around_a_clock_step(3600, 12).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0] <= Duration::from_secs(40), "{runs:?}");
    assert!(runs[1] >= Duration::from_secs(9 * 60), "{runs:?}");
}
