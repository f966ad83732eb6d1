//! The cross-references of a lab, checked once at load so that every program can trust them.
//! Each check names the entry it refuses, in the words of lab.toml.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::hash::Hash;
use std::net::Ipv4Addr;

use crate::error::TopologyError;
use crate::lab::Lab;
use crate::model::{Federation, Hop, Interface, Node, RecordData, Role};
use crate::names::{At, NodeName, UserClass};

pub(crate) fn lab(lab: &Lab) -> Result<(), TopologyError> {
    unique("zone", &lab.zones)?;
    unique("network", lab.networks.iter().map(|n| &n.name))?;
    unique("domain", lab.domains.iter().map(|d| &d.name))?;
    unique("node", lab.nodes.iter().map(|n| &n.name))?;
    unique(
        "node or pool",
        lab.nodes
            .iter()
            .map(|n| &n.name)
            .chain(lab.pools.iter().map(|p| &p.name)),
    )?;
    unique("company", lab.domains.iter().map(|d| d.company))?;
    unique("user", lab.users.iter().map(|u| u.aor.to_ascii_lowercase()))?;
    unique("node", lab.nodes.iter().map(|n| &n.name))?;
    unique("interface", lab.interfaces.iter().map(|i| &i.name))?;
    unique("placement", lab.places.iter().map(|p| p.name.to_string()))?;
    unique("view", lab.views.iter().map(|v| &v.name))?;
    unique("path", lab.paths.iter().map(|p| p.id))?;
    networks(lab)?;
    addresses(lab)?;
    pools(lab)?;
    for node in &lab.nodes {
        self::node(lab, node)?;
    }
    for node in &lab.nodes {
        pairing(lab, node)?;
    }
    domains(lab)?;
    users(lab)?;
    places(lab)?;
    views(lab)?;
    fqdns(lab)?;
    paths(lab)
}

fn unique<T: Display + Eq + Hash>(
    kind: &'static str,
    items: impl IntoIterator<Item = T>,
) -> Result<(), TopologyError> {
    let mut seen = HashSet::new();
    for item in items {
        let name = item.to_string();
        if !seen.insert(item) {
            return Err(TopologyError::Duplicate { kind, name });
        }
    }
    Ok(())
}

/// Every network is a /24 so that the single-process profile can keep an address's last
/// octet and put the slot into the third; distinct networks must stay distinct there too.
fn networks(lab: &Lab) -> Result<(), TopologyError> {
    for (i, network) in lab.networks.iter().enumerate() {
        let entry = format!("network {:?}", network.name);
        if network.subnet.prefix() != 24 {
            let problem = format!("subnet {} must be a /24", network.subnet);
            return Err(TopologyError::invalid(entry, problem));
        }
        let [a, _, c, _] = network.loopback.base().octets();
        if network.loopback.prefix() != 24 || a != 127 || c != 0 {
            let problem = format!(
                "loopback {} must be 127.x.0.0/24: the test slot takes the third octet",
                network.loopback
            );
            return Err(TopologyError::invalid(entry, problem));
        }
        for other in &lab.networks[..i] {
            if other.subnet == network.subnet {
                let problem = format!("subnet {} is also {:?}'s", network.subnet, other.name);
                return Err(TopologyError::invalid(entry, problem));
            }
            if other.loopback == network.loopback {
                let problem = format!("loopback {} is also {:?}'s", network.loopback, other.name);
                return Err(TopologyError::invalid(entry, problem));
            }
        }
    }
    Ok(())
}

/// Every address lies in the network it is said to be on, and none is used twice, so that an
/// address names one interface or placement back (a Via's sent-by).
fn addresses(lab: &Lab) -> Result<(), TopologyError> {
    let mut owners: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut claim = |address: Ipv4Addr, owner: String| match owners.get(&address) {
        Some(earlier) => Err(TopologyError::invalid(
            &owner,
            format!("address {address} is also used by {earlier}"),
        )),
        None => {
            owners.insert(address, owner);
            Ok(())
        }
    };
    let on_network = |entry: &str, network: &str, address: Ipv4Addr| {
        let net = lab.network(network).ok_or_else(|| {
            TopologyError::invalid(entry, format!("network {network:?} is not a network"))
        })?;
        if !net.subnet.contains(address) {
            let problem = format!(
                "address {address} is outside network {network:?} ({})",
                net.subnet
            );
            return Err(TopologyError::invalid(entry, problem));
        }
        Ok(())
    };
    for interface in &lab.interfaces {
        let entry = interface_entry(interface);
        on_network(&entry, &interface.network, interface.address)?;
        claim(interface.address, entry)?;
    }
    for place in &lab.places {
        let entry = format!("placement {:?}", place.name.to_string());
        on_network(&entry, &place.network, place.address)?;
        claim(place.address, entry.clone())?;
        if let Some(nat) = place.nat {
            if lab.networks.iter().all(|n| !n.subnet.contains(nat)) {
                let problem = format!("nat address {nat} is in no network");
                return Err(TopologyError::invalid(entry, problem));
            }
            claim(nat, entry)?;
        }
    }
    for (i, &address) in lab.collector.iter().flat_map(|c| &c.addresses).enumerate() {
        let entry = "the collector".to_owned();
        let net = lab.network_of(address.into()).ok_or_else(|| {
            TopologyError::invalid(&entry, format!("address {address} is in no network"))
        })?;
        let same = lab.collector.iter().flat_map(|c| &c.addresses).take(i);
        if same.clone().any(|a| net.subnet.contains(*a)) {
            let problem = format!("a second address on network {:?}", net.name);
            return Err(TopologyError::invalid(&entry, problem));
        }
        claim(address, entry)?;
    }
    Ok(())
}

