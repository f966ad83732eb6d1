//! Requests and responses: the start line, the header section and the body; parsing of one
//! whole message, serialization, and typed access to what proxies and registrars read.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ErrorKind, ParseError, Place, SyntaxError};
use crate::headers::{Header, HeaderName, Headers};
use crate::name_addr::NameAddr;
use crate::scan::{self, is_token};
use crate::uri::Uri;
use crate::values::{self, CSeq, Contact, Method};
use crate::via::Via;

/// The largest header section, body and header count a parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            max_headers: 128,
        }
    }
}

/// The first line: a request line or a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        uri: Uri,
        /// The Request-URI as it arrived, so that an untouched one leaves unchanged.
        uri_text: Bytes,
    },
    Response {
        code: u16,
        /// The reason phrase as it arrived (any UTF-8, possibly empty).
        reason: Bytes,
    },
}

/// A SIP message.
#[derive(Debug, Clone)]
pub struct Message {
    pub start: StartLine,
    pub headers: Headers,
    pub body: Bytes,
}

/// How the body's end is found: by Content-Length alone on a stream; on a datagram a
/// missing Content-Length means "the rest" (RFC 3261 section 18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Stream,
    Datagram,
}

impl Message {
    /// A new request with no headers yet.
    pub fn request(method: Method, uri: Uri) -> Message {
        let uri_text = Bytes::from(uri.to_string());
        Message {
            start: StartLine::Request {
                method,
                uri,
                uri_text,
            },
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` with the headers RFC 3261 section 8.2.6.2 copies: every Via,
    /// From, To, Call-ID and CSeq, byte for byte as the request had them.
    pub fn response_to(req: &Message, code: u16, reason: &str) -> Message {
        let mut headers = Headers::with_capacity(8);
        copy_transaction_headers(&req.headers, &mut headers);
        headers.push(HeaderName::ContentLength, "0");
        Message {
            start: StartLine::Response {
                code,
                reason: Bytes::copy_from_slice(reason.as_bytes()),
            },
            headers,
            body: Bytes::new(),
        }
    }

    /// The answer to bytes that did not parse (RFC 3261 section 8.2): the status the error
    /// calls for, the transaction headers copied from whatever header lines could be read,
    /// and a Warning saying what was wrong. `None` for a response (those are dropped) and when
    /// not even a Via can be found to answer to.
    pub fn error_response(raw: &Bytes, error: &ParseError) -> Option<Message> {
        if raw.len() >= 4 && raw[..4].eq_ignore_ascii_case(b"SIP/") {
            return None;
        }
        // A header section cut off at the limit is read up to its last whole line (the Via
        // is near the top, the oversized line further down).
        let head_end = match scan::find_blank_line(raw) {
            Some(i) => i + 4,
            None => memchr::memmem::rfind(raw, b"\r\n").map_or(raw.len(), |i| i + 2),
        };
        let line_end = scan::find_crlf(&raw[..head_end])?;
        // Only enough is read to answer: a message refused for its many headers still
        // has a Via among them (the section's size is bounded by what framing accepted).
        let limits = Limits {
            max_header_bytes: head_end,
            max_headers: head_end,
            ..Limits::default()
        };
        let headers = parse_headers(raw, line_end + 2, head_end, &limits).ok()?;
        headers.get(&HeaderName::Via)?;
        let code = error.status();
        let mut response = Message {
            start: StartLine::Response {
                code,
                reason: Bytes::from_static(reason_phrase(code).as_bytes()),
            },
            headers: Headers::with_capacity(8),
            body: Bytes::new(),
        };
        copy_transaction_headers(&headers, &mut response.headers);
        response.push_warning(&error.to_string());
        response.headers.push(HeaderName::ContentLength, "0");
        Some(response)
    }

    /// Adds a `Warning: 399 siplab "why"` (RFC 3261 section 20.43: code 399, miscellaneous,
    /// from the agent siplab), the text's quotes and backslashes made plain quotes so that
    /// it stays one quoted string.
    pub fn push_warning(&mut self, why: &str) {
        let text = why.replace(['"', '\\'], "'");
        self.headers
            .push(HeaderName::new("Warning"), format!("399 siplab \"{text}\""));
    }

    /// Gives To the tag `tag` when it has none (a UAS's answer, RFC 3261 8.2.6.2), the rest
    /// of its value kept byte for byte.
    pub fn tag_to(&mut self, tag: &str) {
        if let Some(to) = self.headers.value(&HeaderName::To).cloned()
            && self.to().is_ok_and(|t| t.tag().is_none())
        {
            let mut value = Vec::with_capacity(to.len() + 5 + tag.len());
            value.extend_from_slice(&to);
            value.extend_from_slice(b";tag=");
            value.extend_from_slice(tag.as_bytes());
            self.headers.set(HeaderName::To, value);
        }
    }

    /// Parses one message from a datagram: trailing octets after the body are ignored, and
    /// a missing Content-Length means the body runs to the end.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        let head_end = match scan::find_blank_line(&buf) {
            Some(i) => i + 4,
            // A datagram whose last header line ends without the empty line: its end is the
            // end of the header section (RFC 4475 3.1.2.15 is archived that way).
            None if buf.ends_with(b"\r\n") => buf.len(),
            None => {
                return Err(ParseError::new(
                    Place::Headers,
                    ErrorKind::UnterminatedHeaders,
                ));
            }
        };
        let content_length = crate::framing::content_length(&buf[..head_end])?;
        Message::parse_framed(
            buf,
            head_end,
            content_length,
            Framing::Datagram,
            &Limits::default(),
        )
    }

    /// Parses a message whose header section ends (after its empty line) at `head_end`,
    /// with the Content-Length the framing found.
    pub(crate) fn parse_framed(
        buf: Bytes,
        head_end: usize,
        content_length: Option<usize>,
        framing: Framing,
        limits: &Limits,
    ) -> Result<Message, ParseError> {
        if head_end > limits.max_header_bytes {
            return Err(ParseError::new(
                Place::Headers,
                ErrorKind::HeaderSectionTooLarge {
                    limit: limits.max_header_bytes,
                },
            ));
        }
        let line_end = scan::find_crlf(&buf[..head_end]).unwrap_or(head_end);
        let start = parse_start_line(&buf, line_end)?;
        let headers = parse_headers(&buf, line_end + 2, head_end, limits)?;
        let available = buf.len() - head_end;
        let body_len = match (content_length, framing) {
            (Some(n), _) => n,
            (None, Framing::Datagram) => available,
            (None, Framing::Stream) => {
                return Err(ParseError::new(
                    Place::Headers,
                    ErrorKind::MissingContentLength,
                ));
            }
        };
        if body_len > limits.max_body_bytes {
            return Err(ParseError::header(
                "Content-Length",
                1,
                ErrorKind::BodyTooLarge {
                    length: body_len,
                    limit: limits.max_body_bytes,
                },
            ));
        }
        if body_len > available {
            return Err(ParseError::new(
                Place::Body,
                ErrorKind::TruncatedBody {
                    declared: body_len,
                    available,
                },
            ));
        }
        let body = buf.slice(head_end..head_end + body_len);
        Ok(Message {
            start,
            headers,
            body,
        })
    }

    /// Serializes: untouched lines as they arrived, changed ones in canonical form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.wire_len());
        self.write(&mut out);
        out.freeze()
    }

    pub fn write(&self, out: &mut BytesMut) {
        match &self.start {
            StartLine::Request {
                method, uri_text, ..
            } => {
                out.put_slice(method.as_str().as_bytes());
                out.put_u8(b' ');
                out.put_slice(uri_text);
                out.put_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                out.put_slice(b"SIP/2.0 ");
                out.put_slice(code.to_string().as_bytes());
                out.put_u8(b' ');
                out.put_slice(reason);
                out.put_slice(b"\r\n");
            }
        }
        self.headers.write(out);
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
    }

    fn wire_len(&self) -> usize {
        let start = match &self.start {
            StartLine::Request {
                method, uri_text, ..
            } => method.as_str().len() + uri_text.len() + 11,
            StartLine::Response { reason, .. } => reason.len() + 14,
        };
        start + self.headers.wire_len() + 2 + self.body.len()
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request's method, or for a response the method its CSeq names.
    pub fn method(&self) -> Option<Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method.clone()),
            StartLine::Response { .. } => self.cseq().ok().map(|c| c.method),
        }
    }

    pub fn request_uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Replaces the Request-URI (retargeting, strict-route compatibility).
    pub fn set_request_uri(&mut self, new: Uri) {
        if let StartLine::Request { uri, uri_text, .. } = &mut self.start {
            *uri_text = Bytes::from(new.to_string());
            *uri = new;
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// Sets the body with its Content-Type, and the Content-Length that frames it.
    pub fn set_body(&mut self, content_type: &str, body: impl Into<Bytes>) {
        self.body = body.into();
        self.headers
            .set(HeaderName::ContentType, content_type.to_owned());
        self.headers
            .set(HeaderName::ContentLength, self.body.len().to_string());
    }

    // --- typed access -------------------------------------------------------------------

    /// Parses the single value of `name`; `Ok(None)` when absent.
    fn single<'a, T>(
        &'a self,
        name: &HeaderName,
        parse: impl Fn(&'a [u8]) -> Result<T, SyntaxError>,
    ) -> Result<Option<T>, ParseError> {
        let mut lines = self.headers.get_all(name);
        let Some(first) = lines.next() else {
            return Ok(None);
        };
        let extra = lines.count();
        if extra > 0 {
            return Err(ParseError::new(
                Place::Header {
                    name: name.as_str().to_owned(),
                    index: 2,
                },
                ErrorKind::Repeated { count: extra + 1 },
            ));
        }
        parse(&first.value)
            .map(Some)
            .map_err(|e| ParseError::header(name.as_str(), 1, e))
    }

    fn required<'a, T>(
        &'a self,
        name: &HeaderName,
        parse: impl Fn(&'a [u8]) -> Result<T, SyntaxError>,
    ) -> Result<T, ParseError> {
        let missing = || ParseError::header(name.as_str(), 1, ErrorKind::Missing);
        self.single(name, parse)?.ok_or_else(missing)
    }

    /// Parses every element of a list header, in order.
    pub fn list<T>(
        &self,
        name: HeaderName,
        parse: impl Fn(&[u8]) -> Result<T, SyntaxError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = Vec::new();
        for h in self.headers.get_all(&name) {
            let parts = h.element_ranges().ok_or_else(|| {
                ParseError::header(
                    name.as_str(),
                    out.len() + 1,
                    SyntaxError::new("unterminated quote or '<'", 0),
                )
            })?;
            for (start, end) in parts {
                out.push(
                    parse(&h.value[start..end])
                        .map_err(|err| ParseError::header(name.as_str(), out.len() + 1, err))?,
                );
            }
        }
        Ok(out)
    }

    /// Every Via, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.list(HeaderName::Via, Via::parse)
    }

    /// The top Via alone, without parsing the rest of the chain.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let h = self
            .headers
            .get(&HeaderName::Via)
            .ok_or_else(|| ParseError::header("Via", 1, ErrorKind::Missing))?;
        let Some(&first) = h.element_ranges().as_deref().and_then(<[_]>::first) else {
            return Err(ParseError::header(
                "Via",
                1,
                SyntaxError::new("unterminated quote", 0),
            ));
        };
        Via::parse(&h.value[first.0..first.1]).map_err(|e| ParseError::header("Via", 1, e))
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.required(&HeaderName::From, NameAddr::parse)
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.required(&HeaderName::To, NameAddr::parse)
    }

    pub fn call_id(&self) -> Result<&[u8], ParseError> {
        self.required(&HeaderName::CallId, values::parse_call_id)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.required(&HeaderName::CSeq, CSeq::parse)
    }

    /// Max-Forwards, 0 to 255; `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single(&HeaderName::MaxForwards, |v| {
            values::parse_number(v, 255).map(|n| n as u8)
        })
    }

    /// The Expires header, with values beyond 2**32-1 taken as that.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.single(&HeaderName::Expires, values::parse_delta_seconds)
    }

