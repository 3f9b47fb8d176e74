//! `verify`: downloads a backup and checks everything restore would check
//! (sizes, sha256, decryption, gzip integrity, every archive entry; every
//! block of a Prometheus backup too) without writing a file. Success is
//! recorded in the store as `verified.json`, which retention uses to never
//! delete the newest verified backup.
//!
//! An encrypted backup verified without the identity file gets only the
//! stored objects' sizes and checksums checked; that partial check is
//! reported as such and not recorded.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::future::FutureExt;

use crate::archive::ExtractOptions;
use crate::catalog::{self, Selector};
use crate::encryption::Encryption;
use crate::error::{Error, Result};
use crate::layout;
use crate::parts::Timings;
use crate::progress::Progress;
use crate::store::{body_from_bytes, ObjectStore};
use crate::unpack::{each_block, unpack, unpack_block, Keys};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub id: String,
    /// Archive entries checked (0 when only the stored bytes were).
    pub files: u64,
    /// Bytes downloaded and checked.
    pub bytes: u64,
    /// False when the backup is encrypted and no identity file was at hand:
    /// the stored objects matched their manifest, their content was not read.
    pub content_checked: bool,
}

/// Verifies the selected backup of `state`; `Ok(None)` when it has none.
/// `progress` counts the stored bytes fetched and the files checked; its
/// totals are the manifest's.
pub async fn verify(
    store: &dyn ObjectStore,
    host: &str,
    state: &str,
    selector: &Selector,
    encryption: Option<&Encryption>,
    record: bool,
    progress: Option<Arc<Progress>>,
) -> Result<Option<VerifyReport>> {
    let Some(manifest) = catalog::find(store, host, state, selector).await? else {
        return Ok(None);
    };
    let keys = Keys::for_backup(&manifest, encryption, false)?;
    let content_checked = !matches!(keys, Keys::StoredOnly);
    if let Some(p) = &progress {
        // Without the content read, no file is looked at.
        let files = if content_checked {
            manifest.total_files()
        } else {
            0
        };
        p.set_totals(manifest.total_size(), files);
    }
    let opts = || ExtractOptions {
        preserve_owner: false,
        final_root: Some(manifest.source.path.clone().into()),
        progress: progress.clone(),
    };
    let timings = Arc::new(Timings::default());
    let mut files = unpack(store, &manifest, &keys, None, opts(), &timings)
        .await?
        .files;
    let blocks = manifest
        .blocks
        .iter()
        .map(|block| unpack_block(store, &manifest, block, &keys, None, opts(), &timings).boxed())
        .collect();
    files += each_block(blocks)
        .await?
        .iter()
        .map(|s| s.files)
        .sum::<u64>();
    let bytes = manifest.total_size();
    if record && content_checked {
        let marker = serde_json::json!({
            "verified": Utc::now().to_rfc3339(),
            "sha256": manifest.data().map(|d| d.sha256.clone()),
            "rehost_version": env!("CARGO_PKG_VERSION"),
        });
        let key = layout::object_key(host, state, &manifest.id, layout::VERIFIED);
        let body = serde_json::to_vec_pretty(&marker)
            .map_err(|e| Error::Refused(format!("encode verification record: {e}")))?;
        store.put(&key, body_from_bytes(Bytes::from(body))).await?;
    }
    Ok(Some(VerifyReport {
        id: manifest.id,
        files,
        bytes,
        content_checked,
    }))
}
