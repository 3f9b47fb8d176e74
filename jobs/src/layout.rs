//! Where things live in the store:
//!
//! ```text
//! <host>/<state>/<backup-id>/data.tar.gz
//! <host>/<state>/<backup-id>/manifest.json   written last: no manifest, no backup
//! <host>/<state>/<backup-id>/verified.json   written by a successful `verify`
//! <host>/<state>/blocks/<ULID>.tar.gz         a Prometheus block, shared by the
//!                                             backups whose manifest lists it
//! ```
//!
//! With `storage.encryption`, the data object is `data.tar.gz.age` and a block
//! is `blocks/<ULID>.<recipients>.tar.gz.age`, `<recipients>` being the first
//! 16 hex digits of the recipient set's digest: a block is shared only by
//! backups encrypted to the same keys.
//!
//! A backup id made by a machine that runs a generation of the host (see
//! [`crate::generation`]) is `g<generation>-<sequence>-<time>`, e.g.
//! `g00000003-1a2b3c4d-00000042-20261123T101500.000Z`: ids sort by generation
//! first, then by the generation's own sequence of backups of that entry, and
//! the wall clock (a VM can boot with its clock ahead) decides nothing. A
//! backup of a host without generations (only `rehost backup`, never `boot`)
//! has the older id `YYYYMMDDTHHMMSS.mmmZ-<8 hex>`, which sorts by time and
//! before every generation's ids (`2…` < `g…`).

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::store::ObjectInfo;

pub const DATA: &str = "data.tar.gz";
/// The data object of an encrypted backup.
pub const DATA_AGE: &str = "data.tar.gz.age";
pub const MANIFEST: &str = "manifest.json";
pub const VERIFIED: &str = "verified.json";
/// The folder of shared block objects; never a backup id.
pub const BLOCKS: &str = "blocks";
const BLOCK_SUFFIX: &str = ".tar.gz";
const BLOCK_SUFFIX_AGE: &str = ".tar.gz.age";
/// Hex digits of the recipient digest in an encrypted block's name.
const BLOCK_RECIPIENTS: usize = 16;
const ID_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";
/// Ids without milliseconds are accepted too (hand-made or older ones).
const ID_TIME_SECONDS: &str = "%Y%m%dT%H%M%SZ";

/// `<host>/<state>/`
pub fn state_prefix(host: &str, state: &str) -> String {
    format!("{host}/{state}/")
}

/// `<host>/<state>/<id>/<name>`
pub fn object_key(host: &str, state: &str, id: &str, name: &str) -> String {
    format!("{host}/{state}/{id}/{name}")
}

/// The data object's name in a backup's folder.
pub fn data_name(encrypted: bool) -> &'static str {
    if encrypted {
        DATA_AGE
    } else {
        DATA
    }
}

/// A block object's name in `blocks/`: `<ulid>.tar.gz`, or
/// `<ulid>.<recipients>.tar.gz.age` when encrypted to the recipient set whose
/// digest is `recipients`.
pub fn block_name(ulid: &str, recipients: Option<&str>) -> String {
    match recipients {
        None => format!("{ulid}{BLOCK_SUFFIX}"),
        Some(digest) => format!("{ulid}.{}{BLOCK_SUFFIX_AGE}", short_recipients(digest)),
    }
}

/// `<host>/<state>/blocks/<name>`, `name` from [`block_name`].
pub fn block_key(host: &str, state: &str, name: &str) -> String {
    format!("{host}/{state}/{BLOCKS}/{name}")
}

/// The block name (see [`block_name`]) of a block object's key under
/// `state_prefix`, if it is one.
pub fn block_of_key<'a>(state_prefix: &str, key: &'a str) -> Option<&'a str> {
    let name = key
        .strip_prefix(state_prefix)?
        .strip_prefix(BLOCKS)?
        .strip_prefix('/')?;
    let ulid = match name.strip_suffix(BLOCK_SUFFIX_AGE) {
        Some(stem) => {
            let (ulid, digest) = stem.split_once('.')?;
            let hex = digest.len() == BLOCK_RECIPIENTS
                && digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            hex.then_some(ulid)?
        }
        None => name.strip_suffix(BLOCK_SUFFIX)?,
    };
    // `<ULID>-<8 hex>`: a block uploaded again under a name of its own (see
    // [`unique_block_name`]).
    let ulid = match ulid.split_once('-') {
        Some((ulid, nonce))
            if nonce.len() == 8
                && nonce
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            ulid
        }
        Some(_) => return None,
        None => ulid,
    };
    is_ulid(ulid).then_some(name)
}

