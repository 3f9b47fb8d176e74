//! Reading what a store holds for one state entry: its backups, their
//! manifests, and which one a request selects (pure, unit-tested).

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::layout::{self, BackupRef};
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::store::{get_small, ObjectStore};

/// Which backup a restore or verify wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Id(String),
    /// The newest backup created at or before this time.
    At(DateTime<Utc>),
}

/// Every backup of `state`, oldest first, complete or not.
pub async fn list(store: &dyn ObjectStore, host: &str, state: &str) -> Result<Vec<BackupRef>> {
    let prefix = layout::state_prefix(host, state);
    let listing = store.list(&prefix).await?;
    Ok(layout::group(&prefix, &listing))
}

/// The complete backup `selector` names, if any.
pub fn select<'a>(backups: &'a [BackupRef], selector: &Selector) -> Option<&'a BackupRef> {
    let mut complete = backups.iter().filter(|b| b.complete);
    match selector {
        Selector::Latest => complete.next_back(),
        Selector::Id(id) => complete.find(|b| &b.id == id),
        Selector::At(t) => complete.rfind(|b| b.time <= *t),
    }
}

pub async fn load_manifest(
    store: &dyn ObjectStore,
    host: &str,
    state: &str,
    id: &str,
) -> Result<Manifest> {
    let key = layout::object_key(host, state, id, layout::MANIFEST);
    let bytes = get_small(store, &key, MAX_MANIFEST_BYTES).await?;
    Ok(Manifest::parse(&bytes, host, state, id)?)
}

/// Finds and loads the selected backup's manifest; `None` when there is no
/// complete backup at all (a first boot), an error when a named one is missing.
pub async fn find(
    store: &dyn ObjectStore,
    host: &str,
    state: &str,
    selector: &Selector,
) -> Result<Option<Manifest>> {
    let backups = list(store, host, state).await?;
    match select(&backups, selector) {
        Some(b) => Ok(Some(load_manifest(store, host, state, &b.id).await?)),
        None => match selector {
            Selector::Latest => Ok(None),
            Selector::Id(id) => Err(Error::Refused(format!(
                "state `{state}` has no complete backup with id {id}"
            ))),
            Selector::At(t) => Err(Error::Refused(format!(
                "state `{state}` has no complete backup made at or before {}",
                t.to_rfc3339()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, complete: bool) -> BackupRef {
        BackupRef {
            id: id.into(),
            time: layout::parse_backup_id(id).unwrap(),
            complete,
            verified: false,
            objects: vec![],
        }
    }

    #[test]
    fn selection_ignores_incomplete_backups() {
        let all = [
            b("20261120T000000Z-a", true),
            b("20261121T000000Z-b", true),
            b("20261122T000000Z-c", false),
        ];
        assert_eq!(
            select(&all, &Selector::Latest).unwrap().id,
            "20261121T000000Z-b"
        );
        assert!(select(&all, &Selector::Id("20261122T000000Z-c".into())).is_none());
        let at = layout::parse_backup_id("20261120T120000Z-x").unwrap();
        assert_eq!(
            select(&all, &Selector::At(at)).unwrap().id,
            "20261120T000000Z-a"
        );
        let before = layout::parse_backup_id("20261101T000000Z-x").unwrap();
        assert!(select(&all, &Selector::At(before)).is_none());
    }
}
