//! Content-addressed page snapshots: the body and a small JSON record, both in the blob
//! store; the record's CID is the page's `snapshot_cid`. [`SnapshotSource`] replays them.

use d402_blobstore::{BlobError, BlobStore};
use d402_protocol::{ContentId, Timestamp, canonical};
use d402_runtime::{FetchedPage, ReplaySource};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fetch::RawPage;

/// The recorded metadata of one fetched page; its canonical JSON is stored in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotRecord {
    /// URL requested.
    pub url: String,
    /// URL after redirects.
    pub final_url: String,
    /// HTTP status of the final response.
    pub status: u16,
    /// Content-Type of the body.
    pub content_type: String,
    /// Whether Chromium rendered the body.
    pub rendered: bool,
    /// What produced the snapshot.
    pub snapshotter_version: String,
    /// When the page was fetched.
    pub fetched_at: Timestamp,
    /// CID of the body blob.
    pub body_cid: ContentId,
}

/// Errors reading or writing snapshots.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The blob store failed (missing, corrupt, I/O).
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A record is not valid snapshot JSON.
    #[error("snapshot record {cid} is malformed: {reason}")]
    Malformed {
        /// The record's CID.
        cid: ContentId,
        /// What is wrong.
        reason: String,
    },
    /// Canonical JSON could not be produced.
    #[error("cannot encode snapshot record: {0}")]
    Encode(String),
}

/// Stores `page` (requested as `url`) and returns it as a [`FetchedPage`] naming its snapshot.
pub fn store_snapshot(
    store: &BlobStore,
    url: &str,
    page: RawPage,
    rendered: bool,
    snapshotter_version: &str,
    fetched_at: Timestamp,
) -> Result<FetchedPage, SnapshotError> {
    let body_cid = store.put(&page.body)?;
    let record = SnapshotRecord {
        url: url.to_string(),
        final_url: page.final_url,
        status: page.status,
        content_type: page.content_type,
        rendered,
        snapshotter_version: snapshotter_version.to_string(),
        fetched_at,
        body_cid,
    };
    let bytes = canonical::to_vec(&record).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let snapshot_cid = store.put(&bytes)?;
    debug_assert_eq!(
        Ok(snapshot_cid),
        ContentId::of_json(&record).map_err(|_| ())
    );
    tracing::debug!(%url, %snapshot_cid, %body_cid, rendered, "stored page snapshot");
    Ok(into_page(record, page.body, snapshot_cid))
}

/// Loads a snapshot record and its body by the record's CID (both re-hashed on read).
pub fn load_snapshot(
    store: &BlobStore,
    cid: &ContentId,
) -> Result<(SnapshotRecord, Vec<u8>), SnapshotError> {
    let bytes = store.get(cid)?;
    let record: SnapshotRecord =
        serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Malformed {
            cid: *cid,
            reason: e.to_string(),
        })?;
    let body = store.get(&record.body_cid)?;
    Ok((record, body))
}

fn into_page(record: SnapshotRecord, body: Vec<u8>, snapshot_cid: ContentId) -> FetchedPage {
    FetchedPage {
        final_url: record.final_url,
        status: record.status,
        content_type: record.content_type,
        body,
        rendered: record.rendered,
        snapshot_cid,
        snapshotter_version: record.snapshotter_version,
        fetched_at: record.fetched_at,
    }
}

/// Replays recorded snapshots by requested URL (what validators use to re-run a claim).
/// A URL without a snapshot is an upstream failure; when several snapshots share a URL the
/// last one given wins.
pub struct SnapshotSource;

impl SnapshotSource {
    /// Loads the snapshots named by `cids` from `store` into a replaying page source.
    pub fn load(store: &BlobStore, cids: &[ContentId]) -> Result<ReplaySource, SnapshotError> {
        let mut source = ReplaySource::new();
        for cid in cids {
            let (record, body) = load_snapshot(store, cid)?;
            let url = record.url.clone();
            source.insert(&url, into_page(record, body, *cid));
        }
        Ok(source)
    }
}