/// The ULID of a block object's name (see [`block_of_key`]).
pub fn block_ulid(name: &str) -> &str {
    name.get(..26).unwrap_or(name)
}

/// The recipient digest part of an encrypted block's name (`None`: plain).
pub fn block_recipients(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(BLOCK_SUFFIX_AGE)?;
    stem.rsplit_once('.').map(|(_, digest)| digest)
}

/// The part of a recipient digest that block names carry.
pub fn short_recipients(digest: &str) -> &str {
    digest.get(..BLOCK_RECIPIENTS).unwrap_or(digest)
}

/// A block object name no other upload uses: `<ULID>-<8 hex>…`. A backup
/// that must upload a block whose usual name is taken by an object that no
/// manifest vouches for (a leftover that prune may be deleting right now)
/// uploads it under such a name, so that prune's delete can never remove
/// what this backup stored.
pub fn unique_block_name(ulid: &str, recipients: Option<&str>) -> String {
    block_name(
        &format!("{ulid}-{}", crate::fsutil::random_suffix()),
        recipients,
    )
}

/// A ULID as Prometheus names its blocks: 26 characters of Crockford's
/// base32, upper case (no I, L, O, U), the first at most `7`.
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.as_bytes()[0] <= b'7'
        && s
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'H' | b'J' | b'K' | b'M' | b'N' | b'P'..=b'T' | b'V'..=b'Z'))
}

pub fn new_backup_id(now: DateTime<Utc>) -> String {
    format!("{}-{}", now.format(ID_TIME), crate::fsutil::random_suffix())
}

/// Digits of the sequence in a generation's backup id.
const SEQUENCE_DIGITS: usize = 8;

/// The id of the next backup of an entry: for a `generation`, one more than
/// the highest sequence that generation used among `backups` (complete or
/// not); without one, the time-based id of a host without generations.
pub fn next_backup_id(
    backups: &[BackupRef],
    generation: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let Some(generation) = generation else {
        return new_backup_id(now);
    };
    let last = backups
        .iter()
        .filter_map(|b| parse_generation_backup(&b.id))
        .filter(|(g, _, _)| *g == generation)
        .map(|(_, seq, _)| seq)
        .max()
        .unwrap_or(0);
    format!(
        "g{generation}-{:0width$}-{}",
        last.saturating_add(1),
        now.format(ID_TIME),
        width = SEQUENCE_DIGITS
    )
}

/// `(generation, sequence, time)` of a generation's backup id.
pub fn parse_generation_backup(id: &str) -> Option<(&str, u64, DateTime<Utc>)> {
    let rest = id.strip_prefix('g')?;
    let mut parts = rest.rsplitn(3, '-');
    let time = parts.next()?;
    let seq = parts.next()?;
    let generation = parts.next()?;
    if seq.len() != SEQUENCE_DIGITS
        || !seq.bytes().all(|b| b.is_ascii_digit())
        || !crate::generation::is_generation_id(generation)
    {
        return None;
    }
    let time = NaiveDateTime::parse_from_str(time, ID_TIME).ok()?.and_utc();
    Some((generation, seq.parse().ok()?, time))
}

/// The creation time encoded in a backup id, or `None` if `id` is not one.
pub fn parse_backup_id(id: &str) -> Option<DateTime<Utc>> {
    if id.starts_with('g') {
        return parse_generation_backup(id).map(|(_, _, t)| t);
    }
    let (time, suffix) = id.split_once('-')?;
    if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    NaiveDateTime::parse_from_str(time, ID_TIME)
        .or_else(|_| NaiveDateTime::parse_from_str(time, ID_TIME_SECONDS))
        .ok()
        .map(|t| t.and_utc())
}

