//! One node process with any combination of roles: the gateway HTTP API, a worker answering
//! leases from the peer network, a validator announcing what it validates, a bootstrap peer.
//!
//! With `p2p-listen` the node joins the peer network (its wallet key is its identity,
//! `<state>/peers.json` remembers its peers), serves its blobs by CID, announces provider
//! records for the manifests and artifacts it holds, and re-announces its signed node offer
//! (and validator offers) every `offer-interval-seconds`; they lapse after three intervals.

use std::sync::Arc;
use std::time::Duration;

use d402_network::{Network, NetworkConfig};
use d402_protocol::{
    Keypair, NodeOffer, OfferedCapability, Price, Signed, Timestamp, ValidatorOffer,
};

use crate::config::{NodeConfig, Role};
use crate::gateway::{Gateway, NodeParts};
use crate::installed::Installed;
use crate::worker::WorkerService;
use d402_store::StateDir;

/// The protocol version this node speaks (announced in its offers).
pub const PROTOCOL_VERSION: u32 = 1;
/// The software version announced in offers.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the node described by `config` until the process ends. Prints its peer-network
/// addresses (`d402 node p2p address …`) and, for a gateway, its HTTP address.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    config.validate()?;
    let parts = NodeParts::prepare(&config)?;
    let key = parts.key.clone();
    let network = match &config.network.listen {
        None => None,
        Some(listen) => Some(start_network(&config, &key, listen, &parts).await?),
    };
    let gateway = if config.has(Role::Gateway) {
        let gateway = Gateway::open_with(config.clone(), parts.clone(), network.clone()).await?;
        // The store is ours now: other commands on this state name this process.
        if let Err(e) = StateDir::new(&config.node.state).claim() {
            tracing::warn!(error = %e, "cannot record the node's pid");
        }
        Some(gateway)
    } else {
        None
    };
    if let Some(network) = &network {
        if config.has(Role::Worker) {
            let worker =
                WorkerService::new(key.clone(), &parts, network, config.network.max_leases);
            network.serve_leases(Arc::new(worker));
        }
        for installed in &parts.installed {
            network
                .provide(installed.package.manifest_cid.to_string())
                .await?;
            network
                .provide(installed.package.artifact_cid.to_string())
                .await?;
            let shard = crate::catalog::shard_of(&installed.manifest.capability_id());
            network.provide(d402_network::shard_key(&shard)).await?;
        }
        tokio::spawn(announce(
            network.clone(),
            key,
            config.clone(),
            parts.installed,
        ));
    }
    match gateway {
        Some(gateway) => {
            let listener = crate::http::bind(&gateway).await?;
            crate::admin::start(gateway.clone()).await?;
            crate::http::announce(&gateway, listener.local_addr()?);
            let mut server = tokio::spawn(crate::http::serve_on(listener, gateway.clone()));
            let outcome = tokio::select! {
                served = &mut server => served
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r.map_err(anyhow::Error::from)),
                () = shutdown_signal() => {
                    drain(&gateway).await;
                    Ok(())
                }
            };
            let state = StateDir::new(&config.node.state);
            crate::admin::remove_endpoint(&state);
            let _ = std::fs::remove_file(state.pid_file());
            outcome
        }
        None => {
            println!(
                "d402 node running ({})",
                config
                    .node
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            std::future::pending().await
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Stops admitting paid tasks and waits, up to the grace period, for the running ones to
/// be decided and settled. What is still running then stays stored as running and is
/// refunded when the node starts again (each once: the store decides a task only once).
async fn drain(gateway: &Gateway) {
    gateway.start_draining();
    let grace = Duration::from_secs(gateway.config().admin.shutdown_grace_seconds);
    let started = std::time::Instant::now();
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "stopping: no new paid tasks; letting running tasks finish"
    );
    loop {
        let running = gateway.store().running().map(|r| r.len()).unwrap_or(0);
        if running == 0 {
            tracing::info!("stopped: no task left running");
            return;
        }
        if started.elapsed() >= grace {
            for task in gateway.store().running().unwrap_or_default() {
                tracing::warn!(task = %task.task_id, "still running after the grace period; refunded when the node starts again");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_network(
    config: &NodeConfig,
    key: &Keypair,
    listen: &str,
    parts: &NodeParts,
) -> anyhow::Result<Arc<Network>> {
    let network_config = NetworkConfig {
        listen: listen.parse()?,
        bootstrap: config
            .network
            .bootstrap
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?,
        peer_store: Some(StateDir::new(&config.node.state).peers()),
        blobs: Some(parts.blobs.clone()),
    };
    let network = Arc::new(Network::start(key, network_config)?);
    for address in network.listen_addresses().await {
        println!("d402 node p2p address {address}");
    }
    Ok(network)
}

/// Announces the registrations held here once, and signs and announces the node's offers
/// now and every interval.
async fn announce(
    network: Arc<Network>,
    key: Keypair,
    config: NodeConfig,
    installed: Vec<Installed>,
) {
    let interval = Duration::from_secs(config.network.offer_interval_seconds);
    let addresses: Vec<String> = network.listen_address_texts().await;
    // Registrations are signed documents anyone may relay and they do not lapse: announced
    // once, they are re-published to every peer that subscribes.
    for (_, registration) in
        crate::catalog::read_registrations(&config.node.state).unwrap_or_default()
    {
        if let Ok(cid) = registration.cid() {
            let _ = network.announce(&registration, &cid.to_string()).await;
        }
    }
    loop {
        let signed = Signed::sign(node_offer(&key, &config, &addresses, &installed), &key);
        match signed {
            Ok(offer) => {
                if let Err(e) = network.announce(&offer, "node").await {
                    tracing::warn!(error = %e, "cannot announce the node offer");
                    return;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot sign the node offer"),
        }
        if config.has(Role::Validator) {
            for offer in validator_offers(&key, &config, &installed) {
                match Signed::sign(offer, &key) {
                    Ok(offer) => {
                        let _ = network
                            .announce(&offer, &offer.payload.capability_family)
                            .await;
                    }
                    Err(e) => tracing::error!(error = %e, "cannot sign a validator offer"),
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// The price a node asks for an installed capability: the configured override or the
/// manifest's price.
fn price_of(config: &NodeConfig, installed: &Installed) -> Price {
    config
        .capabilities
        .price
        .unwrap_or(installed.manifest.pricing.price)
}

/// This node's offer: its roles, addresses and, as a worker, the exact manifests it runs.
pub fn node_offer(
    key: &Keypair,
    config: &NodeConfig,
    addresses: &[String],
    installed: &[Installed],
) -> NodeOffer {
    let now = Timestamp::now();
    let capabilities = if config.has(Role::Worker) {
        installed
            .iter()
            .map(|i| OfferedCapability {
                capability_id: i.manifest.capability_id(),
                manifest_cid: i.package.manifest_cid,
                price: price_of(config, i),
            })
            .collect()
    } else {
        Vec::new()
    };
    NodeOffer {
        node_id: key.public(),
        addresses: addresses.to_vec(),
        payout_wallet: key.public().to_string(),
        evm_payout_wallet: config.x402.evm_payout_wallet.clone(),
        roles: config
            .node
            .roles
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
        capabilities,
        software_version: SOFTWARE_VERSION.into(),
        protocol_version: PROTOCOL_VERSION,
        issued_at: now,
        expires_at: now.plus_millis(config.network.offer_interval_seconds * 3 * 1000),
    }
}

/// One validator offer per installed capability: the manifest's model, the configured fee.
fn validator_offers(
    key: &Keypair,
    config: &NodeConfig,
    installed: &[Installed],
) -> Vec<ValidatorOffer> {
    let now = Timestamp::now();
    installed
        .iter()
        .map(|i| ValidatorOffer {
            validator_id: key.public(),
            capability_family: i.manifest.capability_id(),
            models: vec![i.manifest.validator.model],
            fee: Price(
                price_of(config, i)
                    .0
                    .share_bps(config.node.validator_fee_bps),
            ),
            payout_wallet: key.public().to_string(),
            evm_payout_wallet: config.x402.evm_payout_wallet.clone(),
            issued_at: now,
            expires_at: now.plus_millis(config.network.offer_interval_seconds * 3 * 1000),
        })
        .collect()
}
