//! Header names and the header section: lines kept as they arrived, so that what a proxy does
//! not touch leaves byte for byte as it came in.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::scan;

macro_rules! header_names {
    ($( $variant:ident => $canonical:literal, compact $compact:expr, list $list:literal; )*) => {
        /// A header name: the ones siplab reads or that have a compact form, and the rest by
        /// their text. Comparison ignores case, as RFC 3261 section 7.3.1 says.
        #[derive(Debug, Clone)]
        pub enum HeaderName {
            $( $variant, )*
            /// Any other header, by the name as it arrived.
            Other(Bytes),
        }

        const KNOWN: &[(HeaderName, &str, Option<u8>)] = &[
            $( (HeaderName::$variant, $canonical, $compact), )*
        ];

        impl HeaderName {
            /// The canonical (long) spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(raw) => std::str::from_utf8(raw).unwrap_or("?"),
                }
            }

            /// Whether the grammar lets several values share one line, separated by commas.
            pub fn is_list(&self) -> bool {
                match self {
                    $( HeaderName::$variant => $list, )*
                    HeaderName::Other(_) => false,
                }
            }
        }
    };
}

header_names! {
    Accept => "Accept", compact None, list true;
    AcceptContact => "Accept-Contact", compact Some(b'a'), list true;
    Allow => "Allow", compact None, list true;
    AllowEvents => "Allow-Events", compact Some(b'u'), list true;
    CallId => "Call-ID", compact Some(b'i'), list false;
    Contact => "Contact", compact Some(b'm'), list true;
    ContentEncoding => "Content-Encoding", compact Some(b'e'), list true;
    ContentLength => "Content-Length", compact Some(b'l'), list false;
    ContentType => "Content-Type", compact Some(b'c'), list false;
    CSeq => "CSeq", compact None, list false;
    Event => "Event", compact Some(b'o'), list false;
    Expires => "Expires", compact None, list false;
    From => "From", compact Some(b'f'), list false;
    Identity => "Identity", compact Some(b'y'), list false;
    IdentityInfo => "Identity-Info", compact Some(b'n'), list false;
    MaxForwards => "Max-Forwards", compact None, list false;
    MinExpires => "Min-Expires", compact None, list false;
    PAssertedIdentity => "P-Asserted-Identity", compact None, list true;
    Path => "Path", compact None, list true;
    PPreferredIdentity => "P-Preferred-Identity", compact None, list true;
    ProxyRequire => "Proxy-Require", compact None, list true;
    RecordRoute => "Record-Route", compact None, list true;
    ReferTo => "Refer-To", compact Some(b'r'), list false;
    ReferredBy => "Referred-By", compact Some(b'b'), list false;
    RejectContact => "Reject-Contact", compact Some(b'j'), list true;
    RequestDisposition => "Request-Disposition", compact Some(b'd'), list true;
    Require => "Require", compact None, list true;
    Route => "Route", compact None, list true;
    Server => "Server", compact None, list false;
    SessionExpires => "Session-Expires", compact Some(b'x'), list false;
    SipETag => "SIP-ETag", compact None, list false;
    SipIfMatch => "SIP-If-Match", compact None, list false;
    Subject => "Subject", compact Some(b's'), list false;
    SubscriptionState => "Subscription-State", compact None, list false;
    Supported => "Supported", compact Some(b'k'), list true;
    To => "To", compact Some(b't'), list false;
    Unsupported => "Unsupported", compact None, list true;
    UserAgent => "User-Agent", compact None, list false;
    Via => "Via", compact Some(b'v'), list true;
}

impl HeaderName {
    /// Recognises a name in any case, long or compact; anything else is kept as [`HeaderName::Other`].
    pub fn from_bytes(raw: &Bytes) -> HeaderName {
        if let [c] = raw[..] {
            let c = c.to_ascii_lowercase();
            if let Some((n, _, _)) = KNOWN.iter().find(|(_, _, compact)| *compact == Some(c)) {
                return n.clone();
            }
        } else if let Some((n, _, _)) = KNOWN
            .iter()
            .find(|(_, long, _)| long.as_bytes().eq_ignore_ascii_case(raw))
        {
            return n.clone();
        }
        HeaderName::Other(raw.clone())
    }

    /// A name given by the program; recognised the same way as one from the wire.
    pub fn new(name: &str) -> HeaderName {
        HeaderName::from_bytes(&Bytes::copy_from_slice(name.as_bytes()))
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for HeaderName {}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line (possibly folded over several physical lines).
#[derive(Debug, Clone)]
pub struct Header {
    pub name: HeaderName,
    /// The value without the surrounding white space; may still contain folding (`CRLF WSP`).
    pub value: Bytes,
    /// The line exactly as it arrived, CRLF included; `None` once the program changed it.
    raw: Option<Bytes>,
}

impl Header {
    pub fn new(name: HeaderName, value: impl Into<Bytes>) -> Header {
        Header {
            name,
            value: value.into(),
            raw: None,
        }
    }

    pub(crate) fn from_wire(name: HeaderName, value: Bytes, raw: Bytes) -> Header {
        Header {
            name,
            value,
            raw: Some(raw),
        }
    }

    /// The comma-separated elements of a list header's value (the whole value for others).
    /// `None` when a quote or angle bracket never closes.
    pub fn elements(&self) -> Option<Vec<Bytes>> {
        let parts = self.element_ranges()?;
        Some(
            parts
                .into_iter()
                .map(|(s, e)| self.value.slice(s..e))
                .collect(),
        )
    }

    /// Where in the value each element of [`Header::elements`] lies, without slicing it out.
    pub fn element_ranges(&self) -> Option<Vec<(usize, usize)>> {
        if self.name.is_list() {
            scan::split_list(&self.value)
        } else {
            Some(vec![(0, self.value.len())])
        }
    }

    fn write(&self, out: &mut BytesMut) {
        match &self.raw {
            Some(raw) => out.put_slice(raw),
            None => {
                out.put_slice(self.name.as_str().as_bytes());
                out.put_slice(b": ");
                out.put_slice(&self.value);
                out.put_slice(b"\r\n");
            }
        }
    }

    fn wire_len(&self) -> usize {
        match &self.raw {
            Some(raw) => raw.len(),
            None => self.name.as_str().len() + self.value.len() + 4,
        }
    }
}

/// The header section in order. Order matters: the top Via and the first Route are the ones
/// a proxy works on, and headers of one name keep their relative order.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    lines: Vec<Header>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub(crate) fn with_capacity(n: usize) -> Headers {
        Headers {
            lines: Vec::with_capacity(n),
        }
    }

