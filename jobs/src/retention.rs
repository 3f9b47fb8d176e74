//! Retention: which backups to keep. [`plan`] is pure (backups, policy, now) so
//! every rule is unit-tested without storage; [`prune`] applies it, deleting
//! each backup's manifest first so that a half-deleted backup is never listed
//! as complete.
//!
//! Always kept, whatever the policy: the newest complete backup, the newest
//! verified backup, and incomplete backups younger than [`INCOMPLETE_GRACE`]
//! (probably an upload in progress).
//!
//! Shared Prometheus block objects (`<state>/blocks/`) are deleted only when no
//! kept backup's manifest lists them, and not at all while a backup may be in
//! progress (an incomplete backup younger than [`INCOMPLETE_GRACE`]: a backup
//! uploads its data object before it decides which stored blocks to reuse) or
//! while a kept manifest cannot be read. On the host itself, prune and backup
//! of a Prometheus entry also exclude each other through the state's lock.
//!
//! Across machines (a generation that took over while the old machine's
//! backup was still running) no lock helps, so deletion is two-step: a block
//! that no kept manifest references is first *marked*
//! (`<state>/unreferenced/<block>.since-<unix time>`), and deleted by a later
//! prune only when the mark is at least [`BLOCK_GRACE`] old and the block is
//! still unreferenced by every complete manifest of every generation. A backup
//! reuses only blocks that a complete manifest listed when it looked, and
//! writes its manifest within [`crate::prometheus::MAX_REUSE_AGE`] (half the
//! grace) of looking, or not at all: so the prune that deletes sees that
//! manifest. A block referenced again loses its mark. This assumes the
//! machines' clocks agree to within hours (`After=time-sync.target`).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::error::Result;
use crate::layout::{self, BackupRef};
use crate::prometheus;
use crate::store::ObjectStore;

const IN_PROGRESS: &str = "in progress";

/// Incomplete backups older than this are leftovers of failed runs.
pub const INCOMPLETE_GRACE: Duration = Duration::hours(24);

/// How long a block stays unreferenced (marked) before it may be deleted.
pub const BLOCK_GRACE: Duration = Duration::hours(24);
const UNREFERENCED: &str = "unreferenced";
const SINCE: &str = ".since-";

/// `<host>/<state>/unreferenced/<block name>.since-<unix seconds>`
fn mark_key(host: &str, state: &str, block: &str, since: DateTime<Utc>) -> String {
    format!(
        "{host}/{state}/{UNREFERENCED}/{block}{SINCE}{}",
        since.timestamp()
    )
}

/// The marks in a listing of `prefix`: block name → (mark key, since).
fn marks<'a>(
    prefix: &str,
    listing: &'a [crate::store::ObjectInfo],
) -> HashMap<&'a str, Vec<(&'a str, DateTime<Utc>)>> {
    let mut out: HashMap<&str, Vec<(&str, DateTime<Utc>)>> = HashMap::new();
    for o in listing {
        let Some(rest) = o
            .key
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(UNREFERENCED))
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let Some((block, since)) = rest.rsplit_once(SINCE) else {
            continue;
        };
        let Some(since) = since
            .parse::<i64>()
            .ok()
            .and_then(|t| DateTime::from_timestamp(t, 0))
        else {
            continue;
        };
        out.entry(block).or_default().push((o.key.as_str(), since));
    }
    out
}

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
            keep(&b.id, IN_PROGRESS);
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
    /// Shared block objects deleted (or that would be), by object name.
    pub blocks_deleted: Vec<String>,
    /// Blocks found unreferenced and marked now: deleted by a prune at least
    /// [`BLOCK_GRACE`] later if still unreferenced then.
    pub blocks_marked: Vec<String>,
    /// Marked blocks whose grace period is not over yet.
    pub blocks_waiting: Vec<String>,
    /// Why unreferenced blocks were left in place this time, if they were.
    pub blocks_kept: Option<String>,
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
    let prefix = layout::state_prefix(host, state);
    let listing = store.list(&prefix).await?;
    let backups = layout::group(&prefix, &listing);
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

    let stored = prometheus::stored_blocks(&prefix, &listing);
    let marked = marks(&prefix, &listing);
    let mut blocks_deleted = Vec::new();
    let mut blocks_marked = Vec::new();
    let mut blocks_waiting = Vec::new();
    let mut blocks_kept = None;
    if !stored.is_empty() || !marked.is_empty() {
        let in_progress = plan.keep.iter().any(|(_, why)| why.contains(&IN_PROGRESS));
        let kept: Vec<BackupRef> = backups
            .iter()
            .filter(|b| b.complete && !plan.delete.contains(&b.id))
            .cloned()
            .collect();
        let referenced = if in_progress {
            None
        } else {
            let manifests = prometheus::complete_manifests(store, host, state, &kept).await?;
            prometheus::referenced(&manifests)
        };
        match referenced {
            None => {
                let why = if in_progress {
                    "a backup may be in progress"
                } else {
                    "a kept backup's manifest is unreadable"
                };
                tracing::info!(state, "unreferenced blocks are kept: {why}");
                blocks_kept = Some(why.to_string());
            }
            Some(referenced) => {
                let mut names: Vec<(&str, u64)> = stored.iter().map(|(n, s)| (*n, *s)).collect();
                names.sort();
                for (name, size) in names {
                    let its_marks = marked.get(name).map(Vec::as_slice).unwrap_or_default();
                    if referenced.contains(name) {
                        // Referenced again (or still): the mark no longer holds.
                        if !dry_run {
                            for (key, _) in its_marks {
                                store.delete(key).await?;
                            }
                        }
                        continue;
                    }
                    let oldest = its_marks.iter().map(|(_, since)| *since).min();
                    match oldest {
                        None => {
                            if !dry_run {
                                let key = mark_key(host, state, name, now);
                                let body = format!("{{\"since\": \"{}\"}}\n", now.to_rfc3339());
                                store
                                    .put(&key, crate::store::body_from_bytes(body.into()))
                                    .await?;
                                tracing::info!(state, block = %name, "block no longer referenced: marked, deleted after the grace period");
                            }
                            blocks_marked.push(name.to_string());
                        }
                        Some(since) if now - since >= BLOCK_GRACE => {
                            if !dry_run {
                                store.delete(&layout::block_key(host, state, name)).await?;
                                for (key, _) in its_marks {
                                    store.delete(key).await?;
                                }
                                tracing::info!(state, block = %name, "deleted unreferenced block");
                            }
                            freed += size;
                            blocks_deleted.push(name.to_string());
                        }
                        Some(_) => blocks_waiting.push(name.to_string()),
                    }
                }
                // Marks of blocks that are gone (deleted, or by hand).
                if !dry_run {
                    for (name, its_marks) in &marked {
                        if !stored.contains_key(name) {
                            for (key, _) in its_marks {
                                store.delete(key).await?;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(PruneReport {
        plan,
        freed,
        blocks_deleted,
        blocks_marked,
        blocks_waiting,
        blocks_kept,
    })
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
