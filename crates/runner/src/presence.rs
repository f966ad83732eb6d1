//! Presence on the paths (the article's "Präsenz-Status", section 6): the receiver of a row
//! publishes a state, the sender watches it; the SUBSCRIBE's way ends at the receiver's home
//! server, which answers it, and its NOTIFY comes back along the Record-Route set.

use std::time::Duration;

use serde::Serialize;
use siplab_sip::Method;
use siplab_topology::Path;

use crate::chain::{name_of, presence_vias};
use crate::lab::LabRun;
use crate::scenario::Outcome;

#[derive(Debug, Clone, Serialize)]
pub struct PresenceRow {
    pub scenario: String,
    pub watcher: String,
    pub target: String,
    /// The home server that answered.
    pub home: String,
    pub subscribe_expected: Vec<String>,
    pub subscribe_observed: Vec<String>,
    pub notify_expected: Vec<String>,
    pub notify_observed: Vec<String>,
    /// The state the NOTIFY carried (the target published it just before).
    pub state: String,
    /// The subscription's Call-ID (its SUBSCRIBE and NOTIFYs).
    pub call_id: String,
    pub outcome: Outcome,
}

const STATES: &[&str] = &["busy", "away", "available"];

pub async fn run_presence_rows(run: &LabRun, paths: &[Path]) -> Vec<PresenceRow> {
    let mut rows = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        rows.push(presence_row(run, path, STATES[i % STATES.len()]).await);
    }
    rows
}

async fn presence_row(run: &LabRun, path: &Path, state: &str) -> PresenceRow {
    let lab = &run.lab;
    let (watcher, target) = lab
        .parties(path)
        .map(|(s, r)| (s.aor.clone(), r.aor.clone()))
        .unwrap_or_default();
    let home = lab
        .user(&target)
        .map(|u| u.home.to_string())
        .unwrap_or_default();
    let (subscribe_expected, notify_expected) = presence_vias(lab, path, &home).unwrap_or_default();
    let mut row = PresenceRow {
        scenario: path.scenario(),
        watcher: watcher.clone(),
        target: target.clone(),
        home: home.clone(),
        subscribe_expected,
        subscribe_observed: Vec::new(),
        notify_expected,
        notify_observed: Vec::new(),
        state: String::new(),
        call_id: String::new(),
        outcome: Outcome::Failed(String::new()),
    };
    let fail = |mut row: PresenceRow, why: String| {
        row.outcome = Outcome::Failed(why);
        row
    };
    for (aor, place) in [(&watcher, path.from), (&target, path.to)] {
        if let Err(e) = run.place(aor, place.at).await {
            return fail(row, e.to_string());
        }
    }
    let (Some(w), Some(t)) = (run.client(&watcher).await, run.client(&target).await) else {
        return fail(row, "client missing".into());
    };
    match t.publish(state).await {
        Ok(o) if o.status == 200 => {}
        Ok(o) => return fail(row, format!("PUBLISH {} {}", o.status, o.reason)),
        Err(e) => return fail(row, format!("PUBLISH: {e}")),
    }
    while w.next_received(Duration::ZERO).await.is_some() {}
    let subscribed = match w.subscribe(&target, 600).await {
        Ok(o) if o.status == 200 => o,
        Ok(o) => return fail(row, format!("SUBSCRIBE {} {}", o.status, o.reason)),
        Err(e) => return fail(row, format!("SUBSCRIBE: {e}")),
    };
    let call_id = subscribed
        .response
        .call_id()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default();
    row.call_id = call_id.clone();
    let notify = loop {
        match w.next_received(Duration::from_secs(5)).await {
            Some(r) if r.method == Method::Notify => break r,
            Some(_) => continue,
            None => return fail(row, "no NOTIFY".into()),
        }
    };
    row.notify_observed = notify.vias.iter().map(|v| name_of(lab, &v.host)).collect();
    row.state = siplab_sip::pidf_state(notify.body.as_bytes()).unwrap_or_default();
    if let Some(node) = run.node(&home)
        && let Some(sub) = node
            .presence
            .subscriptions()
            .into_iter()
            .find(|s| s.call_id == call_id)
    {
        row.subscribe_observed = sub.vias.iter().map(|h| name_of(lab, h)).collect();
    }
    // Watching ends with the row, so that a later change (a sign-out) owes it no NOTIFY.
    match w.unsubscribe(&subscribed).await {
        Ok(o) if o.status == 200 => {}
        Ok(o) => {
            let warning = o
                .response
                .headers
                .value(&siplab_sip::HeaderName::new("Warning"));
            let warning = warning
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .unwrap_or_default();
            return fail(
                row,
                format!(
                    "ending the subscription: {} {} {warning}",
                    o.status, o.reason
                ),
            );
        }
        Err(e) => return fail(row, format!("ending the subscription: {e}")),
    }
    row.outcome = if row.subscribe_observed == row.subscribe_expected
        && row.notify_observed == row.notify_expected
        && row.state == state
    {
        Outcome::Match
    } else {
        Outcome::Mismatch
    };
    row
}