    pub(crate) fn push_wire(&mut self, h: Header) {
        self.lines.push(h);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.lines.iter()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Every line with this name, in order.
    pub fn get_all<'a, 'n>(
        &'a self,
        name: &'n HeaderName,
    ) -> impl Iterator<Item = &'a Header> + use<'a, 'n> {
        self.lines.iter().filter(move |h| h.name == *name)
    }

    /// The first line with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&Header> {
        self.lines.iter().find(|h| h.name == *name)
    }

    /// The value of the first line with this name.
    pub fn value(&self, name: &HeaderName) -> Option<&Bytes> {
        self.get(name).map(|h| &h.value)
    }

    /// Appends a line at the end.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.lines.push(Header::new(name, value));
    }

    /// Inserts a line before the first line of the same name (at the top when there is none):
    /// where a proxy puts its Via and Record-Route.
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let at = self.lines.iter().position(|h| h.name == name).unwrap_or(0);
        self.lines.insert(at, Header::new(name, value));
    }

    /// Replaces every line of this name with one line holding `value` (in the place of the first).
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let new = Header::new(name, value);
        match self.lines.iter().position(|h| h.name == new.name) {
            Some(at) => {
                let name = new.name.clone();
                self.lines[at] = new;
                let mut i = 0;
                self.lines.retain(|h| {
                    i += 1;
                    i - 1 == at || h.name != name
                });
            }
            None => self.lines.push(new),
        }
    }

    /// Removes every line of this name; returns how many were removed.
    pub fn remove_all(&mut self, name: &HeaderName) -> usize {
        self.remove_any(std::slice::from_ref(name))
    }

    /// Removes every line of any of these names in one pass; returns how many were removed.
    pub fn remove_any(&mut self, names: &[HeaderName]) -> usize {
        let before = self.lines.len();
        self.lines.retain(|h| !names.contains(&h.name));
        before - self.lines.len()
    }

    /// Removes the first element of a list header (the top Via, the first Route), rewriting
    /// its line when others share it. `None` when there is none or the line does not split.
    pub fn remove_first_value(&mut self, name: &HeaderName) -> Option<Bytes> {
        let at = self.lines.iter().position(|h| h.name == *name)?;
        let mut elements = self.lines[at].elements()?;
        let first = elements.remove(0);
        if elements.is_empty() {
            self.lines.remove(at);
        } else {
            let mut value = BytesMut::with_capacity(self.lines[at].value.len());
            for (i, e) in elements.iter().enumerate() {
                if i > 0 {
                    value.put_slice(b", ");
                }
                value.put_slice(e);
            }
            self.lines[at] = Header::new(name.clone(), value.freeze());
        }
        Some(first)
    }

    /// The elements of every line with this name, in order (the Via chain, the route set).
    pub fn elements(&self, name: &HeaderName) -> Option<Vec<Bytes>> {
        let mut out = Vec::new();
        for h in self.get_all(name) {
            out.extend(h.elements()?);
        }
        Some(out)
    }

    pub(crate) fn write(&self, out: &mut BytesMut) {
        for h in &self.lines {
            h.write(out);
        }
    }

    pub(crate) fn wire_len(&self) -> usize {
        self.lines.iter().map(Header::wire_len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ignore_case_and_know_compact_forms() {
        assert_eq!(HeaderName::new("v"), HeaderName::Via);
        assert_eq!(HeaderName::new("MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::new("X-Foo"), HeaderName::new("x-foo"));
        assert_ne!(HeaderName::new("X-Foo"), HeaderName::new("X-Bar"));
        assert_eq!(HeaderName::new("k").as_str(), "Supported");
    }

    #[test]
    fn remove_first_value_rewrites_shared_line() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/TLS a;branch=z9hG4bK1, SIP/2.0/TLS b;branch=z9hG4bK2",
        );
        h.push(HeaderName::Via, "SIP/2.0/TLS c;branch=z9hG4bK3");
        let first = h.remove_first_value(&HeaderName::Via).unwrap();
        assert_eq!(&first[..], b"SIP/2.0/TLS a;branch=z9hG4bK1");
        let rest = h.elements(&HeaderName::Via).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(&rest[0][..], b"SIP/2.0/TLS b;branch=z9hG4bK2");
    }

    #[test]
    fn set_replaces_all_in_place_of_first() {
        let mut h = Headers::new();
        h.push(HeaderName::To, "a");
        h.push(HeaderName::Expires, "1");
        h.push(HeaderName::From, "b");
        h.push(HeaderName::Expires, "2");
        h.set(HeaderName::Expires, "3");
        let names: Vec<_> = h.iter().map(|h| h.name.as_str().to_owned()).collect();
        assert_eq!(names, ["To", "Expires", "From"]);
        assert_eq!(&h.value(&HeaderName::Expires).unwrap()[..], b"3");
    }
}
