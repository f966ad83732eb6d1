//! The whole lab: loading, the single-process profile, and the look-ups programs need.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::check;
use crate::error::TopologyError;
use crate::file::LabFile;
use crate::model::{
    ClientPlace, CloudRedirect, Collector, DnsView, Domain, Federation, Identity, Interface,
    Network, Node, Path, Pool, RecordData, User,
};
use crate::names::{At, Placement};

/// deploy/lab.toml, built in.
pub(crate) const REFERENCE_TOML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/lab.toml"
));

/// The reference lab, checked: every name it hands out resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lab {
    pub(crate) slot: Option<u8>,
    pub(crate) zones: Vec<String>,
    pub(crate) networks: Vec<Network>,
    pub(crate) domains: Vec<Domain>,
    pub(crate) pools: Vec<Pool>,
    pub(crate) users: Vec<User>,
    /// Lower-case AOR -> index in `users`: a registrar asks for every request.
    pub(crate) user_index: std::collections::HashMap<String, usize>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) interfaces: Vec<Interface>,
    pub(crate) places: Vec<ClientPlace>,
    pub(crate) views: Vec<DnsView>,
    pub(crate) paths: Vec<Path>,
    /// Privileged port -> the port the single-process profile uses instead.
    pub(crate) local_ports: BTreeMap<u16, u16>,
    pub(crate) collector: Option<Collector>,
}

impl Lab {
    /// The lab of `deploy/lab.toml` as built into the programs, used when no topology file
    /// is given.
    pub fn reference() -> Result<Lab, TopologyError> {
        Lab::from_toml_str(REFERENCE_TOML)
    }

