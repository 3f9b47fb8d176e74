//! Retention: which backups to keep. [`plan`] is pure (backups, policy, now) so
//! every rule is unit-tested without storage; [`prune`] applies it, deleting
//! each backup's manifest first so that a half-deleted backup is never listed
//! as complete.
//!
//! Always kept, whatever the policy: the newest complete backup, the newest
//! verified backup, and incomplete backups younger than [`INCOMPLETE_GRACE`]
//! (probably an upload in progress).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::catalog;
use crate::error::Result;
use crate::layout::{self, BackupRef};
use crate::store::ObjectStore;

/// Incomplete backups older than this are leftovers of failed runs.
pub const INCOMPLETE_GRACE: Duration = Duration::hours(24);

/// `keep:` of a state entry. Counts follow restic's `forget` semantics: `daily: 7`
/// keeps the newest backup of each of the 7 most recent days that have one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Kept backup ids with the rules that keep them.
    pub keep: Vec<(String, Vec<&'static str>)>,
    /// Ids to delete, oldest first.
    pub delete: Vec<String>,
}

/// Maps a time to its hour/day/week/month/year bucket.
type BucketFn = fn(&DateTime<Utc>) -> (i32, u32, u32);

pub fn plan(backups: &[BackupRef], policy: &KeepPolicy, now: DateTime<Utc>) -> Plan {
    let mut reasons: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let mut keep = |id: &str, why: &'static str| {
        let entry = reasons.entry(id.to_string()).or_default();
        if !entry.contains(&why) {
            entry.push(why);
        }
    };
    // Newest first, complete only: the buckets below count backups, not leftovers.
    let complete: Vec<&BackupRef> = backups.iter().rev().filter(|b| b.complete).collect();
    if let Some(b) = complete.first() {
        keep(&b.id, "newest");
    }
    if let Some(b) = complete.iter().find(|b| b.verified) {
        keep(&b.id, "newest verified");
    }
    for b in complete.iter().take(policy.last as usize) {
        keep(&b.id, "last");
    }
    let buckets: [(u32, &'static str, BucketFn); 5] = [
        (policy.hourly, "hourly", |t| {
            (t.year(), t.ordinal(), t.hour())
        }),
        (policy.daily, "daily", |t| (t.year(), t.ordinal(), 0)),
        (policy.weekly, "weekly", |t| {
            let w = t.iso_week();
            (w.year(), w.week(), 0)
        }),
        (policy.monthly, "monthly", |t| (t.year(), t.month(), 0)),
        (policy.yearly, "yearly", |t| (t.year(), 0, 0)),
    ];
    for (count, why, bucket_of) in buckets {
        let mut seen = HashSet::new();
        for b in &complete {
            if seen.len() >= count as usize {
                break;
            }
            if seen.insert(bucket_of(&b.time)) {
                keep(&b.id, why);
            }
        }
    }
    for b in backups.iter().filter(|b| !b.complete) {
        if now - b.time < INCOMPLETE_GRACE {
            keep(&b.id, "in progress");
        }
    }
    let delete = backups
        .iter()
        .filter(|b| !reasons.contains_key(&b.id))
        .map(|b| b.id.clone())
        .collect();
    Plan {
        keep: reasons.into_iter().collect(),
        delete,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneReport {
    pub plan: Plan,
    /// Bytes freed (or that would be freed with `dry_run`).
    pub freed: u64,
}

/// Applies `policy` to the backups of `state`.
pub async fn prune(
    store: &dyn ObjectStore,
    host: &str,
    state: &str,
    policy: &KeepPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport> {
    let backups = catalog::list(store, host, state).await?;
    let plan = plan(&backups, policy, now);
    let mut freed = 0;
    for id in &plan.delete {
        let Some(b) = backups.iter().find(|b| &b.id == id) else {
            continue;
        };
        freed += b.size();
        if dry_run {
            continue;
        }
        // Manifest first: from here on the backup no longer exists for anyone.
        let manifest = layout::object_key(host, state, id, layout::MANIFEST);
        if b.complete {
            store.delete(&manifest).await?;
        }
        for obj in b.objects.iter().filter(|o| o.key != manifest) {
            store.delete(&obj.key).await?;
        }
        tracing::info!(state, backup = %id, "deleted backup");
    }
    Ok(PruneReport { plan, freed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn backup(time: &str, complete: bool, verified: bool) -> BackupRef {
        let t = at(time);
        BackupRef {
            id: format!("{}-x", t.format("%Y%m%dT%H%M%SZ")),
            time: t,
            complete,
            verified,
            objects: vec![],
        }
    }

    fn kept(p: &Plan) -> Vec<String> {
        p.keep.iter().map(|(id, _)| id[..15].to_string()).collect()
    }

    #[test]
    fn last_n_keeps_the_newest() {
        let b: Vec<_> = (1..=5)
            .map(|d| backup(&format!("2026-11-0{d}T10:00:00Z"), true, false))
            .collect();
        let p = plan(
            &b,
            &KeepPolicy {
                last: 2,
                ..Default::default()
            },
            at("2026-11-10T00:00:00Z"),
        );
        assert_eq!(kept(&p), ["20261104T100000", "20261105T100000"]);
        assert_eq!(p.delete.len(), 3);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let b = vec![
            backup("2026-11-01T01:00:00Z", true, false),
            backup("2026-11-01T23:00:00Z", true, false),
            backup("2026-11-02T01:00:00Z", true, false),
            backup("2026-11-02T02:00:00Z", true, false),
            backup("2026-11-03T05:00:00Z", true, false),
        ];
        let p = plan(
            &b,
            &KeepPolicy {
                daily: 2,
                ..Default::default()
            },
            at("2026-11-04T00:00:00Z"),
        );
        assert_eq!(kept(&p), ["20261102T020000", "20261103T050000"]);
        let p = plan(
            &b,
            &KeepPolicy {
                daily: 10,
                ..Default::default()
            },
            at("2026-11-04T00:00:00Z"),
        );
        assert_eq!(
            kept(&p),
            ["20261101T230000", "20261102T020000", "20261103T050000"]
        );
    }

    #[test]
    fn weekly_and_monthly_buckets() {
        let b = vec![
            backup("2026-09-15T00:00:00Z", true, false),
            backup("2026-10-05T00:00:00Z", true, false), // ISO week 41
            backup("2026-10-06T00:00:00Z", true, false), // week 41
            backup("2026-10-20T00:00:00Z", true, false), // week 43
            backup("2026-11-02T00:00:00Z", true, false), // week 45
        ];
        let now = at("2026-11-03T00:00:00Z");
        let p = plan(
            &b,
            &KeepPolicy {
                weekly: 3,
                ..Default::default()
            },
            now,
        );
        assert_eq!(
            kept(&p),
            ["20261006T000000", "20261020T000000", "20261102T000000"]
        );
        let p = plan(
            &b,
            &KeepPolicy {
                monthly: 3,
                ..Default::default()
            },
            now,
        );
        assert_eq!(
            kept(&p),
            ["20260915T000000", "20261020T000000", "20261102T000000"]
        );
    }

    #[test]
    fn newest_verified_and_in_progress_are_never_deleted() {
        let b = vec![
            backup("2026-11-01T00:00:00Z", true, true),
            backup("2026-11-02T00:00:00Z", true, false),
            backup("2026-11-03T00:00:00Z", true, false),
            backup("2026-11-03T12:00:00Z", false, false), // leftover, old
            backup("2026-11-04T23:00:00Z", false, false), // in progress
        ];
        let p = plan(
            &b,
            &KeepPolicy {
                last: 1,
                ..Default::default()
            },
            at("2026-11-05T00:00:00Z"),
        );
        assert_eq!(
            kept(&p),
            ["20261101T000000", "20261103T000000", "20261104T230000"]
        );
        assert_eq!(p.delete.len(), 2);
        assert!(p.delete.iter().any(|id| id.starts_with("20261103T120000")));
        let why = &p
            .keep
            .iter()
            .find(|(id, _)| id.starts_with("20261101"))
            .unwrap()
            .1;
        assert_eq!(why, &vec!["newest verified"]);
    }

    #[test]
    fn an_empty_policy_still_keeps_the_newest() {
        let b = vec![
            backup("2026-11-01T00:00:00Z", true, false),
            backup("2026-11-02T00:00:00Z", true, false),
        ];
        let p = plan(&b, &KeepPolicy::default(), at("2026-11-05T00:00:00Z"));
        assert_eq!(kept(&p), ["20261102T000000"]);
    }
}
