//! Via chains in the spec's terms: a sent-by address named back as an interface (`E1x`)
//! or a client placement (`A1e`), and the chain a receiver should see for a path.

use siplab_sip::NameAddr;
use siplab_topology::{Hop, InterfaceName, Lab, Path};

/// Names a Via host: an interface, a client placement, or the host itself when neither.
pub fn name_of(lab: &Lab, host: &str) -> String {
    lab.name_of_host(host).unwrap_or_else(|| host.to_owned())
}

/// Names a Route or Record-Route entry: by the pool member it names (`ms-fe`), else by its
/// host; the entry itself when it is no SIP name-addr.
pub fn name_of_route(lab: &Lab, entry: &str) -> String {
    match NameAddr::parse(entry.as_bytes())
        .ok()
        .and_then(|a| a.sip_uri().cloned())
    {
        Some(uri) => match uri.pool_member() {
            Some(member) => name_of(lab, member),
            None => name_of(lab, &uri.host.to_string()),
        },
        None => entry.to_owned(),
    }
}

/// The Vias the receiver of `path` sees, top first: the path without its receiver, reversed.
pub fn expected_vias(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = path.hops[..path.hops.len().saturating_sub(1)]
        .iter()
        .map(|h| match h {
            Hop::Client(p) => p.to_string(),
            Hop::Interface(i) => i.to_string(),
        })
        .collect();
    names.reverse();
    names
}

/// The way back: the hops of `hops` in reverse order, each edge hop on its other interface
/// (a node sends from the interface facing the next hop: E1x one way is E1i the other way).
pub fn reversed(lab: &Lab, hops: &[Hop]) -> Vec<Hop> {
    hops.iter()
        .rev()
        .map(|h| match h {
            Hop::Interface(i) => Hop::Interface(other_interface(lab, i)),
            client => client.clone(),
        })
        .collect()
}

/// The node's other interface (E1x for E1i), or `name` itself when the node has only one
/// (or is not in the lab).
pub fn other_interface(lab: &Lab, name: &InterfaceName) -> InterfaceName {
    let node = lab.interface(name.as_str()).map(|x| x.node.clone());
    node.and_then(|n| {
        lab.interfaces_of(n.as_str())
            .find(|x| x.name != *name)
            .map(|x| x.name.clone())
    })
    .unwrap_or_else(|| name.clone())
}

/// Presence on a path (section 6): the SUBSCRIBE takes the path up to the watched user's
/// home server, which answers; the NOTIFYs come back the other way. Returns the Vias the
/// home server sees on the SUBSCRIBE and the Vias the watcher sees on a NOTIFY, top first.
pub fn presence_vias(lab: &Lab, path: &Path, home: &str) -> Option<(Vec<String>, Vec<String>)> {
    let at_home = |h: &Hop| matches!(h, Hop::Interface(i) if lab.interface(i.as_str()).is_some_and(|x| x.node.as_str() == home));
    let end = path.hops.iter().rposition(at_home)?;
    let up = &path.hops[..=end];
    let names =
        |hops: &[Hop]| -> Vec<String> { hops.iter().rev().map(ToString::to_string).collect() };
    let subscribe = names(&up[..end]);
    let back = reversed(lab, up);
    let notify = names(&back[..back.len() - 1]);
    Some((subscribe, notify))
}
