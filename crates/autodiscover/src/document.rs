//! What the autodiscover service says, in the JSON form of MS-OCDISCWS: resources linked by
//! `_links` (`self`, `user`, `xframe`, `redirect`), and for a user homed on the answering
//! server where its SIP clients sign in.
//!
//! One type serves for every resource the client meets: the root (a `user` link), a user
//! homed elsewhere (a `redirect` link to another service's root) and a user homed here (the
//! SIP access). Fields the lab does not use are ignored when reading, so a fuller document
//! from a real service reads too.

use serde::{Deserialize, Serialize};

/// The path of the service's root resource; a user resource lives below it.
pub const ROOT_PATH: &str = "/autodiscover/autodiscoverservice.svc/root";

/// The media type of the JSON answers (MS-OCDISCWS section 2.2.3).
pub const MEDIA_TYPE: &str = "application/vnd.microsoft.rtc.autodiscover+json; v=1";

/// An autodiscover answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    #[serde(rename = "_links")]
    pub links: Links,
    /// Which side of the network the answering service sees the client on.
    #[serde(rename = "AccessLocation", skip_serializing_if = "Option::is_none")]
    pub access_location: Option<AccessLocation>,
    /// Where SIP clients on the internal network sign in.
    #[serde(
        rename = "SipClientInternalAccess",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_access: Option<SipAccess>,
    /// Where SIP clients on the internet sign in.
    #[serde(
        rename = "SipClientExternalAccess",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_access: Option<SipAccess>,
}

impl Document {
    /// The SIP access a client should take: the one for the side the service sees it on.
    pub fn sip_access(&self) -> Option<(&'static str, &SipAccess)> {
        match self.access_location? {
            AccessLocation::Internal => self
                .internal_access
                .as_ref()
                .map(|a| ("SipClientInternalAccess", a)),
            AccessLocation::External => self
                .external_access
                .as_ref()
                .map(|a| ("SipClientExternalAccess", a)),
        }
    }
}

/// The links of a resource, by relation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    #[serde(rename = "self", skip_serializing_if = "Option::is_none")]
    pub this: Option<Link>,
    /// From the root: the user resource, where the caller learns about its own home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Link>,
    /// The cross-domain frame of web clients; the lab only names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xframe: Option<Link>,
    /// The user is homed on another deployment: ask the root of its service instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Link>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
}

impl Link {
    pub fn to(href: String) -> Option<Link> {
        Some(Link { href })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessLocation {
    Internal,
    External,
}

/// A SIP server for clients: the name its certificate carries and its port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAccess {
    pub fqdn: String,
    pub port: u16,
}

impl std::fmt::Display for SipAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.fqdn, self.port)
    }
}

/// `https://host/...`, with the port only when it is not HTTPS's own (the single-process
/// profile serves on 10443).
pub fn authority(host: &str, port: u16) -> String {
    match port {
        443 => host.to_owned(),
        port => format!("{host}:{port}"),
    }
}

/// The root of the service at `authority` for a client of `domain`: where discovery starts
/// and where a redirect leads.
pub fn root_url(authority: &str, domain: &str) -> String {
    format!(
        "https://{authority}{ROOT_PATH}?originalDomain={}",
        encode(domain)
    )
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_root_document_is_the_ms_ocdiscws_shape() {
        let root = Document {
            links: Links {
                this: Link::to(root_url("lyncdiscover.contoso.test", "contoso.test")),
                user: Link::to("https://lyncdiscover.contoso.test/autodiscover/autodiscoverservice.svc/root/oauth/user?originalDomain=contoso.test".into()),
                xframe: Link::to("https://lyncdiscover.contoso.test/autodiscover/xframe/xframe.html".into()),
                redirect: None,
            },
            ..Document::default()
        };
        assert_eq!(
            serde_json::to_value(&root).unwrap(),
            json!({"_links": {
                "self": {"href": "https://lyncdiscover.contoso.test/autodiscover/autodiscoverservice.svc/root?originalDomain=contoso.test"},
                "user": {"href": "https://lyncdiscover.contoso.test/autodiscover/autodiscoverservice.svc/root/oauth/user?originalDomain=contoso.test"},
                "xframe": {"href": "https://lyncdiscover.contoso.test/autodiscover/xframe/xframe.html"},
            }})
        );
    }

    #[test]
    fn a_real_services_user_document_reads_and_names_its_access() {
        // As a Skype for Business server answers, with more than the lab uses.
        let text = r#"{
            "AccessLocation": "External",
            "Root": {"Links": []},
            "SipClientExternalAccess": {"fqdn": "sip.contoso.test", "port": 443},
            "SipClientInternalAccess": {"fqdn": "pool01.contoso.test", "port": 5061},
            "SipServerInternalAccess": {"fqdn": "pool01.contoso.test", "port": 5061},
            "_links": {
                "self": {"href": "https://lyncdiscover.contoso.test/autodiscover/autodiscoverservice.svc/root/oauth/user"},
                "external/ucwa": {"href": "https://lyncweb.contoso.test/ucwa/oauth/v1/applications"}
            }
        }"#;
        let doc: Document = serde_json::from_str(text).unwrap();
        let (kind, access) = doc.sip_access().unwrap();
        assert_eq!(kind, "SipClientExternalAccess");
        assert_eq!(access.to_string(), "sip.contoso.test:443");
        assert_eq!(doc.links.user, None);
    }

    #[test]
    fn urls_carry_a_port_only_when_it_is_not_443() {
        assert_eq!(
            root_url(&authority("webdir.online.lync.test", 443), "contoso.test"),
            "https://webdir.online.lync.test/autodiscover/autodiscoverservice.svc/root?originalDomain=contoso.test"
        );
        assert_eq!(
            root_url(&authority("webdir.online.lync.test", 10443), "a b&c"),
            "https://webdir.online.lync.test:10443/autodiscover/autodiscoverservice.svc/root?originalDomain=a+b%26c"
        );
    }
}
