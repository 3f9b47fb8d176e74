//! Cron schedules as the daemon and `rehost status` read them: parsed by
//! `croner` 2 with exactly the options of config validation (5 fields, or 6
//! with seconds first; day-of-month and day-of-week OR-ed as in Vixie cron),
//! evaluated in the host's local time zone (`TZ`), like cron and supercronic.
//!
//! Why not tokio-cron-scheduler (which SPEC.md names): its 0.15 release parses
//! with croner 3 and `Seconds::Required` (so the 5-field `"* * * * *"` that
//! `rehost check` accepts would be refused) and AND-s day-of-month with
//! day-of-week (so `"0 3 1 * 1"` would mean something else than in cron and in
//! `rehost check`); it also polls the wall clock every 500 ms, which
//! `tokio::time::pause()` cannot drive in tests. The loop here is
//! "next occurrence, then `sleep_until`", on the same parser as validation.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};

/// How many consecutive occurrences [`Schedule::period`] looks at.
const PERIOD_SAMPLES: usize = 32;

/// A parsed cron schedule.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    text: String,
    cron: croner::Cron,
}

/// The one cron parser of rehost: config validation (`rehost check`) and the
/// daemon both call it, so a schedule that validates is one the daemon runs.
/// 5 fields, or 6 with seconds first.
pub(crate) fn parse_cron(text: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::Cron::new(text.trim())
        .with_seconds_optional()
        .parse()
}

impl Schedule {
    /// Parses `text` with [`parse_cron`].
    pub(crate) fn parse(text: &str) -> anyhow::Result<Schedule> {
        let cron = parse_cron(text).map_err(|e| anyhow::anyhow!("cron schedule {text:?}: {e}"))?;
        Ok(Schedule {
            text: text.trim().to_string(),
            cron,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The first occurrence strictly after `t`, if there is one.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&Local), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The longest interval between two consecutive occurrences among the
    /// next [`PERIOD_SAMPLES`] after `from`: for `"0 3 * * 1-5"` that is the
    /// weekend's three days, not one day. `None` if it fires fewer than twice.
    pub(crate) fn period(&self, from: DateTime<Utc>) -> Option<Duration> {
        let mut longest: Option<Duration> = None;
        let mut previous = self.next_after(from)?;
        for _ in 1..PERIOD_SAMPLES {
            let Some(next) = self.next_after(previous) else {
                break;
            };
            let gap = (next - previous).to_std().unwrap_or(Duration::ZERO);
            longest = Some(longest.map_or(gap, |l| l.max(gap)));
            previous = next;
        }
        longest
    }
}

/// Wall-clock time as the scheduler sees it. Production reads the system
/// clock; tests derive it from tokio's (pausable) clock.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Longest single sleep: the wall clock is re-read at least this often, so a
/// clock step (NTP, a resumed VM) is noticed within this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// A wall clock that reads this much less than it should after a sleep was
/// stepped back (tokio's timer may wake a little late, never early).
const STEP_TOLERANCE: Duration = Duration::from_secs(2);

/// Why [`sleep_until_wall`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The wall clock reads `at` or later.
    Due,
    /// The wall clock was stepped back: `at` was computed from a time that
    /// no longer holds (a VM that booted with its clock ahead and was then
    /// corrected by NTP), and waiting for it could skip hours or days of
    /// occurrences. The step happened at `since` or later (new time): the
    /// caller computes the next occurrence again from there, so one that
    /// fell between the step and its detection still runs (late).
    SteppedBack { since: DateTime<Utc> },
}

/// Sleeps until the wall clock `clock` reads `at` or later, or until it is
/// stepped back. A forward step past `at` wakes once: the caller then asks
/// for the next occurrence after the new time, so no burst of the skipped
/// occurrences follows.
pub(crate) async fn sleep_until_wall(clock: &Arc<dyn Clock>, at: DateTime<Utc>) -> Wake {
    loop {
        let before = clock.now();
        let left = match (at - before).to_std() {
            Ok(left) if !left.is_zero() => left,
            _ => return Wake::Due,
        };
        let nap = left.min(MAX_SLEEP);
        let slept_from = tokio::time::Instant::now();
        tokio::time::sleep(nap).await;
        let slept =
            chrono::Duration::from_std(slept_from.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
        let tolerance =
            chrono::Duration::from_std(STEP_TOLERANCE).unwrap_or(chrono::TimeDelta::MAX);
        let now = clock.now();
        if now < before + slept - tolerance {
            return Wake::SteppedBack { since: now - slept };
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_field_schedules_parse_like_validation() {
        let every_2s = Schedule::parse("*/2 * * * * *").unwrap();
        let next = every_2s.next_after(t("2026-01-01T00:00:00.500Z")).unwrap();
        assert_eq!(next, t("2026-01-01T00:00:02Z"));
        assert_eq!(
            every_2s.next_after(next).unwrap(),
            t("2026-01-01T00:00:04Z")
        );
        assert_eq!(
            every_2s.period(t("2026-01-01T00:00:00Z")),
            Some(Duration::from_secs(2))
        );
        let minutely = Schedule::parse(" * * * * * ").unwrap();
        assert_eq!(minutely.as_str(), "* * * * *");
        assert_eq!(
            minutely.next_after(t("2026-01-01T00:00:10Z")).unwrap(),
            t("2026-01-01T00:01:00Z")
        );
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn period_is_the_longest_gap() {
        // Weekdays only: Friday to Monday is three days whatever day it is.
        let weekdays = Schedule::parse("0 3 * * 1-5").unwrap();
        let wednesday = Utc.with_ymd_and_hms(2026, 1, 7, 12, 0, 0).unwrap();
        let period = weekdays.period(wednesday).unwrap();
        assert!(
            period >= Duration::from_secs(3 * 86400 - 3600)
                && period <= Duration::from_secs(3 * 86400 + 3600),
            "{period:?}"
        );
        let six_hourly = Schedule::parse("0 */6 * * *").unwrap();
        assert_eq!(
            six_hourly.period(wednesday),
            Some(Duration::from_secs(6 * 3600))
        );
    }
}
