//! The lab's DNS data as resource records, and the split-horizon decision of section 3: who
//! asks decides which view answers.
//!
//! The records are built once, when the server starts, so that a topology whose names are not
//! DNS names fails there rather than at the first query, and answering is a plain look-up.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{LowerQuery, ResponseCode};
use hickory_proto::rr::rdata::{A, NS, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use siplab_topology::{Lab, RecordData};

use crate::error::DnsError;

/// The time to live of every record served, in seconds, and the time a "no such name" may be
/// cached (the SOA minimum). Short, so a restarted lab with other data is seen within a
/// minute; long enough that a client's later look-ups are answered from its resolver's cache.
pub const TTL: u32 = 60;

/// The name server of every zone: the DNS node's name in section 1.
const NAME_SERVER: &str = "ns.lab.test";

/// The SOA's responsible mailbox, hostmaster@lab.test.
const HOSTMASTER: &str = "hostmaster.lab.test";

/// The zones' data never changes while the server runs, and there are no secondaries to
/// notice a change, so one serial and conventional timers do.
const SERIAL: u32 = 1;
const REFRESH: i32 = 3600;
const RETRY: i32 = 600;
const EXPIRE: i32 = 86_400;

/// Every zone and every view of a lab, as records.
pub(crate) struct Directory {
    lab: Lab,
    zones: Vec<Zone>,
    /// View name -> its records.
    views: HashMap<String, Vec<Entry>>,
}

/// A zone the server is authoritative for. Its SOA and NS are the same in every view: the
/// zone exists for everyone, only its names differ.
struct Zone {
    origin: LowerName,
    soa: Record,
    ns: Record,
}

/// A record with its owner in lower case, the form queries are compared in.
struct Entry {
    owner: LowerName,
    record: Record,
}

/// What the server says to one query.
pub(crate) enum Answer {
    /// NOERROR with the records of the name, and for SRV and NS answers the addresses of their
    /// targets that the same view knows, so the asker needs no second round trip.
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// NXDOMAIN (no such name in this view) or NOERROR without records (the name exists with
    /// other types only); authoritative either way, with the zone's SOA so the asker may cache
    /// the negative answer.
    Negative {
        code: ResponseCode,
        soa: Box<Record>,
    },
    /// Not ours to answer, and why (for the log).
    Refused(&'static str),
}

impl Directory {
    pub(crate) fn new(lab: &Lab) -> Result<Directory, DnsError> {
        let name_server = fqdn(NAME_SERVER)?;
        let hostmaster = fqdn(HOSTMASTER)?;
        let zones = lab
            .zones()
            .iter()
            .map(|zone| {
                let origin = fqdn(zone)?;
                let soa = SOA::new(
                    name_server.clone(),
                    hostmaster.clone(),
                    SERIAL,
                    REFRESH,
                    RETRY,
                    EXPIRE,
                    TTL,
                );
                Ok(Zone {
                    origin: LowerName::new(&origin),
                    soa: Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)),
                    ns: Record::from_rdata(origin, TTL, RData::NS(NS(name_server.clone()))),
                })
            })
            .collect::<Result<Vec<_>, DnsError>>()?;
        let views = lab
            .views()
            .iter()
            .map(|view| {
                let entries = view
                    .records
                    .iter()
                    .map(|record| entry(lab, record))
                    .collect::<Result<Vec<_>, DnsError>>()?;
                Ok((view.name.clone(), entries))
            })
            .collect::<Result<HashMap<_, _>, DnsError>>()?;
        Ok(Directory {
            lab: lab.clone(),
            zones,
            views,
        })
    }

    /// The answer to `query` asked from `source` at the listener on `listener`.
    ///
    /// The zone decides whether we answer at all; the source address decides the view; the
    /// view decides whether the name exists. A name of one of our zones that the view does not
    /// list is NXDOMAIN, not REFUSED: to the asker the internal names simply do not exist.
    /// A source in none of the lab's networks (a client whose resolver queries from
    /// 127.0.0.1, say) is answered from the view of the network the listener is on: it
    /// asked that network's name server.
    pub(crate) fn answer(&self, source: IpAddr, listener: IpAddr, query: &LowerQuery) -> Answer {
        let name = query.name();
        let Some(zone) = self.zone_of(name) else {
            return Answer::Refused("name in none of the lab's zones");
        };
        let Some(entries) = self
            .lab
            .view_for(source)
            .or_else(|| self.lab.view_for(listener))
            .and_then(|view| self.views.get(&view.name))
        else {
            return Answer::Refused("neither the source nor the listener is in a lab view");
        };

        let mut at_name: Vec<&Record> = entries
            .iter()
            .filter(|entry| entry.owner == *name)
            .map(|entry| &entry.record)
            .collect();
        if zone.origin == *name {
            at_name.extend([&zone.soa, &zone.ns]);
        }
        if at_name.is_empty() {
            // A name with records below it (`_tcp.contoso.test` above
            // `_sipinternaltls._tcp.contoso.test`) exists, empty (RFC 8020).
            let has_children = entries.iter().any(|entry| name.zone_of(&entry.owner));
            let code = if has_children {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            return Answer::Negative {
                code,
                soa: Box::new(zone.soa.clone()),
            };
        }

        let qtype = query.query_type();
        let answers: Vec<Record> = at_name
            .into_iter()
            .filter(|record| qtype == RecordType::ANY || record.record_type() == qtype)
            .map(|record| {
                // Answer with the name as asked: resolvers may check its case (0x20).
                let mut record = record.clone();
                record.name = query.original().name().clone();
                record
            })
            .collect();
        if answers.is_empty() {
            return Answer::Negative {
                code: ResponseCode::NoError,
                soa: Box::new(zone.soa.clone()),
            };
        }
        let additionals = answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(LowerName::new(&srv.target)),
                RData::NS(ns) => Some(LowerName::new(&ns.0)),
                _ => None,
            })
            .flat_map(|target| {
                entries
                    .iter()
                    .filter(move |entry| entry.owner == target)
                    .map(|entry| entry.record.clone())
            })
            .collect();
        Answer::Found {
            answers,
            additionals,
        }
    }

    /// The most specific of our zones that contains `name`.
    fn zone_of(&self, name: &LowerName) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|zone| zone.origin.zone_of(name))
            .max_by_key(|zone| zone.origin.num_labels())
    }
}

