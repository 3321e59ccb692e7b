//! A content-addressed blob directory. Each blob lives at `<root>/<cid>`; writes are atomic
//! (temp file, fsync, rename) and every read re-hashes the bytes and refuses a mismatch, so
//! a corrupted or tampered file is never handed out under a CID it does not have.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use d402_protocol::ContentId;
use thiserror::Error;

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a
/// part, even across a crash: a temporary file in the same directory (created with the
/// parents), synced, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Unique per write, not only per process: threads storing the same blob at once (two
    // workers' identical snapshots) must not share, truncate or rename each other's file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Errors of the blob store.
#[derive(Debug, Error)]
pub enum BlobError {
    /// A file operation failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No blob with that CID.
    #[error("blob {0} is not in the store")]
    Missing(ContentId),
    /// Bytes do not hash to the CID they were stored or offered under.
    #[error("digest mismatch: expected {expected}, the bytes hash to {actual}")]
    DigestMismatch {
        /// The CID asked for.
        expected: ContentId,
        /// The CID of the bytes found.
        actual: ContentId,
    },
}

/// A directory of blobs named by their CID.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| BlobError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    /// The directory holding the blobs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `cid` lives (whether or not it exists).
    pub fn path_of(&self, cid: &ContentId) -> PathBuf {
        self.root.join(cid.to_string())
    }

    /// True when a blob with `cid` is stored.
    pub fn contains(&self, cid: &ContentId) -> bool {
        self.path_of(cid).is_file()
    }

    /// Stores `bytes` and returns their CID. Storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentId, BlobError> {
        let cid = ContentId::of_bytes(bytes);
        let path = self.path_of(&cid);
        if path.is_file() {
            return Ok(cid);
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Io { path, source }
        };
        write_atomic(&path, bytes).map_err(io(&path))?;
        Ok(cid)
    }

    /// Stores `bytes` only if they hash to `expected`, replacing whatever file holds that
    /// CID now (a damaged copy is repaired).
    pub fn put_verified(&self, bytes: &[u8], expected: &ContentId) -> Result<(), BlobError> {
        check(bytes, expected)?;
        let path = self.path_of(expected);
        write_atomic(&path, bytes).map_err(|source| BlobError::Io { path, source })
    }

    /// Reads the blob with `cid`, re-hashing it; a mismatch is an error.
    pub fn get(&self, cid: &ContentId) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(cid);
        let bytes = fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                BlobError::Missing(*cid)
            } else {
                BlobError::Io { path, source }
            }
        })?;
        check(&bytes, cid)?;
        Ok(bytes)
    }
}

/// Checks that `bytes` hash to `expected`.
pub fn check(bytes: &[u8], expected: &ContentId) -> Result<(), BlobError> {
    let actual = ContentId::of_bytes(bytes);
    if &actual == expected {
        Ok(())
    } else {
        Err(BlobError::DigestMismatch {
            expected: *expected,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writes_of_the_same_file_all_succeed_intact() {
        // Two workers' identical snapshots reach one gateway at once (seen in CI).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes = vec![7u8; 1 << 20];
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        write_atomic(&path, &bytes).unwrap();
                        assert_eq!(fs::read(&path).unwrap(), bytes);
                    }
                });
            }
        });
    }

    #[test]
    fn stores_and_reads_by_cid() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let cid = store.put(b"component bytes").unwrap();
        assert_eq!(cid, ContentId::of_bytes(b"component bytes"));
        assert_eq!(store.get(&cid).unwrap(), b"component bytes");
        assert_eq!(store.put(b"component bytes").unwrap(), cid);
    }

    #[test]
    fn refuses_tampered_and_missing_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let cid = store.put(b"original").unwrap();
        fs::write(store.path_of(&cid), b"tampered").unwrap();
        assert!(matches!(
            store.get(&cid),
            Err(BlobError::DigestMismatch { .. })
        ));
        let absent = ContentId::of_bytes(b"absent");
        assert!(matches!(store.get(&absent), Err(BlobError::Missing(_))));
    }

    #[test]
    fn put_verified_refuses_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let wrong = ContentId::of_bytes(b"other");
        assert!(store.put_verified(b"bytes", &wrong).is_err());
        assert!(!store.contains(&ContentId::of_bytes(b"bytes")));
    }

    #[test]
    fn put_verified_repairs_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let cid = store.put(b"bytes").unwrap();
        std::fs::write(store.path_of(&cid), b"bytez").unwrap();
        assert!(matches!(
            store.get(&cid),
            Err(BlobError::DigestMismatch { .. })
        ));
        store.put_verified(b"bytes", &cid).unwrap();
        assert_eq!(store.get(&cid).unwrap(), b"bytes");
    }
}
