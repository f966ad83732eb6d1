//! The path table as text, for people: `siplab run` and the container test print it.

use std::fmt::Write;

use crate::capture::{Evidence, Question};
use crate::lab::SignInReport;
use crate::presence::PresenceRow;
use crate::scenario::{Outcome, Row};

/// The sign-ins (section 4): where discovery led each user and whom it registered with.
pub fn sign_in_table(sign_ins: &[(String, SignInReport)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Sign-in (section 4): autodiscover or the lab's DNS records, then REGISTER"
    );
    for (place, s) in sign_ins {
        let servers: Vec<String> = s
            .servers
            .iter()
            .map(|(name, status)| {
                format!("{name} {}", status.map_or("-".into(), |c| c.to_string()))
            })
            .collect();
        let _ = writeln!(
            out,
            "  {place:<4} {:<21} via {:<49} {}",
            s.aor,
            s.via,
            servers.join(" -> ")
        );
    }
    let _ = writeln!(out);
    out
}

/// The rows side by side with the article: the path it describes, the Via chain the
/// receiver saw (names and addresses), and whether they match.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<12} {:<58} {:<6}",
        "row", "scenario", "path (article) / Via chain seen by the receiver, top first", "match"
    );
    for r in rows {
        let (id, scenario) = r.scenario.split_once(' ').unwrap_or((&r.scenario, ""));
        let verdict = match &r.outcome {
            Outcome::Match => "yes".to_owned(),
            Outcome::Mismatch => "NO".to_owned(),
            Outcome::Failed(why) => format!("FAILED: {why}"),
        };
        let _ = writeln!(
            out,
            "{:<5} {:<12} {:<58} {}",
            id,
            scenario,
            r.article.join(" > "),
            verdict
        );
        let seen: Vec<String> = r
            .observed
            .iter()
            .zip(&r.observed_addresses)
            .map(|(name, addr)| format!("{name} {addr}"))
            .collect();
        let _ = writeln!(out, "{:<18} via: {}", "", seen.join(" | "));
    }
    out
}

/// The presence rows: the SUBSCRIBE's way to the home server and the NOTIFY's way back.
pub fn presence_table(rows: &[PresenceRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Presence (section 6): SUBSCRIBE answered by the watched user's home server, NOTIFY back along the Record-Route set"
    );
    let _ = writeln!(
        out,
        "{:<5} {:<12} {:<5} {:<62} match",
        "row",
        "scenario",
        "home",
        "Vias seen: SUBSCRIBE at the home server / NOTIFY at the watcher"
    );
    for r in rows {
        let (id, scenario) = r.scenario.split_once(' ').unwrap_or((&r.scenario, ""));
        let verdict = match &r.outcome {
            Outcome::Match => format!("yes ({})", r.state),
            Outcome::Mismatch => format!(
                "NO: expected {:?} / {:?}",
                r.subscribe_expected, r.notify_expected
            ),
            Outcome::Failed(why) => format!("FAILED: {why}"),
        };
        let _ = writeln!(
            out,
            "{id:<5} {scenario:<12} {:<5} SUBSCRIBE {:<52} {verdict}",
            r.home,
            r.subscribe_observed.join(" | ")
        );
        let _ = writeln!(
            out,
            "{:<24} NOTIFY    {}",
            "",
            r.notify_observed.join(" | ")
        );
    }
    out
}

/// The article's capture and Route example next to the lab's, role by role.
pub fn evidence_table(e: &Evidence) -> String {
    let verdict = |o: &Outcome| match o {
        Outcome::Match => "the same roles in the same order".to_owned(),
        Outcome::Mismatch => "NOT the article's roles".to_owned(),
        Outcome::Failed(why) => format!("FAILED: {why}"),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "The article's capture (\"Grundprinzip\"): the receiver's Vias on row {}, top first: {}",
        e.capture_row,
        verdict(&e.capture)
    );
    let _ = writeln!(out, "  {:<52} {:<22} lab", "role", "article");
    for hop in &e.unseen {
        let _ = writeln!(
            out,
            "  {:<52} {:<22} {hop}",
            "not in the article's capture", "-"
        );
    }
    for side in &e.vias {
        let _ = writeln!(
            out,
            "  {:<52} {:<22} {}",
            side.article.role,
            side.article.article,
            side.lab.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  The article saw the six Vias below; the receiver's home server and the edge down to\n  the external receiver ({}) are, as it says, \"not visible in the capture\".",
        e.unseen.join(", ")
    );
    let _ = writeln!(
        out,
        "\nThe article's Route example: the route set of a dialog on row {}, first hop first: {}",
        e.route_row,
        verdict(&e.route)
    );
    for entry in &e.route_first {
        let _ = writeln!(
            out,
            "  {:<52} lab: {entry}",
            "the caller's own edge: not in the article's example"
        );
    }
    for side in &e.routes {
        let _ = writeln!(out, "  {:<52} {}", side.article.role, side.article.article);
        for entry in &side.lab {
            let _ = writeln!(out, "  {:<52} lab: {entry}", "");
        }
    }
    let _ = writeln!(
        out,
        "  Where an edge passes a request from one interface to the other the lab records the\n  route on both (RFC 5658); the article's edges write one entry."
    );
    out
}

/// The article's question and the lab's answer.
pub fn question_table(q: &Question) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "The article's question: \"edge servers identify their peer by the name in the certificate and\n\
         MTLS: can Office 365 pose as every SIP domain?\" Row {}:",
        q.scenario
    );
    let answer = match &q.outcome {
        Outcome::Match => "no: the receiving edge refuses it".to_owned(),
        Outcome::Mismatch => "NOT refused as it must be".to_owned(),
        Outcome::Failed(why) => format!("FAILED: {why}"),
    };
    let _ = writeln!(
        out,
        "  {} -> {}: {} {}\n  {answer}; {} federates through its hybrid partner instead (rows 15 to 17),\n  \
         while northwind.test, whose _sipfederationtls record names the hosting provider, federates direct (row 19).",
        q.sender, q.receiver, q.status, q.warning, q.tenant
    );
    out
}