    pub fn contacts(&self) -> Result<Vec<Contact>, ParseError> {
        self.list(HeaderName::Contact, Contact::parse)
    }

    /// Route, Record-Route, Path, P-Asserted-Identity and other name-addr lists.
    pub fn addresses(&self, name: HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        self.list(name, NameAddr::parse)
    }

    /// Option tags of Supported, Require, Proxy-Require or Unsupported.
    pub fn option_tags(&self, name: HeaderName) -> Result<Vec<String>, ParseError> {
        let tags = self.list(name.clone(), |e| Ok(Bytes::copy_from_slice(e)))?;
        values::parse_option_tags(&tags).map_err(|e| ParseError::header(name.as_str(), 1, e))
    }

    /// The checks a proxy makes before it acts on a message (RFC 3261 sections 8.2 and
    /// 16.3): the mandatory headers present once and well formed, the CSeq method agreeing
    /// with the request's, no headers in a SIP Request-URI, every Via and Contact parsable.
    pub fn validate(&self) -> Result<Checked, ParseError> {
        let vias = self.vias_present()?;
        let from = self.from()?;
        let to = self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        let max_forwards = self.max_forwards()?;
        for single in [HeaderName::ContentType, HeaderName::Expires] {
            let n = self.headers.get_all(&single).count();
            if n > 1 {
                return Err(ParseError::header(
                    single.as_str(),
                    2,
                    ErrorKind::Repeated { count: n },
                ));
            }
        }
        self.contacts()?;
        for list in [HeaderName::Route, HeaderName::RecordRoute, HeaderName::Path] {
            self.addresses(list)?;
        }
        if let StartLine::Request { method, uri, .. } = &self.start {
            if cseq.method != *method {
                return Err(ParseError::header(
                    "CSeq",
                    1,
                    ErrorKind::MethodMismatch {
                        method: method.to_string(),
                        cseq: cseq.method.to_string(),
                    },
                ));
            }
            if uri.as_sip().is_some_and(|u| u.headers.is_some()) {
                return Err(ParseError::new(
                    Place::StartLine,
                    ErrorKind::HeadersInRequestUri,
                ));
            }
        }
        Ok(Checked {
            vias,
            from,
            to,
            cseq,
            max_forwards,
        })
    }

