//! The server's sockets: UDP and TCP on the DNS node's address in every network, each answered
//! by a [`ViewHandler`] over the same records, so a query's view depends on where it comes
//! from; only a query from outside every lab network gets the view of the address it was
//! sent to.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hickory_server::Server;
use siplab_topology::{Lab, Purpose};
use tokio::net::{TcpListener, UdpSocket};
use tracing::debug;

use crate::error::DnsError;
use crate::handler::ViewHandler;
use crate::zones::Directory;

/// How long a TCP connection may stay idle before the server closes it. Resolvers reuse a
/// connection for a burst of questions (discovery asks half a dozen); an idle one only holds
/// a file descriptor.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many responses may queue for one TCP connection before its handler waits.
const TCP_RESPONSE_BUFFER: usize = 32;

/// The lab's DNS server (ns.lab.test): authoritative for the lab's zones, split-horizon by the
/// querier's source address.
pub struct DnsServer;

impl DnsServer {
    /// Serves `lab` on every listener the topology gives the DNS node (`ports.dns` of each of
    /// its interfaces): one address per network.
    pub async fn start(lab: &Lab) -> Result<RunningDns, DnsError> {
        let addrs: Vec<SocketAddr> = lab
            .interfaces_of("DNS")
            .filter_map(|interface| interface.socket(Purpose::Dns))
            .collect();
        DnsServer::start_on(lab, &addrs).await
    }

    /// Serves `lab` on `addrs`, UDP and TCP on each. A port 0 is chosen by the system, the
    /// same for TCP as for UDP.
    pub async fn start_on(lab: &Lab, addrs: &[SocketAddr]) -> Result<RunningDns, DnsError> {
        if addrs.is_empty() {
            return Err(DnsError::NoListeners);
        }
        let directory = Arc::new(Directory::new(lab)?);
        let mut bound = Vec::with_capacity(addrs.len());
        let mut servers = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let bind_error = |source| DnsError::Bind { addr, source };
            let udp = UdpSocket::bind(addr).await.map_err(bind_error)?;
            let addr = udp.local_addr().map_err(bind_error)?;
            let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
            let mut server = Server::new(ViewHandler::new(directory.clone(), addr.ip()));
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
            debug!(%addr, "DNS listening (UDP and TCP)");
            bound.push(addr);
            servers.push(server);
        }
        Ok(RunningDns {
            addrs: bound,
            servers,
        })
    }
}

/// A started server. Dropping it stops it: hickory's tasks live in the server's task set,
/// which aborts them when dropped, and their sockets close as soon as the runtime gets to
/// them; to serve the same addresses again at once, await [`RunningDns::shutdown`] instead.
pub struct RunningDns {
    /// Where it listens, UDP and TCP, in the order given.
    pub addrs: Vec<SocketAddr>,
    /// One server per listening address, in the same order.
    servers: Vec<Server<ViewHandler>>,
}

impl RunningDns {
    /// Stops accepting, closes the sockets and waits until every task has ended.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        for server in &mut self.servers {
            server
                .shutdown_gracefully()
                .await
                .map_err(|error| DnsError::Stopped(Box::new(error)))?;
        }
        Ok(())
    }

    /// Resolves only if a server stops by itself, which means a socket failed; a program
    /// waits on this beside its shutdown signal.
    pub async fn stopped(&mut self) -> DnsError {
        let mut done: Vec<_> = self
            .servers
            .iter_mut()
            .map(|server| Box::pin(server.block_until_done()))
            .collect();
        // The first server to end, whichever it is.
        let outcome = std::future::poll_fn(|cx| {
            done.iter_mut()
                .find_map(|d| match d.as_mut().poll(cx) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                })
                .map_or(Poll::Pending, Poll::Ready)
        })
        .await;
        match outcome {
            Err(error) => DnsError::Stopped(Box::new(error)),
            Ok(()) => DnsError::Stopped(Box::new("every listener ended".into())),
        }
    }
}
