//! The article's own evidence next to the lab's, role by role: its one capture (section
//! "Grundprinzip": the Vias of a message from a cloud user of a US tenant to an external
//! on-prem user of a hybrid company in Germany) and its Route example (an in-dialog INFO from
//! a hybrid tenant's cloud user to a federation partner's on-prem user); and its question,
//! answered on the wire: can Office 365 federate directly as every SIP domain?

use std::time::Duration;

use serde::Serialize;
use siplab_node::Certs;
use siplab_sip::HeaderName;
use siplab_topology::{Federation, Lab, Path, Role};

use crate::chain::name_of_route;
use crate::lab::LabRun;
use crate::scenario::{Outcome, Row};

/// The row whose receiver's bottom Vias are the capture's: a cloud-only tenant's user to an
/// external on-prem user (B3e -> A1e).
pub const CAPTURE_ROW: u32 = 19;

/// The row whose dialog has the Route example's roles: a hybrid tenant's cloud user to an
/// internal on-prem user of the federation partner (B1e -> A2i), whose front end is the
/// last entry.
pub const ROUTE_ROW: u32 = 15;

/// The row of the article's question, mirrored: a cloud user of fabrikam.test, a hybrid
/// tenant, to an external user of contoso.test (B2e -> A1e), with fabrikam.test switched to
/// federate `direct`.
pub const QUESTION_ROW: u32 = 16;

/// One line of the article: what it stands for, and what the article printed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ArticleLine {
    pub role: &'static str,
    pub article: &'static str,
}

const fn line(role: &'static str, article: &'static str) -> ArticleLine {
    ArticleLine { role, article }
}

/// The capture's six Vias, top first, with the article's reading of each.
pub const CAPTURE: [ArticleLine; 6] = [
    line(
        "the on-prem edge, internal interface",
        "192.168.77.21:50480",
    ),
    line(
        "the cloud edge, public (CN sipfed.online.lync.com)",
        "52.112.0.33:36199",
    ),
    line(
        "a cloud registrar that sets up the federation",
        "10.5.16.49:50713",
    ),
    line(
        "a cloud front end with no user on it: passes it on",
        "10.5.16.109:30156",
    ),
    line(
        "the cloud edge the client is connected to, internal",
        "10.5.16.113:39643",
    ),
    line("the client that sent it", "192.168.178.61:52486"),
];

/// The Route example's seven entries, first hop first, with the node role each stands for.
pub const ROUTE: [(ArticleLine, Role); 7] = [
    (
        line(
            "the cloud pool, ms-fe the member holding the dialog",
            "sippoolAM30E08.infra.lync.com:443;ms-fe=AM30E08FES03.infra.lync.com",
        ),
        Role::CloudPool,
    ),
    (
        line("the cloud edge", "sipedgeAM30E.infra.lync.com:5061"),
        Role::CloudEdge,
    ),
    (
        line("the hybrid partner's edge, external", "sip.uclabor.de:5061"),
        Role::Edge,
    ),
    (
        line("the hybrid partner's front end", "SfBstd01.uclabor.de:5061"),
        Role::Frontend,
    ),
    (
        line(
            "the hybrid partner's edge, internal",
            "sfbedge01.uclabor.de:5061",
        ),
        Role::Edge,
    ),
    (
        line("the federation partner's edge", "sip.msxfaq.de:5061"),
        Role::Edge,
    ),
    (
        line("the federation partner's front end", "sfb01.msxfaq.de:5061"),
        Role::Frontend,
    ),
];

/// One role: the article's line and what the lab has in its place.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub article: ArticleLine,
    /// Interface names and addresses (Vias) or Route entries (one per interface a node
    /// recorded the route on).
    pub lab: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub capture_row: String,
    /// The Vias above the article's six, top first: what the article could not see.
    pub unseen: Vec<String>,
    pub vias: Vec<Side>,
    pub capture: Outcome,
    pub route_row: String,
    /// The lab's first Route entries, the client side of the cloud edge the caller is
    /// connected to (its flow token): the article's example starts at the pool.
    pub route_first: Vec<String>,
    pub routes: Vec<Side>,
    pub route: Outcome,
}

/// The article's question: "edge servers identify their peer by the name in the certificate
/// and MTLS: can Office 365 pose as every SIP domain?"
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    pub scenario: String,
    /// The hybrid tenant switched to `direct`.
    pub tenant: String,
    pub sender: String,
    pub receiver: String,
    /// What the sender got, and the Warning that came with it.
    pub status: u16,
    pub warning: String,
    /// Whether the receiving edge refused it (403, naming the federation edge it expected).
    pub outcome: Outcome,
}

