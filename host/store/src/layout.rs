//! Where each piece of a node's state lives under its state directory.

use std::path::{Path, PathBuf};

/// A node's state directory and the one definition of its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The durable store ([`crate::NodeStore`]).
    pub fn store(&self) -> PathBuf {
        self.root.join("node.redb")
    }

    /// The node's wallet key (0600).
    pub fn wallet(&self) -> PathBuf {
        self.root.join("wallet.json")
    }

    /// The content-addressed blob store: artifacts and snapshots.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Compiled components, keyed by artifact.
    pub fn compile_cache(&self) -> PathBuf {
        self.root.join("compile-cache")
    }

    /// Installed implementation packages, one JSON file each.
    pub fn implementations(&self) -> PathBuf {
        self.root.join("implementations")
    }

    /// Manifests of installed capabilities, one `<cid>.json` each.
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// The manifest `cid`.
    pub fn manifest(&self, cid: &impl std::fmt::Display) -> PathBuf {
        self.manifests().join(format!("{cid}.json"))
    }

    /// The directories that make up what is installed (packages, manifests, registrations,
    /// artifacts): what a copy of the installed capabilities copies.
    pub fn installed_dirs(&self) -> [PathBuf; 4] {
        [
            self.implementations(),
            self.manifests(),
            self.registrations(),
            self.blobs(),
        ]
    }

    /// The signed registration of the capability `cid`.
    pub fn registration(&self, cid: &impl std::fmt::Display) -> PathBuf {
        self.registrations().join(format!("{cid}.json"))
    }

    /// Signed capability registrations, one `<cid>.json` each.
    pub fn registrations(&self) -> PathBuf {
        self.root.join("registrations")
    }

    /// The key of local worker `index`.
    pub fn worker_key(&self, index: usize) -> PathBuf {
        self.root
            .join("workers")
            .join(format!("worker-{index}.json"))
    }

    /// Addresses of peers met before (the libp2p peer store).
    pub fn peers(&self) -> PathBuf {
        self.root.join("peers.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_lives_under_the_root() {
        let state = StateDir::new("/srv/d402");
        let pieces = [
            state.store(),
            state.wallet(),
            state.blobs(),
            state.compile_cache(),
            state.implementations(),
            state.manifests(),
            state.manifest(&"bafy"),
            state.registration(&"bafy"),
            state.worker_key(2),
            state.peers(),
        ];
        assert!(pieces.iter().all(|p| p.starts_with("/srv/d402")));
        let unique: std::collections::BTreeSet<_> = pieces.iter().collect();
        assert_eq!(unique.len(), pieces.len(), "two pieces share a path");
        assert_eq!(
            state.registration(&"bafy"),
            state.registrations().join("bafy.json")
        );
    }
}