    /// The checks a proxy makes before it relays a response (RFC 3261 section 16.7): what
    /// it reads to match and relay it well formed (every Via, CSeq, Call-ID) and From and To
    /// present once. A response's dialog headers (From and To beyond their presence, Contact,
    /// Record-Route) are the user agents' business: the proxy passes them on untouched.
    pub fn validate_response(&self) -> Result<CheckedResponse, ParseError> {
        let vias = self.vias_present()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        for name in [HeaderName::From, HeaderName::To] {
            self.required(&name, |_| Ok(()))?;
        }
        Ok(CheckedResponse { vias, cseq })
    }

    /// Every Via, top first; at least one.
    fn vias_present(&self) -> Result<Vec<Via>, ParseError> {
        let vias = self.vias()?;
        if vias.is_empty() {
            return Err(ParseError::header("Via", 1, ErrorKind::Missing));
        }
        Ok(vias)
    }
}

/// What [`Message::validate_response`] parsed: what a proxy matches a response by.
#[derive(Debug, Clone)]
pub struct CheckedResponse {
    /// Every Via, top first (at least one).
    pub vias: Vec<Via>,
    /// Its method tells the answer to a CANCEL from the answer to the request it cancels,
    /// which share a branch (RFC 3261 section 17.1.3).
    pub cseq: CSeq,
}