fn interface_entry(interface: &Interface) -> String {
    format!(
        "node {:?} interface {:?}",
        interface.node.as_str(),
        interface.name.as_str()
    )
}

/// What each role must name (section 1): a front end its edge, an edge its front end, the
/// cloud edge the cloud pool and back; front end and edge serve a domain.
struct Needs {
    domain: bool,
    edge: Option<Role>,
    frontend: Option<Role>,
    cloud_redirect: bool,
}

fn needs(role: Role) -> Needs {
    let (domain, edge, frontend, cloud_redirect) = match role {
        Role::Frontend => (true, Some(Role::Edge), None, true),
        Role::Edge => (true, None, Some(Role::Frontend), false),
        Role::CloudEdge => (false, None, Some(Role::CloudPool), false),
        Role::CloudPool => (false, Some(Role::CloudEdge), None, false),
        Role::Dns => (false, None, None, false),
        Role::Partner => (true, None, None, false),
    };
    Needs {
        domain,
        edge,
        frontend,
        cloud_redirect,
    }
}

fn node(lab: &Lab, node: &Node) -> Result<(), TopologyError> {
    let entry = format!("node {:?}", node.name.as_str());
    let invalid = |problem: String| TopologyError::invalid(&entry, problem);
    let role = node.role;
    let needs = needs(role);
    if node.interfaces.is_empty() {
        return Err(invalid("has no interface".into()));
    }
    // Autodiscover is served where clients look for it (section 4): front ends, edges and
    // the cloud edge.
    let serves_web = matches!(role, Role::Frontend | Role::Edge | Role::CloudEdge);
    if let Some(web) = lab
        .interfaces_of(node.name.as_str())
        .find(|i| i.ports.web.is_some())
        .filter(|_| !serves_web)
    {
        let problem = format!(
            "a {role} serves no autodiscover, but interface {:?} has a web port",
            web.name.as_str()
        );
        return Err(invalid(problem));
    }
    match (needs.domain, &node.domain) {
        (true, None) => return Err(invalid(format!("a {role} needs a domain"))),
        (false, Some(_)) => return Err(invalid(format!("a {role} serves no single domain"))),
        // A partner's domain is foreign: one of the DNS zones, not a company of the lab.
        (true, Some(name)) if role == Role::Partner => {
            if lab.domain(name).is_some() {
                return Err(invalid(format!("{name:?} is a lab company, not a partner")));
            }
            if !lab.zones().iter().any(|z| z == name) {
                return Err(invalid(format!("domain {name:?} is not one of the zones")));
            }
        }
        (true, Some(name)) => {
            let domain = lab
                .domain(name)
                .ok_or_else(|| invalid(format!("domain {name:?} is not a domain")))?;
            let own = if role == Role::Frontend {
                &domain.frontend
            } else {
                &domain.edge
            };
            let own = own.as_ref().map_or("none", NodeName::as_str);
            if !lab.stands_for(own, node.name.as_str()) {
                let problem = format!("domain {name:?} has {role} {own:?}");
                return Err(invalid(problem));
            }
        }
        (false, None) => {}
    }
    for (field, wanted, named) in [
        ("edge", needs.edge, &node.edge),
        ("frontend", needs.frontend, &node.frontend),
    ] {
        let (wanted, peer) = match (wanted, named) {
            (Some(_), None) => return Err(invalid(format!("a {role} needs a {field}"))),
            (None, Some(_)) => return Err(invalid(format!("a {role} takes no {field}"))),
            (Some(wanted), Some(peer)) => (wanted, peer.as_str()),
            (None, None) => continue,
        };
        let others = lab.members(peer);
        if others.is_empty() {
            return Err(invalid(format!("{field} {peer:?} is not a node or pool")));
        }
        if let Some(other) = others.iter().find(|o| o.role != wanted) {
            let problem = if other.name == peer {
                format!("{field} {peer:?} has role {}, not {wanted}", other.role)
            } else {
                let member = other.name.as_str();
                format!(
                    "{field} {peer:?} has member {member:?} of role {}, not {wanted}",
                    other.role
                )
            };
            return Err(invalid(problem));
        }
    }
    match (needs.cloud_redirect, &node.cloud_redirect) {
        (true, None) => Err(invalid(format!("a {role} needs a cloud_redirect"))),
        (false, Some(_)) => Err(invalid(format!("a {role} takes no cloud_redirect"))),
        (true, Some(redirect)) => {
            let listens = lab
                .interfaces
                .iter()
                .any(|i| i.fqdns.contains(&redirect.host) && i.ports.listens_on(redirect.port));
            if listens {
                Ok(())
            } else {
                let problem = format!("cloud_redirect {} reaches no listener", redirect.uri());
                Err(invalid(problem))
            }
        }
        (false, None) => Ok(()),
    }
}

