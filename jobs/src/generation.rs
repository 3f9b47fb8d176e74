//! Generations of a host (litestream's word): every `rehost boot` of a host
//! begins a new one, so that two machines with the same `host:` (a VM rebuilt
//! while the old one still runs) never take each other's state.
//!
//! In the store, under `<host>/.rehost/` (a state entry's name never starts
//! with `.`, so no backup lives there):
//!
//! ```text
//! <host>/.rehost/host.json                  written by `rehost init`: the host is known
//! <host>/.rehost/generations/<id>.json      one per boot, never rewritten
//! ```
//!
//! A generation id is `<sequence>-<8 hex>`: the sequence is one more than the
//! highest the booting machine listed, so a new generation sorts after every
//! generation that machine has seen, whatever its clock says. Two machines
//! booting at the same instant may pick the same sequence; the random part
//! then orders them, and both agree on which is newest. Nothing here needs a
//! conditional write (Garage ignores `If-None-Match`): each machine writes
//! only its own, uniquely named objects, and the order is decided by listing.
//!
//! On the machine, in `state_dir` (written atomically; read without following
//! a symbolic link, since `state_dir` belongs to the unprivileged user):
//!
//! ```text
//! generation-<host>.json         which generation this machine runs
//! restored-<host>-<state>.json   the restore decision made for an entry in it
//! ```
//!
//! Invariants: a machine whose generation is not the newest writes nothing
//! ([`standing`] returns [`Error::Superseded`]); a machine without a
//! generation may write only while the host has none at all (a host that is
//! only backed up from cron keeps working as before).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::{body_from_bytes, get_small, ObjectStore, StoreError};

/// The folder of a host's own records in the store.
pub const CONTROL: &str = ".rehost";
const REGISTRATION: &str = "host.json";
const GENERATIONS: &str = "generations";
/// Records are a few hundred bytes; anything larger is not one of ours.
const MAX_RECORD_BYTES: usize = 64 * 1024;
const SEQUENCE_DIGITS: usize = 8;
const NONCE_DIGITS: usize = 8;

/// `<host>/.rehost/host.json`
pub fn registration_key(host: &str) -> String {
    format!("{host}/{CONTROL}/{REGISTRATION}")
}

/// `<host>/.rehost/generations/`
pub fn generations_prefix(host: &str) -> String {
    format!("{host}/{CONTROL}/{GENERATIONS}/")
}

/// `<host>/.rehost/generations/<id>.json`
pub fn generation_key(host: &str, id: &str) -> String {
    format!("{}{id}.json", generations_prefix(host))
}

/// `<8 digits>-<8 lowercase hex>`.
pub fn is_generation_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == SEQUENCE_DIGITS + 1 + NONCE_DIGITS
        && b[..SEQUENCE_DIGITS].iter().all(u8::is_ascii_digit)
        && b[SEQUENCE_DIGITS] == b'-'
        && b[SEQUENCE_DIGITS + 1..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id a machine that listed `existing` gives its new generation.
fn next_id(existing: &[String]) -> String {
    let last = existing
        .iter()
        .filter_map(|id| id.get(..SEQUENCE_DIGITS)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!(
        "{:0width$}-{}",
        last.saturating_add(1),
        fsutil::random_suffix(),
        width = SEQUENCE_DIGITS
    )
}

/// One generation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub id: String,
    pub host: String,
    /// By the clock of the machine that began it: for people, not for order.
    pub started: DateTime<Utc>,
    /// That machine's host name.
    pub machine: String,
    pub rehost_version: String,
}

/// `rehost init`'s record: the host is expected to exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub host: String,
    pub registered: DateTime<Utc>,
    pub machine: String,
    pub rehost_version: String,
}

/// This machine's host name, for records and messages.
pub fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    // Plain structs of strings and times always serialize.
    Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_default())
}

fn bad_record(key: &str, e: impl std::fmt::Display) -> Error {
    Error::Refused(format!("{key} is not a rehost record: {e}"))
}

