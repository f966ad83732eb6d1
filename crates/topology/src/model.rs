//! The lab's parts, typed. They refer to each other by name; [`crate::Lab`] only hands out
//! parts whose every reference it has checked, and resolves the names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

use crate::names::{InterfaceName, NodeName, Placement, UserClass};
use crate::subnet::Subnet;

/// The lab's own HEP collector in the containers (`siplab collect`, not a node of the
/// reference): every node exports what it sends and receives to the collector's address on
/// the node's own network, and the collector serves the live page. It sits on each network
/// with one address and forwards nothing, so the networks stay apart.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collector {
    /// Where HEPv3 arrives (UDP and TCP).
    pub hep_port: u16,
    /// Where the live page is served (HTTP).
    pub web_port: u16,
    /// One address on each network it joins.
    pub addresses: Vec<Ipv4Addr>,
}

impl Collector {
    /// Its address on the network `subnet`.
    pub fn address_in(&self, subnet: &Subnet) -> Option<Ipv4Addr> {
        self.addresses.iter().copied().find(|a| subnet.contains(*a))
    }
}

/// A network of section 2.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    /// The addresses of this profile: the container network, or a test slot's loopback range.
    pub subnet: Subnet,
    /// The slot-0 range of the single-process profile; see [`crate::Lab::localized`].
    pub loopback: Subnet,
}

/// A company's SIP domain (section 1), served on-premises and, for its class B users, by the
/// cloud's hosting provider; or a cloud-only tenant's, served by the cloud alone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    pub name: String,
    /// The digit in the spec's placement names (`A1i`).
    pub company: u8,
    /// The on-premises front end (or pool) and edge; neither for a cloud-only tenant.
    pub frontend: Option<NodeName>,
    pub edge: Option<NodeName>,
    /// Where the edge sends this domain's users that are not homed on-premises (shared SIP
    /// address space), as the proxy FQDN the edge is configured with.
    pub hosting_provider: String,
    /// The host of the hosting provider's autodiscover service (the AutodiscoverUrl of a
    /// Skype for Business hosting provider), where this domain's autodiscover sends its
    /// cloud-hosted users; it is reached on the web port of the interface carrying the name.
    pub hosting_autodiscover: String,
    /// How the cloud pool sends this tenant's users' requests for anyone it does not host.
    #[serde(default)]
    pub federation: Federation,
}

impl Domain {
    /// Whether the domain has no servers of its own: all its users are homed in the cloud.
    pub fn is_cloud_only(&self) -> bool {
        self.frontend.is_none()
    }
}

/// How a tenant's cloud users reach other domains (the article's question: to the hybrid
/// partner, or straight to the federation partner?).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Federation {
    /// Out through the cloud edge to the tenant's own on-prem edge, which federates on
    /// (rows 15 to 17: what the article observed of hybrid tenants).
    #[default]
    ViaHybridPartner,
    /// The cloud edge resolves the partner's `_sipfederationtls._tcp` and connects itself,
    /// as sipfed.online.lync.test (a cloud-only tenant has no other way).
    Direct,
}

impl fmt::Display for Federation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Federation::ViaHybridPartner => "via-hybrid-partner",
            Federation::Direct => "direct",
        })
    }
}

/// Several registrar nodes behind one FQDN (a Skype for Business Enterprise pool, the cloud
/// pool): every user is homed on one member; a member passes what is for another member's
/// user on to it, and records routes under the pool's name with the member as `ms-fe`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// What an edge's `frontend` names to mean the pool.
    pub name: NodeName,
    /// The pool's FQDN, one A record per member.
    pub fqdn: String,
    /// In the order an entry member is picked from.
    pub members: Vec<NodeName>,
}

/// A user (section 1).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// `alice@contoso.test`.
    pub aor: String,
    pub class: UserClass,
    /// The registrar that keeps the user's bindings: its front end, or the cloud pool.
    pub home: NodeName,
}

impl User {
    /// The part of the AOR after the `@`.
    pub fn domain(&self) -> &str {
        self.aor.split_once('@').map_or("", |(_, domain)| domain)
    }

    /// The user's SIP URI, as its client certificate carries it (section 7).
    pub fn uri(&self) -> String {
        format!("sip:{}", self.aor)
    }
}

/// What a node does; each role is one routing policy (section 5, "Why each hop happens").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Frontend,
    Edge,
    CloudEdge,
    CloudPool,
    Dns,
    /// Another company's SIP server that is not a siplab program (Kamailio, say): the lab
    /// names its federation host, issues its certificate and serves its DNS records, and
    /// its edges federate with it, but no siplab program runs it.
    Partner,
}

impl Role {
    /// Whether a siplab program serves this role: every role but the DNS server (a program
    /// of its own, not a SIP node) and an outside partner.
    pub fn is_siplab_sip_node(self) -> bool {
        !matches!(self, Role::Dns | Role::Partner)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Frontend => "frontend",
            Role::Edge => "edge",
            Role::CloudEdge => "cloud-edge",
            Role::CloudPool => "cloud-pool",
            Role::Dns => "dns",
            Role::Partner => "partner",
        })
    }
}