/// What [`Message::validate`] parsed on its way, for its caller to use rather than parse
/// again.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Every Via, top first (at least one).
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub cseq: CSeq,
    pub max_forwards: Option<u8>,
}

/// Every Via, From, To, Call-ID and CSeq line, byte for byte: what a response copies from
/// its request (RFC 3261 section 8.2.6.2).
fn copy_transaction_headers(from: &Headers, to: &mut Headers) {
    for h in from.iter() {
        if matches!(
            h.name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            to.push_wire(h.clone());
        }
    }
}

/// The reason phrases of RFC 3261 section 21 and the extensions siplab answers with.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        513 => "Message Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        430 => "Flow Failed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        489 => "Bad Event",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        603 => "Decline",
        _ => match code / 100 {
            1 => "Trying",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

fn start_err(what: &'static str, at: usize) -> ParseError {
    ParseError::new(Place::StartLine, SyntaxError::new(what, at))
}

/// `SIP/2.0` is served; another well-formed version gets 505, anything else 400.
fn check_version(v: &[u8], at: usize) -> Result<(), ParseError> {
    let Some(rest) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .map(|_| &v[4..])
    else {
        return Err(start_err("expected SIP-Version", at));
    };
    let well_formed = match memchr::memchr(b'.', rest) {
        Some(dot) => {
            let (maj, min) = (&rest[..dot], &rest[dot + 1..]);
            !maj.is_empty() && !min.is_empty() && maj.iter().chain(min).all(u8::is_ascii_digit)
        }
        None => false,
    };
    if !well_formed {
        return Err(start_err("malformed SIP-Version", at));
    }
    if rest != b"2.0" {
        return Err(ParseError::new(
            Place::StartLine,
            ErrorKind::UnsupportedVersion(String::from_utf8_lossy(v).into_owned()),
        ));
    }
    Ok(())
}

fn parse_start_line(buf: &Bytes, end: usize) -> Result<StartLine, ParseError> {
    let line = &buf[..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or(start_err("status line without a code", 0))?;
        check_version(&line[..sp], 0)?;
        let rest = &line[sp + 1..];
        let code_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let code = &rest[..code_end];
        if code.len() != 3 {
            return Err(start_err("status code is not three digits", sp + 1));
        }
        let code = scan::decimal(code, 699)
            .filter(|c| *c >= 100)
            .ok_or(start_err("status code out of range 100..699", sp + 1))?
            as u16;
        let reason_start = (sp + 1 + code_end + 1).min(end);
        if line[reason_start..]
            .iter()
            .any(|&b| b == b'\r' || b == b'\n')
        {
            return Err(start_err(
                "control character in reason phrase",
                reason_start,
            ));
        }
        return Ok(StartLine::Response {
            code,
            reason: buf.slice(reason_start..end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: single spaces, nothing else.
    let sp1 = memchr::memchr(b' ', line).ok_or(start_err("request line without spaces", 0))?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(start_err("method is not a token", 0));
    }
    let sp2 = memchr::memchr(b' ', &line[sp1 + 1..])
        .map(|i| i + sp1 + 1)
        .ok_or(start_err("request line without SIP-Version", sp1 + 1))?;
    let uri_bytes = &line[sp1 + 1..sp2];
    if uri_bytes.is_empty() {
        return Err(start_err(
            "empty Request-URI (more than one space?)",
            sp1 + 1,
        ));
    }
    if uri_bytes.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        return Err(start_err(
            "white space or control character in Request-URI",
            sp1 + 1,
        ));
    }
    check_version(&line[sp2 + 1..], sp2 + 1)?;
    // Checked above to be printable ASCII.
    let text = std::str::from_utf8(uri_bytes)
        .map_err(|_| start_err("Request-URI is not ASCII", sp1 + 1))?;
    let uri = Uri::parse(text)
        .map_err(|e| ParseError::new(Place::StartLine, SyntaxError::new(e.what, sp1 + 1 + e.at)))?;
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri,
        uri_text: buf.slice(sp1 + 1..sp2),
    })
}

/// Splits the header lines between `start` and `head_end` (which ends with the empty line,
/// or at the end of a datagram), unfolding nothing: each line keeps its bytes.
fn parse_headers(
    buf: &Bytes,
    start: usize,
    head_end: usize,
    limits: &Limits,
) -> Result<Headers, ParseError> {
    let mut headers = Headers::with_capacity(16);
    let mut pos = start;
    let section = &buf[..head_end];
    while pos + 2 <= head_end && &section[pos..pos + 2] != b"\r\n" {
        if matches!(section[pos], b' ' | b'\t') {
            return Err(ParseError::new(
                Place::Headers,
                SyntaxError::new("continuation line without a header", pos),
            ));
        }
        // The line runs to the CRLF not followed by white space (folding).
        let mut end = pos;
        loop {
            let crlf = scan::find_crlf(&section[end..])
                .map(|i| end + i)
                .ok_or(ParseError::new(
                    Place::Headers,
                    ErrorKind::UnterminatedHeaders,
                ))?;
            end = crlf + 2;
            if !section.get(end).is_some_and(|&b| b == b' ' || b == b'\t') {
                break;
            }
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::new(
                Place::Headers,
                ErrorKind::TooManyHeaders {
                    limit: limits.max_headers,
                },
            ));
        }
        let line = &section[pos..end - 2];
        if let Some(i) = bare_line_break(line) {
            return Err(ParseError::new(
                Place::Headers,
                SyntaxError::new("bare CR or LF in a header line", pos + i),
            ));
        }
        let name_len = line.iter().take_while(|&&b| is_token(b)).count();
        if name_len == 0 {
            return Err(ParseError::new(
                Place::Headers,
                SyntaxError::new("header line without a name", pos),
            ));
        }
        let mut colon = name_len;
        while line.get(colon).is_some_and(|&b| b == b' ' || b == b'\t') {
            colon += 1;
        }
        if line.get(colon) != Some(&b':') {
            return Err(ParseError::new(
                Place::Headers,
                SyntaxError::new("header line without a colon", pos),
            ));
        }
        let name = HeaderName::from_bytes(&buf.slice(pos..pos + name_len));
        let (vs, ve) = scan::trim(line, colon + 1, line.len());
        let value = buf.slice(pos + vs..pos + ve);
        headers.push_wire(Header::from_wire(name, value, buf.slice(pos..end)));
        pos = end;
    }
    Ok(headers)
}

