//! Pure decisions about shared block objects: which blocks of a snapshot a
//! backup must upload, and which stored blocks no kept backup references.

use std::collections::{HashMap, HashSet};

use crate::layout;
use crate::manifest::{BlockEntry, Manifest};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockAction {
    /// Stored and described by a complete manifest: reference it.
    Reuse(BlockEntry),
    /// Not stored, stored with another size than recorded, or stored by a
    /// backup that never completed (no manifest vouches for its content).
    Upload,
}

/// For each block of the snapshot (`ulids`), whether to upload it. `known`
/// holds the blocks listed by complete manifests, `stored` the block objects
/// in the store with their sizes, both by block object name
/// ([`layout::block_name`]); `recipients` is the digest of the recipient set
/// the backup encrypts to, so that only a block encrypted the same way (or
/// plain, for a plain backup) is reused.
pub fn plan(
    ulids: &[String],
    known: &HashMap<String, BlockEntry>,
    stored: &HashMap<&str, u64>,
    recipients: Option<&str>,
) -> Vec<(String, BlockAction)> {
    // Each ULID's candidates: its usual name, then any name of its own that
    // a backup uploaded it under (same recipients either way).
    let mut by_ulid: HashMap<&str, Vec<(&str, &BlockEntry)>> = HashMap::new();
    for (name, entry) in known {
        let same_keys = layout::block_recipients(name) == recipients.map(layout::short_recipients);
        if same_keys {
            by_ulid
                .entry(layout::block_ulid(name))
                .or_default()
                .push((name.as_str(), entry));
        }
    }
    for candidates in by_ulid.values_mut() {
        candidates.sort_by_key(|(name, entry)| (entry.object.is_some(), *name));
    }
    ulids
        .iter()
        .map(|ulid| {
            let reusable = by_ulid.get(ulid.as_str()).and_then(|c| {
                c.iter()
                    .find(|(name, entry)| stored.get(name) == Some(&entry.size))
            });
            let action = match reusable {
                Some((_, entry)) => BlockAction::Reuse((*entry).clone()),
                None => BlockAction::Upload,
            };
            (ulid.clone(), action)
        })
        .collect()
}

/// The block objects (by name) the kept backups reference; `None` when one
/// kept manifest could not be read, because then no block is safe to delete.
pub fn referenced(kept: &[Option<Manifest>]) -> Option<HashSet<String>> {
    let mut out = HashSet::new();
    for m in kept {
        let m = m.as_ref()?;
        out.extend(m.blocks.iter().map(|b| m.block_name(b)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ulid: &str, size: u64) -> BlockEntry {
        BlockEntry {
            ulid: ulid.into(),
            size,
            sha256: "c".repeat(64),
            tar_bytes: 10 * size,
            files: 4,
            dirs: 2,
            object: None,
            index: None,
        }
    }

    const A: &str = "01HZX3Q7W8J9K0M1N2P3R4S5TA";
    const B: &str = "01HZX3Q7W8J9K0M1N2P3R4S5TB";
    const C: &str = "01HZX3Q7W8J9K0M1N2P3R4S5TC";
    const D: &str = "01HZX3Q7W8J9K0M1N2P3R4S5TD";

    #[test]
    fn only_blocks_vouched_for_and_stored_whole_are_reused() {
        let known: HashMap<String, BlockEntry> = [(A, 100), (B, 200), (C, 300)]
            .into_iter()
            .map(|(u, s)| (layout::block_name(u, None), entry(u, s)))
            .collect();
        // A: stored as recorded. B: the object is gone. C: stored with another
        // size. D: stored, but by a backup that never wrote its manifest.
        let names: Vec<String> = [A, C, D]
            .iter()
            .map(|u| layout::block_name(u, None))
            .collect();
        let stored: HashMap<&str, u64> = names
            .iter()
            .map(|n| n.as_str())
            .zip([100, 999, 50])
            .collect();
        let ulids: Vec<String> = [A, B, C, D].iter().map(|s| s.to_string()).collect();
        let p = plan(&ulids, &known, &stored, None);
        assert_eq!(p[0], (A.to_string(), BlockAction::Reuse(entry(A, 100))));
        for (ulid, action) in &p[1..] {
            assert_eq!(action, &BlockAction::Upload, "{ulid}");
        }
        // An encrypted backup never references the plain block, nor one
        // encrypted to other keys.
        let digest = "e".repeat(64);
        let p = plan(&ulids[..1], &known, &stored, Some(&digest));
        assert_eq!(p[0].1, BlockAction::Upload);
        let sealed = layout::block_name(A, Some(&digest));
        let known: HashMap<String, BlockEntry> =
            [(sealed.clone(), entry(A, 100))].into_iter().collect();
        let stored: HashMap<&str, u64> = [(sealed.as_str(), 100)].into_iter().collect();
        let p = plan(&ulids[..1], &known, &stored, Some(&digest));
        assert_eq!(p[0].1, BlockAction::Reuse(entry(A, 100)));
        let p = plan(&ulids[..1], &known, &stored, Some(&"f".repeat(64)));
        assert_eq!(p[0].1, BlockAction::Upload);
        assert_eq!(
            plan(&ulids[..1], &known, &stored, None)[0].1,
            BlockAction::Upload
        );
    }

    #[test]
    fn referenced_blocks_are_the_union_and_unknown_means_none() {
        let mut m1 = crate::manifest::tests::sample();
        m1.blocks = vec![entry(A, 1), entry(B, 1)];
        let mut m2 = m1.clone();
        m2.blocks = vec![entry(B, 1), entry(C, 1)];
        let r = referenced(&[Some(m1.clone()), Some(m2)]).unwrap();
        let want: HashSet<String> = [A, B, C]
            .iter()
            .map(|u| layout::block_name(u, None))
            .collect();
        assert_eq!(r, want);
        assert_eq!(referenced(&[Some(m1), None]), None);
        assert_eq!(referenced(&[]), Some(HashSet::new()));
    }
}