/// One of the lab's server programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: NodeName,
    pub role: Role,
    /// The SIP domain a front end or edge serves; the cloud serves every tenant.
    pub domain: Option<String>,
    /// For a front end or the cloud pool: the edge everything not delivered locally leaves by.
    pub edge: Option<NodeName>,
    /// For an edge or the cloud edge: its internal next hop.
    pub frontend: Option<NodeName>,
    /// For a front end: where a cloud-hosted user who registers here is sent (301 Contact).
    pub cloud_redirect: Option<CloudRedirect>,
    /// In the order lab.toml lists them.
    pub interfaces: Vec<InterfaceName>,
    /// Its limits on what comes from outside: the lab's `[limits]`, then its own.
    pub limits: NodeLimits,
}

/// Limits on what comes from outside, as the lab file sets them: the top-level `[limits]`
/// for every node, a node's `limits = { ... }` over that. What neither sets keeps the
/// programs' default (`siplab_transport::Limits`, `siplab_proxy::ProxyConfig`), far above
/// what a lab on one machine sends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLimits {
    /// Connections open at once, inbound and outbound together.
    pub max_connections: Option<usize>,
    /// Inbound connections from one address: open, with their TLS handshake under way, and
    /// not yet past their first message.
    pub max_connections_per_source: Option<usize>,
    pub max_pending_per_source: Option<usize>,
    pub max_silent_per_source: Option<usize>,
    /// Seconds a TLS handshake may take.
    pub handshake_timeout_s: Option<u64>,
    /// Seconds a begun message may take to arrive whole.
    pub message_read_timeout_s: Option<u64>,
    /// Seconds an inbound connection may take to send its first message.
    pub first_message_timeout_s: Option<u64>,
    /// Seconds a connection may carry nothing before it is closed.
    pub idle_timeout_s: Option<u64>,
    /// Requests being answered at once, and at once for one client identity and for one
    /// connection.
    pub max_transactions: Option<usize>,
    pub max_client_transactions: Option<usize>,
    pub max_connection_transactions: Option<usize>,
    /// Requests a second (and at once) of one client identity, and of one source address.
    pub client_rate: Option<u32>,
    pub client_burst: Option<u32>,
    pub source_rate: Option<u32>,
    pub source_burst: Option<u32>,
}

impl NodeLimits {
    /// These, with `over`'s wherever it sets one.
    pub fn with(&self, over: &NodeLimits) -> NodeLimits {
        macro_rules! pick {
            ($($f:ident),*) => { NodeLimits { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            max_connections,
            max_connections_per_source,
            max_pending_per_source,
            max_silent_per_source,
            handshake_timeout_s,
            message_read_timeout_s,
            first_message_timeout_s,
            idle_timeout_s,
            max_transactions,
            max_client_transactions,
            max_connection_transactions,
            client_rate,
            client_burst,
            source_rate,
            source_burst
        )
    }
}

impl Node {
    /// The node this one hands requests to that it does not handle itself: a front end's
    /// edge, an edge's front end.
    pub fn next_hop(&self) -> Option<&NodeName> {
        self.edge.as_ref().or(self.frontend.as_ref())
    }
}

/// The Contact of the 301 a front end answers a cloud-hosted user's REGISTER with (section 4).
/// Host and port are kept apart so the single-process profile can map the port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudRedirect {
    pub host: String,
    pub port: u16,
}

impl CloudRedirect {
    /// `sip:sipdir.online.lync.test:443;transport=tls`.
    pub fn uri(&self) -> String {
        format!("sip:{}:{};transport=tls", self.host, self.port)
    }
}

/// An address of a node on one network. A Via names the interface a request left from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: InterfaceName,
    pub node: NodeName,
    pub network: String,
    pub address: Ipv4Addr,
    /// The names it is reached by, as its certificate carries them.
    pub fqdns: Vec<String>,
    pub ports: Ports,
}

impl Interface {
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.address)
    }

    /// Where it listens for `purpose`, if it does.
    pub fn socket(&self, purpose: Purpose) -> Option<SocketAddr> {
        self.ports
            .get(purpose)
            .map(|port| SocketAddr::new(self.ip(), port))
    }

    /// Every listening socket, with its purpose. Purposes on the same port (client and web)
    /// name the same socket, once each.
    pub fn sockets(&self) -> impl Iterator<Item = (Purpose, SocketAddr)> + '_ {
        Purpose::ALL
            .into_iter()
            .filter_map(|purpose| Some((purpose, self.socket(purpose)?)))
    }
}

/// Why a listener exists; the same purpose has different ports in the two profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// SIP over TLS between servers and for federation (5061).
    Sip,
    /// SIP over TLS for clients coming from the internet (443).
    Client,
    /// HTTPS for autodiscover (443). Where it is also the client port, one listener serves
    /// both and tells them apart by ALPN.
    Web,
    /// DNS (53).
    Dns,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [Purpose::Sip, Purpose::Client, Purpose::Web, Purpose::Dns];
}

