//! The accept loop the lab's small TCP services share (the HEP collector, the live page):
//! a bounded number of connections at once, each served by a task of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::quiet::Repeated;

/// Accept errors (EMFILE, say), logged at most once a second.
static ACCEPT_FAILED: Repeated = Repeated::new();

/// Accepts on `listener` until the process ends and hands each connection to `serve`, at
/// most `max` at once: more are closed at accept (logged at debug), and a failed accept
/// waits 50 ms instead of spinning. `what` names the service in the log.
pub fn serve_bounded<F, Fut>(listener: TcpListener, max: usize, what: &'static str, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let places = Arc::new(Semaphore::new(max));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    if let Some(repeated) = ACCEPT_FAILED.due() {
                        tracing::warn!(error = %e, what, repeated, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(place) = places.clone().try_acquire_owned() else {
                debug!(%peer, what, max, "too many connections at once; refused");
                continue;
            };
            let served = serve(stream, peer);
            tokio::spawn(async move {
                let _place = place;
                served.await;
            });
        }
    });
}
