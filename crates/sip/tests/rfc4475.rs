//! The 50 torture messages of RFC 4475, byte for byte, against the codec. INDEX.tsv in the
//! test data says what a careful implementation does with each; the table below is that,
//! made exact for the codec's layer (what a proxy's policy does with a message that parses,
//! such as 416 or 420, is tested where the policy lives).

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use siplab_sip::{Frame, Limits, Message, StreamDecoder};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Parses, validates, and re-serializes to the same bytes.
    Valid,
    /// Refused with this status, the error naming this place.
    Refuse(u16, &'static str),
    /// A response that must be dropped; the error names this place.
    Drop(&'static str),
    /// Content-Length larger than what follows: a datagram is refused, a stream waits.
    Truncated,
}

use Expect::*;

const TABLE: &[(&str, Expect)] = &[
    ("wsinv", Valid),
    ("intmeth", Valid),
    ("esc01", Valid),
    ("escnull", Valid),
    ("esc02", Valid),
    ("lwsdisp", Valid),
    ("longreq", Valid),
    ("dblreq", Valid),
    ("semiuri", Valid),
    ("transports", Valid),
    ("mpart01", Valid),
    ("unreason", Valid),
    ("noreason", Valid),
    ("badinv01", Refuse(400, "Via header")),
    ("clerr", Truncated),
    ("ncl", Refuse(400, "Content-Length header")),
    ("scalar02", Refuse(400, "CSeq header")),
    ("scalarlg", Drop("CSeq header")),
    ("quotbal", Refuse(400, "To header")),
    ("ltgtruri", Refuse(400, "start line")),
    ("lwsruri", Refuse(400, "start line")),
    ("lwsstart", Refuse(400, "start line")),
    ("trws", Refuse(400, "start line")),
    ("escruri", Refuse(400, "start line")),
    ("baddate", Valid),
    ("regbadct", Refuse(400, "Contact header")),
    ("badaspec", Refuse(400, "To header")),
    ("baddn", Refuse(400, "From header")),
    ("badvers", Refuse(505, "start line")),
    ("mismatch01", Refuse(400, "CSeq header")),
    ("mismatch02", Refuse(400, "CSeq header")),
    ("bigcode", Drop("start line")),
    ("badbranch", Valid),
    ("insuf", Refuse(400, "From header")),
    ("unkscm", Valid),
    ("novelsc", Valid),
    ("unksm2", Valid),
    ("bext01", Valid),
    ("invut", Valid),
    ("regaut01", Valid),
    ("multi01", Refuse(400, "From header")),
    ("mcl01", Refuse(400, "Content-Length header")),
    ("bcast", Valid),
    ("zeromf", Valid),
    ("cparam01", Valid),
    ("cparam02", Valid),
    ("regescrt", Valid),
    ("sdp01", Valid),
    ("inv2543", Valid),
    ("test", Refuse(400, "start line")),
];

fn data_dir() -> PathBuf {
    match std::env::var_os("SIPLAB_SHARED") {
        Some(d) => PathBuf::from(d).join("testdata/rfc4475"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/rfc4475"),
    }
}

/// What the codec made of one message, in the table's terms, plus a note for the report.
fn observe(bytes: &[u8]) -> (Expect, String) {
    let is_response = bytes.starts_with(b"SIP/");
    match Message::parse(Bytes::copy_from_slice(bytes)).and_then(|m| m.validate().map(|_| m)) {
        Ok(m) => {
            let out = m.to_bytes();
            if bytes.starts_with(&out) {
                (
                    Valid,
                    format!("{} bytes, re-serialized identically", out.len()),
                )
            } else {
                (
                    Drop("re-serialization differs"),
                    "re-serialization differs".into(),
                )
            }
        }
        Err(e) => {
            let place = e.place.to_string();
            let place: &'static str = Box::leak(
                place
                    .split(' ')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into_boxed_str(),
            );
            let place = if place.starts_with("start line") {
                "start line"
            } else {
                place
            };
            let note = e.to_string();
            if matches!(e.kind, siplab_sip::ErrorKind::TruncatedBody { .. }) {
                (Truncated, note)
            } else if is_response {
                (Drop(place), note)
            } else {
                (Refuse(e.status(), place), note)
            }
        }
    }
}

fn describe(e: Expect) -> String {
    match e {
        Valid => "valid".into(),
        Refuse(s, p) => format!("{s} ({p})"),
        Drop(p) => format!("drop ({p})"),
        Truncated => "truncated".into(),
    }
}

#[test]
fn every_torture_message_gives_what_the_index_says() {
    let dir = data_dir();
    let index = std::fs::read_to_string(dir.join("INDEX.tsv"))
        .expect("RFC 4475 INDEX.tsv (set SIPLAB_SHARED)");
    let names: Vec<&str> = index
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(names.len(), 50, "INDEX.tsv lists 50 messages");
    assert_eq!(TABLE.len(), 50);

    let mut failures = Vec::new();
    println!("| # | message | expected | observed | detail |\n|---|---|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        let (_, expected) = TABLE
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not in the table"));
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let (observed, note) = observe(&bytes);
        let ok = observed == *expected;
        println!(
            "| {} | {name} | {} | {} | {} |",
            i + 1,
            describe(*expected),
            describe(observed),
            note.replace('|', "\\|")
        );
        if !ok {
            failures.push(format!(
                "{name}: expected {expected:?}, observed {observed:?} ({note})"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// On a stream, every valid message with a Content-Length comes out whole and identical,
/// however the bytes are cut; and an invalid one harms nothing that follows it.
#[test]
fn stream_framing_of_the_torture_messages() {
    let dir = data_dir();
    let follow = b"OPTIONS sip:next@example.com SIP/2.0\r\nVia: SIP/2.0/TLS n;branch=z9hG4bKn\r\nFrom: <sip:n@example.com>;tag=n\r\nTo: <sip:next@example.com>\r\nCall-ID: next\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    for (name, expected) in TABLE {
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let mut input = bytes.clone();
        input.extend_from_slice(follow);
        for chunk in [1, 13, 4096] {
            let mut decoder = StreamDecoder::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            for c in input.chunks(chunk) {
                buf.extend_from_slice(c);
                while let Some(f) = decoder.decode(&mut buf) {
                    frames.push(f);
                }
            }
            let first = frames.first();
            match (expected, *name) {
                // Stops at the body it waits for; the follower is swallowed as body bytes.
                (Truncated, _) => assert!(frames.is_empty(), "{name}: a stream waits for the body"),
                // Lacks the final empty line: the follower's start line joins its headers.
                (_, "baddn") => assert!(matches!(first, Some(Frame::Invalid { .. }))),
                // No Content-Length: unusable on a stream.
                (_, "inv2543") => {
                    assert!(
                        matches!(first, Some(Frame::Invalid { error, .. }) if error.breaks_stream())
                    )
                }
                (Refuse(..), "ncl" | "mcl01") => {
                    assert!(
                        matches!(first, Some(Frame::Invalid { error, .. }) if error.breaks_stream()),
                        "{name}"
                    )
                }
                // The trailing octets of the datagram begin the next message on a stream.
                (Valid, "dblreq") => {
                    assert!(
                        matches!(first, Some(Frame::Message(m)) if m.method() == Some(siplab_sip::Method::Register))
                    );
                    assert!(
                        matches!(frames.get(1), Some(Frame::Message(m)) if m.method() == Some(siplab_sip::Method::Invite))
                    );
                }
                (Valid, _) => {
                    let Some(Frame::Message(m)) = first else {
                        panic!("{name}: {first:?}")
                    };
                    m.validate().unwrap();
                    assert!(
                        bytes.starts_with(&m.to_bytes()),
                        "{name}: stream copy differs"
                    );
                    let last = frames.last();
                    assert!(
                        matches!(last, Some(Frame::Message(m)) if m.call_id().ok() == Some(&b"next"[..])),
                        "{name} chunk {chunk}: the following message is intact"
                    );
                }
                _ => {
                    let last = frames.last();
                    assert!(
                        matches!(last, Some(Frame::Message(m)) if m.call_id().ok() == Some(&b"next"[..])),
                        "{name} chunk {chunk}: the following message is intact, got {frames:?}"
                    );
                }
            }
        }
    }
}
