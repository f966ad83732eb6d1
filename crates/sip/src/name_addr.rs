//! `name-addr / addr-spec` with header parameters: the shape of From, To, Contact, Route,
//! Record-Route, Path and P-Asserted-Identity values (RFC 3261 section 20).

use std::fmt;

use crate::error::SyntaxError;
use crate::scan::{self, Scanner};
use crate::uri::{Params, SipUri, Uri};

/// An address with optional display name and header parameters (`tag`, `expires`, `q`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as written: a quoted string with its quotes, or tokens.
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    /// A loose-routing entry of Route, Record-Route or Path: `<uri;lr>` (RFC 3261 16.12).
    pub fn loose_route(uri: SipUri) -> NameAddr {
        NameAddr::new(Uri::Sip(uri.flag("lr")))
    }

    /// This address with a `tag` (From and To of a dialog).
    pub fn with_tag(mut self, tag: &str) -> NameAddr {
        self.params.set("tag", Some(tag));
        self
    }

    /// Parses one element (a list header is split first).
    pub fn parse(value: &[u8]) -> Result<NameAddr, SyntaxError> {
        let mut s = Scanner::new(value);
        s.skip_lws();
        let mut display = None;
        let uri;
        if s.peek() == Some(b'"') {
            let q = s
                .quoted_string()
                .ok_or(SyntaxError::new("unterminated quoted display name", s.pos))?;
            display = Some(String::from_utf8_lossy(q).into_owned());
            s.skip_lws();
            uri = angle_uri(&mut s)?;
        } else if let Some(lt) = find_angle(s.rest()) {
            // `*(token LWS) <uri>`: every word before '<' must be a token.
            let words = &s.rest()[..lt];
            let mut w = Scanner::new(words);
            w.skip_lws();
            while !w.at_end() {
                if w.token().is_none() {
                    return Err(SyntaxError::new(
                        "display name is neither a token nor quoted",
                        s.pos + w.pos,
                    ));
                }
                w.skip_lws();
            }
            let (a, b) = scan::trim(words, 0, words.len());
            if b > a {
                display = Some(String::from_utf8_lossy(&words[a..b]).into_owned());
            }
            s.pos += lt;
            uri = angle_uri(&mut s)?;
        } else {
            // addr-spec: the URI ends at the first ';' (header parameters follow) or LWS.
            let start = s.pos;
            let text = s.take_while(|b| b != b';' && !scan::is_lws(b));
            if text.iter().any(|&b| b == b'?' || b == b',') {
                return Err(SyntaxError::new(
                    "a URI with '?' or ',' must be enclosed in <>",
                    start,
                ));
            }
            uri = parse_uri(text, start)?;
        }
        let params = Params::scan_generic(&mut s)?;
        s.skip_lws();
        if !s.at_end() {
            return Err(SyntaxError::new(
                "unexpected characters after address",
                s.pos,
            ));
        }
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    pub fn sip_uri(&self) -> Option<&SipUri> {
        self.uri.as_sip()
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// The display name without quotes and escapes.
    pub fn display_name(&self) -> Option<String> {
        let d = self.display.as_deref()?;
        match d.strip_prefix('"').and_then(|d| d.strip_suffix('"')) {
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => out.extend(chars.next()),
                        c => out.push(c),
                    }
                }
                Some(out)
            }
            None => Some(d.to_owned()),
        }
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// Position of the '<' that opens the URI, skipping quoted strings; `None` for an addr-spec.
fn find_angle(b: &[u8]) -> Option<usize> {
    let mut s = Scanner::new(b);
    while let Some(c) = s.peek() {
        match c {
            b'<' => return Some(s.pos),
            b'"' => {
                s.quoted_string()?;
            }
            _ => s.pos += 1,
        }
    }
    None
}

/// `<` URI `>` with nothing but the URI inside (RFC 4475 3.1.2.14: no spaces in there).
fn angle_uri(s: &mut Scanner<'_>) -> Result<Uri, SyntaxError> {
    if !s.eat(b'<') {
        return Err(SyntaxError::new("expected '<'", s.pos));
    }
    let start = s.pos;
    let inner = s.take_while(|b| b != b'>');
    if !s.eat(b'>') {
        return Err(SyntaxError::new("'<' without '>'", start));
    }
    if inner.first().is_some_and(|&b| scan::is_lws(b))
        || inner.last().is_some_and(|&b| scan::is_lws(b))
    {
        return Err(SyntaxError::new("white space inside <>", start));
    }
    parse_uri(inner, start)
}

fn parse_uri(text: &[u8], at: usize) -> Result<Uri, SyntaxError> {
    let text = std::str::from_utf8(text).map_err(|_| SyntaxError::new("URI is not UTF-8", at))?;
    Uri::parse(text).map_err(|e| SyntaxError::new(e.what, at + e.at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_form() {
        let n =
            NameAddr::parse(br#""J Rosenberg \\\""  <sip:jdrosen@example.com>  ;  tag = 98asjd8"#)
                .unwrap();
        assert_eq!(n.display_name().as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(n.sip_uri().unwrap().aor(), "jdrosen@example.com");
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let n = NameAddr::parse(b"sip:caller@example.net;tag=134161461246").unwrap();
        assert_eq!(n.tag(), Some("134161461246"));
        assert!(n.sip_uri().unwrap().params.get("tag").is_none());
    }

    #[test]
    fn tokens_as_display_name() {
        let n = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        assert!(NameAddr::parse(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
    }

    #[test]
    fn refuses_what_rfc4475_refuses() {
        assert!(NameAddr::parse(br#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse(br#""Watson, Thomas" < sip:t.watson@example.org >"#).is_err());
        assert!(NameAddr::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(br#""Joe" <sip:joe@example.org>;;;;"#).is_err());
    }

    #[test]
    fn round_trip_display() {
        let n = NameAddr::parse(b"<sip:edge01-int.contoso.test:5061;transport=tls;lr>").unwrap();
        assert_eq!(
            n.to_string(),
            "<sip:edge01-int.contoso.test:5061;transport=tls;lr>"
        );
    }
}