    /// Reads and checks a lab file.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Lab, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Lab::from_toml_str(&text)
    }

    /// Parses and checks a lab description.
    pub fn from_toml_str(text: &str) -> Result<Lab, TopologyError> {
        let file: LabFile = toml::from_str(text)?;
        let lab = file.into_lab()?;
        check::lab(&lab)?;
        Ok(lab)
    }

    /// The single-process profile for test slot `slot`: every address moved into its
    /// network's loopback range with `slot` as third octet (R1 10.10.1.10 -> 127.1.7.10 in
    /// slot 7), so tests running side by side own disjoint addresses; privileged ports mapped
    /// by `local_ports`. Everything else is identical.
    pub fn localized(&self, slot: u8) -> Lab {
        let address = |ip: Ipv4Addr| match self.networks.iter().find(|n| n.subnet.contains(ip)) {
            Some(network) => {
                let [a, b, _, _] = network.loopback.base().octets();
                Ipv4Addr::new(a, b, slot, ip.octets()[3])
            }
            // Unreachable for a checked lab: every address lies in a network.
            None => ip,
        };
        let port = |port: u16| self.local_ports.get(&port).copied().unwrap_or(port);

        let mut lab = self.clone();
        lab.slot = Some(slot);
        for network in &mut lab.networks {
            network.subnet = network.loopback.with_third_octet(slot);
        }
        for interface in &mut lab.interfaces {
            interface.address = address(interface.address);
            interface.ports = interface.ports.map(port);
        }
        if let Some(collector) = &mut lab.collector {
            collector.addresses = collector.addresses.iter().map(|a| address(*a)).collect();
        }
        for place in &mut lab.places {
            place.address = address(place.address);
            place.nat = place.nat.map(address);
        }
        for redirect in lab
            .nodes
            .iter_mut()
            .filter_map(|n| n.cloud_redirect.as_mut())
        {
            redirect.port = port(redirect.port);
        }
        for record in lab.views.iter_mut().flat_map(|v| v.records.iter_mut()) {
            if let RecordData::Srv { port: srv_port, .. } = &mut record.data {
                *srv_port = port(*srv_port);
            }
        }
        lab
    }

    /// The lab's own HEP collector, when the lab file has one.
    pub fn collector(&self) -> Option<&Collector> {
        self.collector.as_ref()
    }

    /// `None` for the container profile, the slot for a single-process one.
    pub fn slot(&self) -> Option<u8> {
        self.slot
    }

    /// The zones the DNS server is authoritative for.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    pub fn networks(&self) -> &[Network] {
        &self.networks
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The network an address lies in.
    pub fn network_of(&self, ip: IpAddr) -> Option<&Network> {
        let IpAddr::V4(ip) = ip else { return None };
        self.networks.iter().find(|n| n.subnet.contains(ip))
    }

    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// The domain of company 1 or 2, as placements name companies.
    pub fn company_domain(&self, company: u8) -> Option<&Domain> {
        self.domains.iter().find(|d| d.company == company)
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// A user by AOR (`alice@contoso.test`).
    pub fn user(&self, aor: &str) -> Option<&User> {
        let i = match self.user_index.get(aor) {
            Some(i) => *i,
            None => *self.user_index.get(&aor.to_ascii_lowercase())?,
        };
        self.users.get(i)
    }

    /// The users that may sit at a placement: its company's users of its class.
    pub fn users_at(&self, placement: Placement) -> impl Iterator<Item = &User> {
        let domain = self.company_domain(placement.company);
        self.users.iter().filter(move |user| {
            user.class == placement.class && domain.is_some_and(|d| d.name == user.domain())
        })
    }

    /// Where a cloud-hosted user of `domain` signs in: the Contact of its front end's 301, or
    /// for a cloud-only tenant the one every front end names (the hosting provider's).
    pub fn cloud_redirect(&self, domain: &Domain) -> Option<&CloudRedirect> {
        let own = domain
            .frontend
            .iter()
            .flat_map(|f| self.members(f.as_str()));
        own.chain(self.nodes.iter())
            .find_map(|n| n.cloud_redirect.as_ref())
    }

    /// This lab with `domain` federating out `how` (a hybrid tenant switched to `direct`, the
    /// article's question), checked again.
    pub fn with_federation(&self, domain: &str, how: Federation) -> Result<Lab, TopologyError> {
        let mut lab = self.clone();
        let entry = lab
            .domains
            .iter_mut()
            .find(|d| d.name.eq_ignore_ascii_case(domain))
            .ok_or_else(|| {
                TopologyError::invalid(format!("domain {domain:?}"), "is not a domain")
            })?;
        entry.federation = how;
        check::lab(&lab)?;
        Ok(lab)
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// A pool by the name an edge's `frontend` gives it (`CP`).
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The pool a node is a member of.
    pub fn pool_of(&self, node: &str) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|p| p.members.iter().any(|m| m == node))
    }

    /// The nodes a name stands for: a pool's members in order, or the one node.
    pub fn members(&self, name: &str) -> Vec<&Node> {
        match self.pool(name) {
            Some(pool) => pool
                .members
                .iter()
                .filter_map(|m| self.node(m.as_str()))
                .collect(),
            None => self.node(name).into_iter().collect(),
        }
    }

    /// Whether `name` is `node` or a pool `node` is a member of.
    pub fn stands_for(&self, name: &str, node: &str) -> bool {
        name == node
            || self
                .pool(name)
                .is_some_and(|p| p.members.iter().any(|m| m == node))
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// An interface by its short name (`E1x`).
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    pub fn interfaces_of<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Interface> {
        self.interfaces.iter().filter(move |i| i.node == node)
    }

    /// A node's interface on a network (DNS's address on the querier's network, say).
    pub fn interface_on(&self, node: &str, network: &str) -> Option<&Interface> {
        self.interfaces_of(node).find(|i| i.network == network)
    }

    /// The interface a node sends from to reach `destination`: the one on its network.
    pub fn interface_towards(&self, node: &str, destination: IpAddr) -> Option<&Interface> {
        let network = self.network_of(destination)?;
        self.interface_on(node, &network.name)
    }

    /// Names an address back, e.g. a Via's sent-by: `203.0.113.11` is `E1x`.
    pub fn interface_by_addr(&self, ip: IpAddr) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.ip() == ip)
    }

    /// The user who sits at a placement when each of the article's eight places has its own
    /// user: the first user of the class and company on the LAN, the second on the internet
    /// (alice at A1i, adam at A1e, bella at B1i, ben at B1e, ...).
    pub fn resident(&self, placement: Placement) -> Option<&User> {
        self.users_at(placement)
            .nth(usize::from(placement.at == At::External))
    }

    /// The sender and receiver of a path row: the receiver it names or the resident of the
    /// receiver's place, and the
    /// resident of the sender's place, or, in a row like A1i -> A1i, the other user of its
    /// class and company, sitting there too.
    pub fn parties(&self, path: &Path) -> Option<(&User, &User)> {
        let receiver = match &path.receiver {
            Some(aor) => self.user(aor)?,
            None => self.resident(path.to)?,
        };
        let sender = match self.resident(path.from) {
            Some(s) if s.aor != receiver.aor => s,
            _ => self.users_at(path.from).find(|u| u.aor != receiver.aor)?,
        };
        Some((sender, receiver))
    }

    /// What the spec calls a Via host: an interface (`E1x`, by address or FQDN) or a client
    /// placement (`A1e`); `None` for an address the lab does not know.
    pub fn name_of_host(&self, host: &str) -> Option<String> {
        match host.parse::<IpAddr>() {
            Ok(ip) => self
                .interface_by_addr(ip)
                .map(|i| i.name.to_string())
                .or_else(|| self.placement_by_addr(ip).map(|p| p.name.to_string())),
            Err(_) => self
                .interfaces
                .iter()
                .find(|i| i.fqdns.iter().any(|f| f.eq_ignore_ascii_case(host)))
                .map(|i| i.name.to_string()),
        }
    }

    pub fn placements(&self) -> &[ClientPlace] {
        &self.places
    }

    /// Where the clients of a placement (`A1e`) sit.
    pub fn placement(&self, name: &str) -> Option<&ClientPlace> {
        let name: Placement = name.parse().ok()?;
        self.places.iter().find(|p| p.name == name)
    }

    /// The placement an address belongs to, its NAT address included.
    pub fn placement_by_addr(&self, ip: IpAddr) -> Option<&ClientPlace> {
        self.places
            .iter()
            .find(|p| p.addresses().any(|a| IpAddr::V4(a) == ip))
    }

    /// The address a client at `place` binds to reach `destination`: its own on its network,
    /// its NAT address towards the internet; `None` if it cannot reach that network.
    pub fn source_for(&self, place: &ClientPlace, destination: IpAddr) -> Option<Ipv4Addr> {
        let network = self.network_of(destination)?;
        place.addresses().find(|a| network.subnet.contains(*a))
    }

    pub fn views(&self) -> &[DnsView] {
        &self.views
    }

    pub fn view(&self, name: &str) -> Option<&DnsView> {
        self.views.iter().find(|v| v.name == name)
    }

    /// The view that answers a query from `source`: the one of the network it lies in.
    pub fn view_for(&self, source: IpAddr) -> Option<&DnsView> {
        let network = self.network_of(source)?;
        self.views
            .iter()
            .find(|v| v.networks.contains(&network.name))
    }

    /// The rows of the path table as written: section 5's 18, then the lab's own.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// Row `id` of the path table (not mirrored).
    pub fn path(&self, id: u32) -> Option<&Path> {
        self.paths.iter().find(|p| p.id == id)
    }

    /// The rows, then the mirror images (companies 1 and 2 swapped) of those that have one.
    pub fn paths_with_mirrors(&self) -> Vec<Path> {
        let mirrors = self.paths.iter().filter(|p| p.mirrorable).map(Path::mirror);
        self.paths.iter().cloned().chain(mirrors).collect()
    }

    /// For every interface, what its server certificate must name.
    pub fn node_identities(&self) -> Vec<Identity> {
        self.interfaces
            .iter()
            .map(|interface| {
                let mut dns_names = interface.fqdns.clone();
                for record in self.views.iter().flat_map(|v| &v.records) {
                    let points_here = record.data == RecordData::A(interface.name.clone());
                    if points_here && !dns_names.contains(&record.name) {
                        dns_names.push(record.name.clone());
                    }
                }
                Identity {
                    interface: interface.name.clone(),
                    node: interface.node.clone(),
                    dns_names,
                    address: interface.ip(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;

    use super::*;
    use crate::model::{Hop, Purpose, Role};
    use crate::names::{At, UserClass};

    const LAB_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/lab.toml");

    fn lab() -> Lab {
        Lab::reference().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn hops(path: &Path) -> Vec<String> {
        path.hops.iter().map(Hop::to_string).collect()
    }

    #[test]
    fn lab_toml_loads_and_is_the_built_in_reference() {
        let lab = Lab::load(LAB_TOML).unwrap();
        assert_eq!(lab, Lab::reference().unwrap());
        assert_eq!(lab.slot(), None);
        assert_eq!(lab.networks().len(), 4);
        // The two hybrid companies and the cloud-only tenant northwind.test.
        assert_eq!(lab.domains().len(), 3);
        assert_eq!(lab.users().len(), 11);
        // The seven of the reference with contoso's pool of two front ends and the cloud
        // pool as two servers, and the partner K3 (tailspin.test), run by whoever configures it.
        assert_eq!(lab.nodes().len(), 10);
        assert_eq!(lab.pools().len(), 2);
        assert_eq!(lab.interfaces().len(), 16);
        assert_eq!(lab.placements().len(), 9);
        assert_eq!(lab.views().len(), 4);
        assert_eq!(lab.zones().len(), 7);
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Lab::load("/nonexistent/lab.toml").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/lab.toml: ")
        );
    }

    #[test]
    fn typed_look_ups() {
        let lab = lab();
        let e1x = lab.interface("E1x").unwrap();
        assert_eq!(e1x.node, "E1");
        assert_eq!(e1x.network, "internet");
        assert_eq!(e1x.fqdns, ["sip.contoso.test"]);
        assert_eq!(
            e1x.socket(Purpose::Client),
            Some("203.0.113.11:443".parse().unwrap())
        );
        assert_eq!(
            e1x.socket(Purpose::Sip),
            Some("203.0.113.11:5061".parse().unwrap())
        );
        assert_eq!(e1x.socket(Purpose::Web), e1x.socket(Purpose::Client));
        assert_eq!(e1x.socket(Purpose::Dns), None);
        assert_eq!(e1x.sockets().count(), 3);
        assert_eq!(
            lab.interface("R1").unwrap().socket(Purpose::Web),
            Some("10.10.1.10:443".parse().unwrap())
        );

        let r1 = lab.node("R1").unwrap();
        assert_eq!(r1.role, Role::Frontend);
        assert_eq!(r1.next_hop().unwrap(), "E1");
        let redirect = r1.cloud_redirect.as_ref().unwrap();
        assert_eq!(
            redirect.uri(),
            "sip:sipdir.online.lync.test:443;transport=tls"
        );
        assert_eq!(lab.node("E1").unwrap().next_hop().unwrap(), "P1");
        let members: Vec<_> = lab.members("P1").iter().map(|n| n.name.as_str()).collect();
        assert_eq!(members, ["R1b", "R1"]);
        assert_eq!(lab.node("CE").unwrap().next_hop().unwrap(), "CP");
        assert_eq!(lab.node("CP2").unwrap().next_hop().unwrap(), "CE");
        let members: Vec<_> = lab.members("CP").iter().map(|n| n.name.as_str()).collect();
        assert_eq!(members, ["CP1", "CP2"]);
        assert_eq!(lab.members("R1")[0].name, "R1");
        assert_eq!(
            lab.pool_of("CP2").unwrap().fqdn,
            "sippool01.infra.lync.test"
        );
        assert!(lab.stands_for("CP", "CP1") && lab.stands_for("CP1", "CP1"));
        assert!(!lab.stands_for("CP1", "CP2") && lab.pool_of("R2").is_none());

        let alice = lab.user("alice@contoso.test").unwrap();
        assert_eq!(
            (alice.class, alice.domain()),
            (UserClass::A, "contoso.test")
        );
        assert_eq!(alice.home, "R1");
        assert_eq!(alice.uri(), "sip:alice@contoso.test");
        assert_eq!(lab.user("berta@fabrikam.test").unwrap().home, "CP1");
        let northwind = lab.domain("northwind.test").unwrap();
        assert!(northwind.is_cloud_only());
        assert_eq!(northwind.federation, Federation::Direct);
        let contoso = lab.domain("contoso.test").unwrap();
        assert_eq!(
            contoso.federation,
            crate::model::Federation::ViaHybridPartner
        );

        let contoso = lab.domain("contoso.test").unwrap();
        assert_eq!(
            (contoso.company, contoso.edge.as_ref().unwrap().as_str()),
            (1, "E1")
        );
        assert_eq!(lab.company_domain(2).unwrap().name, "fabrikam.test");

        let a1e = lab.placement("A1e").unwrap();
        assert_eq!(
            (a1e.name.class, a1e.name.company, a1e.name.at),
            (UserClass::A, 1, At::External)
        );
        assert_eq!(a1e.network, "internet");
        // alice, adam and amber (the pool rows' receiver, on R1b).
        let a1i: Vec<_> = lab.users_at(lab.placement("A1i").unwrap().name).collect();
        assert_eq!(a1i.len(), 3);
        assert!(
            a1i.iter()
                .all(|u| u.class == UserClass::A && u.domain() == "contoso.test")
        );
    }

    #[test]
    fn routes_leave_by_the_interface_on_the_destination_network() {
        let lab = lab();
        let r1 = lab.interface("R1").unwrap().ip();
        let cp = lab.interface("CP1").unwrap().ip();
        let cex = lab.interface("CEx").unwrap().ip();
        assert_eq!(lab.interface_towards("E1", r1).unwrap().name, "E1i");
        assert_eq!(lab.interface_towards("E1", cex).unwrap().name, "E1x");
        assert_eq!(lab.interface_towards("CE", cp).unwrap().name, "CEi");
        assert!(lab.interface_towards("R1", cex).is_none());
        assert_eq!(lab.interface_on("DNS", "cloud").unwrap().name, "DNS-cloud");

        // An internal client reaches the cloud edge through its NAT address.
        let b1i = lab.placement("B1i").unwrap();
        assert_eq!(lab.source_for(b1i, cex), b1i.nat);
        assert_eq!(lab.source_for(b1i, r1), Some(b1i.address));
        assert_eq!(lab.source_for(lab.placement("B1e").unwrap(), r1), None);
    }

    #[test]
    fn views_are_chosen_by_source_address() {
        let lab = lab();
        let view = |source: &str| lab.view_for(ip(source)).map(|v| v.name.as_str());
        assert_eq!(view("10.10.1.101"), Some("contoso-lan"));
        assert_eq!(view("10.10.2.11"), Some("fabrikam-lan"));
        assert_eq!(view("203.0.113.201"), Some("internet"));
        assert_eq!(view("10.100.0.20"), Some("cloud"));
        assert_eq!(view("192.0.2.1"), None);
        assert_eq!(view("::1"), None);
    }

    #[test]
    fn views_hold_the_table_of_section_3() {
        let lab = lab();
        let a = |view: &str, name: &str| -> Vec<String> {
            let view = lab.view(view).unwrap();
            view.lookup(name)
                .filter_map(|r| match &r.data {
                    RecordData::A(target) => Some(target.to_string()),
                    RecordData::Srv { .. } => None,
                })
                .collect()
        };
        assert_eq!(a("contoso-lan", "sip.contoso.test"), ["R1"]);
        assert_eq!(a("internet", "SIP.contoso.test."), ["E1x"]);
        assert_eq!(a("fabrikam-lan", "sip.contoso.test"), ["E1x"]);
        assert_eq!(a("fabrikam-lan", "sip.fabrikam.test"), ["R2"]);
        assert!(a("contoso-lan", "lyncdiscover.contoso.test").is_empty());
        assert!(a("internet", "fe01.contoso.test").is_empty());
        assert_eq!(a("cloud", "sippool01.infra.lync.test"), ["CP1", "CP2"]);
        assert!(a("internet", "sippool01.infra.lync.test").is_empty());
        for view in lab.views() {
            assert_eq!(a(&view.name, "sipdir.online.lync.test"), ["CEx"]);
            let ns = a(&view.name, "ns.lab.test");
            let dns = lab.interface(&ns[0]).unwrap();
            assert!(view.networks.contains(&dns.network), "{}", view.name);
        }
        let internet = lab.view("internet").unwrap();
        let srv: Vec<_> = internet.lookup("_sip._tls.contoso.test").collect();
        assert_eq!(
            srv[0].data,
            RecordData::Srv {
                priority: 0,
                weight: 0,
                port: 443,
                target: "sip.contoso.test".into()
            }
        );
        assert_eq!(
            lab.view("contoso-lan")
                .unwrap()
                .lookup("_sip._tls.contoso.test")
                .count(),
            0
        );
    }

    #[test]
    fn eighteen_paths_and_their_mirrors() {
        let lab = lab();
        // Section 5's 18, the lab's five of the cloud-only tenant and two of contoso's pool,
        // which have no mirror.
        assert_eq!(lab.paths().len(), 25);
        let all = lab.paths_with_mirrors();
        assert_eq!(all.len(), 43);
        assert_eq!(all.iter().filter(|p| p.mirrored).count(), 18);

        let row5 = &lab.paths()[4];
        assert_eq!((row5.id, row5.to_string()), (5, "path 5".to_string()));
        assert_eq!(hops(row5), ["A1i", "R1", "E1x", "CEi", "CP2", "CEx", "B1e"]);
        let mirror = row5.mirror();
        assert_eq!(mirror.to_string(), "path 5 (mirrored)");
        assert_eq!(
            (mirror.from.to_string(), mirror.to.to_string()),
            ("A2i".into(), "B2e".into())
        );
        assert_eq!(
            hops(&mirror),
            ["A2i", "R2", "E2x", "CEi", "CP1", "CEx", "B2e"]
        );
        assert_eq!(mirror.mirror(), *row5);
        let vias: Vec<_> = mirror.interfaces().map(|i| i.as_str()).collect();
        assert_eq!(vias, ["R2", "E2x", "CEi", "CP1", "CEx"]);

        let row17 = lab.paths().iter().find(|p| p.id == 17).unwrap();
        assert_eq!(
            hops(&row17.mirror()),
            [
                "B2e", "CEi", "CP1", "CEx", "E2i", "R2", "E2x", "E1i", "R1", "E1x", "CEi", "CP2",
                "CEx", "B1e"
            ]
        );
    }

    #[test]
    fn addresses_name_interfaces_and_placements_back() {
        for lab in [lab(), lab().localized(3)] {
            for interface in lab.interfaces() {
                let sent_by = SocketAddr::new(interface.ip(), 5061);
                assert_eq!(lab.interface_by_addr(sent_by.ip()), Some(interface));
            }
            for place in lab.placements() {
                for address in place.addresses() {
                    assert_eq!(lab.placement_by_addr(address.into()), Some(place));
                    assert_eq!(lab.interface_by_addr(address.into()), None);
                }
            }
        }
        assert_eq!(
            lab().interface_by_addr(ip("203.0.113.11")).unwrap().name,
            "E1x"
        );
    }

    #[test]
    fn the_local_profile_moves_addresses_and_ports() {
        let local = lab().localized(7);
        assert_eq!(local.slot(), Some(7));
        assert_eq!(
            local.interface("R1").unwrap().address,
            Ipv4Addr::new(127, 1, 7, 10)
        );
        let e1x = local.interface("E1x").unwrap();
        assert_eq!(
            e1x.socket(Purpose::Client),
            Some("127.3.7.11:10443".parse().unwrap())
        );
        assert_eq!(
            e1x.socket(Purpose::Sip),
            Some("127.3.7.11:5061".parse().unwrap())
        );
        assert_eq!(
            local.interface("R1").unwrap().socket(Purpose::Web),
            Some("127.1.7.10:10443".parse().unwrap())
        );
        let dns = local.interface("DNS-cloud").unwrap();
        assert_eq!(
            dns.socket(Purpose::Dns),
            Some("127.4.7.53:10053".parse().unwrap())
        );
        let a1i = local.placement("A1i").unwrap();
        assert_eq!(
            (a1i.address, a1i.nat),
            ("127.1.7.101".parse().unwrap(), "127.3.7.101".parse().ok())
        );
        let redirect = local.node("R2").unwrap().cloud_redirect.as_ref().unwrap();
        assert_eq!(
            redirect.uri(),
            "sip:sipdir.online.lync.test:10443;transport=tls"
        );
        let srv = local
            .view("internet")
            .unwrap()
            .lookup("_sip._tls.fabrikam.test")
            .next()
            .unwrap();
        assert!(matches!(srv.data, RecordData::Srv { port: 10443, .. }));
        assert_eq!(
            local.view_for(ip("127.1.7.101")).unwrap().name,
            "contoso-lan"
        );
        assert_eq!(local.view_for(ip("10.10.1.101")), None);
        // Localizing again only changes the slot.
        assert_eq!(local.localized(2), lab().localized(2));
        // Everything else is the same lab.
        assert_eq!(local.paths(), lab().paths());
        assert_eq!(local.users(), lab().users());
    }

    #[test]
    fn two_slots_never_share_an_address() {
        let addresses = |lab: &Lab| -> Vec<Ipv4Addr> {
            let interfaces = lab.interfaces().iter().map(|i| i.address);
            interfaces
                .chain(lab.placements().iter().flat_map(|p| p.addresses()))
                .collect()
        };
        let mut seen = HashSet::new();
        for slot in [0, 1, 2, 255] {
            let local = lab().localized(slot);
            for address in addresses(&local) {
                assert!(address.is_loopback(), "{address}");
                assert!(seen.insert(address), "{address} used twice");
            }
        }
    }

    #[test]
    fn identities_carry_every_name_that_leads_to_the_interface() {
        let identities = lab().node_identities();
        assert_eq!(identities.len(), 16);
        let of = |name: &str| identities.iter().find(|i| i.interface == name).unwrap();
        let r1 = of("R1");
        assert_eq!(r1.node, "R1");
        assert_eq!(r1.address, ip("10.10.1.10"));
        assert_eq!(
            r1.dns_names,
            [
                "fe01.contoso.test",
                "lyncdiscoverinternal.contoso.test",
                "pool01.contoso.test",
                "sip.contoso.test"
            ]
        );
        assert_eq!(
            of("R1b").dns_names,
            ["fe02.contoso.test", "pool01.contoso.test"]
        );
        assert_eq!(
            of("E1x").dns_names,
            ["sip.contoso.test", "lyncdiscover.contoso.test"]
        );
        // sipdir, sipfed, webdir, and northwind.test's names that lead to the cloud.
        assert_eq!(of("CEx").dns_names.len(), 5);
        // Each pool member's certificate carries the pool's FQDN.
        assert_eq!(
            of("CP2").dns_names,
            ["cpfe02.infra.lync.test", "sippool01.infra.lync.test"]
        );
        assert_eq!(of("DNS-cloud").dns_names, ["ns.lab.test"]);
    }
}