/// The ids of every generation of `host`, oldest first.
pub async fn list(store: &dyn ObjectStore, host: &str) -> Result<Vec<String>> {
    let prefix = generations_prefix(host);
    let mut ids: Vec<String> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| {
            let id = o.key.strip_prefix(&prefix)?.strip_suffix(".json")?;
            is_generation_id(id).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    Ok(ids)
}

pub async fn load(store: &dyn ObjectStore, host: &str, id: &str) -> Result<GenerationRecord> {
    let key = generation_key(host, id);
    let bytes = get_small(store, &key, MAX_RECORD_BYTES).await?;
    let record: GenerationRecord =
        serde_json::from_slice(&bytes).map_err(|e| bad_record(&key, e))?;
    if record.id != id || record.host != host {
        return Err(bad_record(&key, "it names another generation or host"));
    }
    Ok(record)
}

/// Begins a new generation of `host`: after it is stored, every machine
/// running an older one is refused its next backup or prune.
pub async fn begin(
    store: &dyn ObjectStore,
    host: &str,
    now: DateTime<Utc>,
) -> Result<GenerationRecord> {
    let existing = list(store, host).await?;
    let record = GenerationRecord {
        id: next_id(&existing),
        host: host.to_string(),
        started: now,
        machine: machine_name(),
        rehost_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    store
        .put(
            &generation_key(host, &record.id),
            body_from_bytes(to_json(&record)),
        )
        .await?;
    Ok(record)
}

pub async fn registration(store: &dyn ObjectStore, host: &str) -> Result<Option<Registration>> {
    let key = registration_key(host);
    match get_small(store, &key, MAX_RECORD_BYTES).await {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).map_err(|e| bad_record(&key, e))?,
        )),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Registers `host` unless it already is; returns the registration and
/// whether this call made it. Idempotent: two machines registering at once
/// write equivalent records.
pub async fn register(
    store: &dyn ObjectStore,
    host: &str,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<(Registration, bool)> {
    if let Some(existing) = registration(store, host).await? {
        return Ok((existing, false));
    }
    let record = Registration {
        host: host.to_string(),
        registered: now,
        machine: machine_name(),
        rehost_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if !dry_run {
        store
            .put(&registration_key(host), body_from_bytes(to_json(&record)))
            .await?;
    }
    Ok((record, true))
}

/// Whether the store knows `host`: registered, or anything stored under it
/// (a backup made before `rehost init` existed counts).
pub async fn is_known(store: &dyn ObjectStore, host: &str) -> Result<bool> {
    Ok(!store.list(&format!("{host}/")).await?.is_empty())
}

/// The hosts the store holds anything for, for the message that a typo in
/// `host:` gets.
pub async fn known_hosts(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let mut hosts: Vec<String> = store
        .list_prefixes("")
        .await?
        .into_iter()
        .filter_map(|p| p.strip_suffix('/').map(str::to_string))
        .collect();
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// Why this machine must not write: the newest generation of the host is not
/// its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superseded {
    pub host: String,
    /// The newest generation, and what its record says (when readable).
    pub newest: String,
    pub newest_record: Option<GenerationRecord>,
    /// This machine's generation (`None`: it never booted one).
    pub mine: Option<String>,
}

impl std::fmt::Display for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "host {} was taken over by generation {}",
            self.host, self.newest
        )?;
        if let Some(r) = &self.newest_record {
            write!(
                f,
                " started at {} on machine {}",
                r.started.to_rfc3339_opts(SecondsFormat::Secs, true),
                r.machine
            )?;
        }
        match &self.mine {
            Some(mine) => write!(f, " (this machine runs generation {mine})"),
            None => write!(
                f,
                " (this machine has no generation: it never ran `rehost boot` with this state_dir)"
            ),
        }
    }
}

/// Where this machine stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Neither this machine nor the host has a generation: today's behaviour.
    NoGenerations,
    /// This machine runs the newest generation.
    Current(String),
}

impl Standing {
    pub fn generation(&self) -> Option<&str> {
        match self {
            Standing::NoGenerations => None,
            Standing::Current(id) => Some(id),
        }
    }
}

