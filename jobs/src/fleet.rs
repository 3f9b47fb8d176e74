//! A read-only view of every host under a store's prefix (`rehost fleet`):
//! per host and state entry, the newest complete backup, how many there are,
//! and when a backup of it was last verified.
//!
//! What it costs (the store is all it reads; no local state):
//!
//! - one delimiter listing of the prefix for the host names
//!   (⌈hosts / 1,000⌉ requests);
//! - one listing per host, `<host>/` (⌈objects of the host / 1,000⌉
//!   requests, one for most hosts), at most [`CONCURRENCY`] at once; only
//!   one host's listing is in memory at a time per slot, so memory does not
//!   grow with the size of the fleet;
//! - one GET per state entry: the manifest of its newest complete backup (a
//!   few KiB; for its size, file count and generation). Older manifests are
//!   never read, so the cost grows with hosts × entries, not with the number
//!   of backups kept (beyond the listing pages).
//!
//! Times come from the store's own clock where it gives one (`LastModified`
//! of the manifest and of `verified.json`): a host whose clock is wrong, or
//! that is gone, cannot make its backups look newer than they are.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::catalog;
use crate::error::Result;
use crate::generation;
use crate::layout::{self, BackupRef};
use crate::store::{ObjectInfo, ObjectStore};

/// Hosts listed at once.
pub const CONCURRENCY: usize = 8;

/// Metric names of `rehost fleet --metrics` that the shipped alert rules use.
pub const LAST_BACKUP: &str = "rehost_fleet_backup_last_timestamp_seconds";
pub const MAX_AGE: &str = "rehost_fleet_backup_max_age_seconds";
pub const SCAN_TIMESTAMP: &str = "rehost_fleet_scan_timestamp_seconds";

/// One host under the prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct HostView {
    pub host: String,
    /// `rehost init` registered it (`<host>/.rehost/host.json`).
    pub registered: bool,
    /// Its newest generation (`rehost boot`s of the host), if any.
    pub generation: Option<String>,
    pub generations: usize,
    /// State entries with at least one object, by name.
    pub entries: Vec<EntryView>,
    /// Objects listed under `<host>/`.
    pub objects: usize,
}

/// One state entry of a host.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryView {
    pub name: String,
    /// Complete backups (with a manifest).
    pub backups: usize,
    /// Backups without a manifest: interrupted, or being written now.
    pub incomplete: usize,
    /// When a `verify` last succeeded on any of its backups (store's clock).
    pub last_verified: Option<DateTime<Utc>>,
    pub newest: Option<Newest>,
    /// The newest backup's manifest could not be read: why.
    pub problem: Option<String>,
}

/// The newest complete backup of an entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Newest {
    pub id: String,
    /// When the backup was made, by the clock of the machine that made it
    /// (the manifest's, else the id's).
    pub created: DateTime<Utc>,
    /// When the store received its manifest (the store's clock), if the
    /// store says.
    pub stored: Option<DateTime<Utc>>,
    /// Bytes a restore downloads (0 when the manifest could not be read).
    pub size_bytes: u64,
    pub files: u64,
    /// The generation of the host that made it.
    pub generation: Option<String>,
    /// When a `verify` succeeded on it (store's clock), if one did.
    pub verified: Option<DateTime<Utc>>,
    pub encrypted: bool,
}

impl Newest {
    /// The time its age counts from: the store's clock where known.
    pub fn time(&self) -> DateTime<Utc> {
        self.stored.unwrap_or(self.created)
    }
}

/// The whole view, hosts sorted by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    pub hosts: Vec<HostView>,
    /// Objects listed in all (the listing requests are about this / 1,000,
    /// plus one per host).
    pub objects: usize,
    /// Manifests read (one per entry with a complete backup).
    pub manifests: usize,
}

