//! The persisted peer store: addresses of peers that identified themselves, kept in a JSON
//! file so a restarted node dials them without bootstrap peers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libp2p::{Multiaddr, PeerId};

/// Known peers' addresses (`PeerId` → multiaddrs with `/p2p/`), as kept on disk.
pub(crate) type PeerBook = BTreeMap<String, Vec<String>>;

pub(crate) fn read_peer_store(path: &Path) -> PeerBook {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable peer store");
            PeerBook::new()
        }),
        Err(_) => PeerBook::new(),
    }
}

fn write_peer_store(path: &Path, book: &PeerBook) {
    let written = serde_json::to_vec_pretty(book)
        .map_err(std::io::Error::other)
        .and_then(|bytes| d402_blobstore::write_atomic(path, &bytes));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "cannot save the peer store");
    }
}

/// The peer store of a running node.
pub(crate) struct PeerStore {
    pub(crate) path: Option<PathBuf>,
    pub(crate) book: PeerBook,
}

impl PeerStore {
    /// Remembers `peer`'s listen addresses (loopback kept: devnets run on 127.0.0.1).
    pub(crate) fn remember(&mut self, peer: PeerId, addresses: &[Multiaddr]) {
        let Some(path) = &self.path else { return };
        let entry: Vec<String> = addresses
            .iter()
            .map(|a| a.clone().with_p2p(peer).unwrap_or_else(|a| a).to_string())
            .collect();
        if entry.is_empty() || self.book.get(&peer.to_string()) == Some(&entry) {
            return;
        }
        self.book.insert(peer.to_string(), entry);
        write_peer_store(path, &self.book);
    }
}