/// Whether a machine running generation `mine` may write for `host` now.
pub async fn standing(store: &dyn ObjectStore, host: &str, mine: Option<&str>) -> Result<Standing> {
    let ids = list(store, host).await?;
    let newest = ids.last().map(String::as_str);
    match (mine, newest) {
        (None, None) => Ok(Standing::NoGenerations),
        (Some(m), Some(n)) if m == n => Ok(Standing::Current(m.to_string())),
        (Some(m), _) if !ids.iter().any(|id| id == m) => Err(Error::Refused(format!(
            "this machine's generation {m} of host {host} is not in {}: was the store emptied \
             or `storage.url` changed? `rehost boot` begins a new generation",
            store.url()
        ))),
        (_, Some(n)) => {
            let newest_record = load(store, host, n).await.ok();
            Err(Error::Superseded(Box::new(Superseded {
                host: host.to_string(),
                newest: n.to_string(),
                newest_record,
                mine: mine.map(str::to_string),
            })))
        }
        // `mine` is in `ids`, so there is a newest.
        (Some(_), None) => Ok(Standing::NoGenerations),
    }
}

/// What this machine knows of its generation (`state_dir/generation-<host>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRecord {
    pub host: String,
    /// The store it was begun in (`storage.url`): a record for another store
    /// is not this configuration's.
    pub store: String,
    /// `None` while boot could not reach the store: the first backup begins
    /// the generation then.
    pub generation: Option<String>,
    pub started: DateTime<Utc>,
}

fn local_path(state_dir: &Path, host: &str) -> PathBuf {
    state_dir.join(format!("generation-{host}.json"))
}

/// Reads a small file without following a symbolic link at its name.
fn read_record<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    let file = match File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Error::Refused(format!(
            "{} is larger than a rehost record",
            path.display()
        )));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Refused(format!("{} is damaged: {e}", path.display())))
}

fn write_record<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    fsutil::write_atomic(path, &to_json(value), 0o644)
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// This machine's record for `host` in `store_url`, if it has one.
pub fn read_local(state_dir: &Path, host: &str, store_url: &str) -> Result<Option<LocalRecord>> {
    let path = local_path(state_dir, host);
    let record: Option<LocalRecord> = read_record(&path)?;
    Ok(record.filter(|r| {
        let ours = r.host == host && r.store == store_url;
        if !ours {
            tracing::warn!(path = %path.display(), store = %r.store, "the generation record is for another store; ignored");
        }
        ours
    }))
}

pub fn write_local(state_dir: &Path, record: &LocalRecord) -> Result<()> {
    write_record(&local_path(state_dir, &record.host), record)
}

/// The restore decision made for a state entry in a generation: until there
/// is one, the entry is not backed up (an empty state would become the
/// newest backup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub state: String,
    /// The generation it was made in (`None`: boot could not reach the store
    /// and the daemon decided before beginning one — never stored as such).
    pub generation: Option<String>,
    pub decided: DateTime<Utc>,
    /// What was decided, for people: "restored <id>", "no backup", …
    pub outcome: String,
}

fn decision_path(state_dir: &Path, host: &str, state: &str) -> PathBuf {
    state_dir.join(format!("restored-{host}-{state}.json"))
}

/// The decision for `state` in `generation`, if one was made.
pub fn read_decision(
    state_dir: &Path,
    host: &str,
    state: &str,
    generation: &str,
) -> Result<Option<Decision>> {
    let d: Option<Decision> = read_record(&decision_path(state_dir, host, state))?;
    Ok(d.filter(|d| d.state == state && d.generation.as_deref() == Some(generation)))
}

