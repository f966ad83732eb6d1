//! Cutting a reliable byte stream (TLS) into messages, as mini-redis does with frames: a
//! cheap check whether a whole message is there, then the parse, then the advance. An
//! incomplete message is a normal state; a message that does not parse is handed up with
//! its bytes so the server can answer it, and only a framing error breaks the stream.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ErrorKind, ParseError, Place};
use crate::headers::HeaderName;
use crate::message::{Framing, Limits, Message};
use crate::{scan, values};

/// What the stream carried.
#[derive(Debug)]
pub enum Frame {
    Message(Message),
    /// An RFC 5626 keep-alive ping (CRLF CRLF): answer with a single CRLF (pong).
    Ping,
    /// Bytes that do not form a valid message. When `error.breaks_stream()` the stream's
    /// position is lost and the connection must close; otherwise the next message follows.
    Invalid {
        raw: Bytes,
        error: ParseError,
    },
}

/// Decodes messages out of a connection's read buffer.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    limits: Limits,
    /// How far the search for the end of the header section already looked.
    scanned: usize,
    /// The bytes of the last message framed.
    last: Bytes,
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> StreamDecoder {
        StreamDecoder {
            limits,
            scanned: 0,
            last: Bytes::new(),
        }
    }

    /// The bytes of the last message `decode` framed, as they arrived (a capture keeps
    /// them: no copy, and no second writing of the parsed message, which might differ).
    pub fn last_message(&self) -> &Bytes {
        &self.last
    }

    /// Takes the next frame off the front of `buf`; `Ok(None)` means "read more bytes".
    /// A header section that never ends is bounded by the limit here and by the
    /// transport's header-read time-out.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        // Keep-alives between messages: CRLF CRLF is a ping, a lone CRLF a pong.
        loop {
            if buf.starts_with(b"\r\n\r\n") {
                buf.advance(4);
                return Some(Frame::Ping);
            }
            if buf.len() < 4 && b"\r\n\r\n".starts_with(buf) && !buf.is_empty() {
                return None;
            }
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                self.scanned = 0;
                continue;
            }
            break;
        }
        let window = buf.len().min(self.limits.max_header_bytes + 4);
        let from = self.scanned.saturating_sub(3);
        let Some(head_end) = scan::find_blank_line(&buf[from..window]).map(|i| from + i + 4) else {
            if buf.len() > self.limits.max_header_bytes {
                // The search restarts on whatever follows; a stale `scanned` would index
                // past the end of the now empty buffer.
                self.scanned = 0;
                let raw = buf.split().freeze();
                let limit = self.limits.max_header_bytes;
                return Some(Frame::Invalid {
                    raw,
                    error: ParseError::new(
                        Place::Headers,
                        ErrorKind::HeaderSectionTooLarge { limit },
                    ),
                });
            }
            self.scanned = buf.len();
            return None;
        };
        let body_len = match content_length(&buf[..head_end]) {
            Ok(Some(n)) if n <= self.limits.max_body_bytes => n,
            Ok(Some(n)) => {
                let error = ParseError::header(
                    "Content-Length",
                    1,
                    ErrorKind::BodyTooLarge {
                        length: n,
                        limit: self.limits.max_body_bytes,
                    },
                );
                return Some(self.invalid(buf, head_end, error));
            }
            Ok(None) => {
                let error = ParseError::new(Place::Headers, ErrorKind::MissingContentLength);
                return Some(self.invalid(buf, head_end, error));
            }
            Err(error) => return Some(self.invalid(buf, head_end, error)),
        };
        if buf.len() < head_end + body_len {
            buf.reserve(head_end + body_len - buf.len());
            return None;
        }
        self.scanned = 0;
        let raw = buf.split_to(head_end + body_len).freeze();
        self.last = raw.clone();
        Some(
            match Message::parse_framed(
                raw.clone(),
                head_end,
                Some(body_len),
                Framing::Stream,
                &self.limits,
            ) {
                Ok(m) => Frame::Message(m),
                Err(error) => Frame::Invalid { raw, error },
            },
        )
    }

    /// A frame whose length cannot be known: hand up its header section and give up the stream.
    fn invalid(&mut self, buf: &mut BytesMut, head_end: usize, error: ParseError) -> Frame {
        self.scanned = 0;
        let raw = buf.split_to(head_end).freeze();
        buf.clear();
        Frame::Invalid { raw, error }
    }
}

