//! Identities from the reference lab, and readers of what the crate wrote, for the unit tests.

use std::net::IpAddr;

use x509_parser::pem::parse_x509_pem;

use crate::{NodeIdentity, UserIdentity};

/// E1's external interface: one FQDN, an IPv4 and an IPv6 address.
pub(crate) fn e1x() -> NodeIdentity {
    NodeIdentity {
        name: "E1x".into(),
        dns_names: vec!["sip.contoso.test".into()],
        ips: vec![ip("192.0.2.11"), ip("2001:db8::11")],
    }
}

/// The cloud edge's external interface: two FQDNs, one for clients and one for federation.
pub(crate) fn cex() -> NodeIdentity {
    NodeIdentity {
        name: "CEx".into(),
        dns_names: vec![
            "sipdir.online.lync.test".into(),
            "sipfed.online.lync.test".into(),
        ],
        ips: vec![ip("192.0.2.30")],
    }
}

pub(crate) fn alice() -> UserIdentity {
    UserIdentity {
        aor: "alice@contoso.test".into(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// The DER of the first certificate in `pem`.
pub(crate) fn der(pem: &str) -> Vec<u8> {
    parse_x509_pem(pem.as_bytes())
        .expect("PEM written by this crate")
        .1
        .contents
}