/// One backup as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRef {
    pub id: String,
    pub time: DateTime<Utc>,
    /// Its manifest exists.
    pub complete: bool,
    /// A `verify` succeeded on it.
    pub verified: bool,
    /// Every object of the backup (keys relative to the store root).
    pub objects: Vec<ObjectInfo>,
}

impl BackupRef {
    /// The generation that made it (`None`: a host without generations).
    pub fn generation(&self) -> Option<&str> {
        parse_generation_backup(&self.id).map(|(g, _, _)| g)
    }

    pub fn size(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// Groups a listing of `prefix` into backups, oldest first. Keys that are not
/// `<prefix><id>/<name>` with a valid id are ignored.
pub fn group(prefix: &str, listing: &[ObjectInfo]) -> Vec<BackupRef> {
    let mut out: Vec<BackupRef> = Vec::new();
    for obj in listing {
        let Some(rest) = obj.key.strip_prefix(prefix) else {
            continue;
        };
        let Some((id, name)) = rest.split_once('/') else {
            continue;
        };
        let Some(time) = parse_backup_id(id) else {
            continue;
        };
        let idx = match out.iter().position(|b| b.id == id) {
            Some(i) => i,
            None => {
                out.push(BackupRef {
                    id: id.to_string(),
                    time,
                    complete: false,
                    verified: false,
                    objects: Vec::new(),
                });
                out.len() - 1
            }
        };
        let b = &mut out[idx];
        match name {
            MANIFEST => b.complete = true,
            VERIFIED => b.verified = true,
            _ => {}
        }
        b.objects.push(obj.clone());
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            etag: None,
            modified: None,
        }
    }

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = new_backup_id(t);
        assert!(id.starts_with("20261123T101500.000Z-"), "{id}");
        assert_eq!(parse_backup_id(&id), Some(t));
        assert_eq!(parse_backup_id("20261123T101500Z-abcd"), Some(t));
        assert_eq!(parse_backup_id("garbage"), None);
        assert_eq!(parse_backup_id("20261123T101500Z-"), None);
        assert_eq!(parse_backup_id("20261123T101500Z-../x"), None);
    }