/// A node and the edge (or front end) it names must name each other and share a network,
/// or requests handed over would have no way back.
fn pairing(lab: &Lab, node: &Node) -> Result<(), TopologyError> {
    let entry = format!("node {:?}", node.name.as_str());
    let links = [
        ("edge", &node.edge, "frontend"),
        ("frontend", &node.frontend, "edge"),
    ];
    for (field, peer, back) in links {
        for other in peer.iter().flat_map(|peer| lab.members(peer.as_str())) {
            let names_back = if back == "frontend" {
                &other.frontend
            } else {
                &other.edge
            };
            if !names_back
                .as_ref()
                .is_some_and(|b| lab.stands_for(b.as_str(), node.name.as_str()))
            {
                let problem = format!(
                    "its {field} {:?} does not name it as {back}",
                    other.name.as_str()
                );
                return Err(TopologyError::invalid(entry, problem));
            }
            if !share_network(lab, &node.name, &other.name) {
                let problem = format!(
                    "shares no network with its {field} {:?}",
                    other.name.as_str()
                );
                return Err(TopologyError::invalid(entry, problem));
            }
        }
    }
    Ok(())
}

/// A pool has members, each a registrar node (front end or cloud pool) of one role, in no
/// other pool, and its FQDN resolves to every member in some view.
fn pools(lab: &Lab) -> Result<(), TopologyError> {
    let mut pool_of: HashMap<&str, &str> = HashMap::new();
    for pool in &lab.pools {
        let entry = format!("pool {:?}", pool.name.as_str());
        let invalid = |problem: String| TopologyError::invalid(&entry, problem);
        let Some(first) = pool.members.first() else {
            return Err(invalid("has no members".into()));
        };
        let role = lab.node(first.as_str()).map(|n| n.role);
        for member in &pool.members {
            let m = member.as_str();
            let node = lab
                .node(m)
                .ok_or_else(|| invalid(format!("member {m:?} is not a node")))?;
            if !matches!(node.role, Role::Frontend | Role::CloudPool) {
                return Err(invalid(format!(
                    "member {m:?} is a {}, not a registrar",
                    node.role
                )));
            }
            if Some(node.role) != role {
                return Err(invalid(format!(
                    "member {m:?} is a {}, unlike {:?}",
                    node.role,
                    first.as_str()
                )));
            }
            if let Some(other) = pool_of.insert(m, pool.name.as_str()) {
                return Err(invalid(format!("member {m:?} is in pool {other:?} too")));
            }
            let resolves = lab.views.iter().any(|view| {
                view.lookup(&pool.fqdn).any(|r| {
                    matches!(&r.data, RecordData::A(i)
                        if lab.interface(i.as_str()).is_some_and(|i| i.node == *member))
                })
            });
            if !resolves {
                return Err(invalid(format!(
                    "FQDN {:?} resolves to member {m:?} in no DNS view",
                    pool.fqdn
                )));
            }
        }
    }
    Ok(())
}

fn share_network(lab: &Lab, a: &NodeName, b: &NodeName) -> bool {
    lab.interfaces_of(a.as_str())
        .any(|i| lab.interface_on(b.as_str(), &i.network).is_some())
}

