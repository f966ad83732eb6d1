//! A resolver for one client of the lab: it asks the lab's DNS on the client's network, from
//! the client's own address, because that address is what picks the view (section 3). Nothing
//! of the host's own resolver configuration or `/etc/hosts` takes part.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as ResponseError, NetError};
use siplab_topology::{Lab, Purpose};
use tracing::debug;

use crate::error::DnsError;
use crate::zones::fqdn;

/// The port clients reach an edge on from the internet (section 1: 443), unless the lab maps it.
const CLIENT_PORT: u16 = 443;

/// How long one question may take. The lab's server answers from memory on a local network,
/// so anything slower is a server that is not there.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A resolver asking one lab DNS server from one source address, over UDP and, for large or
/// truncated answers, TCP. Answers are cached for their TTL by hickory's resolver cache.
#[derive(Clone)]
pub struct LabResolver {
    resolver: TokioResolver,
    server: SocketAddr,
    source: IpAddr,
    /// The port of clients' SIP to an edge in this profile, where discovery's last fallback
    /// (`sipexternal`) leads.
    pub(crate) client_port: u16,
}

/// One target of an SRV record, as a SIP client uses it (RFC 3263).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The host name, without the trailing dot; also the name the TLS peer must present.
    pub target: String,
}

/// `SRV 0 0 5061 pool01.contoso.test`, as discovery reports it.
impl fmt::Display for SrvTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SRV {} {} {} {}",
            self.priority, self.weight, self.port, self.target
        )
    }
}

impl LabResolver {
    /// A resolver asking `server` from `source` (any port). Discovery's `sipexternal` fallback
    /// uses the spec's client port 443; [`LabResolver::for_source`] takes it from the lab.
    pub fn new(server: SocketAddr, source: IpAddr) -> Result<LabResolver, DnsError> {
        let connection = |protocol| {
            let mut connection = ConnectionConfig::new(protocol);
            connection.port = server.port();
            connection.bind_addr = Some(SocketAddr::new(source, 0));
            connection
        };
        let name_server = NameServerConfig::new(
            server.ip(),
            true,
            vec![
                connection(ProtocolConfig::Udp),
                connection(ProtocolConfig::Tcp),
            ],
        );
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = QUERY_TIMEOUT;
        let resolver = builder.build().map_err(|source| DnsError::Resolver {
            server,
            source: Box::new(source),
        })?;
        Ok(LabResolver {
            resolver,
            server,
            source,
            client_port: CLIENT_PORT,
        })
    }

    /// The resolver of whoever has address `source` in `lab`: it asks the DNS node's address
    /// on `source`'s network, as a host configured by that network would.
    pub fn for_source(lab: &Lab, source: IpAddr) -> Result<LabResolver, DnsError> {
        let server = lab
            .network_of(source)
            .and_then(|network| lab.interface_on("DNS", &network.name))
            .and_then(|interface| interface.socket(Purpose::Dns))
            .ok_or(DnsError::NoServerFor(source))?;
        let mut resolver = LabResolver::new(server, source)?;
        // Every client listener of a profile has the same port (443, or its local mapping).
        if let Some(port) = lab.interfaces().iter().find_map(|i| i.ports.client) {
            resolver.client_port = port;
        }
        Ok(resolver)
    }

    /// The server asked.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The address questions come from, which picks the view.
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// The addresses of `name`.
    pub async fn lookup_a(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        let lookup = self.lookup(name, RecordType::A).await?;
        let addresses: Vec<Ipv4Addr> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        if addresses.is_empty() {
            return Err(no_records(name, RecordType::A));
        }
        Ok(addresses)
    }

    /// The targets of SRV record `name`, in the order to try them: lowest priority first, and
    /// within a priority the heaviest first (deterministic, where RFC 2782 draws by weight, so
    /// the lab's paths are reproducible).
    pub async fn lookup_srv(&self, name: &str) -> Result<Vec<SrvTarget>, DnsError> {
        let lookup = self.lookup(name, RecordType::SRV).await?;
        let mut targets: Vec<SrvTarget> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvTarget {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv.target.to_ascii().trim_end_matches('.').to_owned(),
                }),
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return Err(no_records(name, RecordType::SRV));
        }
        targets.sort_by_key(|t| (t.priority, std::cmp::Reverse(t.weight)));
        Ok(targets)
    }

    /// Where to send SIP for `host:port`: an address literal as it is, a name by its first
    /// A record.
    pub async fn resolve_sip(&self, host: &str, port: u16) -> Result<SocketAddr, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let address = self.first_address(host).await?;
        Ok(SocketAddr::new(IpAddr::V4(address), port))
    }

    /// The first address of `name`.
    pub(crate) async fn first_address(&self, name: &str) -> Result<Ipv4Addr, DnsError> {
        self.lookup_a(name)
            .await?
            .first()
            .copied()
            .ok_or_else(|| no_records(name, RecordType::A))
    }

    async fn lookup(&self, name: &str, record_type: RecordType) -> Result<Lookup, DnsError> {
        let dns_name = fqdn(name)?;
        let result = self.resolver.lookup(dns_name, record_type).await;
        debug!(name, %record_type, source = %self.source, ok = result.is_ok(), "DNS look-up");
        result.map_err(|error| self.error(name, record_type, error))
    }

    /// Sorts a resolver error into "not there" (an answer), "refused" and real failures.
    fn error(&self, name: &str, record_type: RecordType, error: NetError) -> DnsError {
        if error.is_nx_domain() {
            return DnsError::NotFound {
                name: name.to_owned(),
                record_type: record_type.into(),
            };
        }
        if error.is_no_records_found() {
            return no_records(name, record_type);
        }
        if matches!(
            &error,
            NetError::Dns(ResponseError::ResponseCode(ResponseCode::Refused))
        ) {
            return DnsError::Refused {
                name: name.to_owned(),
                record_type: record_type.into(),
                server: self.server,
                source_ip: self.source,
            };
        }
        DnsError::Lookup {
            name: name.to_owned(),
            record_type: record_type.into(),
            server: self.server,
            source: Box::new(error),
        }
    }
}

fn no_records(name: &str, record_type: RecordType) -> DnsError {
    DnsError::NoRecords {
        name: name.to_owned(),
        record_type: record_type.into(),
    }
}