/// Asks the question in a second lab, on `slot`: `lab` with the sender's tenant of row
/// [`QUESTION_ROW`] mirrored switched to `direct`; its cloud user writes to the receiver, and the
/// receiving edge must refuse the hosting provider speaking for a domain it does not host
/// (403, its Warning naming the tenant).
/// `None` for a lab without that row.
pub async fn article_question(lab: &Lab, slot: u8, certs: Certs) -> Option<Question> {
    let path = lab.path(QUESTION_ROW)?.mirror();
    let (sender, receiver) = lab.parties(&path)?;
    let tenant = lab.domain(sender.domain())?.name.clone();
    let mut q = Question {
        scenario: format!("{} with {tenant} federating direct", path.scenario()),
        tenant: tenant.clone(),
        sender: sender.aor.clone(),
        receiver: receiver.aor.clone(),
        status: 0,
        warning: String::new(),
        outcome: Outcome::Failed(String::new()),
    };
    let variant = match lab.with_federation(&tenant, Federation::Direct) {
        Ok(variant) => variant.localized(slot),
        Err(e) => {
            q.outcome = Outcome::Failed(e.to_string());
            return Some(q);
        }
    };
    let run = match LabRun::start(variant, certs).await {
        Ok(run) => run,
        Err(e) => {
            q.outcome = Outcome::Failed(e.to_string());
            return Some(q);
        }
    };
    let got = ask(&run, &path, &q.sender, &q.receiver).await;
    run.sign_out_all().await;
    match got {
        Ok((status, warning)) => {
            q.outcome = if status == 403 && warning.contains(&tenant) {
                Outcome::Match
            } else {
                Outcome::Mismatch
            };
            q.status = status;
            q.warning = warning;
        }
        Err(why) => q.outcome = Outcome::Failed(why),
    }
    Some(q)
}

/// The sender of `path` writes to its receiver: the status it got, and the Warning.
async fn ask(
    run: &LabRun,
    path: &Path,
    sender: &str,
    receiver: &str,
) -> Result<(u16, String), String> {
    for (aor, place) in [(sender, path.from), (receiver, path.to)] {
        run.place(aor, place.at).await.map_err(|e| e.to_string())?;
    }
    let from = run.client(sender).await.ok_or("no sender")?;
    let o = from
        .send_message(receiver, "can Office 365 pose as every SIP domain?")
        .await
        .map_err(|e| e.to_string())?;
    let warning = o.response.headers.value(&HeaderName::new("Warning"));
    let warning = warning.map(|w| String::from_utf8_lossy(w).into_owned());
    Ok((o.status, warning.unwrap_or_default()))
}

/// The capture next to row [`CAPTURE_ROW`] as `rows` observed it, and the Route example
/// next to the route set of a dialog on row [`ROUTE_ROW`], set up now; `None` for a lab
/// whose path table lacks either row.
pub async fn article_evidence(run: &LabRun, rows: &[Row]) -> Option<Evidence> {
    let lab = &run.lab;
    let capture_row = lab.path(CAPTURE_ROW)?.scenario();
    let route_row = lab.path(ROUTE_ROW)?.scenario();
    let row = rows
        .iter()
        .find(|r| r.scenario == capture_row && !r.mirrored);
    let seen: Vec<String> = row
        .map(|r| {
            r.observed
                .iter()
                .zip(&r.observed_addresses)
                .map(|(name, addr)| format!("{name} {addr}"))
                .collect()
        })
        .unwrap_or_default();
    let above = seen.len().saturating_sub(CAPTURE.len());
    let vias = CAPTURE
        .iter()
        .zip(seen.iter().skip(above))
        .map(|(article, lab)| Side {
            article: *article,
            lab: vec![lab.clone()],
        })
        .collect();
    let capture = match row {
        None => Outcome::Failed(format!("row {CAPTURE_ROW} was not run")),
        Some(r) if r.outcome == Outcome::Match && seen.len() >= CAPTURE.len() => Outcome::Match,
        Some(r) if r.outcome == Outcome::Match => Outcome::Mismatch,
        Some(r) => r.outcome.clone(),
    };
    let (route_first, routes, route) = match route_set(run).await {
        Ok(set) => compare_routes(lab, &set),
        Err(why) => (Vec::new(), Vec::new(), Outcome::Failed(why)),
    };
    Some(Evidence {
        capture_row,
        unseen: seen[..above].to_vec(),
        vias,
        capture,
        route_row,
        route_first,
        routes,
        route,
    })
}

