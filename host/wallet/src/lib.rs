//! Wallet key files: a JSON array of the 64 keypair bytes (seed then public key), the layout
//! Solana tools use, so a d402 wallet is also a Solana wallet. Files are created mode 0600.
//! Also the other secrets kept on disk: bearer tokens ([`token`]) and private files
//! ([`write_private`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use d402_protocol::Keypair;
use thiserror::Error;

/// Errors reading or writing key files.
#[derive(Debug, Error)]
pub enum WalletError {
    /// The file could not be read or written.
    #[error("{path}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// There is no key file there.
    #[error("{0} does not exist; create a key with `d402 keygen --out {0}`")]
    Missing(PathBuf),
    /// The file exists and overwriting was not asked for.
    #[error("{0} already exists; refusing to overwrite a key (pass --force to replace it)")]
    Exists(PathBuf),
    /// The file is not a valid keypair.
    #[error("{path} is not a wallet key file: {reason}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalletError + '_ {
    move |source| WalletError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a key file.
pub fn load(path: &Path) -> Result<Keypair, WalletError> {
    let text = fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WalletError::Missing(path.to_path_buf()),
        _ => io_error(path)(e),
    })?;
    let malformed = |reason: String| WalletError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let bytes: Vec<u8> = serde_json::from_str(&text)
        .map_err(|e| malformed(format!("expected a JSON array of 64 bytes ({e})")))?;
    Keypair::from_keypair_bytes(&bytes).map_err(|e| malformed(e.to_string()))
}

/// Writes `key` to a new file (mode 0600). Refuses to replace an existing file unless `force`.
pub fn save(path: &Path, key: &Keypair, force: bool) -> Result<(), WalletError> {
    if path.exists() && !force {
        return Err(WalletError::Exists(path.to_path_buf()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let text = serde_json::to_string(&key.to_keypair_bytes().to_vec()).expect("bytes serialise");
    write_private(path, text.as_bytes()).map_err(io_error(path))
}

/// Writes `bytes` to `path` with mode 0600, atomically (a temporary file renamed over it).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

/// The bearer token kept at `path`: read when it exists, else 32 random bytes in hex,
/// written with mode 0600.
pub fn token(path: &Path) -> Result<String, WalletError> {
    match fs::read_to_string(path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path)(e)),
    }
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    write_private(path, token.as_bytes()).map_err(io_error(path))?;
    Ok(token)
}

/// Generates a fresh key with the operating system's random source.
pub fn generate() -> Keypair {
    Keypair::generate(&mut rand_core::OsRng)
}

/// Loads the key at `path`, creating (and saving) a fresh one if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<Keypair, WalletError> {
    if path.exists() {
        return load(path);
    }
    let key = generate();
    save(path, &key, false)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/wallet.json");
        let key = generate();
        save(&path, &key, false).unwrap();
        assert_eq!(load(&path).unwrap().public(), key.public());
        assert!(matches!(
            save(&path, &generate(), false),
            Err(WalletError::Exists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refuses_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        fs::write(&path, "[1,2,3]").unwrap();
        assert!(matches!(load(&path), Err(WalletError::Malformed { .. })));
        fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(WalletError::Malformed { .. })));
    }

    #[test]
    fn load_or_create_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.json");
        let first = load_or_create(&path).unwrap().public();
        assert_eq!(load_or_create(&path).unwrap().public(), first);
    }
}
