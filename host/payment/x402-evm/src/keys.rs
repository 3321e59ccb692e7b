//! Secret keys of EVM accounts (a gas signer, a buyer): from a file that only its owner can
//! read, or from an environment variable — never from the command line, never logged.

use std::path::{Path, PathBuf};

use alloy::signers::local::PrivateKeySigner;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither a file nor the variable was given.
    #[error("no key: set {env} or pass a key file (a 0x-hex secp256k1 key, mode 0600)")]
    Missing {
        /// The environment variable that could hold it.
        env: String,
    },
    /// The file cannot be read.
    #[error("cannot read key file {path}: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Others may read the file.
    #[error("key file {0} may be read by others; run chmod 600 on it")]
    TooOpen(PathBuf),
    /// Not a secp256k1 key in hex.
    #[error("{source_name} does not hold a 32-byte secp256k1 key in hex")]
    Invalid {
        /// The file or the variable (never the value).
        source_name: String,
    },
}

/// The key in `file` if given, else in the environment variable `env`.
pub fn load_key(file: Option<&Path>, env: &str) -> Result<PrivateKeySigner, KeyError> {
    match file {
        Some(path) => read_key_file(path),
        None => match std::env::var(env) {
            Ok(text) if !text.trim().is_empty() => parse(&text, env),
            _ => Err(KeyError::Missing { env: env.into() }),
        },
    }
}

/// The key in `path` (0x hex), refused if others may read the file.
pub fn read_key_file(path: &Path) -> Result<PrivateKeySigner, KeyError> {
    parse(&read_private(path)?, &path.display().to_string())
}

fn parse(text: &str, source_name: &str) -> Result<PrivateKeySigner, KeyError> {
    text.trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| KeyError::Invalid {
            source_name: source_name.into(),
        })
}

/// Writes `key` to a new file at `path` (0x hex, mode 0600), refusing to overwrite one.
pub fn write_key(path: &Path, key: &PrivateKeySigner) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{}", key.to_bytes())
}

fn read_private(path: &Path) -> Result<String, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e: std::io::Error| KeyError::Unreadable {
        path: path.into(),
        message: e.to_string(),
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen(path.into()));
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_must_be_private_and_hold_a_key() {
        let dir = std::env::temp_dir().join(format!("d402-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        let key = PrivateKeySigner::random();
        write_key(&file, &key).unwrap();
        assert!(write_key(&file, &key).is_err(), "never overwrites a key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_key(Some(&file), "UNUSED"),
            Err(KeyError::TooOpen(_))
        ));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load_key(Some(&file), "UNUSED").unwrap().address(),
            key.address()
        );
        std::fs::write(&file, "not a key").unwrap();
        let error = load_key(Some(&file), "UNUSED").unwrap_err().to_string();
        assert!(
            error.contains("does not hold") && !error.contains("not a key"),
            "{error}"
        );
        assert!(matches!(
            load_key(None, "D402_TEST_KEY_THAT_IS_NOT_SET"),
            Err(KeyError::Missing { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
