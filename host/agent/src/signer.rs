//! The buyer's key, from exactly one configured source: a key file (refused unless its
//! mode is 0600) or an environment variable.

use d402_protocol::Keypair;

use crate::config::SignerSource;

/// The environment variable a Solana-layout keypair (JSON array of 64 bytes) is read from
/// by default.
pub const KEYPAIR_ENV: &str = "D402_BUYER_KEYPAIR";

/// Loads the key `source` names.
pub fn load(source: &SignerSource) -> anyhow::Result<Keypair> {
    match source {
        SignerSource::KeyFile { path } => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| anyhow::anyhow!("the key file {}: {e}", path.display()))?
                .permissions()
                .mode();
            anyhow::ensure!(
                mode & 0o077 == 0,
                "the key file {} is readable by others (mode {:o}); restrict it with `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
            Ok(d402_wallet::load(path)?)
        }
        SignerSource::Env { variable } => {
            let text = std::env::var(variable).map_err(|_| {
                anyhow::anyhow!(
                    "the signer reads the environment variable {variable}, which is not set"
                )
            })?;
            let bytes: Vec<u8> = serde_json::from_str(&text).map_err(|_| {
                anyhow::anyhow!("{variable} is not a keypair (a JSON array of 64 bytes, as `d402 keygen` writes)")
            })?;
            Ok(Keypair::from_keypair_bytes(&bytes)?)
        }
    }
}
