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

    /// Incident mode: while this file exists the node takes no new paid tasks (its text says
    /// why).
    pub fn pause_file(&self) -> PathBuf {
        self.root.join("PAUSE")
    }

    /// The pid of the node process using this state, while it runs.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("node.pid")
    }

    /// The running node's admin API: its URL and bearer token (JSON, 0600), present while
    /// the node runs.
    pub fn admin_file(&self) -> PathBuf {
        self.root.join("admin.json")
    }

    /// The admin API's bearer token (0600), created once and kept across restarts so that a
    /// scraper's credentials file stays valid.
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }

    /// The ops-monitor's alert state.
    pub fn monitor_state(&self) -> PathBuf {
        self.root.join("ops-monitor.json")
    }

    /// The pid recorded in [`StateDir::pid_file`], while such a process exists (a stale
    /// file says nothing).
    pub fn running_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// Records that this process uses the state (its pid in [`StateDir::pid_file`]).
    pub fn claim(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::write(self.pid_file(), std::process::id().to_string())
    }

    /// Opens the node's store. When another process holds it, the error names the state
    /// directory and, if it recorded one, the pid of the node using it.
    pub fn open_store(&self) -> Result<crate::NodeStore, crate::StoreError> {
        crate::NodeStore::open(&self.store()).map_err(|e| match e {
            crate::StoreError::InUse => crate::StoreError::StateInUse {
                state: self.root.display().to_string(),
                pid: self.running_pid(),
            },
            other => other,
        })
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
            state.admin_file(),
            state.admin_token(),
            state.monitor_state(),
            state.pause_file(),
            state.pid_file(),
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