fn domains(lab: &Lab) -> Result<(), TopologyError> {
    for domain in &lab.domains {
        let entry = format!("domain {:?}", domain.name);
        if !lab.zones.contains(&domain.name) {
            return Err(TopologyError::invalid(entry, "is not among the zones"));
        }
        match (&domain.frontend, &domain.edge) {
            (None, None) if domain.federation != Federation::Direct => {
                let problem = format!(
                    "a cloud-only tenant (no frontend, no edge) has no hybrid partner: its \
                     federation is \"direct\", not {:?}",
                    domain.federation.to_string()
                );
                return Err(TopologyError::invalid(entry, problem));
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                let problem = "names a frontend or an edge without the other";
                return Err(TopologyError::invalid(entry, problem));
            }
            (Some(frontend), Some(edge)) => {
                for (field, name, role) in [
                    ("frontend", frontend, Role::Frontend),
                    ("edge", edge, Role::Edge),
                ] {
                    let nodes = lab.members(name.as_str());
                    let serves = !nodes.is_empty()
                        && nodes
                            .iter()
                            .all(|n| n.role == role && n.domain.as_ref() == Some(&domain.name));
                    if !serves {
                        let problem =
                            format!("{field} {:?} is not a {role} of this domain", name.as_str());
                        return Err(TopologyError::invalid(entry, problem));
                    }
                }
            }
        }
        let cloud_edge_names = |name: &String, web: bool| {
            lab.interfaces.iter().any(|i| {
                i.fqdns.contains(name)
                    && (!web || i.ports.web.is_some())
                    && lab
                        .node(i.node.as_str())
                        .is_some_and(|n| n.role == Role::CloudEdge)
            })
        };
        if !cloud_edge_names(&domain.hosting_provider, false) {
            let problem = format!(
                "hosting_provider {:?} is no cloud edge interface's FQDN",
                domain.hosting_provider
            );
            return Err(TopologyError::invalid(entry, problem));
        }
        if !cloud_edge_names(&domain.hosting_autodiscover, true) {
            let problem = format!(
                "hosting_autodiscover {:?} is no FQDN of a cloud edge interface with a web port",
                domain.hosting_autodiscover
            );
            return Err(TopologyError::invalid(entry, problem));
        }
    }
    Ok(())
}

