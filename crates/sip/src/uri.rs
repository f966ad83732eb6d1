//! SIP and SIPS URIs (RFC 3261 section 19.1), hosts, and parameter lists; other schemes are
//! carried as they are, since a proxy may forward what it cannot route.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::SyntaxError;
use crate::scan::{self, Scanner};

/// A host as the grammar has it: a name, an IPv4 address or an IPv6 reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, stored in lower case (host names compare without case).
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Parses a host at the start of `s`, leaving the cursor after it.
    pub(crate) fn scan(s: &mut Scanner<'_>) -> Result<Host, SyntaxError> {
        let start = s.pos;
        if s.eat(b'[') {
            let inner = s.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            if !s.eat(b']') {
                return Err(SyntaxError::new("IPv6 reference without ']'", s.pos));
            }
            let text =
                std::str::from_utf8(inner).map_err(|_| SyntaxError::new("bad IPv6", start))?;
            let ip: Ipv6Addr = text
                .parse()
                .map_err(|_| SyntaxError::new("invalid IPv6 address", start))?;
            return Ok(Host::Ip(IpAddr::V6(ip)));
        }
        let name = s.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if name.is_empty() {
            return Err(SyntaxError::new("missing host", start));
        }
        // Only ASCII was taken, so this cannot fail.
        let text = std::str::from_utf8(name).unwrap_or_default();
        if let Ok(ip) = text.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        if text.starts_with(['-', '.']) || text.contains("..") {
            return Err(SyntaxError::new("invalid host name", start));
        }
        Ok(Host::Name(text.to_ascii_lowercase()))
    }

    /// A host as a configuration names it: an IP address when it is one, else a name.
    pub fn named(text: &str) -> Host {
        Host::parse(text).unwrap_or_else(|_| Host::Name(text.to_ascii_lowercase()))
    }

    pub fn parse(text: &str) -> Result<Host, SyntaxError> {
        let mut s = Scanner::new(text.as_bytes());
        let h = Host::scan(&mut s)?;
        if !s.at_end() {
            return Err(SyntaxError::new("unexpected characters after host", s.pos));
        }
        Ok(h)
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        Host::Ip(ip)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// An ordered parameter list (`;name=value;flag`); names compare without case. Values are
/// kept as written (a quoted value keeps its quotes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name`, when it is present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`, replacing an existing value in place or appending.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// Sets `name` to `text` as a quoted string (`+sip.instance="<urn:...>"`), its quotes
    /// and backslashes escaped (RFC 3261 25.1).
    pub fn set_quoted(&mut self, name: &str, text: &str) {
        let mut quoted = String::with_capacity(text.len() + 2);
        quoted.push('"');
        for c in text.chars() {
            if matches!(c, '"' | '\\') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        self.set(name, Some(&quoted));
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// Header parameters: `*( SEMI generic-param )` with white space allowed around `;` and
    /// `=`; a value is a token, a host (IPv6 reference included) or a quoted string.
    pub(crate) fn scan_generic(s: &mut Scanner<'_>) -> Result<Params, SyntaxError> {
        let mut params = Params::default();
        while s.eat_sep(b';') {
            let name = s
                .token()
                .ok_or(SyntaxError::new("empty parameter", s.pos))?;
            let value = if s.eat_sep(b'=') {
                let v = if s.peek() == Some(b'"') {
                    s.quoted_string().ok_or(SyntaxError::new(
                        "unterminated quoted parameter value",
                        s.pos,
                    ))?
                } else if s.peek() == Some(b'[') {
                    let start = s.pos;
                    Host::scan(s)?;
                    &s.input[start..s.pos]
                } else {
                    s.token()
                        .ok_or(SyntaxError::new("empty parameter value", s.pos))?
                };
                Some(text(v))
            } else {
                None
            };
            params.0.push((text(name), value));
        }
        Ok(params)
    }

    /// URI parameters: `;name[=value]` without white space, escapes allowed.
    fn scan_uri(s: &mut Scanner<'_>) -> Result<Params, SyntaxError> {
        let mut params = Params::default();
        while s.eat(b';') {
            let name = s.take_while(is_param_char);
            if name.is_empty() {
                return Err(SyntaxError::new("empty URI parameter", s.pos));
            }
            check_escapes(name, s.pos)?;
            let value = if s.eat(b'=') {
                let v = s.take_while(is_param_char);
                check_escapes(v, s.pos)?;
                Some(text(v))
            } else {
                None
            };
            params.0.push((text(name), value));
        }
        Ok(params)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Bytes as text: as they are when UTF-8 (the character classes restrict most to ASCII;
/// a quoted value may hold UTF-8), lossily otherwise. `from_utf8` checks ASCII a word at a
/// time where `from_utf8_lossy` walks it byte by byte (visible in a relay's profile).
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        )
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_header_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
        )
}

/// Every `%` must start a two-digit hex escape.
fn check_escapes(part: &[u8], at: usize) -> Result<(), SyntaxError> {
    let mut i = 0;
    while i < part.len() {
        if part[i] == b'%' {
            let hex = |j: usize| part.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(SyntaxError::new("'%' not followed by two hex digits", at));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Decodes `%HH` escapes (already checked by the parser); other bytes pass unchanged.
pub fn unescape(part: &str) -> Vec<u8> {
    let b = part.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// The user part as written (escapes kept; [`SipUri::user_unescaped`] decodes them).
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// The `?headers` part as written, without the `?`.
    pub headers: Option<String>,
}

/// The parameter of [`SipUri::pool_member`].
const POOL_MEMBER: &str = "ms-fe";

impl SipUri {
    /// A plain URI of `host` (and `user`), no parameters.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        }
    }

    /// A URI of a TLS hop (`;transport=tls`): how Via, Route, Record-Route, Path and Contact
    /// name this lab's listeners.
    pub fn tls(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        let mut uri = SipUri::new(user, host, port);
        uri.params.set("transport", Some("tls"));
        uri
    }

    /// This URI with a flag parameter (`lr`, `ob`) added.
    pub fn flag(mut self, name: &str) -> SipUri {
        self.params.set(name, None);
        self
    }

    /// The pool member a pool's Record-Route names (`ms-fe`, as Skype for Business writes
    /// it: `sip:sippoolAM30E08.infra.lync.com;ms-fe=AM30E08FES03.infra.lync.com;lr`).
    pub fn pool_member(&self) -> Option<&str> {
        self.params.value(POOL_MEMBER)
    }

    /// The host a Route with this URI leads to: the pool member it names, else its own host
    /// (borrowed, so routing by an ordinary Route allocates nothing).
    pub fn route_host(&self) -> Cow<'_, Host> {
        match self.pool_member() {
            Some(member) => Cow::Owned(Host::named(member)),
            None => Cow::Borrowed(&self.host),
        }
    }

    /// This URI of a pool (`host`) with `member` as the member holding the dialog.
    pub fn with_pool_member(self, member: &str) -> SipUri {
        self.param(POOL_MEMBER, member)
    }

    /// This URI with parameter `name` set to `value` (a token or host, written as is).
    pub fn param(mut self, name: &str, value: &str) -> SipUri {
        self.params.set(name, Some(value));
        self
    }

    pub fn parse(text: &str) -> Result<SipUri, SyntaxError> {
        match Uri::parse(text)? {
            Uri::Sip(u) => Ok(u),
            Uri::Other(_) => Err(SyntaxError::new("not a sip: or sips: URI", 0)),
        }
    }

    /// Parses the part after `sip:`; `s` covers exactly the URI.
    fn scan_after_scheme(s: &mut Scanner<'_>, secure: bool) -> Result<SipUri, SyntaxError> {
        let rest = s.rest();
        let (mut user, mut password) = (None, None);
        // The user part may hold ';', '?', ',' and '/', but never an unescaped '@': the
        // first '@' ends it.
        if let Some(at) = memchr::memchr(b'@', rest) {
            let userinfo = &rest[..at];
            let (u, p) = match memchr::memchr(b':', userinfo) {
                Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                None => (userinfo, None),
            };
            if u.is_empty() || !u.iter().all(|&b| is_user_char(b)) {
                return Err(SyntaxError::new("invalid user part", s.pos));
            }
            check_escapes(u, s.pos)?;
            if let Some(p) = p {
                if !p.iter().all(|&b| is_password_char(b)) {
                    return Err(SyntaxError::new("invalid password", s.pos));
                }
                check_escapes(p, s.pos)?;
                password = Some(text(p));
            }
            user = Some(text(u));
            s.pos += at + 1;
        }
        let host = Host::scan(s)?;
        let port = if s.eat(b':') {
            let at = s.pos;
            let digits = s.take_while(|b| b.is_ascii_digit());
            Some(
                scan::decimal(digits, u16::MAX as u64)
                    .ok_or(SyntaxError::new("invalid port", at))? as u16,
            )
        } else {
            None
        };
        let params = Params::scan_uri(s)?;
        let headers = if s.eat(b'?') {
            let h = s.take_while(is_header_char);
            check_escapes(h, s.pos)?;
            Some(text(h))
        } else {
            None
        };
        if !s.at_end() {
            return Err(SyntaxError::new("unexpected character in URI", s.pos));
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The user part with escapes decoded (`%75se%72` is `user`).
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(unescape)
    }

    /// `user@host` as a registrar keys bindings: escapes decoded, host in lower case.
    pub fn aor(&self) -> Aor {
        let text = match self.user_unescaped() {
            Some(u) => format!("{}@{}", String::from_utf8_lossy(&u), self.host),
            None => self.host.to_string(),
        };
        Aor(text)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// An address of record, `user@host` as a registrar keys bindings (see [`SipUri::aor`]):
/// escapes decoded, host in lower case. It reads as the text it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor(String);

impl Aor {
    /// The AOR a configuration writes as `user@domain` (a topology's user list).
    pub fn named(text: &str) -> Aor {
        match text.rsplit_once('@') {
            Some((user, host)) => Aor(format!("{user}@{}", host.to_ascii_lowercase())),
            None => Aor(text.to_ascii_lowercase()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`: the domain that serves it.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(_, d)| d)
    }

    /// `sip:user@host`, as From, To and P-Asserted-Identity carry it.
    pub fn uri(&self) -> SipUri {
        match self.0.rsplit_once('@') {
            Some((user, host)) => SipUri::new(Some(user), Host::named(host), None),
            None => SipUri::new(None, Host::named(&self.0), None),
        }
    }
}

impl std::ops::Deref for Aor {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Aor {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Aor {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Aor {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Any URI: SIP and SIPS parsed, other schemes (tel, http, ...) kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Other(String),
}

impl Uri {
    /// Parses a whole URI; there must be nothing after it.
    pub fn parse(text: &str) -> Result<Uri, SyntaxError> {
        let b = text.as_bytes();
        let colon = memchr::memchr(b':', b).ok_or(SyntaxError::new("URI without a scheme", 0))?;
        let scheme = &b[..colon];
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(SyntaxError::new("invalid URI scheme", 0));
        }
        let secure = scheme.eq_ignore_ascii_case(b"sips");
        if secure || scheme.eq_ignore_ascii_case(b"sip") {
            let mut s = Scanner {
                input: b,
                pos: colon + 1,
            };
            return SipUri::scan_after_scheme(&mut s, secure).map(Uri::Sip);
        }
        if let Some(i) = b
            .iter()
            .position(|&c| c <= b' ' || c == b'<' || c == b'>' || c == b'"' || c >= 0x7f)
        {
            return Err(SyntaxError::new("invalid character in URI", i));
        }
        Ok(Uri::Other(text.to_owned()))
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other(_) => None,
        }
    }

    /// The scheme, in lower case.
    pub fn scheme(&self) -> String {
        match self {
            Uri::Sip(u) if u.secure => "sips".into(),
            Uri::Sip(_) => "sip".into(),
            Uri::Other(t) => t.split(':').next().unwrap_or_default().to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Other(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_quoted_parameter_stays_one_quoted_string() {
        let mut p = super::Params::default();
        p.set_quoted("+sip.instance", "<urn:uuid:1>");
        p.set_quoted("x", "a\"b");
        assert_eq!(
            p.to_string(),
            ";+sip.instance=\"<urn:uuid:1>\";x=\"a\\\"b\""
        );
    }

    use super::*;

    #[test]
    fn a_pool_route_leads_to_its_member() {
        let pool = SipUri::parse(
            "sip:sippool01.infra.lync.test:5061;transport=tls;ms-fe=CPFE02.infra.lync.test;lr",
        )
        .unwrap();
        assert_eq!(pool.pool_member(), Some("CPFE02.infra.lync.test"));
        assert_eq!(*pool.route_host(), Host::named("cpfe02.infra.lync.test"));
        let plain = SipUri::parse("sip:fe01.contoso.test;lr").unwrap();
        assert!(matches!(plain.route_host(), Cow::Borrowed(h) if *h == plain.host));
        let built = SipUri::tls(None, Host::named("pool01.contoso.test"), Some(5061))
            .flag("lr")
            .with_pool_member("fe01.contoso.test");
        assert_eq!(
            built.to_string(),
            "sip:pool01.contoso.test:5061;transport=tls;lr;ms-fe=fe01.contoso.test"
        );
    }

    #[test]
    fn parses_the_parts() {
        let u = SipUri::parse("sips:al%69ce:pw@[2001:db8::1]:5061;transport=tls;lr?subject=hi")
            .unwrap();
        assert!(u.secure);
        assert_eq!(u.user.as_deref(), Some("al%69ce"));
        assert_eq!(u.user_unescaped().unwrap(), b"alice");
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params.value("transport"), Some("tls"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.headers.as_deref(), Some("subject=hi"));
        assert_eq!(
            u.to_string(),
            "sips:al%69ce:pw@[2001:db8::1]:5061;transport=tls;lr?subject=hi"
        );
    }

    #[test]
    fn user_part_may_hold_semicolons_and_question_marks() {
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Name("example.com".into()));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "sip:",
            "sip:@host",
            "sip:a@",
            "sip:host:99999",
            "sip:host;",
            "sip:h%zz",
            "sip:a@h o",
            "<sip:a>",
            "sip:[::1",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn other_schemes_are_kept() {
        assert_eq!(
            Uri::parse("tel:+1-555").unwrap(),
            Uri::Other("tel:+1-555".into())
        );
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002").unwrap().scheme(),
            "soap.beep"
        );
    }
}
