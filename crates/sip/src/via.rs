//! The Via header (RFC 3261 section 20.42): how a response finds its way back.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::error::SyntaxError;
use crate::scan::{self, Scanner};
use crate::uri::{Host, Params};

/// The magic cookie that marks an RFC 3261 branch (section 8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/TLS host:port;branch=...;received=...;rport=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport as written (`TLS`, `UDP`, or anything a future transport calls itself).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    /// Every parameter in the order it came, branch, received and rport included.
    pub params: Params,
}

impl Via {
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::default();
        params.set("branch", Some(branch));
        Via {
            transport: transport.to_owned(),
            host,
            port,
            params,
        }
    }

    /// The Via a TLS hop sending from `sent_by` writes.
    pub fn tls(sent_by: SocketAddr, branch: &str) -> Via {
        Via::new("TLS", Host::Ip(sent_by.ip()), Some(sent_by.port()), branch)
    }

    /// This Via with a flag parameter (`rport`, `alias`) added.
    pub fn flag(mut self, name: &str) -> Via {
        self.params.set(name, None);
        self
    }

    pub fn parse(value: &[u8]) -> Result<Via, SyntaxError> {
        let mut s = Scanner::new(value);
        s.skip_lws();
        let name = s
            .token()
            .ok_or(SyntaxError::new("missing protocol name", s.pos))?;
        if !s.eat_sep(b'/') {
            return Err(SyntaxError::new("expected '/' after protocol name", s.pos));
        }
        let version = s
            .token()
            .ok_or(SyntaxError::new("missing protocol version", s.pos))?;
        if !name.eq_ignore_ascii_case(b"SIP") || version != b"2.0" {
            return Err(SyntaxError::new("protocol is not SIP/2.0", 0));
        }
        if !s.eat_sep(b'/') {
            return Err(SyntaxError::new("expected '/' before transport", s.pos));
        }
        let transport = s
            .token()
            .ok_or(SyntaxError::new("missing transport", s.pos))?;
        if !s.skip_lws() {
            return Err(SyntaxError::new(
                "expected white space before sent-by",
                s.pos,
            ));
        }
        let host = Host::scan(&mut s)?;
        let port = if s.eat_sep(b':') {
            let at = s.pos;
            let digits = s.take_while(|b| b.is_ascii_digit());
            Some(
                scan::decimal(digits, u16::MAX.into())
                    .ok_or(SyntaxError::new("invalid port", at))? as u16,
            )
        } else {
            None
        };
        let params = Params::scan_generic(&mut s)?;
        s.skip_lws();
        if !s.at_end() {
            return Err(SyntaxError::new("unexpected characters in Via", s.pos));
        }
        if params
            .get("branch")
            .is_some_and(|b| b.is_none_or(str::is_empty))
        {
            return Err(SyntaxError::new("branch without a value", 0));
        }
        Ok(Via {
            transport: String::from_utf8_lossy(transport).to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// Whether the branch carries the RFC 3261 cookie, so that it alone identifies the transaction.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }

    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// `Some(None)` for a bare `rport` (the client asks for it), `Some(Some(p))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The host and port as sent (`sent-by`), for naming the hop; displayed, not built.
    pub fn sent_by(&self) -> SentBy<'_> {
        SentBy(self)
    }

    /// This Via as a server stamps it on a request it received (RFC 3261 section 18.2.1,
    /// RFC 3581): `received` set to `received`, and `rport` given the value `rport`, both
    /// in place when the Via has them and appended otherwise; written straight out, without
    /// a copy of the Via.
    pub fn stamped(&self, received: Option<IpAddr>, rport: Option<u16>) -> String {
        Stamped {
            via: self,
            received,
            rport,
        }
        .to_string()
    }
}

/// `host[:port]` of a Via (see [`Via::sent_by`]).
#[derive(Debug, Clone, Copy)]
pub struct SentBy<'a>(&'a Via);

impl fmt::Display for SentBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.port {
            Some(p) => write!(f, "{}:{p}", self.0.host),
            None => write!(f, "{}", self.0.host),
        }
    }
}

/// A Via written out with `received` and `rport` given these values (see [`Via::stamped`]);
/// a Via's own text is this with neither.
struct Stamped<'a> {
    via: &'a Via,
    received: Option<IpAddr>,
    rport: Option<u16>,
}

impl fmt::Display for Stamped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut received, mut rport) = (self.received, self.rport);
        write!(f, "SIP/2.0/{} {}", self.via.transport, self.via.sent_by())?;
        for (name, value) in self.via.params.iter() {
            if name.eq_ignore_ascii_case("received")
                && let Some(ip) = received.take()
            {
                write!(f, ";{name}={ip}")?;
            } else if name.eq_ignore_ascii_case("rport")
                && let Some(port) = rport.take()
            {
                write!(f, ";{name}={port}")?;
            } else if let Some(v) = value {
                write!(f, ";{name}={v}")?;
            } else {
                write!(f, ";{name}")?;
            }
        }
        if let Some(ip) = received {
            write!(f, ";received={ip}")?;
        }
        if let Some(port) = rport {
            write!(f, ";rport={port}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Stamped {
            via: self,
            received: None,
            rport: None,
        }
        .fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tortuous_spacing() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ip("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn ipv6_rport_received() {
        let v = Via::parse(
            b"SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx;rport;received=192.0.2.1;ttl=1",
        )
        .unwrap();
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("192.0.2.1"));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx;rport;received=192.0.2.1;ttl=1"
        );
    }

    #[test]
    fn stamping_fills_rport_and_sets_received_in_place() {
        let v = Via::parse(b"SIP/2.0/TLS host.test:5061;branch=z9hG4bKx;rport;ttl=1").unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            v.stamped(Some(ip), Some(40000)),
            "SIP/2.0/TLS host.test:5061;branch=z9hG4bKx;rport=40000;ttl=1;received=192.0.2.7"
        );
        let v = Via::parse(b"SIP/2.0/TLS 192.0.2.1;received=192.0.2.9;branch=z9hG4bKy").unwrap();
        assert_eq!(
            v.stamped(Some(ip), None),
            "SIP/2.0/TLS 192.0.2.1;received=192.0.2.7;branch=z9hG4bKy"
        );
        // What stamping a copy and printing it gives, written without the copy.
        let mut copy = v.clone();
        copy.params.set("received", Some("192.0.2.7"));
        copy.params.set("rport", Some("5"));
        assert_eq!(v.stamped(Some(ip), Some(5)), copy.to_string());
    }

    #[test]
    fn refuses_extraneous_separators() {
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse(b";").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP host;branch=").is_err());
    }
}