pub fn write_decision(state_dir: &Path, host: &str, decision: &Decision) -> Result<()> {
    write_record(&decision_path(state_dir, host, &decision.state), decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FsStore;

    #[test]
    fn ids_order_by_sequence_then_nonce() {
        assert!(is_generation_id("00000001-0a1b2c3d"));
        for bad in [
            "00000001-0A1B2C3D",
            "0000001-0a1b2c3d",
            "00000001_0a1b2c3d",
            "x",
        ] {
            assert!(!is_generation_id(bad), "{bad}");
        }
        let next = next_id(&["00000002-ffffffff".into(), "00000009-00000000".into()]);
        assert!(next.starts_with("00000010-"), "{next}");
        assert!(is_generation_id(&next));
        assert!(next_id(&[]).starts_with("00000001-"));
        // A clock does not enter it: a later boot always sorts after.
        assert!("00000010-00000000" > "00000009-ffffffff");
    }

    #[tokio::test]
    async fn a_newer_generation_supersedes_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().to_path_buf());
        let now = Utc::now();
        assert_eq!(
            standing(&store, "h", None).await.unwrap(),
            Standing::NoGenerations
        );
        let old = begin(&store, "h", now).await.unwrap();
        assert_eq!(
            standing(&store, "h", Some(&old.id)).await.unwrap(),
            Standing::Current(old.id.clone())
        );
        // A cron-only machine may no longer write once the host has one.
        assert!(standing(&store, "h", None)
            .await
            .unwrap_err()
            .is_superseded());
        // The next boot's clock is an hour behind: it still takes over.
        let new = begin(&store, "h", now - chrono::Duration::hours(1))
            .await
            .unwrap();
        assert!(new.id > old.id);
        let err = standing(&store, "h", Some(&old.id)).await.unwrap_err();
        assert!(err.is_superseded());
        let text = err.to_string();
        assert!(
            text.contains(&format!("taken over by generation {}", new.id))
                && text.contains("on machine")
                && text.ends_with("nothing written"),
            "{text}"
        );
        assert_eq!(load(&store, "h", &new.id).await.unwrap(), new);
        // A generation the store does not know is refused, not superseded.
        let err = standing(&store, "h", Some("00000099-00000000"))
            .await
            .unwrap_err();
        assert!(!err.is_superseded() && err.to_string().contains("not in"));
        // Other hosts are other lineages.
        assert_eq!(
            standing(&store, "other", None).await.unwrap(),
            Standing::NoGenerations
        );
    }

    #[tokio::test]
    async fn registration_is_idempotent_and_hosts_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().to_path_buf());
        assert!(!is_known(&store, "web-1").await.unwrap());
        let (_, new) = register(&store, "web-1", Utc::now(), true).await.unwrap();
        assert!(new);
        assert!(!is_known(&store, "web-1").await.unwrap(), "dry run wrote");
        let (first, new) = register(&store, "web-1", Utc::now(), false).await.unwrap();
        assert!(new);
        let (again, new) = register(&store, "web-1", Utc::now(), false).await.unwrap();
        assert!(!new);
        assert_eq!(first, again);
        assert!(is_known(&store, "web-1").await.unwrap());
        begin(&store, "db-1", Utc::now()).await.unwrap();
        assert_eq!(known_hosts(&store).await.unwrap(), ["db-1", "web-1"]);
    }

    #[test]
    fn local_records_are_per_host_and_store_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LocalRecord {
            host: "h".into(),
            store: "s3://b/p".into(),
            generation: Some("00000001-00000000".into()),
            started: Utc::now(),
        };
        write_local(dir.path(), &rec).unwrap();
        assert_eq!(
            read_local(dir.path(), "h", "s3://b/p").unwrap(),
            Some(rec.clone())
        );
        assert_eq!(read_local(dir.path(), "h", "s3://b/other").unwrap(), None);
        assert_eq!(read_local(dir.path(), "g", "s3://b/p").unwrap(), None);

        let d = Decision {
            state: "acme".into(),
            generation: rec.generation.clone(),
            decided: Utc::now(),
            outcome: "no backup".into(),
        };
        write_decision(dir.path(), "h", &d).unwrap();
        assert_eq!(
            read_decision(dir.path(), "h", "acme", "00000001-00000000").unwrap(),
            Some(d)
        );
        assert_eq!(
            read_decision(dir.path(), "h", "acme", "00000002-00000000").unwrap(),
            None,
            "a decision of another generation does not count"
        );

        // A symbolic link planted at a record's name is not read through.
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, serde_json::to_vec(&rec).unwrap()).unwrap();
        let planted = dir.path().join("generation-x.json");
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
        assert!(read_local(dir.path(), "x", "s3://b/p").is_err());
    }
}
