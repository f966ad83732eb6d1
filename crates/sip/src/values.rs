//! The small typed values a proxy and registrar read: methods, CSeq, Contact elements,
//! option-tag lists and the numeric headers with their legal ranges.

use std::fmt;

use crate::error::SyntaxError;
use crate::name_addr::NameAddr;
use crate::scan::{self, Scanner};

/// A request method. Methods are case-sensitive (RFC 3261 section 7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Subscribe,
    Notify,
    Publish,
    Info,
    Prack,
    Update,
    Refer,
    Extension(String),
}

impl Method {
    pub fn from_token(t: &[u8]) -> Method {
        match t {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"MESSAGE" => Method::Message,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"REFER" => Method::Refer,
            other => Method::Extension(String::from_utf8_lossy(other).into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Extension(m) => m,
        }
    }

    /// Methods that create a dialog, into which proxies insert Record-Route.
    pub fn creates_dialog(&self) -> bool {
        matches!(self, Method::Invite | Method::Subscribe)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CSeq: 4711 INVITE`. The number is below 2**31 (RFC 3261 section 8.1.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// A Subscription-State value (RFC 6665 section 8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState<'a> {
    /// Active, with the seconds it has left.
    Active(u64),
    /// Ended, with the reason (`timeout`, `noresource`, ...).
    Terminated(&'a str),
}

impl fmt::Display for SubscriptionState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionState::Active(left) => write!(f, "active;expires={left}"),
            SubscriptionState::Terminated(reason) => write!(f, "terminated;reason={reason}"),
        }
    }
}

impl CSeq {
    pub const MAX: u64 = (1 << 31) - 1;

    pub fn new(seq: u32, method: Method) -> CSeq {
        CSeq { seq, method }
    }

    pub fn parse(value: &[u8]) -> Result<CSeq, SyntaxError> {
        let mut s = Scanner::new(value);
        s.skip_lws();
        let digits = s.take_while(|b| b.is_ascii_digit());
        let seq = scan::decimal(digits, Self::MAX).ok_or(SyntaxError::new(
            "sequence number missing or above 2**31-1",
            0,
        ))?;
        if !s.skip_lws() {
            return Err(SyntaxError::new(
                "expected white space after the number",
                s.pos,
            ));
        }
        let method = s.token().ok_or(SyntaxError::new("missing method", s.pos))?;
        s.skip_lws();
        if !s.at_end() {
            return Err(SyntaxError::new(
                "unexpected characters after method",
                s.pos,
            ));
        }
        Ok(CSeq {
            seq: seq as u32,
            method: Method::from_token(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A delta-seconds or count value bounded by `max` (Max-Forwards 255, Expires 2**32-1).
pub fn parse_number(value: &[u8], max: u64) -> Result<u64, SyntaxError> {
    let (a, b) = scan::trim(value, 0, value.len());
    scan::decimal(&value[a..b], max).ok_or(SyntaxError::new("not a number in range", a))
}

/// delta-seconds (Expires, a Contact's `expires`): digits only, and a value beyond 2**32-1
/// taken as that (RFC 3261 section 20.19).
pub fn parse_delta_seconds(value: &[u8]) -> Result<u32, SyntaxError> {
    let (a, b) = scan::trim(value, 0, value.len());
    let digits = &value[a..b];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(SyntaxError::new("not a number", a));
    }
    Ok(scan::decimal(digits, u32::MAX.into()).map_or(u32::MAX, |n| n as u32))
}

/// The Call-ID: `word ["@" word]`, no white space inside.
pub fn parse_call_id(value: &[u8]) -> Result<&[u8], SyntaxError> {
    let (a, b) = scan::trim(value, 0, value.len());
    let id = &value[a..b];
    if id.is_empty() || id.iter().any(|&c| c <= b' ' || c >= 0x7f) {
        return Err(SyntaxError::new(
            "empty or with characters a Call-ID cannot hold",
            a,
        ));
    }
    Ok(id)
}

/// Option tags of Supported, Require, Proxy-Require and Unsupported, in order.
pub fn parse_option_tags(elements: &[bytes::Bytes]) -> Result<Vec<String>, SyntaxError> {
    elements
        .iter()
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut s = Scanner::new(e);
            let t = s
                .token()
                .ok_or(SyntaxError::new("option tag is not a token", 0))?;
            if !s.at_end() {
                return Err(SyntaxError::new("option tag is not a token", s.pos));
            }
            Ok(String::from_utf8_lossy(t).into_owned())
        })
        .collect()
}

/// One Contact element: `*` (remove every binding) or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Star,
    Addr(NameAddr),
}

impl Contact {
    pub fn parse(value: &[u8]) -> Result<Contact, SyntaxError> {
        let (a, b) = scan::trim(value, 0, value.len());
        if &value[a..b] == b"*" {
            return Ok(Contact::Star);
        }
        NameAddr::parse(value).map(Contact::Addr)
    }
}

/// What a registrar reads off a Contact address (RFC 3261 section 10, RFC 5626).
pub trait ContactParams {
    fn expires(&self) -> Option<u32>;
    fn q(&self) -> Option<&str>;
    fn instance(&self) -> Option<&str>;
    fn reg_id(&self) -> Option<u32>;
    fn outbound(&self) -> bool;
}

impl ContactParams for NameAddr {
    fn expires(&self) -> Option<u32> {
        // One that is no number counts as absent: the header's Expires or the default apply.
        self.params
            .value("expires")
            .and_then(|v| parse_delta_seconds(v.as_bytes()).ok())
    }

    fn q(&self) -> Option<&str> {
        self.params.value("q")
    }

    fn instance(&self) -> Option<&str> {
        self.params.value("+sip.instance")
    }

    fn reg_id(&self) -> Option<u32> {
        self.params.value("reg-id").and_then(|v| v.parse().ok())
    }

    fn outbound(&self) -> bool {
        self.sip_uri().is_some_and(|u| u.params.contains("ob"))
    }
}

/// A random number for tags, branches and tokens, from the standard library's randomly
/// keyed hasher (no extra crate; unpredictable enough for a lab, unique per call).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_expires_that_is_no_number_counts_as_absent() {
        let expires = |text: &str| NameAddr::parse(text.as_bytes()).unwrap().expires();
        assert_eq!(expires("<sip:a@h>;expires=60"), Some(60));
        assert_eq!(expires("<sip:a@h>;expires=99999999999"), Some(u32::MAX));
        assert_eq!(expires("<sip:a@h>;expires=abc"), None);
        assert_eq!(expires("<sip:a@h>"), None);
    }

    #[test]
    fn cseq_bounds() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert!(CSeq::parse(b"36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse(b"2147483648 REGISTER").is_err());
        assert!(CSeq::parse(b"1 REGISTER x").is_err());
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_token(b"INVITE"), Method::Invite);
        assert_eq!(
            Method::from_token(b"invite"),
            Method::Extension("invite".into())
        );
    }

    #[test]
    fn contact_params() {
        let Contact::Addr(c) = Contact::parse(
            br#"<sip:alice@192.0.2.1;transport=tls;ob>;expires=3600;+sip.instance="<urn:uuid:1>";reg-id=1;q=0.5"#,
        )
        .unwrap() else {
            panic!("not an address")
        };
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(c.instance(), Some("\"<urn:uuid:1>\""));
        assert_eq!(c.reg_id(), Some(1));
        assert_eq!(c.q(), Some("0.5"));
        assert!(c.outbound());
        assert_eq!(Contact::parse(b" * ").unwrap(), Contact::Star);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b" 70 ", 255).unwrap(), 70);
        assert!(parse_number(b"300", 255).is_err());
        assert!(parse_number(b"", 255).is_err());
    }
}
