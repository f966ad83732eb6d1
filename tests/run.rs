//! The README's first command, `cargo run --release --bin siplab -- run --report report`, as
//! the built `siplab run`: the whole lab in one process prints every row matching, the
//! article's capture, Route example and question side by side with the lab's, and exits 0;
//! its report, opened in a real browser, draws every row as the ladder the wire showed, each
//! hop with its node's reason.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Suite;
use common::browser::Browser;
use serde_json::{Value, json};

/// The `n` lines of `text` from the one starting with `title`.
fn section<'a>(text: &'a str, title: &str, n: usize) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(title))
        .take(n)
        .collect()
}

#[test]
fn siplab_run_shows_every_row_and_the_article_s_evidence() {
    // As the README runs it, without options: its default slots (0, and 1 for the article's
    // question) are the README's own.
    assert_eq!((Suite::Readme.slot(0), Suite::Readme.slot(1)), (0, 1));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_siplab"))
        .args(["run", "--report", "report"])
        .current_dir(dir.path())
        .output()
        .expect("run siplab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "siplab run failed: {stderr}");
    assert!(
        stdout.contains("43 of 43 message rows and 43 of 43 presence rows match the article"),
        "{stdout}"
    );
    // The capture: the receiver's bottom six Vias in the article's roles, CP1 passing on to
    // CP2, and R1 and E1x above them, which the article could not see.
    let capture = section(&stdout, "The article's capture", 10);
    assert_eq!(capture.len(), 10, "{stdout}");
    assert!(
        capture[0].ends_with("the same roles in the same order"),
        "{capture:#?}"
    );
    let lab_of = |role: &str| {
        capture
            .iter()
            .find(|l| l.contains(role))
            .and_then(|l| l.split_whitespace().rev().nth(1))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(lab_of("the client that sent it"), "B3e");
    assert_eq!(lab_of("no user on it: passes it on"), "CP1");
    assert_eq!(lab_of("sets up the federation"), "CP2");
    assert_eq!(lab_of("public (CN sipfed"), "CEx");
    assert_eq!(lab_of("on-prem edge, internal"), "E1i");
    let unseen: Vec<&str> = capture
        .iter()
        .filter(|l| l.contains("not in the article's capture"))
        .copied()
        .collect();
    assert!(unseen.len() == 2 && unseen[0].contains("E1x") && unseen[1].contains("R1"));
    let route = section(&stdout, "The article's Route example", 1).join("");
    assert!(
        route.ends_with("the same roles in the same order"),
        "{route}"
    );
    assert!(stdout.contains("ms-fe=cpfe02.infra.lync.test"));
    // The article's question: the hosting provider cannot speak for a hybrid domain that
    // does not list it.
    let question = section(&stdout, "The article's question", 4);
    assert_eq!(question.len(), 4, "{stdout}");
    assert!(
        question[2].contains("bruno@fabrikam.test -> adam@contoso.test: 403")
            && question[2].contains("sipfed.online.lync.test")
            && question[2]
                .contains("neither the federation edge of fabrikam.test (sip.fabrikam.test)"),
        "{question:#?}"
    );
    assert!(question[3].contains("no: the receiving edge refuses it"));
    // Nothing a newcomer cannot act on.
    assert!(!stderr.contains("WARN"), "{stderr}");
    the_report_draws_every_row(&dir.path().join("report"));
}

/// The report's files, then its page in chromium: row 17 (the longest path) as 13 request
/// arrows along the article's hops, each a node sent with its reason, and 13 answers back;
/// every row and presence row drawn. Leaves a screenshot of row 17's ladder in
/// target/tmp/pages/row-17.png (the README's picture, docs/row-17.png, is a copy of it).
fn the_report_draws_every_row(report: &Path) {
    let lab = siplab_topology::Lab::reference().unwrap();
    let mermaid = std::fs::read_to_string(report.join("rows/17.mmd")).unwrap();
    assert!(mermaid.starts_with("sequenceDiagram\n"), "{mermaid}");
    assert_eq!(mermaid.matches("->>").count(), 26, "{mermaid}");
    let svg = std::fs::read_to_string(report.join("rows/17.svg")).unwrap();
    assert_eq!(svg.matches(r#"class="arrow request""#).count(), 13);
    let index = report.join("index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained"
    );
    let Some(mut page) = Browser::open(&format!("file://{}", index.display()), (1800, 1200)) else {
        return;
    };
    let arrows = |page: &mut Browser, row: &str, kind: &str| -> Vec<Value> {
        let expression = format!(
            "[...document.querySelectorAll('#row-{row} .arrow.{kind}')].map(a => [a.dataset.from, a.dataset.to, a.dataset.label, a.dataset.reason])"
        );
        page.eval(&expression)
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let requests = arrows(&mut page, "17", "request");
    let hops: Vec<String> = lab
        .path(17)
        .unwrap()
        .hops
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(requests.len(), 13, "{requests:#?}");
    for (i, arrow) in requests.iter().enumerate() {
        assert_eq!(
            arrow[0],
            json!(hops[i]),
            "arrow {i} leaves from the article's hop: {arrow}"
        );
        assert_eq!(arrow[2], json!("MESSAGE"));
        // The client's own send has no node reason; every node's has one.
        let reason = arrow[3].as_str().unwrap_or_default();
        assert_eq!(reason.is_empty(), i == 0, "arrow {i}: {arrow}");
    }
    assert_eq!(requests[12][1], json!("B2e"));
    assert!(
        requests[6][3].as_str().unwrap().starts_with(
            "fabrikam.test: not ours: federation via _sipfederationtls._tcp -> sip.fabrikam.test"
        ),
        "E1x's reason: {}",
        requests[6][3]
    );
    assert!(
        requests[9][3].as_str().unwrap().starts_with("bruno@fabrikam.test: homed in the cloud: to the hosting provider -> sipfed.online.lync.test"),
        "E2x's reason: {}", requests[9][3]
    );
    let responses = arrows(&mut page, "17", "response");
    assert_eq!(responses.len(), 13, "{responses:#?}");
    assert!(
        responses.iter().all(|a| a[2] == json!("200 OK")),
        "{responses:#?}"
    );
    assert_eq!(
        (&responses[0][0], &responses[12][1]),
        (&json!("B2e"), &json!("B1e"))
    );
    // Every row: as many request arrows as its path has hops between parties, and the
    // presence rows' SUBSCRIBE and NOTIFY ladders.
    let drawn = page.eval(
        "[...document.querySelectorAll('section.row:not(.presence)')].map(s => [s.dataset.row, s.querySelectorAll('.arrow.request').length])",
    );
    let drawn = drawn.as_array().unwrap();
    let paths = lab.paths_with_mirrors();
    assert_eq!(drawn.len(), paths.len());
    for (row, path) in drawn.iter().zip(&paths) {
        assert_eq!(row[1], json!(path.hops.len() - 1), "row {row}");
    }
    let presence = page.eval(
        "[...document.querySelectorAll('section.presence')].map(s => [...s.querySelectorAll('svg.ladder')].map(l => l.querySelectorAll('.arrow.request').length))",
    );
    let presence = presence.as_array().unwrap();
    assert_eq!(presence.len(), paths.len());
    assert!(
        presence
            .iter()
            .all(|p| p[0].as_u64() > Some(0) && p[1].as_u64() > Some(0)),
        "{presence:?}"
    );
    // The filter hides what does not match.
    let shown = page.eval(
        "f.value='bruno@fabrikam.test'; apply(); document.querySelectorAll('section.row:not(.hidden)').length",
    );
    assert!(
        shown
            .as_u64()
            .is_some_and(|n| n > 0 && n < 2 * paths.len() as u64),
        "{shown}"
    );
    page.eval("f.value=''; apply(); true");
    page.wait_for("document.fonts.status === 'loaded'", Duration::from_secs(5));
    page.screenshot(
        "#row-17 svg",
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages/row-17.png"),
    );
}