/// An interface's listening ports by purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub sip: Option<u16>,
    pub client: Option<u16>,
    pub web: Option<u16>,
    pub dns: Option<u16>,
}

impl Ports {
    pub fn get(&self, purpose: Purpose) -> Option<u16> {
        match purpose {
            Purpose::Sip => self.sip,
            Purpose::Client => self.client,
            Purpose::Web => self.web,
            Purpose::Dns => self.dns,
        }
    }

    pub fn listens_on(&self, port: u16) -> bool {
        Purpose::ALL
            .into_iter()
            .any(|purpose| self.get(purpose) == Some(port))
    }

    /// The same listeners with each port replaced by `map(port)`.
    pub fn map(self, map: impl Fn(u16) -> u16) -> Ports {
        Ports {
            sip: self.sip.map(&map),
            client: self.client.map(&map),
            web: self.web.map(&map),
            dns: self.dns.map(&map),
        }
    }
}

/// Where test clients of one placement sit. Every user of the placement's class and company
/// may sit there; they share the address and differ by port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPlace {
    pub name: Placement,
    pub network: String,
    /// The address clients bind, and the source of their DNS queries (which picks the view).
    pub address: Ipv4Addr,
    /// For an internal client, the internet address it uses towards the internet: its NAT.
    pub nat: Option<Ipv4Addr>,
}

impl ClientPlace {
    /// Its own address, then its NAT address if it has one.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        std::iter::once(self.address).chain(self.nat)
    }
}

/// One column of section 3: what a querier on the view's networks gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsView {
    pub name: String,
    /// Queries from addresses in these networks are answered by this view.
    pub networks: Vec<String>,
    /// Every record of the view; a name not among them does not resolve (NXDOMAIN).
    pub records: Vec<Record>,
}

impl DnsView {
    /// The records of `name`, of any type; DNS names compare without case and trailing dot.
    pub fn lookup<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.records
            .iter()
            .filter(move |record| record.name.eq_ignore_ascii_case(name))
    }
}

/// A resource record of a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub data: RecordData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordData {
    /// The address of an interface, so both profiles resolve it to their own address.
    A(InterfaceName),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

/// An element a request passes (section 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hop {
    /// The sending or receiving client.
    Client(Placement),
    /// A proxy, named by the interface it sends from (its Via).
    Interface(InterfaceName),
}

impl Hop {
    fn mirror(&self) -> Hop {
        match self {
            Hop::Client(placement) => Hop::Client(placement.mirror()),
            Hop::Interface(interface) => Hop::Interface(interface.mirror()),
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Client(placement) => placement.fmt(f),
            Hop::Interface(interface) => interface.fmt(f),
        }
    }
}

/// A row of section 5's table: the way a request from `from` to `to` must take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// The row number in the spec.
    pub id: u32,
    /// Whether this is the row with companies 1 and 2 swapped.
    pub mirrored: bool,
    pub from: Placement,
    pub to: Placement,
    /// Sender first, receiver last.
    pub hops: Vec<Hop>,
    /// The receiver's AOR, when it is not the resident of its place (`Lab::parties`).
    pub receiver: Option<String>,
    /// Whether the row has a mirror image (companies 1 and 2 swapped).
    pub mirrorable: bool,
}

impl Path {
    /// The row's name in tables: its number (`m` for a mirror row), sender and receiver
    /// place, e.g. `5m A2i -> B2e`.
    pub fn scenario(&self) -> String {
        let m = if self.mirrored { "m" } else { "" };
        format!("{}{m} {} -> {}", self.id, self.from, self.to)
    }

    /// The row with companies 1 and 2 swapped, which the spec states but does not write out.
    pub fn mirror(&self) -> Path {
        Path {
            id: self.id,
            mirrored: !self.mirrored,
            from: self.from.mirror(),
            to: self.to.mirror(),
            hops: self.hops.iter().map(Hop::mirror).collect(),
            receiver: self.receiver.clone(),
            mirrorable: self.mirrorable,
        }
    }

    /// The interfaces between sender and receiver, in the order the request passes them.
    /// Reversed, and with the sender's own Via below them, they are the Via headers the
    /// receiving client sees.
    pub fn interfaces(&self) -> impl Iterator<Item = &InterfaceName> {
        self.hops.iter().filter_map(|hop| match hop {
            Hop::Interface(interface) => Some(interface),
            Hop::Client(_) => None,
        })
    }
}

/// `path 5`, or `path 5 (mirrored)`: how errors and reports name a row.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path {}", self.id)?;
        if self.mirrored {
            f.write_str(" (mirrored)")?;
        }
        Ok(())
    }
}

/// What a server certificate for one interface must carry (section 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub interface: InterfaceName,
    pub node: NodeName,
    /// The interface's FQDNs, then every other name a view resolves to it (`sip.contoso.test`
    /// leads internal clients to R1): a TLS client checks the name it looked up.
    pub dns_names: Vec<String>,
    pub address: IpAddr,
}