/// Finds the Content-Length in a header section without parsing the rest: at most one,
/// a non-negative decimal (RFC 4475 3.1.2.3 and 3.3.9).
pub(crate) fn content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    let mut start = 0;
    let mut lines = memchr::memchr_iter(b'\n', head)
        .chain(std::iter::once(head.len()))
        .map(|end| {
            let line = &head[start..end];
            start = end + 1;
            line
        })
        .skip(1)
        .peekable();
    while let Some(line) = lines.next() {
        // Most lines are not it: their first letter tells (`Content-Length` or `l`).
        if !matches!(line.first(), Some(b'C' | b'c' | b'L' | b'l')) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if found.is_some() {
            return Err(ParseError::header(
                "Content-Length",
                2,
                ErrorKind::Repeated { count: 2 },
            ));
        }
        // A folded value continues on lines that start with white space.
        let mut value = std::borrow::Cow::Borrowed(&line[colon + 1..]);
        while let Some(next) =
            lines.next_if(|l| l.first().is_some_and(|&b| b == b' ' || b == b'\t'))
        {
            value.to_mut().extend_from_slice(next);
        }
        let n = values::parse_number(&value, u32::MAX.into())
            .map_err(|e| ParseError::header(HeaderName::ContentLength.as_str(), 1, e))?;
        found = Some(n as usize);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:r1 SIP/2.0\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:r1>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\n\r\nabc";

    fn decode_all(input: &[u8], chunk: usize) -> Vec<Frame> {
        let mut d = StreamDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(f) = d.decode(&mut buf) {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn the_last_message_s_bytes_are_those_that_arrived() {
        let mut d = StreamDecoder::new(Limits::default());
        let mut buf = BytesMut::from(OPTIONS);
        buf.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(d.decode(&mut buf), Some(Frame::Message(_))));
        assert_eq!(&d.last_message()[..], OPTIONS);
        assert!(matches!(d.decode(&mut buf), Some(Frame::Ping)));
        assert_eq!(&d.last_message()[..], OPTIONS, "a ping is no message");
    }

    #[test]
    fn byte_by_byte_with_keepalives() {
        let mut input = b"\r\n\r\n".to_vec();
        input.extend_from_slice(OPTIONS);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(OPTIONS);
        for chunk in [1, 3, 7, 1000] {
            let frames = decode_all(&input, chunk);
            assert_eq!(frames.len(), 3, "chunk {chunk}");
            assert!(matches!(frames[0], Frame::Ping));
            assert!(matches!(&frames[2], Frame::Message(m) if &m.body[..] == b"abc"));
        }
    }

    #[test]
    fn limits_are_typed() {
        let mut d = StreamDecoder::new(Limits {
            max_header_bytes: 64,
            max_body_bytes: 2,
            max_headers: 4,
        });
        let mut buf = BytesMut::from(&[b'A'; 100][..]);
        let Some(Frame::Invalid { error, .. }) = d.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(error.kind, ErrorKind::HeaderSectionTooLarge { limit: 64 });
        assert!(error.breaks_stream());

        let mut d = StreamDecoder::new(Limits {
            max_header_bytes: 4096,
            max_body_bytes: 2,
            max_headers: 4,
        });
        let mut buf = BytesMut::from(OPTIONS);
        let Some(Frame::Invalid { error, .. }) = d.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(
            error.kind,
            ErrorKind::BodyTooLarge {
                length: 3,
                limit: 2
            }
        );

        let mut d = StreamDecoder::new(Limits {
            max_header_bytes: 4096,
            max_body_bytes: 20,
            max_headers: 4,
        });
        let mut buf = BytesMut::from(OPTIONS);
        let Some(Frame::Invalid { error, .. }) = d.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(error.kind, ErrorKind::TooManyHeaders { limit: 4 });
        assert!(
            !error.breaks_stream(),
            "the message was framed; the stream goes on"
        );
    }

    #[test]
    fn missing_or_negative_content_length_breaks_the_stream() {
        let mut d = StreamDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TLS a\r\n\r\n"[..]);
        let Some(Frame::Invalid { error, .. }) = d.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(error.kind, ErrorKind::MissingContentLength);
        let mut buf = BytesMut::from(&b"OPTIONS sip:x SIP/2.0\r\nl: -1\r\n\r\n"[..]);
        let Some(Frame::Invalid { error, .. }) = d.decode(&mut buf) else {
            panic!()
        };
        assert!(error.breaks_stream());
        assert!(buf.is_empty());
    }
}