/// Scans every host under the store's prefix, or only `only` when it is not
/// empty (hosts named there but absent are returned with no entries, so that
/// a host that never backed up shows).
pub async fn scan(store: &dyn ObjectStore, only: &[String]) -> Result<Fleet> {
    let hosts = if only.is_empty() {
        generation::known_hosts(store).await?
    } else {
        let mut named = only.to_vec();
        named.sort();
        named.dedup();
        named
    };
    let hosts: Vec<HostView> = futures::stream::iter(hosts)
        .map(|host| scan_host(store, host))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let hosts: Vec<HostView> = hosts
        .into_iter()
        // A folder that holds nothing rehost wrote (another tool's files under
        // the same prefix) is not a host — unless it was asked for by name.
        .filter(|h| !only.is_empty() || h.registered || !h.entries.is_empty())
        .collect();
    Ok(Fleet {
        objects: hosts.iter().map(|h| h.objects).sum(),
        manifests: hosts
            .iter()
            .flat_map(|h| &h.entries)
            .filter(|e| e.newest.is_some())
            .count(),
        hosts,
    })
}

/// One host: one listing, then the newest manifest of each entry.
async fn scan_host(store: &dyn ObjectStore, host: String) -> Result<HostView> {
    let listing = store.list(&format!("{host}/")).await?;
    let mut view = summarize(&host, &listing);
    for entry in &mut view.entries {
        let Some(newest) = &mut entry.newest else {
            continue;
        };
        match catalog::load_manifest(store, &host, &entry.name, &newest.id).await {
            Ok(m) => {
                newest.created = m.created;
                newest.size_bytes = m.total_size();
                newest.files = m.total_files();
                newest.generation = m.generation.clone();
                newest.encrypted = m.encryption.is_some();
            }
            Err(e) if e.is_storage_unavailable() => return Err(e),
            // A broken manifest is this entry's problem, not the fleet's:
            // the other hosts are still shown.
            Err(e) => entry.problem = Some(e.to_string()),
        }
    }
    Ok(view)
}

/// What one host's listing (`<host>/…`, sorted) says, before any manifest
/// is read: pure, so that it is tested without a store.
pub fn summarize(host: &str, listing: &[ObjectInfo]) -> HostView {
    let prefix = format!("{host}/");
    let registration = generation::registration_key(host);
    let generations_prefix = generation::generations_prefix(host);
    let mut generations: Vec<&str> = Vec::new();
    let mut registered = false;
    // The listing is sorted, so each entry's keys are contiguous.
    let mut entries: Vec<(String, Vec<ObjectInfo>)> = Vec::new();
    for obj in listing {
        if obj.key == registration {
            registered = true;
            continue;
        }
        if let Some(rest) = obj.key.strip_prefix(&generations_prefix) {
            if let Some(id) = rest.strip_suffix(".json") {
                if generation::is_generation_id(id) {
                    generations.push(id);
                }
            }
            continue;
        }
        let Some((name, _)) = obj
            .key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        // `.rehost/` and anything else hidden is not a state entry.
        if name.starts_with('.') || name.is_empty() {
            continue;
        }
        match entries.last_mut() {
            Some((last, objs)) if last == name => objs.push(obj.clone()),
            _ => entries.push((name.to_string(), vec![obj.clone()])),
        }
    }
    generations.sort_unstable();
    HostView {
        host: host.to_string(),
        registered,
        generation: generations.last().map(|g| g.to_string()),
        generations: generations.len(),
        entries: entries
            .into_iter()
            .filter_map(|(name, objs)| entry(host, name, &objs))
            .collect(),
        objects: listing.len(),
    }
}

