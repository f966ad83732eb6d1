//! One row of the path table: who sends to whom from where, what the article says the
//! receiver's Via chain is, and what the wire showed.

use std::time::Duration;

use serde::Serialize;
use siplab_topology::{Lab, Path};

use crate::chain::{expected_vias, name_of};
use crate::lab::LabRun;

/// What happened to one row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub mirrored: bool,
    pub sender: String,
    pub receiver: String,
    /// The path the article describes, sender first.
    pub article: Vec<String>,
    /// The Vias the receiver should see, top first.
    pub expected: Vec<String>,
    /// The Vias the receiver saw, top first, by name and by address.
    pub observed: Vec<String>,
    pub observed_addresses: Vec<String>,
    /// The MESSAGE's Call-ID, by which its captures are found.
    pub call_id: String,
    pub outcome: Outcome,
}

impl Row {
    /// The row of `path` before it is run: its parties, the article's path and the Vias the
    /// receiver should see; nothing observed yet.
    pub fn pending(lab: &Lab, path: &Path) -> Row {
        let (sender, receiver) = lab
            .parties(path)
            .map(|(s, r)| (s.aor.clone(), r.aor.clone()))
            .unwrap_or_default();
        Row {
            scenario: path.scenario(),
            mirrored: path.mirrored,
            sender,
            receiver,
            article: path.hops.iter().map(|h| h.to_string()).collect(),
            expected: expected_vias(path),
            observed: Vec::new(),
            observed_addresses: Vec::new(),
            call_id: String::new(),
            outcome: Outcome::Failed(String::new()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Match,
    Mismatch,
    /// The request did not arrive (with the status the sender got, or why).
    Failed(String),
}

const RECEIVE: Duration = Duration::from_secs(5);

/// Runs the rows in order (each places its sender and receiver first) and reports each.
pub async fn run_rows(run: &LabRun, paths: &[Path]) -> Vec<Row> {
    let mut rows = Vec::with_capacity(paths.len());
    for path in paths {
        rows.push(run_row(run, path).await);
    }
    rows
}

async fn run_row(run: &LabRun, path: &Path) -> Row {
    let lab = &run.lab;
    let mut row = Row::pending(lab, path);
    let (sender, receiver) = (row.sender.clone(), row.receiver.clone());
    for (aor, place) in [(&sender, path.from), (&receiver, path.to)] {
        if let Err(e) = run.place(aor, place.at).await {
            row.outcome = Outcome::Failed(e.to_string());
            return row;
        }
    }
    let (Some(from), Some(to)) = (run.client(&sender).await, run.client(&receiver).await) else {
        row.outcome = Outcome::Failed("client missing".into());
        return row;
    };
    while to.next_received(Duration::ZERO).await.is_some() {}
    let text = format!("row {}", row.scenario);
    match from.send_message(&receiver, &text).await {
        Ok(o) if o.status == 200 => {}
        Ok(o) => {
            row.outcome = Outcome::Failed(format!("{} {}", o.status, o.reason));
            return row;
        }
        Err(e) => {
            row.outcome = Outcome::Failed(e.to_string());
            return row;
        }
    }
    let Some(got) = to.next_received(RECEIVE).await else {
        row.outcome = Outcome::Failed("answered, but the receiver saw nothing".into());
        return row;
    };
    row.call_id = got.call_id.clone();
    row.observed = got.vias.iter().map(|v| name_of(lab, &v.host)).collect();
    row.observed_addresses = got.vias.iter().map(|v| v.sent_by.clone()).collect();
    row.outcome = if row.observed == row.expected {
        Outcome::Match
    } else {
        Outcome::Mismatch
    };
    row
}
