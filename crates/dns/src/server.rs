//! The server's sockets: UDP and TCP on the DNS node's address in every network, all answered
//! by one [`ViewHandler`], so a query's view depends on where it comes from and not on which
//! address it was sent to.

use std::net::SocketAddr;
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
        let mut server = Server::new(ViewHandler::new(Directory::new(lab)?));
        let mut bound = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let bind_error = |source| DnsError::Bind { addr, source };
            let udp = UdpSocket::bind(addr).await.map_err(bind_error)?;
            let addr = udp.local_addr().map_err(bind_error)?;
            let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
            debug!(%addr, "DNS listening (UDP and TCP)");
            bound.push(addr);
        }
        Ok(RunningDns {
            addrs: bound,
            server,
        })
    }
}

/// A started server. Dropping it stops it: hickory's tasks live in the server's task set,
/// which aborts them when dropped, and their sockets close as soon as the runtime gets to
/// them; to serve the same addresses again at once, await [`RunningDns::shutdown`] instead.
pub struct RunningDns {
    /// Where it listens, UDP and TCP, in the order given.
    pub addrs: Vec<SocketAddr>,
    server: Server<ViewHandler>,
}

impl RunningDns {
    /// Stops accepting, closes the sockets and waits until every task has ended.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|error| DnsError::Stopped(Box::new(error)))
    }

    /// Resolves only if the server stops by itself, which means a socket failed; a program
    /// waits on this beside its shutdown signal.
    pub async fn stopped(&mut self) -> DnsError {
        match self.server.block_until_done().await {
            Err(error) => DnsError::Stopped(Box::new(error)),
            Ok(()) => DnsError::Stopped(Box::new("every listener ended".into())),
        }
    }
}
