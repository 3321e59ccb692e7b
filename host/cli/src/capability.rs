//! `d402 capability …`: manifests, registrations, namespace proofs and implementation packages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use d402_protocol::{
    CapabilityManifest, CapabilityRegistration, ContentId, CreatorCommission,
    DEFAULT_MAX_CREATOR_COMMISSION_BPS, ImplementationPackage, Keypair, NamespaceProof,
    PROOF_TYPE_WALLET, PublicKey, Signed, Timestamp, WORLD_WEB,
};

use crate::files::{pretty, read_bytes, read_json, read_manifest, write_json};
use d402_store::StateDir;

/// Capability subcommands.
#[derive(Subcommand)]
pub enum CapabilityCommand {
    /// Print a valid manifest skeleton for a new capability.
    Template {
        /// Dotted capability id; its first segment is the namespace.
        #[arg(long)]
        id: String,
        /// Version (a major number like 1, or 1.2.0).
        #[arg(long, default_value = "1")]
        version: String,
        /// Use the web world (browser permission) instead of the pure one.
        #[arg(long)]
        web: bool,
    },
    /// Validate a manifest's shape and schemas and print its CID.
    Validate {
        /// The manifest file.
        #[arg(long = "manifest", alias = "file", value_name = "FILE")]
        file: PathBuf,
        /// Also check that runtime.artifactCid is this WASM file's CID.
        #[arg(long)]
        wasm: Option<PathBuf>,
    },
    /// Sign a registration envelope binding the manifest CID to a namespace.
    Register(RegisterArgs),
    /// Register, package and install in one step: the common case of a creator serving
    /// their own capability on their node.
    Publish(PublishArgs),
    /// Verify a registration: signature, manifest CID, commission cap and namespace proof.
    Verify {
        /// The registration envelope.
        #[arg(long)]
        file: PathBuf,
        /// The manifest the registration must name exactly.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Largest creator commission accepted, in basis points.
        #[arg(long, env = "D402_MAX_CREATOR_COMMISSION_BPS", default_value_t = DEFAULT_MAX_CREATOR_COMMISSION_BPS)]
        max_commission_bps: u32,
    },
    /// Sign a namespace proof: the namespace owner lets a publisher key publish under it.
    NamespaceProof {
        /// The namespace.
        #[arg(long)]
        namespace: String,
        /// The owner's key file (signs the proof).
        #[arg(long)]
        key: PathBuf,
        /// The publisher address allowed to publish; defaults to the owner.
        #[arg(long)]
        delegate: Option<PublicKey>,
        /// Days until the proof expires; never when absent.
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// Where to write the proof.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create or install signed implementation packages (manifest → WASM artifact).
    #[command(subcommand)]
    Implementation(ImplementationCommand),
    /// Run a capability locally in the sandbox and print its output and run evidence.
    Run(crate::run::RunArgs),
    /// Create a working capability crate (Rust, d402-sdk) and its manifest.
    New {
        /// Crate name, e.g. word-count.
        name: String,
        /// Capability id; defaults to local.<name>.
        #[arg(long)]
        id: Option<String>,
        /// Directory to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the d402-sdk crate (defaults to the SDK this d402 was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

/// Arguments of `capability register`.
#[derive(Args)]
pub struct RegisterArgs {
    /// The manifest file.
    #[arg(long = "manifest", alias = "file", value_name = "FILE")]
    file: PathBuf,
    /// Publisher state directory (holds wallet.json and the registrations).
    #[arg(long)]
    state: PathBuf,
    /// Namespace to register under; must be the capability id's first segment.
    #[arg(long)]
    namespace: String,
    /// Publisher key file; defaults to <state>/wallet.json (created if missing).
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    terms: RegistrationTerms,
}

/// What a registration declares besides the manifest: commission terms, namespace proof.
#[derive(Args)]
pub struct RegistrationTerms {
    /// Creator commission in basis points (needs --commission-wallet).
    #[arg(long, requires = "commission_wallet")]
    commission_bps: Option<u32>,
    /// Account the creator commission is paid to.
    #[arg(long, requires = "commission_bps")]
    commission_wallet: Option<String>,
    /// Rail the commission is paid on: solana, base or simulated.
    #[arg(long, default_value = "solana")]
    commission_rail: String,
    /// A namespace proof file to embed.
    #[arg(long, value_name = "FILE")]
    namespace_proof: Option<PathBuf>,
    /// Largest creator commission accepted, in basis points.
    #[arg(long, env = "D402_MAX_CREATOR_COMMISSION_BPS", default_value_t = DEFAULT_MAX_CREATOR_COMMISSION_BPS)]
    max_commission_bps: u32,
}

impl RegistrationTerms {
    /// A registration of `manifest` by `key` with these terms, signed and checked as a
    /// node would check it, before anything is written.
    fn sign(
        &self,
        manifest: &CapabilityManifest,
        key: &Keypair,
    ) -> anyhow::Result<Signed<CapabilityRegistration>> {
        let mut registration =
            CapabilityRegistration::for_manifest(manifest, key.public(), Timestamp::now())?;
        registration.creator_commission = self
            .commission_bps
            .zip(self.commission_wallet.clone())
            .map(|(rate_bps, wallet)| {
                CreatorCommission::new(rate_bps, wallet, self.commission_rail.clone())
            });
        if let Some(path) = &self.namespace_proof {
            registration.namespace_proof = Some(read_json(path)?);
        }
        let envelope = Signed::sign(registration, key)?;
        envelope
            .verify_registration(Some(manifest), self.max_commission_bps, Timestamp::now())
            .context("refusing to register")?;
        Ok(envelope)
    }
}

/// Arguments of `d402 capability publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// The manifest file.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The WASM component.
    #[arg(long, value_name = "FILE")]
    wasm: PathBuf,
    /// The creator's key file (signs the registration and the package; `d402 keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The node's state directory to install into.
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    #[command(flatten)]
    terms: RegistrationTerms,
}

/// Implementation package subcommands.
#[derive(Subcommand)]
pub enum ImplementationCommand {
    /// Sign a package pointing a manifest at a WASM component.
    Create {
        /// The manifest file.
        #[arg(long)]
        manifest: PathBuf,
        /// The WASM component.
        #[arg(long)]
        wasm: PathBuf,
        /// Publisher key file.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the package.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a package against its WASM (and manifest) and install it into a node's store.
    Install(InstallArgs),
}

/// Arguments of `d402 capability implementation install`.
#[derive(Args)]
pub struct InstallArgs {
    /// The package file.
    #[arg(long)]
    file: PathBuf,
    /// The WASM component it names.
    #[arg(long)]
    wasm: PathBuf,
    /// The manifest it implements (stored alongside).
    #[arg(long)]
    manifest: PathBuf,
    /// The node's state directory.
    #[arg(long)]
    state: PathBuf,
    /// Accept only packages signed by one of these publishers (repeatable).
    #[arg(long)]
    trusted_publisher: Vec<PublicKey>,
    /// A signed registration of the manifest to install with it (creator commission terms,
    /// namespace proof); verified first.
    #[arg(long)]
    registration: Option<PathBuf>,
    /// Cap on the registration's creator commission, basis points.
    #[arg(long, env = "D402_MAX_CREATOR_COMMISSION_BPS", default_value_t = DEFAULT_MAX_CREATOR_COMMISSION_BPS)]
    max_commission_bps: u32,
}

/// Runs one capability subcommand.
pub fn run(command: CapabilityCommand) -> anyhow::Result<ExitCode> {
    let done = match command {
        CapabilityCommand::Run(args) => return crate::run::run(args),
        CapabilityCommand::New {
            name,
            id,
            dir,
            sdk_path,
        } => crate::scaffold::new_capability(&name, id.as_deref(), &dir, sdk_path.as_deref()),
        CapabilityCommand::Template { id, version, web } => template(&id, &version, web),
        CapabilityCommand::Validate { file, wasm } => validate(&file, wasm.as_deref()),
        CapabilityCommand::Register(args) => register(args),
        CapabilityCommand::Publish(args) => publish(args),
        CapabilityCommand::Verify {
            file,
            manifest,
            max_commission_bps,
        } => verify(&file, manifest.as_deref(), max_commission_bps),
        CapabilityCommand::NamespaceProof {
            namespace,
            key,
            delegate,
            expires_in_days,
            out,
        } => namespace_proof(&namespace, &key, delegate, expires_in_days, &out),
        CapabilityCommand::Implementation(ImplementationCommand::Create {
            manifest,
            wasm,
            key,
            out,
        }) => implementation_create(&manifest, &wasm, &key, &out),
        CapabilityCommand::Implementation(ImplementationCommand::Install(args)) => {
            implementation_install(args)
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn template(id: &str, version: &str, web: bool) -> anyhow::Result<()> {
    let mut manifest = CapabilityManifest::template(id, version);
    if web {
        manifest.runtime.world = WORLD_WEB.to_string();
    }
    manifest
        .validate()
        .context("cannot make a template from these arguments")?;
    print!("{}", pretty(&manifest)?);
    Ok(())
}

fn validate(file: &Path, wasm: Option<&Path>) -> anyhow::Result<()> {
    let manifest = read_manifest(file)?;
    if let Some(wasm) = wasm {
        let actual = ContentId::of_bytes(&read_bytes(wasm)?);
        match manifest.runtime.artifact_cid {
            Some(pinned) if pinned == actual => {}
            Some(pinned) => bail!(
                "runtime.artifactCid: the manifest pins {pinned}, but {} is {actual}",
                wasm.display()
            ),
            None => bail!(
                "runtime.artifactCid: not set; {} is {actual}",
                wasm.display()
            ),
        }
    }
    println!("{}", manifest.cid()?);
    Ok(())
}

fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let manifest = read_manifest(&args.file)?;
    if manifest.namespace() != args.namespace {
        bail!(
            "--namespace {:?}: capability {} belongs to namespace {:?}",
            args.namespace,
            manifest.id,
            manifest.namespace()
        );
    }
    let key_path = args
        .key
        .clone()
        .unwrap_or_else(|| StateDir::new(&args.state).wallet());
    let key = d402_wallet::load_or_create(&key_path)?;
    let envelope = args.terms.sign(&manifest, &key)?;
    let cid = envelope.cid()?;
    write_json(
        &StateDir::new(&args.state).manifest(&manifest.cid()?),
        &manifest,
    )?;
    let path = StateDir::new(&args.state).registration(&cid);
    write_json(&path, &envelope)?;
    print!("{}", pretty(&envelope)?);
    eprintln!("registration {cid} written to {}", path.display());
    Ok(())
}

/// Registers, packages and installs in one step; every piece is signed and checked before
/// anything is installed.
fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let manifest = read_manifest(&args.manifest)?;
    let artifact = read_bytes(&args.wasm)?;
    let key = d402_wallet::load(&args.key).with_context(|| {
        format!(
            "the creator key {} (create one with d402 keygen --out FILE)",
            args.key.display()
        )
    })?;
    let registration = args.terms.sign(&manifest, &key)?;
    let package =
        d402_node::installed::create_package(&manifest, &artifact, &key, Timestamp::now())?;
    let installed = d402_node::installed::install_package(
        &args.state,
        &package,
        &manifest,
        &artifact,
        &[key.public()],
    )?;
    let registration_cid = d402_node::installed::install_registration(
        &args.state,
        &registration,
        &manifest,
        args.terms.max_commission_bps,
        Timestamp::now(),
    )?;
    println!(
        "published {} (manifest {}, artifact {}, registration {registration_cid}) in {}",
        installed.capability_id,
        installed.manifest_cid,
        installed.artifact_cid,
        args.state.display()
    );
    println!(
        "serve it: d402 node --state {} --capability {}",
        args.state.display(),
        installed.capability_id
    );
    Ok(())
}

fn verify(file: &Path, manifest: Option<&Path>, max_commission_bps: u32) -> anyhow::Result<()> {
    let envelope: Signed<CapabilityRegistration> = read_json(file)?;
    let manifest = manifest.map(read_manifest).transpose()?;
    let registration = envelope
        .verify_registration(manifest.as_ref(), max_commission_bps, Timestamp::now())
        .with_context(|| format!("{} does not verify", file.display()))?;
    println!("registration {}", envelope.cid()?);
    println!("  signature      ok (publisher {})", registration.publisher);
    match manifest {
        Some(_) => println!("  manifest       ok ({})", registration.manifest_cid),
        None => println!("  manifest       not checked (pass --manifest)"),
    }
    match &registration.creator_commission {
        Some(c) => println!(
            "  commission     ok ({} bps to {}, cap {max_commission_bps})",
            c.rate_bps, c.wallet
        ),
        None => println!("  commission     none"),
    }
    match &registration.namespace_proof {
        Some(proof) => println!(
            "  namespace      ok ({} owned by {})",
            registration.namespace, proof.signer
        ),
        None => println!("  namespace      no proof"),
    }
    Ok(())
}

fn namespace_proof(
    namespace: &str,
    key: &Path,
    delegate: Option<PublicKey>,
    expires_in_days: Option<u64>,
    out: &Path,
) -> anyhow::Result<()> {
    if let Err(reason) = d402_protocol::check_capability_name(&format!("{namespace}.x")) {
        bail!("--namespace {namespace:?}: {reason}");
    }
    let owner: Keypair = d402_wallet::load(key)?;
    let issued_at = Timestamp::now();
    let proof = NamespaceProof {
        namespace: namespace.to_string(),
        proof_type: PROOF_TYPE_WALLET.to_string(),
        delegate: delegate.unwrap_or_else(|| owner.public()),
        issued_at,
        expires_at: expires_in_days.map(|days| issued_at.plus_millis(days * 86_400_000)),
    };
    let envelope = Signed::sign(proof, &owner)?;
    write_json(out, &envelope)?;
    println!("{}", envelope.cid()?);
    Ok(())
}

fn implementation_create(
    manifest: &Path,
    wasm: &Path,
    key: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let manifest = read_manifest(manifest)?;
    let artifact = read_bytes(wasm)?;
    let envelope = d402_node::installed::create_package(
        &manifest,
        &artifact,
        &d402_wallet::load(key)?,
        Timestamp::now(),
    )?;
    write_json(out, &envelope)?;
    println!("{}", envelope.cid()?);
    Ok(())
}

fn implementation_install(args: InstallArgs) -> anyhow::Result<()> {
    let envelope: Signed<ImplementationPackage> = read_json(&args.file)?;
    let manifest = read_manifest(&args.manifest)?;
    let artifact = read_bytes(&args.wasm)?;
    let registration: Option<Signed<CapabilityRegistration>> =
        args.registration.as_deref().map(read_json).transpose()?;
    // Everything is verified before anything reaches the store.
    if let Some(registration) = &registration {
        registration
            .verify_registration(Some(&manifest), args.max_commission_bps, Timestamp::now())
            .context("the registration does not verify")?;
    }
    let package = d402_node::installed::install_package(
        &args.state,
        &envelope,
        &manifest,
        &artifact,
        &args.trusted_publisher,
    )
    .with_context(|| format!("{} does not verify", args.file.display()))?;
    if let Some(registration) = &registration {
        let cid = d402_node::installed::install_registration(
            &args.state,
            registration,
            &manifest,
            args.max_commission_bps,
            Timestamp::now(),
        )?;
        println!("registration {cid} installed");
    }
    println!(
        "installed {} (manifest {}, artifact {})",
        package.capability_id, package.manifest_cid, package.artifact_cid
    );
    Ok(())
}