/// One record of a view, with an A record's interface replaced by its address in this profile.
fn entry(lab: &Lab, record: &siplab_topology::Record) -> Result<Entry, DnsError> {
    let owner = fqdn(&record.name)?;
    let data = match &record.data {
        RecordData::A(interface) => {
            let address = lab
                .interface(interface.as_str())
                .map(|i| i.address)
                .ok_or_else(|| DnsError::UnknownInterface {
                    record: record.name.clone(),
                    interface: interface.to_string(),
                })?;
            RData::A(A(address))
        }
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, fqdn(target)?)),
    };
    Ok(Entry {
        owner: LowerName::new(&owner),
        record: Record::from_rdata(owner, TTL, data),
    })
}

/// `sip.contoso.test` as an absolute DNS name.
pub(crate) fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut dns_name = Name::from_ascii(name).map_err(|error| DnsError::BadName {
        name: name.to_owned(),
        reason: error.to_string(),
    })?;
    dns_name.set_fqdn(true);
    Ok(dns_name)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;

    fn ask(directory: &Directory, source: &str, name: &str, rtype: RecordType) -> Answer {
        ask_at(directory, source, "192.0.2.53", name, rtype)
    }

    /// As [`ask`], at the listener on `listener`.
    fn ask_at(
        directory: &Directory,
        source: &str,
        listener: &str,
        name: &str,
        rtype: RecordType,
    ) -> Answer {
        let query = Query::query(fqdn(name).unwrap(), rtype);
        directory.answer(
            source.parse().unwrap(),
            listener.parse().unwrap(),
            &LowerQuery::query(query),
        )
    }

    fn code(answer: &Answer) -> ResponseCode {
        match answer {
            Answer::Found { .. } => ResponseCode::NoError,
            Answer::Negative { code, .. } => *code,
            Answer::Refused(_) => ResponseCode::Refused,
        }
    }

    #[test]
    fn the_view_is_the_askers_network() {
        let directory = Directory::new(&Lab::reference().unwrap()).unwrap();
        let lan = "10.10.1.101";
        let internet = "203.0.113.201";
        let Answer::Found { answers, .. } = ask(&directory, lan, "sip.contoso.test", RecordType::A)
        else {
            panic!("sip.contoso.test must resolve on the LAN");
        };
        assert_eq!(answers[0].data, RData::A(A("10.10.1.10".parse().unwrap())));
        let Answer::Found { answers, .. } =
            ask(&directory, internet, "sip.contoso.test", RecordType::A)
        else {
            panic!("sip.contoso.test must resolve on the internet");
        };
        assert_eq!(
            answers[0].data,
            RData::A(A("203.0.113.11".parse().unwrap()))
        );
    }

    #[test]
    fn negative_answers() {
        let directory = Directory::new(&Lab::reference().unwrap()).unwrap();
        let internet = "203.0.113.201";
        let nx = ask(&directory, internet, "pool01.contoso.test", RecordType::A);
        assert_eq!(code(&nx), ResponseCode::NXDomain);
        // An empty non-terminal and a name with other types only exist, without data.
        let lan = "10.10.1.101";
        let ent = ask(&directory, lan, "_tcp.contoso.test", RecordType::SRV);
        assert_eq!(code(&ent), ResponseCode::NoError);
        let nodata = ask(&directory, lan, "sip.contoso.test", RecordType::AAAA);
        assert!(matches!(
            nodata,
            Answer::Negative {
                code: ResponseCode::NoError,
                ..
            }
        ));
        // Outside our zones, or from outside the lab's networks: not ours to answer.
        let outside = ask(&directory, lan, "example.com", RecordType::A);
        assert_eq!(code(&outside), ResponseCode::Refused);
        let stranger = ask(&directory, "192.0.2.1", "sip.contoso.test", RecordType::A);
        assert_eq!(code(&stranger), ResponseCode::Refused);
    }

    #[test]
    fn a_stranger_gets_the_view_of_the_listener_it_asked() {
        let directory = Directory::new(&Lab::reference().unwrap()).unwrap();
        let a = |answer: Answer| match answer {
            Answer::Found { answers, .. } => answers[0].data.clone(),
            _ => panic!("no address"),
        };
        // From 127.0.0.1, in no network: the listener's network decides.
        let at_lan = ask_at(
            &directory,
            "127.0.0.1",
            "10.10.1.53",
            "sip.contoso.test",
            RecordType::A,
        );
        assert_eq!(a(at_lan), RData::A(A("10.10.1.10".parse().unwrap())));
        let at_internet = ask_at(
            &directory,
            "127.0.0.1",
            "203.0.113.53",
            "sip.contoso.test",
            RecordType::A,
        );
        assert_eq!(a(at_internet), RData::A(A("203.0.113.11".parse().unwrap())));
        let hidden = ask_at(
            &directory,
            "127.0.0.1",
            "203.0.113.53",
            "fe01.contoso.test",
            RecordType::A,
        );
        assert_eq!(code(&hidden), ResponseCode::NXDomain);
        // A source in a lab network keeps its own view, whichever listener it asks.
        let lan_client = ask_at(
            &directory,
            "10.10.1.101",
            "203.0.113.53",
            "sip.contoso.test",
            RecordType::A,
        );
        assert_eq!(a(lan_client), RData::A(A("10.10.1.10".parse().unwrap())));
    }

    #[test]
    fn rfc_3263_clients_find_the_edge_from_outside_and_the_pool_inside() {
        let directory = Directory::new(&Lab::reference().unwrap()).unwrap();
        let srv = |source: &str| match ask(
            &directory,
            source,
            "_sips._tcp.contoso.test",
            RecordType::SRV,
        ) {
            Answer::Found { answers, .. } => match &answers[0].data {
                RData::SRV(srv) => (srv.target.to_ascii(), srv.port),
                other => panic!("{other:?}"),
            },
            _ => panic!("no _sips._tcp from {source}"),
        };
        assert_eq!(srv("203.0.113.201"), ("sip.contoso.test.".into(), 443));
        assert_eq!(srv("10.10.1.101"), ("pool01.contoso.test.".into(), 5061));
    }

    #[test]
    fn the_apex_has_soa_and_ns_and_srv_targets_come_along() {
        let directory = Directory::new(&Lab::reference().unwrap()).unwrap();
        let lan = "10.10.1.101";
        let Answer::Found {
            answers,
            additionals,
        } = ask(&directory, lan, "contoso.test", RecordType::NS)
        else {
            panic!("the apex has NS");
        };
        assert_eq!(answers.len(), 1);
        assert_eq!(
            additionals[0].data,
            RData::A(A("10.10.1.53".parse().unwrap()))
        );
        let Answer::Found { additionals, .. } = ask(
            &directory,
            lan,
            "_sipinternaltls._tcp.contoso.test",
            RecordType::SRV,
        ) else {
            panic!("the LAN has _sipinternaltls");
        };
        assert_eq!(
            additionals[0].data,
            RData::A(A("10.10.1.10".parse().unwrap()))
        );
    }
}
