//! The buyer's signer, from exactly one configured source: a key file (refused unless its
//! mode is 0600), an environment variable, the OS keychain, or a signer plugin.

use anyhow::Context;
use d402_payment::{Payer, RailId};
use d402_protocol::Keypair;

use crate::config::{AgentConfig, PayRail, SignerSource};
use crate::policy::Policy;

/// The environment variable an EVM key (0x hex) is read from by default (x402 on Base).
pub const EVM_KEY_ENV: &str = "D402_BUYER_PRIVATE_KEY";

/// What pays for `config`: its rail, with its key source. On x402 rails the payer signs
/// EIP-3009 authorizations only for the policy's networks and assets (default: USDC on
/// Base); on `solana-direct` it sends USDC transfers through the configured cluster, on
/// `x402-solana` it signs them for the gateway to submit.
pub fn payer(config: &AgentConfig) -> anyhow::Result<Box<dyn Payer>> {
    let (source, policy) = (&config.signer, &config.policy);
    let PayRail::Pay(rail) = config.rail() else {
        anyhow::bail!(
            "the agent is configured with --rail manual: it shows challenges and pays nothing \
             (init --rail RAIL --force to pay)"
        );
    };
    if matches!(rail, RailId::SolanaDirect | RailId::X402Solana) {
        let solana = config
            .solana
            .as_ref()
            .with_context(|| format!("paying on {rail} needs `init --solana-rpc-url URL`"))?;
        let key = d402_rail_solana::Keypair::try_from(load(source)?.to_keypair_bytes().as_slice())
            .context("the key is not a Solana keypair")?;
        let rpc = url::Url::parse(&solana.rpc_url)
            .with_context(|| format!("the Solana RPC URL {:?} is not a URL", solana.rpc_url))?;
        let mint = solana
            .mint
            .parse()
            .map_err(|_| anyhow::anyhow!("mint {:?} is not a Solana address", solana.mint))?;
        let scheme = if rail == RailId::X402Solana {
            d402_rail_solana::SolanaScheme::X402Exact
        } else {
            d402_rail_solana::SolanaScheme::Direct
        };
        return Ok(Box::new(
            d402_rail_solana::SolanaPayer::new(
                key,
                d402_rail_solana::SolanaRpc::new(rpc),
                solana.network.parse()?,
                mint,
                d402_rail_solana::USDC_DECIMALS,
                policy.max_per_request.unwrap_or(u64::MAX),
            )
            .paying(scheme),
        ));
    }
    if matches!(rail, RailId::X402Base | RailId::X402BaseEscrow) {
        let key = match source {
            SignerSource::KeyFile { path } => d402_rail_x402_evm::read_key_file(path)?,
            SignerSource::Env { variable } => d402_rail_x402_evm::load_key(None, variable)?,
            _ => anyhow::bail!(
                "on {rail} the agent signs with an EVM key from a file or the environment"
            ),
        };
        return Ok(Box::new(d402_rail_x402_evm::EvmPayer::new(
            key,
            evm_assets(policy)?,
            policy.max_per_request.unwrap_or(u64::MAX),
        )));
    }
    anyhow::ensure!(
        rail == RailId::Simulated,
        "the agent does not pay {rail} yet (it pays simulated, x402-base, x402-base-escrow, solana-direct and x402-solana)"
    );
    Ok(match source {
        SignerSource::Plugin { program, address } => Box::new(crate::plugin::PluginPayer::new(
            program.clone(),
            address.parse()?,
        )),
        other => Box::new(d402_rail_simulated::SimulatedPayer::new(load(other)?)),
    })
}

/// The (network, token) pairs the policy allows, every network with every asset; USDC on
/// Base when it names none.
fn evm_assets(
    policy: &Policy,
) -> anyhow::Result<Vec<(d402_rail_x402_evm::EvmNetwork, d402_rail_x402_evm::Address)>> {
    let networks = if policy.allowed_networks.is_empty() {
        vec![d402_rail_x402_evm::EvmNetwork::BASE]
    } else {
        policy
            .allowed_networks
            .iter()
            .map(|n| n.parse().map_err(anyhow::Error::from))
            .collect::<anyhow::Result<_>>()?
    };
    let assets = if policy.allowed_assets.is_empty() {
        vec![d402_rail_x402_evm::BASE_USDC]
    } else {
        policy
            .allowed_assets
            .iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("asset {a:?} is not a 0x address"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    Ok(networks
        .iter()
        .flat_map(|n| assets.iter().map(move |a| (*n, *a)))
        .collect())
}

/// The environment variable a Solana-layout keypair (JSON array of 64 bytes) is read from
/// by default.
pub const KEYPAIR_ENV: &str = "D402_BUYER_KEYPAIR";

/// Makes the platform's keychain the default store unless one is set (tests set the mock).
pub fn use_platform_keychain() {
    #[cfg(target_os = "linux")]
    if keyring_core::get_default_store().is_none()
        && let Ok(store) = linux_keyutils_keyring_store::Store::new()
    {
        keyring_core::set_default_store(store);
    }
}

/// Stores `key` in the keychain under `service` / `user`.
pub fn import(key: &Keypair, service: &str, user: &str) -> anyhow::Result<()> {
    use_platform_keychain();
    keyring_core::Entry::new(service, user)
        .and_then(|entry| entry.set_secret(&key.to_keypair_bytes()))
        .map_err(|e| anyhow::anyhow!("cannot store the key in the keychain: {e}"))
}

/// The key in `path`, refused unless the file is 0600.
pub fn payer_key(path: &std::path::Path) -> anyhow::Result<Keypair> {
    load(&SignerSource::KeyFile {
        path: path.to_path_buf(),
    })
}

/// Loads the key `source` names (a key file, an environment variable or the keychain).
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
        SignerSource::Keychain { service, user } => {
            use_platform_keychain();
            let secret = keyring_core::Entry::new(service, user)
                .and_then(|entry| entry.get_secret())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "the keychain has no usable key for service {service:?}, user {user:?} ({e}); \
                         store the key there first with `d402-agent keychain-import --key-file FILE`"
                    )
                })?;
            Ok(Keypair::from_keypair_bytes(&secret)?)
        }
        SignerSource::Plugin { .. } => anyhow::bail!("a signer plugin holds its own key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keychain_environment_and_file_sources_load_the_key_or_say_why_not() {
        keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
        let key = d402_wallet::generate();
        let source = SignerSource::Keychain {
            service: "d402-agent".into(),
            user: "buyer".into(),
        };
        let missing = load(&source).unwrap_err().to_string();
        assert!(missing.contains("keychain-import"), "{missing}");
        import(&key, "d402-agent", "buyer").unwrap();
        assert_eq!(load(&source).unwrap().public(), key.public());

        let variable = "D402_AGENT_TEST_KEYPAIR";
        let env = SignerSource::Env {
            variable: variable.into(),
        };
        assert!(load(&env).unwrap_err().to_string().contains("not set"));
        // SAFETY: this test alone uses this variable.
        unsafe {
            std::env::set_var(
                variable,
                serde_json::to_string(&key.to_keypair_bytes().to_vec()).unwrap(),
            )
        };
        assert_eq!(load(&env).unwrap().public(), key.public());
        unsafe { std::env::set_var(variable, "[1, 2, 3]") };
        assert!(load(&env).is_err());
    }
}
