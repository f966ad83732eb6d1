//! lab.toml as written, and its conversion into a [`Lab`]. The conversion only reshapes
//! (nests interfaces under nodes apart, expands a view's record sets, classifies hops);
//! whether the references hold is [`crate::check`]'s business.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::error::TopologyError;
use crate::lab::Lab;
use crate::model::{
    ClientPlace, CloudRedirect, Collector, DnsView, Domain, Hop, Interface, Network, Node,
    NodeLimits, Path, Pool, Ports, Record, RecordData, Role, User,
};
use crate::names::{InterfaceName, NodeName, Placement};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LabFile {
    zones: Vec<String>,
    network: Vec<Network>,
    domain: Vec<Domain>,
    #[serde(default)]
    pool: Vec<Pool>,
    user: Vec<User>,
    node: Vec<NodeEntry>,
    client_place: Vec<ClientPlace>,
    record_set: Vec<RecordSet>,
    dns_view: Vec<ViewEntry>,
    /// TOML keys are strings; they are parsed as port numbers in [`local_ports`].
    local_ports: BTreeMap<String, u16>,
    path: Vec<PathEntry>,
    collector: Option<Collector>,
    #[serde(default)]
    limits: NodeLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    name: NodeName,
    role: Role,
    domain: Option<String>,
    edge: Option<NodeName>,
    frontend: Option<NodeName>,
    cloud_redirect: Option<CloudRedirect>,
    #[serde(default)]
    limits: NodeLimits,
    interface: Vec<InterfaceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InterfaceEntry {
    name: InterfaceName,
    network: String,
    address: Ipv4Addr,
    fqdns: Vec<String>,
    ports: Ports,
}

/// Records written once and included by several views: the table's "as internet".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordSet {
    name: String,
    records: Vec<RecordEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewEntry {
    name: String,
    networks: Vec<String>,
    sets: Vec<String>,
    /// Records of this view alone (its own ns.lab.test).
    #[serde(default)]
    records: Vec<RecordEntry>,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RecordEntry {
    A {
        name: String,
        target: InterfaceName,
    },
    #[serde(rename = "SRV")]
    Srv {
        name: String,
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

impl RecordEntry {
    fn into_record(self) -> Record {
        match self {
            RecordEntry::A { name, target } => Record {
                name,
                data: RecordData::A(target),
            },
            RecordEntry::Srv {
                name,
                priority,
                weight,
                port,
                target,
            } => Record {
                name,
                data: RecordData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                },
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathEntry {
    id: u32,
    from: Placement,
    to: Placement,
    hops: Vec<String>,
    /// The receiver, when it is not the resident of the `to` placement.
    receiver: Option<String>,
    /// `false` for a row whose mirror image is not the same row with the digits swapped.
    #[serde(default = "yes")]
    mirror: bool,
}

fn yes() -> bool {
    true
}

impl LabFile {
    pub(crate) fn into_lab(self) -> Result<Lab, TopologyError> {
        let mut nodes = Vec::new();
        let mut interfaces = Vec::new();
        for node in self.node {
            nodes.push(Node {
                interfaces: node.interface.iter().map(|i| i.name.clone()).collect(),
                name: node.name.clone(),
                role: node.role,
                domain: node.domain,
                edge: node.edge,
                frontend: node.frontend,
                cloud_redirect: node.cloud_redirect,
                limits: self.limits.with(&node.limits),
            });
            interfaces.extend(node.interface.into_iter().map(|i| Interface {
                name: i.name,
                node: node.name.clone(),
                network: i.network,
                address: i.address,
                fqdns: i.fqdns,
                ports: i.ports,
            }));
        }
        let user_index = self
            .user
            .iter()
            .enumerate()
            .map(|(i, u)| (u.aor.to_ascii_lowercase(), i))
            .collect();
        Ok(Lab {
            slot: None,
            zones: self.zones,
            networks: self.network,
            domains: self.domain,
            pools: self.pool,
            users: self.user,
            user_index,
            nodes,
            interfaces,
            places: self.client_place,
            views: views(self.record_set, self.dns_view)?,
            local_ports: local_ports(self.local_ports)?,
            paths: self.path.into_iter().map(path).collect::<Result<_, _>>()?,
            collector: self.collector,
        })
    }
}

/// Expands each view's record sets. A name may come from one source only: a view that
/// included both a company's internal and public set would answer `sip.contoso.test` both ways.
fn views(sets: Vec<RecordSet>, views: Vec<ViewEntry>) -> Result<Vec<DnsView>, TopologyError> {
    let mut by_name: HashMap<String, Vec<Record>> = HashMap::new();
    for set in sets {
        let records = set.records.into_iter().map(RecordEntry::into_record);
        if by_name
            .insert(set.name.clone(), records.collect())
            .is_some()
        {
            return Err(TopologyError::Duplicate {
                kind: "record set",
                name: set.name,
            });
        }
    }
    views
        .into_iter()
        .map(|view| {
            let entry = format!("view {:?}", view.name);
            let mut records = Vec::new();
            let mut source_of: HashMap<String, String> = HashMap::new();
            let own = view.records.into_iter().map(RecordEntry::into_record);
            let mut sources = vec![("its own records".to_string(), own.collect::<Vec<_>>())];
            for set in &view.sets {
                let set_records = by_name.get(set).ok_or_else(|| {
                    TopologyError::invalid(&entry, format!("unknown record set {set:?}"))
                })?;
                sources.push((format!("record set {set:?}"), set_records.clone()));
            }
            for (source, source_records) in sources {
                for record in &source_records {
                    let name = record.name.to_ascii_lowercase();
                    let earlier = source_of.entry(name).or_insert_with(|| source.clone());
                    if *earlier != source {
                        let problem =
                            format!("{:?} comes from both {earlier} and {source}", record.name);
                        return Err(TopologyError::invalid(&entry, problem));
                    }
                }
                records.extend(source_records);
            }
            Ok(DnsView {
                name: view.name,
                networks: view.networks,
                records,
            })
        })
        .collect()
}

fn local_ports(table: BTreeMap<String, u16>) -> Result<BTreeMap<u16, u16>, TopologyError> {
    table
        .into_iter()
        .map(|(from, to)| match from.parse::<u16>() {
            Ok(from) => Ok((from, to)),
            Err(_) => Err(TopologyError::invalid(
                "local_ports",
                format!("{from:?} is not a port number"),
            )),
        })
        .collect()
}

/// The first and last hop are the placements of sender and receiver, the others interfaces.
fn path(entry: PathEntry) -> Result<Path, TopologyError> {
    let label = format!("path {}", entry.id);
    let too_short = || TopologyError::invalid(&label, "hops must name sender and receiver");
    let (first, rest) = entry.hops.split_first().ok_or_else(too_short)?;
    let (last, middle) = rest.split_last().ok_or_else(too_short)?;
    let placement = |hop: &String, which: &str| {
        hop.parse::<Placement>().map_err(|_| {
            TopologyError::invalid(&label, format!("{which} hop {hop:?} is not a placement"))
        })
    };
    let mut hops = vec![Hop::Client(placement(first, "first")?)];
    hops.extend(
        middle
            .iter()
            .map(|hop| Hop::Interface(InterfaceName::new(hop))),
    );
    hops.push(Hop::Client(placement(last, "last")?));
    Ok(Path {
        id: entry.id,
        mirrored: false,
        from: entry.from,
        to: entry.to,
        hops,
        receiver: entry.receiver,
        mirrorable: entry.mirror,
    })
}
