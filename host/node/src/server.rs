//! The HTTP accept loop: one hyper HTTP/1 connection per accepted socket, with the limits a
//! public server needs against slow or vanishing clients:
//! - request headers must arrive within `http-header-timeout-seconds`;
//! - at most `http-max-connections` connections are held; when a new one arrives at the cap,
//!   the oldest connection with no request in flight (idle, half-open, or slow to send its
//!   headers) is closed to make room, so idle sockets cannot starve `/healthz`;
//! - accept errors (e.g. out of file descriptors) pause the loop briefly instead of ending it.
//!
//! Body read timeouts and the body size limit are applied by the handlers that read bodies.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_service::Service as _;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections held at once.
    pub max_connections: usize,
    /// Time a client has to send complete request headers.
    pub header_timeout: Duration,
}

/// One open connection as the registry sees it.
struct Open {
    /// Requests being served on it right now.
    in_flight: Arc<AtomicUsize>,
    /// Closes the connection when sent.
    close: oneshot::Sender<()>,
}

/// The open connections, oldest first (ids increase).
#[derive(Default)]
struct Registry {
    open: Mutex<BTreeMap<u64, Open>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Open>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; at `cap`, first closes the oldest one with no request in
    /// flight. Returns its id, in-flight counter and close signal.
    fn admit(&self, cap: usize) -> (u64, Arc<AtomicUsize>, oneshot::Receiver<()>) {
        let mut open = self.lock();
        if open.len() >= cap {
            let idle = open
                .iter()
                .find(|(_, c)| c.in_flight.load(Ordering::SeqCst) == 0)
                .map(|(id, _)| *id);
            if let Some(connection) = idle.and_then(|id| open.remove(&id).map(|c| (id, c))) {
                // The signal wakes the connection task, which closes the socket.
                let (id, connection) = connection;
                let _ = connection.close.send(());
                tracing::debug!(connection = id, "closed an idle connection to make room");
            }
        }
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (close, closed) = oneshot::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        open.insert(
            id,
            Open {
                in_flight: in_flight.clone(),
                close,
            },
        );
        (id, in_flight, closed)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` with `limits` until the process ends.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits) {
    let registry = Arc::new(Registry::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection; retrying shortly");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (id, in_flight, closed) = registry.admit(limits.max_connections.max(1));
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = InFlight::start(&in_flight);
            let mut router = router.clone();
            async move {
                let response = router.call(request.map(Body::new)).await;
                drop(guard);
                response.map_err(|never: Infallible| match never {})
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let registry = registry.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = closed => {}
            }
            registry.remove(id);
        });
    }
}
