//! `d402 release keygen|manifest|sign`: threshold-signed release manifests. A manifest
//! names a component's version, its artifacts by SHA-256 and size, a channel, a rollout
//! policy, a sequence that only grows and an expiry; release keys sign it one at a time
//! (`sign` is idempotent), and clients (`d402-agent update`) require k distinct trusted
//! signatures.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use d402_protocol::{
    ContentHash, Keypair, ProtocolCompatibility, ReleaseArtifact, ReleaseManifest, ThresholdSigned,
    Timestamp,
};
use serde_json::json;

use crate::files::{read_json, write_json};

/// `d402 release` commands.
#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Create a release key: the private key as PKCS#8 PEM (0600), the public key as JSON.
    Keygen {
        /// Where to write the private key (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        private_key_file: PathBuf,
        /// Where to write the public key (`{"publicKey": "<base58>"}`).
        #[arg(long, value_name = "FILE")]
        public_key_file: PathBuf,
    },
    /// Write an unsigned release manifest, hashing the artifacts.
    Manifest {
        /// Component, e.g. agent or node.
        #[arg(long)]
        component: String,
        /// Package name, e.g. @d402/agent.
        #[arg(long)]
        package_name: String,
        /// Version released.
        #[arg(long)]
        version: String,
        /// npm or binary.
        #[arg(long, value_parser = ["npm", "binary"])]
        artifact_type: String,
        /// An artifact file (repeatable): hashed and sized here.
        #[arg(long = "artifact", value_name = "FILE")]
        artifacts: Vec<PathBuf>,
        /// Channel: stable, beta or security.
        #[arg(long, default_value = "stable", value_parser = ["stable", "beta", "security"])]
        channel: String,
        /// Rollout policy: notify, stage-patch, stage-security or manual.
        #[arg(long, default_value = "notify", value_parser = ["notify", "stage-patch", "stage-security", "manual"])]
        rollout_policy: String,
        /// Greater than every earlier release's sequence of this component.
        #[arg(long)]
        sequence: u64,
        /// Days until clients stop accepting the manifest (required: metadata must expire).
        #[arg(long)]
        expires_in_days: u64,
        /// Oldest protocol version the release speaks.
        #[arg(long, default_value_t = 1)]
        protocol_min: u32,
        /// Newest protocol version the release speaks.
        #[arg(long, default_value_t = 1)]
        protocol_max: u32,
        /// Where to write the manifest.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Add one key's signature to a manifest (again with the same key: replaced, not added).
    Sign {
        /// The manifest.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The release key (PKCS#8 PEM).
        #[arg(long, value_name = "FILE")]
        private_key_file: PathBuf,
    },
}

/// Runs a `d402 release` command.
pub fn run(command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReleaseCommand::Keygen {
            private_key_file,
            public_key_file,
        } => {
            let key = d402_wallet::generate();
            anyhow::ensure!(
                !private_key_file.exists(),
                "{} exists; refusing to overwrite a release key",
                private_key_file.display()
            );
            d402_wallet::write_private(&private_key_file, key.to_pkcs8_pem()?.as_bytes())
                .with_context(|| format!("cannot write {}", private_key_file.display()))?;
            write_json(
                &public_key_file,
                &json!({"publicKey": key.public().to_string()}),
            )?;
            println!("{}", key.public());
        }
        ReleaseCommand::Manifest {
            component,
            package_name,
            version,
            artifact_type,
            artifacts,
            channel,
            rollout_policy,
            sequence,
            expires_in_days,
            protocol_min,
            protocol_max,
            output,
        } => {
            anyhow::ensure!(
                !artifacts.is_empty(),
                "name the release's files with --artifact FILE"
            );
            anyhow::ensure!(expires_in_days > 0, "--expires-in-days must be at least 1");
            let now = Timestamp::now();
            let manifest = ReleaseManifest {
                component,
                package_name,
                version,
                artifact_type,
                artifacts: artifacts
                    .iter()
                    .map(|path| artifact(path))
                    .collect::<anyhow::Result<_>>()?,
                channel,
                rollout_policy,
                protocol_compatibility: ProtocolCompatibility {
                    min: protocol_min,
                    max: protocol_max,
                },
                sequence,
                created_at: now,
                expires_at: now.plus_millis(expires_in_days * 86_400_000),
            };
            write_json(&output, &ThresholdSigned::new(manifest))?;
            eprintln!(
                "wrote {} (unsigned: add signatures with d402 release sign)",
                output.display()
            );
        }
        ReleaseCommand::Sign {
            file,
            private_key_file,
        } => {
            let pem = std::fs::read_to_string(&private_key_file)
                .with_context(|| format!("cannot read {}", private_key_file.display()))?;
            let key = Keypair::from_pkcs8_pem(&pem)
                .with_context(|| format!("{} is not a release key", private_key_file.display()))?;
            let mut manifest: ThresholdSigned<ReleaseManifest> = read_json(&file)?;
            manifest.add_signature(&key)?;
            write_json(&file, &manifest)?;
            eprintln!(
                "{} now carries {} signature(s)",
                file.display(),
                manifest.signatures.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `path` hashed and sized, named by its file name.
fn artifact(path: &Path) -> anyhow::Result<ReleaseArtifact> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    Ok(ReleaseArtifact {
        name: name.to_string(),
        sha256: ContentHash::of(&bytes),
        bytes: bytes.len() as u64,
    })
}
