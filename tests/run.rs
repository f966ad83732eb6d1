//! The README's first command, `cargo run --release --bin siplab -- run`, as the built
//! `siplab run`: the whole lab in one process prints every row matching, the article's
//! capture, Route example and question side by side with the lab's, and exits 0.

mod common;

use std::process::Command;

use common::Suite;

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
    let out = Command::new(env!("CARGO_BIN_EXE_siplab"))
        .arg("run")
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
}
