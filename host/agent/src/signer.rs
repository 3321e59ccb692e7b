//! The buyer's signer, from exactly one configured source: a key file (refused unless its
//! mode is 0600), an environment variable, or a signer plugin.

use d402_payment::Payer;
use d402_protocol::Keypair;

use crate::config::SignerSource;

/// What pays, for the configured source.
pub fn payer(source: &SignerSource) -> anyhow::Result<Box<dyn Payer>> {
    Ok(match source {
        SignerSource::Plugin { program, address } => Box::new(crate::plugin::PluginPayer::new(
            program.clone(),
            address.parse()?,
        )),
        other => Box::new(d402_rail_simulated::SimulatedPayer::new(load(other)?)),
    })
}

/// The environment variable a Solana-layout keypair (JSON array of 64 bytes) is read from
/// by default.
pub const KEYPAIR_ENV: &str = "D402_BUYER_KEYPAIR";

/// Loads the key `source` names (a key file or an environment variable).
fn load(source: &SignerSource) -> anyhow::Result<Keypair> {
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
        SignerSource::Plugin { .. } => anyhow::bail!("a signer plugin holds its own key"),
    }
}