/// Class A users are homed on their own front end, class B users in the cloud pool.
fn users(lab: &Lab) -> Result<(), TopologyError> {
    for user in &lab.users {
        let entry = format!("user {:?}", user.aor);
        let invalid = |problem: String| TopologyError::invalid(&entry, problem);
        let well_formed = user
            .aor
            .split_once('@')
            .is_some_and(|(name, domain)| !name.is_empty() && !domain.is_empty());
        if !well_formed {
            return Err(invalid("is not an AOR like alice@contoso.test".into()));
        }
        let domain = lab
            .domain(user.domain())
            .ok_or_else(|| invalid(format!("domain {:?} is not a SIP domain", user.domain())))?;
        let home = user.home.as_str();
        if let Some(pool) = lab.pool(home) {
            let members: Vec<String> = pool
                .members
                .iter()
                .map(|m| format!("{:?}", m.as_str()))
                .collect();
            return Err(invalid(format!(
                "home {home:?} is a pool: a user is homed on one of its members ({})",
                members.join(", ")
            )));
        }
        let node = lab
            .node(home)
            .ok_or_else(|| invalid(format!("home {home:?} is not a node")))?;
        match (user.class, &domain.frontend) {
            (UserClass::A, None) => {
                return Err(invalid(format!(
                    "class A is homed on-premises, but {:?} is a cloud-only tenant",
                    domain.name
                )));
            }
            (UserClass::A, Some(frontend)) if !lab.stands_for(frontend.as_str(), home) => {
                return Err(invalid(format!(
                    "class A is homed on its front end {:?}, not {home:?}",
                    frontend.as_str()
                )));
            }
            (UserClass::B, _) if node.role != Role::CloudPool => {
                return Err(invalid(format!(
                    "class B is homed in the cloud pool, not {home:?}"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// An internal client sits on its company's LAN (the front end's network) and has a NAT
/// address elsewhere; an external one sits outside the LAN and needs no NAT.
fn places(lab: &Lab) -> Result<(), TopologyError> {
    for place in &lab.places {
        let entry = format!("placement {:?}", place.name.to_string());
        let invalid = |problem: String| TopologyError::invalid(&entry, problem);
        let company = place.name.company;
        let domain = lab
            .company_domain(company)
            .ok_or_else(|| invalid(format!("company {company} has no domain")))?;
        if lab.users_at(place.name).next().is_none() {
            let class = place.name.class;
            return Err(invalid(format!(
                "company {company} has no class {class} user"
            )));
        }
        let lan = domain
            .frontend
            .iter()
            .flat_map(|f| lab.members(f.as_str()))
            .find_map(|n| lab.interfaces_of(n.name.as_str()).next())
            .map(|i| i.network.as_str())
            .unwrap_or_default();
        if lan.is_empty() && place.name.at == At::Internal {
            return Err(invalid(format!(
                "company {company} is cloud-only: it has no LAN to sit on"
            )));
        }
        let nat_network = place.nat.and_then(|nat| lab.network_of(nat.into()));
        match place.name.at {
            At::Internal if place.network != lan => {
                return Err(invalid(format!(
                    "an internal client sits on its company's LAN {lan:?}, not {:?}",
                    place.network
                )));
            }
            At::Internal if nat_network.is_none_or(|n| n.name == lan) => {
                return Err(invalid(
                    "an internal client needs a nat address outside its LAN".into(),
                ));
            }
            At::External if place.network == lan => {
                return Err(invalid(format!(
                    "an external client cannot sit on its company's LAN {lan:?}"
                )));
            }
            At::External if place.nat.is_some() => {
                return Err(invalid("an external client has no nat address".into()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Each network is answered by exactly one view; A records point at interfaces, SRV records
/// at names the same view resolves, and every name lies in one of the lab's zones.
fn views(lab: &Lab) -> Result<(), TopologyError> {
    let mut view_of: HashMap<&str, &str> = HashMap::new();
    for view in &lab.views {
        let entry = format!("view {:?}", view.name);
        let invalid = |problem: String| TopologyError::invalid(&entry, problem);
        for network in &view.networks {
            if lab.network(network).is_none() {
                return Err(invalid(format!("network {network:?} is not a network")));
            }
            if let Some(other) = view_of.insert(network, &view.name) {
                return Err(invalid(format!(
                    "network {network:?} is already answered by view {other:?}"
                )));
            }
        }
        for record in &view.records {
            let name = &record.name;
            if !in_zone(lab, name) {
                return Err(invalid(format!("record {name:?} is in no zone")));
            }
            match &record.data {
                RecordData::A(target) if lab.interface(target.as_str()).is_none() => {
                    return Err(invalid(format!(
                        "record {name:?} points at unknown interface {:?}",
                        target.as_str()
                    )));
                }
                RecordData::Srv { target, .. }
                    if !view
                        .lookup(target)
                        .any(|r| matches!(r.data, RecordData::A(_))) =>
                {
                    return Err(invalid(format!(
                        "record {name:?} leads to {target:?}, which has no A record here"
                    )));
                }
                _ => {}
            }
        }
    }
    if let Some(network) = lab
        .networks
        .iter()
        .find(|n| !view_of.contains_key(n.name.as_str()))
    {
        let problem = "no DNS view answers queries from it";
        return Err(TopologyError::invalid(
            format!("network {:?}", network.name),
            problem,
        ));
    }
    Ok(())
}

fn in_zone(lab: &Lab, name: &str) -> bool {
    lab.zones.iter().any(|zone| {
        name == zone
            || name
                .strip_suffix(zone.as_str())
                .is_some_and(|host| host.ends_with('.'))
    })
}

/// An interface's names are the ones its certificate carries; a client can only use them if
/// some view resolves them to it.
fn fqdns(lab: &Lab) -> Result<(), TopologyError> {
    for interface in &lab.interfaces {
        for fqdn in &interface.fqdns {
            let resolves = lab.views.iter().any(|view| {
                view.lookup(fqdn)
                    .any(|r| r.data == RecordData::A(interface.name.clone()))
            });
            if !resolves {
                let problem = format!("FQDN {fqdn:?} resolves to it in no DNS view");
                return Err(TopologyError::invalid(interface_entry(interface), problem));
            }
        }
    }
    Ok(())
}

/// Each row, and its mirror image, starts at its sender, ends at its receiver and passes
/// only interfaces the lab has.
fn paths(lab: &Lab) -> Result<(), TopologyError> {
    for path in lab.paths_with_mirrors() {
        let invalid = |problem: String| TopologyError::invalid(&path, problem);
        for placement in [path.from, path.to] {
            if !lab.places.iter().any(|p| p.name == placement) {
                return Err(invalid(format!(
                    "unknown placement {:?}",
                    placement.to_string()
                )));
            }
        }
        if path.hops.first() != Some(&Hop::Client(path.from)) {
            return Err(invalid(format!(
                "does not start at its sender {}",
                path.from
            )));
        }
        if path.hops.last() != Some(&Hop::Client(path.to)) {
            return Err(invalid(format!("does not end at its receiver {}", path.to)));
        }
        if let Some(unknown) = path
            .interfaces()
            .find(|i| lab.interface(i.as_str()).is_none())
        {
            return Err(invalid(format!("unknown hop {:?}", unknown.as_str())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::lab::{Lab, REFERENCE_TOML};

    /// The message for lab.toml with the first `from` replaced by `to`.
    fn broken(from: &str, to: &str) -> String {
        assert!(REFERENCE_TOML.contains(from), "lab.toml has no {from:?}");
        let text = REFERENCE_TOML.replacen(from, to, 1);
        Lab::from_toml_str(&text).unwrap_err().to_string()
    }

    #[test]
    fn an_address_outside_its_network() {
        assert_eq!(
            broken(r#"address = "203.0.113.11""#, r#"address = "10.9.9.9""#),
            r#"node "E1" interface "E1x": address 10.9.9.9 is outside network "internet" (203.0.113.0/24)"#
        );
    }

    #[test]
    fn a_node_s_limits_are_the_lab_s_with_its_own_over_them() {
        let text = REFERENCE_TOML
            .replacen(
                "[limits]\n",
                "[limits]\nclient_rate = 5\nidle_timeout_s = 60\n",
                1,
            )
            .replacen(
                "name = \"E1\"\n",
                "name = \"E1\"\nlimits = { client_rate = 7 }\n",
                1,
            );
        let lab = Lab::from_toml_str(&text).unwrap();
        let (e1, r1) = (
            &lab.node("E1").unwrap().limits,
            &lab.node("R1").unwrap().limits,
        );
        assert_eq!((e1.client_rate, e1.idle_timeout_s), (Some(7), Some(60)));
        assert_eq!((r1.client_rate, r1.idle_timeout_s), (Some(5), Some(60)));
        assert_eq!(r1.max_connections, None, "unset: the program's default");
        assert!(
            Lab::reference()
                .unwrap()
                .nodes()
                .iter()
                .all(|n| n.limits == Default::default())
        );
    }

    #[test]
    fn the_collector_has_one_free_address_on_each_network_it_joins() {
        let addresses =
            r#"addresses = ["10.10.1.250", "10.10.2.250", "203.0.113.250", "10.100.0.250"]"#;
        assert_eq!(
            broken(addresses, r#"addresses = ["10.10.1.250", "10.10.1.251"]"#),
            r#"the collector: a second address on network "contoso-lan""#
        );
        assert_eq!(
            broken(addresses, r#"addresses = ["10.9.9.9"]"#),
            "the collector: address 10.9.9.9 is in no network"
        );
        assert_eq!(
            broken(addresses, r#"addresses = ["10.10.1.10"]"#),
            r#"the collector: address 10.10.1.10 is also used by node "R1" interface "R1""#
        );
        let lab = Lab::reference().unwrap();
        let local = lab.localized(3).collector().unwrap().addresses.clone();
        assert_eq!(local[0], std::net::Ipv4Addr::new(127, 1, 3, 250));
    }

    #[test]
    fn an_address_used_twice() {
        assert_eq!(
            broken(
                r#"address = "203.0.113.201""#,
                r#"address = "203.0.113.11""#
            ),
            r#"placement "A1e": address 203.0.113.11 is also used by node "E1" interface "E1x""#
        );
    }

    #[test]
    fn an_unknown_hop() {
        assert_eq!(
            broken(
                r#"["A1i", "R1", "E1x", "CEi", "CP2", "CEx", "B1e"]"#,
                r#"["A1i", "R1", "E9", "CEi", "CP2", "CEx", "B1e"]"#
            ),
            r#"path 5: unknown hop "E9""#
        );
    }

    #[test]
    fn pools_and_tenants() {
        assert_eq!(
            broken(r#"members = ["CP1", "CP2"]"#, r#"members = ["CP1", "CP3"]"#),
            r#"pool "CP": member "CP3" is not a node"#
        );
        assert_eq!(
            broken(r#"members = ["CP1", "CP2"]"#, r#"members = ["CP1", "E1"]"#),
            r#"pool "CP": member "E1" is a edge, not a registrar"#
        );
        assert_eq!(
            broken(
                r#"{ name = "sippool01.infra.lync.test", type = "A", target = "CP2" },"#,
                ""
            ),
            r#"pool "CP": FQDN "sippool01.infra.lync.test" resolves to member "CP2" in no DNS view"#
        );
        assert_eq!(
            broken(
                r#"federation = "direct""#,
                r#"federation = "via-hybrid-partner""#
            ),
            r#"domain "northwind.test": a cloud-only tenant (no frontend, no edge) has no hybrid partner: its federation is "direct", not "via-hybrid-partner""#
        );
        assert_eq!(
            broken("company = 3\n", "company = 3\nedge = \"E1\"\n"),
            r#"domain "northwind.test": names a frontend or an edge without the other"#
        );
        assert_eq!(
            broken(
                "aor = \"nina@northwind.test\"\nclass = \"B\"",
                "aor = \"nina@northwind.test\"\nclass = \"A\""
            ),
            r#"user "nina@northwind.test": class A is homed on-premises, but "northwind.test" is a cloud-only tenant"#
        );
    }

    #[test]
    fn a_path_that_does_not_start_at_its_sender() {
        assert_eq!(
            broken("id = 3\nfrom = \"A1e\"", "id = 3\nfrom = \"A1i\""),
            "path 3: does not start at its sender A1i"
        );
        assert_eq!(
            broken(
                r#"hops = ["A1i", "R1", "A1i"]"#,
                r#"hops = ["A1i", "R1", "R1"]"#
            ),
            r#"path 1: last hop "R1" is not a placement"#
        );
    }

    #[test]
    fn a_user_homed_nowhere() {
        assert_eq!(
            broken(
                "aor = \"alice@contoso.test\"\nclass = \"A\"\nhome = \"R1\"",
                "aor = \"zed@contoso.test\"\nclass = \"A\"\nhome = \"R9\""
            ),
            r#"user "zed@contoso.test": home "R9" is not a node"#
        );
        assert_eq!(
            broken(
                "aor = \"bella@contoso.test\"\nclass = \"B\"\nhome = \"CP2\"",
                "aor = \"bella@contoso.test\"\nclass = \"B\"\nhome = \"R1\""
            ),
            r#"user "bella@contoso.test": class B is homed in the cloud pool, not "R1""#
        );
        assert_eq!(
            broken(
                "aor = \"bella@contoso.test\"\nclass = \"B\"\nhome = \"CP2\"",
                "aor = \"bella@contoso.test\"\nclass = \"B\"\nhome = \"CP\""
            ),
            r#"user "bella@contoso.test": home "CP" is a pool: a user is homed on one of its members ("CP1", "CP2")"#
        );
        assert_eq!(
            broken(
                r#"aor = "adam@contoso.test""#,
                r#"aor = "adam@example.test""#
            ),
            r#"user "adam@example.test": domain "example.test" is not a SIP domain"#
        );
    }

    #[test]
    fn autodiscover_is_served_by_front_ends_and_edges_and_points_at_the_cloud() {
        assert_eq!(
            broken(
                "fqdns = [\"cpfe01.infra.lync.test\"]\nports = { sip = 5061 }",
                "fqdns = [\"cpfe01.infra.lync.test\"]\nports = { sip = 5061, web = 443 }"
            ),
            r#"node "CP1": a cloud-pool serves no autodiscover, but interface "CP1" has a web port"#
        );
        assert_eq!(
            broken(
                r#"hosting_autodiscover = "webdir.online.lync.test""#,
                r#"hosting_autodiscover = "sipedge01.infra.lync.test""#
            ),
            r#"domain "contoso.test": hosting_autodiscover "sipedge01.infra.lync.test" is no FQDN of a cloud edge interface with a web port"#
        );
    }

    #[test]
    fn a_partner_serves_a_foreign_zone() {
        assert_eq!(
            broken(
                "role = \"partner\"\ndomain = \"tailspin.test\"",
                "role = \"partner\"\ndomain = \"contoso.test\""
            ),
            r#"node "K3": "contoso.test" is a lab company, not a partner"#
        );
        assert_eq!(
            broken(
                "role = \"partner\"\ndomain = \"tailspin.test\"",
                "role = \"partner\"\ndomain = \"wingtip.test\""
            ),
            r#"node "K3": domain "wingtip.test" is not one of the zones"#
        );
        assert_eq!(
            broken(
                "role = \"partner\"\ndomain = \"tailspin.test\"",
                "role = \"partner\""
            ),
            r#"node "K3": a partner needs a domain"#
        );
    }

    #[test]
    fn duplicate_names() {
        assert_eq!(
            broken(
                "name = \"E2\"\nrole = \"edge\"",
                "name = \"E1\"\nrole = \"edge\""
            ),
            r#"duplicate node "E1""#
        );
        assert_eq!(
            broken(r#"name = "E2i""#, r#"name = "E1i""#),
            r#"duplicate interface "E1i""#
        );
        assert_eq!(
            broken(r#"aor = "adam@"#, r#"aor = "alice@"#),
            r#"duplicate user "alice@contoso.test""#
        );
        assert_eq!(
            broken(r#"name = "B2e""#, r#"name = "B1e""#),
            r#"duplicate placement "B1e""#
        );
        assert_eq!(broken("id = 18", "id = 17"), r#"duplicate path "17""#);
        assert_eq!(
            broken(r#"name = "cloud-internal""#, r#"name = "cloud-public""#),
            r#"duplicate record set "cloud-public""#
        );
    }

    #[test]
    fn a_record_pointing_at_an_unknown_interface() {
        assert_eq!(
            broken(
                r#"{ name = "sipdir.online.lync.test", type = "A", target = "CEx" }"#,
                r#"{ name = "sipdir.online.lync.test", type = "A", target = "CEy" }"#
            ),
            r#"view "contoso-lan": record "sipdir.online.lync.test" points at unknown interface "CEy""#
        );
    }

    #[test]
    fn dns_data_that_does_not_resolve() {
        assert_eq!(
            broken(
                r#"target = "pool01.contoso.test""#,
                r#"target = "pool02.contoso.test""#
            ),
            r#"view "contoso-lan": record "_sipinternaltls._tcp.contoso.test" leads to "pool02.contoso.test", which has no A record here"#
        );
        assert_eq!(
            broken(
                r#"fqdns = ["edge01-int.contoso.test"]"#,
                r#"fqdns = ["edge02-int.contoso.test"]"#
            ),
            r#"node "E1" interface "E1i": FQDN "edge02-int.contoso.test" resolves to it in no DNS view"#
        );
        assert_eq!(
            broken(
                r#"{ name = "webdir.online.lync.test""#,
                r#"{ name = "webdir.example.test""#
            ),
            r#"view "contoso-lan": record "webdir.example.test" is in no zone"#
        );
    }

    #[test]
    fn views_must_cover_the_networks_once_and_not_contradict_themselves() {
        assert_eq!(
            broken(r#"networks = ["cloud"]"#, "networks = []"),
            r#"network "cloud": no DNS view answers queries from it"#
        );
        assert_eq!(
            broken(r#"networks = ["cloud"]"#, r#"networks = ["internet"]"#),
            r#"view "cloud": network "internet" is already answered by view "internet""#
        );
        assert_eq!(
            broken(
                r#"sets = ["contoso-internal", "fabrikam-public""#,
                r#"sets = ["contoso-internal", "contoso-public", "fabrikam-public""#
            ),
            r#"view "contoso-lan": "sip.contoso.test" comes from both record set "contoso-internal" and record set "contoso-public""#
        );
        assert_eq!(
            broken(
                r#"sets = ["contoso-internal","#,
                r#"sets = ["contoso-intern","#
            ),
            r#"view "contoso-lan": unknown record set "contoso-intern""#
        );
    }

    #[test]
    fn nodes_must_name_each_other() {
        assert_eq!(
            broken(
                "frontend = \"R2\"\n\n[[node.interface]]",
                "frontend = \"R1\"\n\n[[node.interface]]"
            ),
            r#"node "R2": its edge "E2" does not name it as frontend"#
        );
        assert_eq!(
            broken(
                "company = 1\nfrontend = \"P1\"",
                "company = 1\nfrontend = \"R2\""
            ),
            r#"node "R1": domain "contoso.test" has frontend "R2""#
        );
        assert_eq!(
            broken(
                "role = \"cloud-pool\"\nedge = \"CE\"",
                "role = \"cloud-pool\"\nedge = \"E1\""
            ),
            r#"node "CP1": edge "E1" has role edge, not cloud-edge"#
        );
        assert_eq!(
            broken("role = \"dns\"", "role = \"dns\"\nedge = \"E1\""),
            r#"node "DNS": a dns takes no edge"#
        );
        assert_eq!(
            broken("port = 443 }", "port = 5062 }"),
            r#"node "R1": cloud_redirect sip:sipdir.online.lync.test:5062;transport=tls reaches no listener"#
        );
    }

    #[test]
    fn placements_must_sit_where_their_name_says() {
        assert_eq!(
            broken(
                "address = \"10.10.1.101\"\nnat = \"203.0.113.101\"",
                "address = \"10.10.1.101\""
            ),
            r#"placement "A1i": an internal client needs a nat address outside its LAN"#
        );
        assert_eq!(
            broken(
                "name = \"A1e\"\nnetwork = \"internet\"\naddress = \"203.0.113.201\"",
                "name = \"A1e\"\nnetwork = \"contoso-lan\"\naddress = \"10.10.1.201\""
            ),
            r#"placement "A1e": an external client cannot sit on its company's LAN "contoso-lan""#
        );
    }

    #[test]
    fn networks_must_map_to_distinct_slot_ranges() {
        assert_eq!(
            broken(
                r#"loopback = "127.4.0.0/24""#,
                r#"loopback = "127.4.1.0/24""#
            ),
            r#"network "cloud": loopback 127.4.1.0/24 must be 127.x.0.0/24: the test slot takes the third octet"#
        );
        assert_eq!(
            broken(
                r#"loopback = "127.4.0.0/24""#,
                r#"loopback = "127.1.0.0/24""#
            ),
            r#"network "cloud": loopback 127.1.0.0/24 is also "contoso-lan"'s"#
        );
    }

    #[test]
    fn malformed_files_are_refused_by_the_parser() {
        let unknown = broken(
            r#"loopback = "127.4.0.0/24""#,
            r#"loopbak = "127.4.0.0/24""#,
        );
        assert!(unknown.contains("unknown field `loopbak`"), "{unknown}");
        let subnet = broken(r#"subnet = "10.100.0.0/24""#, r#"subnet = "10.100.0.1/24""#);
        assert!(subnet.contains("has host bits set"), "{subnet}");
        let placement = broken(r#"name = "B2e""#, r#"name = "C2e""#);
        assert!(placement.contains("is not a placement"), "{placement}");
        assert_eq!(
            broken("443 = 10443", "https = 10443"),
            r#"local_ports: "https" is not a port number"#
        );
    }
}