/// The first CR or LF in a header line that is not part of a folding CRLF. Lines end only
/// at CRLF here, but the Content-Length search and many peers also end them at a bare LF: a
/// header hidden behind one would frame the body while this parser never sees it, and it
/// would leave, byte for byte, to smuggle a header past the next hop.
fn bare_line_break(line: &[u8]) -> Option<usize> {
    memchr::memchr2_iter(b'\r', b'\n', line).find(|&i| match line[i] {
        b'\r' => line.get(i + 1) != Some(&b'\n'),
        _ => i == 0 || line[i - 1] != b'\r',
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"MESSAGE sip:adam@contoso.test SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.1.0.101:40000;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:adam@contoso.test>\r\n\
From: \"Alice\" <sip:alice@contoso.test>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.contoso.test\r\n\
CSeq: 314159 MESSAGE\r\n\
X-Unknown :  kept   as is \r\n\
Content-Type: text/plain\r\n\
Content-Length: 5\r\n\
\r\n\
hello";

    #[test]
    fn parse_and_serialize_is_lossless() {
        let m = Message::parse(Bytes::from_static(MESSAGE)).unwrap();
        m.validate().unwrap();
        assert_eq!(&m.to_bytes()[..], MESSAGE);
        assert_eq!(m.method(), Some(Method::Message));
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(&m.body[..], b"hello");
    }

    #[test]
    fn a_response_is_checked_for_what_a_proxy_relays_it_by() {
        let req = Message::parse(Bytes::from_static(MESSAGE)).unwrap();
        let ok = Message::response_to(&req, 200, "OK");
        let checked = ok.validate_response().unwrap();
        assert_eq!(checked.vias[0].branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(checked.cseq.method, Method::Message);

        // A From the proxy does not read passes; a missing To, a second CSeq or a broken
        // Via does not.
        let mut odd_from = ok.clone();
        odd_from.headers.set(HeaderName::From, "not a name-addr <");
        assert!(odd_from.validate().is_err());
        assert!(odd_from.validate_response().is_ok());
        let mut no_to = ok.clone();
        no_to.headers.remove_all(&HeaderName::To);
        assert!(no_to.validate_response().is_err());
        let mut two_cseqs = ok.clone();
        two_cseqs.headers.push(HeaderName::CSeq, "1 MESSAGE");
        assert!(two_cseqs.validate_response().is_err());
        let mut bad_via = ok.clone();
        bad_via.headers.set(HeaderName::Via, "SIP/2.0/TLS");
        assert!(bad_via.validate_response().is_err());
    }

    #[test]
    fn a_proxy_changes_only_what_it_touches() {
        let mut m = Message::parse(Bytes::from_static(MESSAGE)).unwrap();
        m.headers.push_front(
            HeaderName::Via,
            "SIP/2.0/TLS 127.1.0.10:5061;branch=z9hG4bKproxy",
        );
        m.headers.set(HeaderName::MaxForwards, "69");
        let out = m.to_bytes();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("MESSAGE sip:adam@contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.1.0.10:5061;branch=z9hG4bKproxy\r\nVia: SIP/2.0/TLS 127.1.0.101"));
        assert!(text.contains("\r\nMax-Forwards: 69\r\n"));
        assert!(text.contains("\r\nX-Unknown :  kept   as is \r\n"));
        assert_eq!(
            out.len(),
            MESSAGE.len() + "Via: SIP/2.0/TLS 127.1.0.10:5061;branch=z9hG4bKproxy\r\n".len()
        );
    }

    #[test]
    fn response_copies_the_transaction_headers() {
        let req = Message::parse(Bytes::from_static(MESSAGE)).unwrap();
        let resp = Message::response_to(&req, 200, "OK");
        resp.validate().unwrap();
        let text = String::from_utf8(resp.to_bytes().to_vec()).unwrap();
        assert!(text.starts_with(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.1.0.101:40000;branch=z9hG4bK776asdhds;rport\r\n"
        ));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn unparsable_requests_get_an_answer_with_a_warning() {
        let raw = Bytes::from_static(b"INVITE sip:a@b SIP/7.0\r\nVia: SIP/2.0/TLS x;branch=z9hG4bK1\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n");
        let err = Message::parse(raw.clone()).unwrap_err();
        let resp = Message::error_response(&raw, &err).unwrap();
        assert_eq!(resp.status(), Some(505));
        let text = String::from_utf8(resp.to_bytes().to_vec()).unwrap();
        assert!(text.starts_with("SIP/2.0 505 Version Not Supported\r\nVia: SIP/2.0/TLS x;branch=z9hG4bK1\r\nCall-ID: c\r\n"));
        assert!(
            text.contains("Warning: 399 siplab \"start line: unsupported SIP version 'SIP/7.0'\"")
        );
        let resp_bytes = Bytes::from_static(b"SIP/2.0 999 x\r\nVia: SIP/2.0/TLS x\r\n\r\n");
        assert!(Message::error_response(&resp_bytes, &err).is_none());
    }

    #[test]
    fn a_header_section_beyond_the_limit_gets_513_where_its_via_can_be_read() {
        use crate::framing::{Frame, StreamDecoder};
        let mut d = StreamDecoder::new(Limits {
            max_header_bytes: 256,
            ..Limits::default()
        });
        let text = format!(
            "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TLS x;branch=z9hG4bK1\r\nCall-ID: c\r\n\
             CSeq: 1 MESSAGE\r\nSubject: {}\r\n\r\n",
            "y".repeat(1000)
        );
        let mut buf = bytes::BytesMut::from(text.as_bytes());
        let Some(Frame::Invalid { raw, error }) = d.decode(&mut buf) else {
            panic!("not refused")
        };
        let resp = Message::error_response(&raw, &error).expect("an answer");
        assert_eq!(resp.status(), Some(513));
        let text = String::from_utf8(resp.to_bytes().to_vec()).unwrap();
        assert!(
            text.starts_with(
                "SIP/2.0 513 Message Too Large\r\nVia: SIP/2.0/TLS x;branch=z9hG4bK1\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("Warning: 399 siplab"), "{text}");
    }

    #[test]
    fn errors_name_the_place() {
        let bad = MESSAGE.to_vec();
        let bad = String::from_utf8(bad)
            .unwrap()
            .replace("CSeq: 314159 MESSAGE", "CSeq: 314159 INVITE");
        let err = Message::parse(Bytes::from(bad))
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "CSeq header 1: CSeq method \"INVITE\" does not match the request method \"MESSAGE\""
        );
        assert_eq!(err.status(), 400);
        let err =
            Message::parse(Bytes::from_static(b"OPTIONS sip:a@b SIP/3.0\r\n\r\n")).unwrap_err();
        assert_eq!(err.status(), 505);
    }
}
