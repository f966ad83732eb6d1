//! Inputs that once broke the codec, kept so that they never do again. Each names where it
//! was found and what was wrong.

use bytes::BytesMut;
use siplab_sip::{ErrorKind, Frame, Limits, Message, StreamDecoder};

/// Replays a `fuzz/fuzz_targets/stream_decoder.rs` input with that target's own body.
#[path = "support/stream_decoder.rs"]
mod harness;

use harness::run as replay_stream_decoder;

/// cargo fuzz, stream_decoder, crash-b908167750a6b7febe2dd5609b7a0db60d1f0826 (RFC 4475
/// mismatch01 with a 36-byte header limit). The decoder remembered how far it had searched
/// a partial header section; when the section then outgrew the limit it handed up the bytes
/// but kept that position, and the next `decode` sliced the emptied buffer from it:
/// "range start index 18 out of range for slice of length 0".
#[test]
fn header_section_too_large_after_a_partial_read() {
    let crash = b"\x19\x01\x11OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:caller@example.net;tag=34525\r\nMax-Forwards: 6\r\nCall-ID: mismatch01.dj0234sxdfl3\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n";
    let frames = replay_stream_decoder(crash);
    assert!(matches!(
        frames.first(),
        Some(Frame::Invalid { error, .. })
            if error.kind == ErrorKind::HeaderSectionTooLarge { limit: 36 }
    ));
}

/// The same failure reduced to its steps, as a transport loop meets it.
#[test]
fn decode_after_header_section_too_large_does_not_panic() {
    let mut d = StreamDecoder::new(Limits {
        max_header_bytes: 64,
        ..Limits::default()
    });
    let mut buf = BytesMut::from(&[b'A'; 40][..]);
    assert!(d.decode(&mut buf).is_none(), "incomplete: read more");
    buf.extend_from_slice(&[b'A'; 40]);
    let Some(Frame::Invalid { error, .. }) = d.decode(&mut buf) else {
        panic!("expected the header section to be refused")
    };
    assert!(error.breaks_stream());
    assert!(d.decode(&mut buf).is_none(), "nothing left to decode");
    buf.extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n");
    assert!(matches!(d.decode(&mut buf), Some(Frame::Message(_))));
}

/// proptest, damaged_messages_never_panic: a Via line whose CR was dropped before the next
/// header. Lines end at CRLF for the header parser but at LF for the Content-Length search,
/// so the message was framed by a Content-Length that no header held, the line left byte
/// for byte with the hidden header in it, and a response copying that Via (and adding its
/// own Content-Length) carried two. A bare CR or LF in a header line is now refused.
#[test]
fn bare_lf_cannot_hide_a_header() {
    let hidden = b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TLS a.example.com;branch=z9hG4bK1\nContent-Length: 5\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\n\r\nhello";
    let err = Message::parse(bytes::Bytes::from_static(hidden)).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(
        err.to_string(),
        "header section: bare CR or LF in a header line (at byte 83)"
    );
    // A stream frames it by that Content-Length, refuses it, and goes on.
    let mut d = StreamDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&hidden[..]);
    assert!(matches!(
        d.decode(&mut buf),
        Some(Frame::Invalid { error, .. }) if !error.breaks_stream()
    ));
    assert!(buf.is_empty());
    // A lone CR is refused the same way; a folded line is not.
    let cr = b"OPTIONS sip:a@b SIP/2.0\r\nX-A: 1\r2\r\nl: 0\r\n\r\n";
    assert!(Message::parse(bytes::Bytes::from_static(cr)).is_err());
    let folded = b"OPTIONS sip:a@b SIP/2.0\r\nX-A: 1\r\n 2\r\nl: 0\r\n\r\n";
    assert!(Message::parse(bytes::Bytes::from_static(folded)).is_ok());
}