/// The Route set the caller of row [`ROUTE_ROW`] sends its in-dialog requests with: an
/// INVITE, answered, then hung up.
async fn route_set(run: &LabRun) -> Result<Vec<String>, String> {
    let lab = &run.lab;
    let path = lab.path(ROUTE_ROW).ok_or("no such row")?;
    let (sender, receiver) = lab.parties(path).ok_or("no parties")?;
    for (aor, place) in [(&sender.aor, path.from), (&receiver.aor, path.to)] {
        run.place(aor, place.at).await.map_err(|e| e.to_string())?;
    }
    let caller = run.client(&sender.aor).await.ok_or("no caller")?;
    let callee = run.client(&receiver.aor).await.ok_or("no callee")?;
    let call = caller
        .invite(&receiver.aor)
        .await
        .map_err(|e| e.to_string())?;
    if !call.is_established() {
        return Err(format!("INVITE answered {}", call.outcome().status));
    }
    let set = call.route_set().to_vec();
    let answered = callee.next_call(Duration::from_secs(5)).await;
    call.bye().await.map_err(|e| format!("BYE: {e}"))?;
    drop(answered);
    while callee.next_received(Duration::ZERO).await.is_some() {}
    Ok(set)
}

/// The lab's Route entries grouped by the node that recorded them (an edge records two,
/// one per interface, RFC 5658; the article's edges write one), next to the article's; the
/// group of the caller's own edge first, which the article's example has no line for.
fn compare_routes(lab: &Lab, set: &[String]) -> (Vec<String>, Vec<Side>, Outcome) {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for entry in set {
        let name = name_of_route(lab, entry);
        let node = lab
            .interface(&name)
            .map_or_else(|| name.clone(), |i| i.node.to_string());
        match groups.last_mut() {
            Some((n, entries)) if *n == node => entries.push(format!("{name} {entry}")),
            _ => groups.push((node, vec![format!("{name} {entry}")])),
        }
    }
    let role_of = |node: &str| lab.node(node).map(|n| n.role);
    let first = match groups.first() {
        Some((node, _)) if role_of(node) == Some(Role::CloudEdge) => groups.remove(0).1,
        _ => Vec::new(),
    };
    let roles: Vec<Option<Role>> = groups.iter().map(|(node, _)| role_of(node)).collect();
    let matches = !first.is_empty()
        && roles.len() == ROUTE.len()
        && ROUTE
            .iter()
            .zip(&roles)
            .all(|((_, role), got)| Some(*role) == *got)
        && groups
            .first()
            .is_some_and(|(_, e)| e.iter().all(|e| e.contains("ms-fe=")));
    let sides = ROUTE
        .iter()
        .zip(groups)
        .map(|((article, _), (_, entries))| Side {
            article: *article,
            lab: entries,
        })
        .collect();
    let outcome = if matches {
        Outcome::Match
    } else {
        Outcome::Mismatch
    };
    (first, sides, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route set row 15's caller got on the wire (siplab run), grouped by node: the
    /// caller's own edge, then the article's seven roles.
    #[test]
    fn the_route_set_of_row_15_has_the_article_s_roles() {
        let lab = Lab::reference().unwrap();
        let set = [
            "<sip:3x28c39d50fbaa9276@sipdir.online.lync.test:443;transport=tls;lr>",
            "<sip:sipedge01.infra.lync.test:5061;transport=tls;lr>",
            "<sip:sippool01.infra.lync.test:5061;transport=tls;ms-fe=cpfe02.infra.lync.test;lr>",
            "<sip:sipedge01.infra.lync.test:5061;transport=tls;lr>",
            "<sip:sipdir.online.lync.test:5061;transport=tls;lr>",
            "<sip:sip.contoso.test:5061;transport=tls;lr>",
            "<sip:edge01-int.contoso.test:5061;transport=tls;lr>",
            "<sip:fe01.contoso.test:5061;transport=tls;lr>",
            "<sip:edge01-int.contoso.test:5061;transport=tls;lr>",
            "<sip:sip.contoso.test:5061;transport=tls;lr>",
            "<sip:sip.fabrikam.test:5061;transport=tls;lr>",
            "<sip:edge01-int.fabrikam.test:5061;transport=tls;lr>",
            "<sip:fe01.fabrikam.test:5061;transport=tls;lr>",
        ]
        .map(String::from);
        let (first, sides, outcome) = compare_routes(&lab.localized(0), &set);
        assert_eq!(first.len(), 2);
        let per_role: Vec<usize> = sides.iter().map(|s| s.lab.len()).collect();
        assert_eq!(per_role, [1, 2, 2, 1, 2, 2, 1]);
        assert_eq!(outcome, Outcome::Match);
        // Without the pool's ms-fe, or with a role missing, it is not the article's.
        let (_, _, outcome) = compare_routes(&lab, &set[..12]);
        assert_eq!(outcome, Outcome::Mismatch);
        // Row 16's receiver is external: its edge is one role more than the article's.
        let mut longer = set.to_vec();
        longer.push("<sip:edge01-int.fabrikam.test:5061;transport=tls;lr>".into());
        assert_eq!(compare_routes(&lab, &longer).2, Outcome::Mismatch);
        let no_member: Vec<String> = set
            .iter()
            .map(|e| e.replace(";ms-fe=cpfe02.infra.lync.test", ""))
            .collect();
        assert_eq!(compare_routes(&lab, &no_member).2, Outcome::Mismatch);
    }
}
