//! The `stream_decoder` fuzz target's body, shared by the target
//! (`fuzz/fuzz_targets/stream_decoder.rs`) and by the regression tests that replay what it
//! found: a TLS byte stream cut at arbitrary points; every frame the decoder hands up must be
//! consistent, and every message it accepts must survive validate, serialize and re-parse.
//!
//! Input layout: byte 0 seeds the chunk sizes, bytes 1 and 2 pick the limits (so that the
//! header and body limits are reachable with short inputs), the rest is the stream.

use bytes::BytesMut;
use siplab_sip::{Frame, HeaderName, Limits, Message, StreamDecoder};

/// Runs one input and returns the frames it gave; panics on any inconsistency.
pub fn run(data: &[u8]) -> Vec<Frame> {
    let [seed, lh, lb, stream @ ..] = data else {
        return Vec::new();
    };
    let limits = Limits {
        max_header_bytes: if lh & 1 == 0 {
            Limits::default().max_header_bytes
        } else {
            32 + usize::from(*lh) * 4
        },
        max_body_bytes: if lb & 1 == 0 {
            Limits::default().max_body_bytes
        } else {
            usize::from(*lb) * 2
        },
        max_headers: if lb & 2 == 0 { 128 } else { 4 },
    };
    let slack = limits.max_header_bytes + limits.max_body_bytes + 4;
    let mut decoder = StreamDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rng = u32::from(*seed) | 0x100;
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift: chunk sizes 1..=64 that vary along the stream.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let n = (1 + rng as usize % 64).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = buf.len();
            let Some(frame) = decoder.decode(&mut buf) else {
                assert!(buf.len() <= slack, "buffered {} > {slack}", buf.len());
                break;
            };
            assert!(buf.len() < before, "a frame consumed nothing");
            if let Frame::Message(m) = &frame {
                check(m);
            }
            frames.push(frame);
        }
    }
    frames
}

/// A message that came off the stream validates (or not) without panicking, serializes,
/// and its serialization parses back to itself; what a proxy makes of it parses too.
fn check(m: &Message) {
    let valid = m.validate().is_ok();
    let _ = (
        m.vias(),
        m.top_via(),
        m.contacts(),
        m.max_forwards(),
        m.expires(),
    );
    let out = m.to_bytes();
    let again = Message::parse(out.clone()).expect("a serialized message parses");
    assert_eq!(again.to_bytes(), out, "re-serialization differs");
    assert_eq!(again.validate().is_ok(), valid, "validity changed");

    let mut fwd = m.clone();
    let _ = fwd.headers.remove_first_value(&HeaderName::Via);
    fwd.headers
        .push_front(HeaderName::Via, "SIP/2.0/TLS 192.0.2.1;branch=z9hG4bKf");
    if let Ok(Some(n)) = m.max_forwards() {
        fwd.headers
            .set(HeaderName::MaxForwards, n.saturating_sub(1).to_string());
    }
    Message::parse(fwd.to_bytes()).expect("a forwarded message parses");
    if m.is_request() {
        let r = Message::response_to(m, 400, "Bad Request");
        Message::parse(r.to_bytes()).expect("a response parses");
    }
}