/// An entry's backups; `None` when its folder holds no backup at all (only
/// shared blocks, say).
fn entry(host: &str, name: String, objs: &[ObjectInfo]) -> Option<EntryView> {
    let prefix = layout::state_prefix(host, &name);
    let backups = layout::group(&prefix, objs);
    if backups.is_empty() {
        return None;
    }
    let verified_at = |b: &BackupRef| {
        let key = layout::object_key(host, &name, &b.id, layout::VERIFIED);
        b.objects
            .iter()
            .find(|o| o.key == key)
            .map(|o| o.modified.unwrap_or(b.time))
    };
    let newest = catalog::select(&backups, &catalog::Selector::Latest).map(|b| {
        let manifest = layout::object_key(host, &name, &b.id, layout::MANIFEST);
        Newest {
            id: b.id.clone(),
            created: b.time,
            stored: b
                .objects
                .iter()
                .find(|o| o.key == manifest)
                .and_then(|o| o.modified),
            size_bytes: 0,
            files: 0,
            generation: b.generation().map(str::to_string),
            verified: verified_at(b),
            encrypted: false,
        }
    });
    Some(EntryView {
        backups: backups.iter().filter(|b| b.complete).count(),
        incomplete: backups.iter().filter(|b| !b.complete).count(),
        last_verified: backups.iter().filter_map(verified_at).max(),
        newest,
        problem: None,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn obj(key: &str, modified: Option<&str>) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            etag: None,
            modified: modified.map(at),
        }
    }

    #[test]
    fn a_host_listing_gives_each_entry_its_newest_complete_backup() {
        let g = "g00000002-0a0b0c0d-00000007-20261123T101500.000Z";
        let mut listing = vec![
            obj("web/.rehost/generations/00000001-aaaaaaaa.json", None),
            obj("web/.rehost/generations/00000002-0a0b0c0d.json", None),
            obj("web/.rehost/host.json", None),
            obj("web/acme/20261120T000000.000Z-00000001/data.tar.gz", None),
            obj(
                "web/acme/20261120T000000.000Z-00000001/manifest.json",
                Some("2026-11-20T00:00:01Z"),
            ),
            obj(
                "web/acme/20261120T000000.000Z-00000001/verified.json",
                Some("2026-11-21T00:00:00Z"),
            ),
            obj(&format!("web/acme/{g}/data.tar.gz"), None),
            obj(
                &format!("web/acme/{g}/manifest.json"),
                Some("2026-11-23T10:15:02Z"),
            ),
            // Interrupted: newer, but without a manifest.
            obj(
                "web/acme/g00000002-0a0b0c0d-00000008-20261123T111500.000Z/data.tar.gz",
                None,
            ),
            // Only blocks, no backup yet: not an entry.
            obj("web/prom/blocks/01HZZZZZZZZZZZZZZZZZZZZZZZ.tar.gz", None),
        ];
        listing.sort_by(|a, b| a.key.cmp(&b.key));
        let v = summarize("web", &listing);
        assert!(v.registered);
        assert_eq!(v.generation.as_deref(), Some("00000002-0a0b0c0d"));
        assert_eq!(v.generations, 2);
        assert_eq!(v.objects, listing.len());
        assert_eq!(v.entries.len(), 1, "{:?}", v.entries);
        let e = &v.entries[0];
        assert_eq!((e.name.as_str(), e.backups, e.incomplete), ("acme", 2, 1));
        assert_eq!(e.last_verified, Some(at("2026-11-21T00:00:00Z")));
        let n = e.newest.as_ref().unwrap();
        assert_eq!(n.id, g);
        assert_eq!(n.generation.as_deref(), Some("00000002-0a0b0c0d"));
        assert_eq!(n.created, at("2026-11-23T10:15:00Z"));
        assert_eq!(n.stored, Some(at("2026-11-23T10:15:02Z")));
        assert_eq!(n.time(), at("2026-11-23T10:15:02Z"));
        assert_eq!(n.verified, None);
    }

    #[test]
    fn an_entry_with_only_incomplete_backups_has_no_newest() {
        let listing = vec![obj(
            "h/data/20261120T000000.000Z-00000001/data.tar.gz",
            None,
        )];
        let v = summarize("h", &listing);
        assert!(!v.registered);
        assert_eq!(v.generation, None);
        let e = &v.entries[0];
        assert_eq!((e.backups, e.incomplete), (0, 1));
        assert!(e.newest.is_none());
    }

    #[test]
    fn keys_of_another_host_with_a_longer_name_are_not_taken() {
        // `web/` must not match `web2/…` (the listing is of `web/`, but the
        // grouping must not rely on it).
        let listing = vec![obj(
            "web2/data/20261120T000000.000Z-00000001/manifest.json",
            None,
        )];
        assert!(summarize("web", &listing).entries.is_empty());
    }
}
