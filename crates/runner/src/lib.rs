//! The whole lab in one process: the DNS server and every node on their loopback
//! addresses, the users' clients at the places the spec names, and the rows of the path
//! table (section 5) sent, observed and compared with what the article says.

mod capture;
mod chain;
mod draw;
mod lab;
mod ladder;
mod load;
mod presence;
mod report;
mod scenario;
mod site;
mod wire;

pub use capture::{
    CAPTURE_ROW, Evidence, QUESTION_ROW, Question, ROUTE_ROW, article_evidence, article_question,
};
pub use chain::{expected_vias, name_of, name_of_route, other_interface, presence_vias, reversed};
pub use draw::{ladder_svg, mermaid, topology_svg};
pub use lab::{LabRun, RunError, SignInReport};
pub use ladder::{Arrow, Ladder, Select};
pub use load::{LoadFigures, path_load};
pub use presence::{PresenceRow, run_presence_rows};
pub use report::{evidence_table, presence_table, question_table, sign_in_table, table};
pub use scenario::{Outcome, Row, run_rows};
pub use site::{Report, serve_live};
pub use wire::Wire;