    #[test]
    fn generation_ids_order_by_generation_and_sequence_not_by_clock() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let b = |id: String| BackupRef {
            time: parse_backup_id(&id).unwrap(),
            id,
            complete: true,
            verified: false,
            objects: vec![],
        };
        let g1 = "00000001-aaaaaaaa";
        let g2 = "00000002-00000000";
        // Generation 1's machine has its clock a year ahead.
        let first = b(next_backup_id(&[], Some(g1), t("2027-11-23T10:00:00Z")));
        assert!(first
            .id
            .starts_with("g00000001-aaaaaaaa-00000001-20271123T"));
        assert_eq!(
            parse_generation_backup(&first.id),
            Some((g1, 1, t("2027-11-23T10:00:00Z")))
        );
        // Then its clock steps back: the sequence still orders its backups.
        let second = b(next_backup_id(
            std::slice::from_ref(&first),
            Some(g1),
            t("2026-11-23T10:00:00Z"),
        ));
        assert!(second.id > first.id, "{} {}", second.id, first.id);
        // A later generation sorts after both, whatever its clock; an older
        // host's time-based ids before all of them.
        let all = [first.clone(), second.clone()];
        let third = b(next_backup_id(&all, Some(g2), t("2026-01-01T00:00:00Z")));
        assert!(
            third.id.ends_with("-00000001-20260101T000000.000Z"),
            "{}",
            third.id
        );
        assert!(third.id > second.id);
        let legacy = next_backup_id(&all, None, t("2030-01-01T00:00:00Z"));
        assert!(legacy < first.id);
        assert_eq!(third.generation(), Some(g2));
        let mut listing = [third.clone(), first, b(legacy), second];
        listing.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(listing.last().unwrap().id, third.id);
        for bad in [
            "g00000001-aaaaaaaa-1-20261123T101500.000Z",
            "g00000001-AAAAAAAA-00000001-20261123T101500.000Z",
            "g00000001-aaaaaaaa-00000001-yesterday",
            "g../x-00000001-20261123T101500.000Z",
        ] {
            assert_eq!(parse_backup_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn unique_block_names_parse_as_blocks_of_their_ulid() {
        const ULID: &str = "01HZX3Q7W8J9K0M1N2P3R4S5T6";
        let digest = "0123456789abcdef".repeat(4);
        for recipients in [None, Some(digest.as_str())] {
            let name = unique_block_name(ULID, recipients);
            assert_ne!(name, block_name(ULID, recipients));
            let key = block_key("h", "prom", &name);
            assert_eq!(block_of_key("h/prom/", &key), Some(name.as_str()));
            assert_eq!(block_ulid(&name), ULID);
            assert_eq!(block_recipients(&name), recipients.map(short_recipients));
        }
        assert_eq!(
            block_of_key(
                "h/prom/",
                "h/prom/blocks/01HZX3Q7W8J9K0M1N2P3R4S5T6-zz.tar.gz"
            ),
            None
        );
    }

    #[test]
    fn block_keys_round_trip() {
        const ULID: &str = "01HZX3Q7W8J9K0M1N2P3R4S5T6";
        let name = block_name(ULID, None);
        let key = block_key("h", "prom", &name);
        assert_eq!(key, "h/prom/blocks/01HZX3Q7W8J9K0M1N2P3R4S5T6.tar.gz");
        assert_eq!(block_of_key("h/prom/", &key), Some(name.as_str()));
        let digest = "0123456789abcdef".repeat(4);
        let sealed = block_name(ULID, Some(&digest));
        assert_eq!(
            sealed,
            "01HZX3Q7W8J9K0M1N2P3R4S5T6.0123456789abcdef.tar.gz.age"
        );
        let key = block_key("h", "prom", &sealed);
        assert_eq!(block_of_key("h/prom/", &key), Some(sealed.as_str()));
        for bad in [
            "h/prom/blocks/x.tar.gz",
            "h/prom/blocks/01HZX3Q7W8J9K0M1N2P3R4S5T6.tar.gz.age",
            "h/prom/blocks/01HZX3Q7W8J9K0M1N2P3R4S5T6.0123456789ABCDEF.tar.gz.age",
            "h/prom/blocks/01HZX3Q7W8J9K0M1N2P3R4S5T6.0123.tar.gz.age",
            "h/prom/blocks/../01HZX3Q7W8J9K0M1N2P3R4S5T6.tar.gz",
        ] {
            assert_eq!(block_of_key("h/prom/", bad), None, "{bad}");
        }
        assert_eq!(
            block_of_key("h/prom/", "h/prom/20261123T101500Z-aaaa/data.tar.gz"),
            None
        );
        assert!(!is_ulid("81HZX3Q7W8J9K0M1N2P3R4S5T6"), "overflows 128 bits");
        // The blocks folder never groups as a backup.
        assert!(group("h/prom/", &[obj(&key)]).is_empty());
    }

    #[test]
    fn listing_groups_into_backups() {
        let p = "h/acme/";
        let listing = [
            obj("h/acme/20261123T101500Z-aaaa/data.tar.gz"),
            obj("h/acme/20261123T101500Z-aaaa/manifest.json"),
            obj("h/acme/20261122T101500Z-bbbb/data.tar.gz"),
            obj("h/acme/20261121T101500Z-cccc/data.tar.gz"),
            obj("h/acme/20261121T101500Z-cccc/manifest.json"),
            obj("h/acme/20261121T101500Z-cccc/verified.json"),
            obj("h/acme/not-an-id/data.tar.gz"),
            obj("h/acme/stray"),
        ];
        let b = group(p, &listing);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].id, "20261121T101500Z-cccc");
        assert!(b[0].complete && b[0].verified);
        assert!(!b[1].complete);
        assert!(b[2].complete && !b[2].verified);
        assert_eq!(b[2].size(), 20);
    }
}
