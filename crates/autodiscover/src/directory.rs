//! What one node's autodiscover service knows, taken from the topology, and how it answers a
//! request; the HTTP around it is [`crate::server`]'s.
//!
//! A front end answers its domain's clients on the LAN (`lyncdiscoverinternal`), an edge the
//! same domain's clients on the internet (`lyncdiscover`, standing in for the reverse proxy),
//! the cloud edge every tenant's cloud-hosted users (`webdir`). A user homed on the answering
//! side learns where its SIP clients sign in; a cloud-hosted user who asks its company is
//! sent to the cloud's service, so it never meets the front end's SIP 301.

use std::collections::HashMap;
use std::net::IpAddr;

use hyper::header::HOST;
use hyper::{Method, Request, StatusCode};
use siplab_topology::{Lab, RecordData, Role};

use crate::AutodiscoverError;
use crate::document::{
    AccessLocation, Document, Link, Links, ROOT_PATH, SipAccess, authority, encode, root_url,
};

/// One node's autodiscover service, as data.
#[derive(Clone, Debug)]
pub struct Directory {
    location: AccessLocation,
    internal: SipAccess,
    external: SipAccess,
    /// The users this service answers for, by lower-case AOR.
    users: HashMap<String, Home>,
}

#[derive(Clone, Debug)]
enum Home {
    /// Homed on the deployment this service belongs to.
    Here,
    /// Homed with the hosting provider: the root of its service.
    Redirect(String),
}

/// The answer to one request: its status and, for a 200, the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub document: Option<Document>,
}

impl Reply {
    fn ok(document: Document) -> Reply {
        Reply {
            status: StatusCode::OK,
            document: Some(document),
        }
    }

    fn error(status: StatusCode) -> Reply {
        Reply {
            status,
            document: None,
        }
    }
}

impl Directory {
    /// The service of node `name` of `lab`: a front end's or edge's for its domain, the
    /// cloud edge's for the cloud-hosted users of every domain.
    pub fn for_node(lab: &Lab, name: &str) -> Result<Directory, AutodiscoverError> {
        let missing = |what: String| AutodiscoverError::Topology {
            node: name.to_owned(),
            what,
        };
        let node = lab
            .node(name)
            .ok_or_else(|| missing("not in the topology".into()))?;
        let cloud_hosted = |home: &str| lab.node(home).is_some_and(|n| n.role == Role::CloudPool);
        match node.role {
            Role::Frontend | Role::Edge => {
                let domain = node
                    .domain
                    .as_deref()
                    .and_then(|d| lab.domain(d))
                    .ok_or_else(|| missing("serves no domain of the lab".into()))?;
                let d = domain.name.as_str();
                let (Some(frontend), Some(edge)) = (&domain.frontend, &domain.edge) else {
                    return Err(missing(format!("{d} is a cloud-only tenant")));
                };
                // The servers the domain's SIP records name, as its clients' DNS views show them:
                // both ways of discovery lead to the same place.
                let pool = lab
                    .members(frontend.as_str())
                    .into_iter()
                    .find_map(|n| lab.interfaces_of(n.name.as_str()).next());
                let edge = lab
                    .interfaces_of(edge.as_str())
                    .find(|i| i.ports.client.is_some());
                let srv = |ip: Option<IpAddr>, record: String| {
                    srv_access(lab, ip, &record)
                        .ok_or_else(|| missing(format!("no {record} record for its clients")))
                };
                let internal = srv(pool.map(|i| i.ip()), format!("_sipinternaltls._tcp.{d}"))?;
                let external = srv(edge.map(|i| i.ip()), format!("_sip._tls.{d}"))?;
                let provider = lab
                    .interfaces()
                    .iter()
                    .find(|i| i.fqdns.contains(&domain.hosting_autodiscover))
                    .and_then(|i| i.ports.web)
                    .map(|port| authority(&domain.hosting_autodiscover, port))
                    .ok_or_else(|| missing("the hosting provider serves no autodiscover".into()))?;
                let users = lab
                    .users()
                    .iter()
                    .filter(|u| u.domain() == d)
                    .filter_map(|u| {
                        let home = if cloud_hosted(u.home.as_str()) {
                            Home::Redirect(root_url(&provider, d))
                        } else if lab.stands_for(frontend.as_str(), u.home.as_str()) {
                            Home::Here
                        } else {
                            return None;
                        };
                        Some((u.aor.to_ascii_lowercase(), home))
                    })
                    .collect();
                let location = match node.role {
                    Role::Frontend => AccessLocation::Internal,
                    _ => AccessLocation::External,
                };
                Ok(Directory {
                    location,
                    internal,
                    external,
                    users,
                })
            }
            // "All users in the cloud are always external": one access for both sides, the
            // one the front ends' 301 names.
            Role::CloudEdge => {
                let access = lab
                    .nodes()
                    .iter()
                    .filter_map(|n| n.cloud_redirect.as_ref())
                    .find(|r| lab.interfaces_of(name).any(|i| i.fqdns.contains(&r.host)))
                    .map(|r| SipAccess {
                        fqdn: r.host.clone(),
                        port: r.port,
                    })
                    .ok_or_else(|| missing("no front end sends cloud users here".into()))?;
                let users = lab
                    .users()
                    .iter()
                    .filter(|u| cloud_hosted(u.home.as_str()))
                    .map(|u| (u.aor.to_ascii_lowercase(), Home::Here))
                    .collect();
                Ok(Directory {
                    location: AccessLocation::External,
                    internal: access.clone(),
                    external: access,
                    users,
                })
            }
            role => Err(missing(format!("a {role} serves no autodiscover"))),
        }
    }

    /// Answers `request` from `caller` (the SIP AOR of its client certificate, which stands
    /// in for the web ticket of MS-OCDISCWS).
    pub fn answer<B>(&self, request: &Request<B>, caller: Option<&str>) -> Reply {
        if request.method() != Method::GET {
            return Reply::error(StatusCode::METHOD_NOT_ALLOWED);
        }
        let Some(host) = request.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
            return Reply::error(StatusCode::BAD_REQUEST);
        };
        let uri = request.uri();
        let this = Link::to(format!(
            "https://{host}{}",
            uri.path_and_query().map_or(uri.path(), |p| p.as_str())
        ));
        let query: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let xframe = Link::to(format!("https://{host}/autodiscover/xframe/xframe.html"));
        // Real deployments write the path with capitals (/Autodiscover/AutodiscoverService.svc).
        let path = uri.path().to_ascii_lowercase();
        match path.strip_prefix(ROOT_PATH) {
            Some("" | "/") => {
                let domain = param("originalDomain")
                    .map(|d| format!("?originalDomain={}", encode(d)))
                    .unwrap_or_default();
                Reply::ok(Document {
                    links: Links {
                        this,
                        user: Link::to(format!("https://{host}{ROOT_PATH}/oauth/user{domain}")),
                        xframe,
                        redirect: None,
                    },
                    ..Document::default()
                })
            }
            Some("/user" | "/oauth/user") => {
                let asked = param("sipuri").map(|u| u.strip_prefix("sip:").unwrap_or(u));
                let aor = match (asked, caller) {
                    (Some(asked), Some(caller)) if !asked.eq_ignore_ascii_case(caller) => {
                        return Reply::error(StatusCode::FORBIDDEN);
                    }
                    (Some(aor), _) | (None, Some(aor)) => aor,
                    (None, None) => return Reply::error(StatusCode::UNAUTHORIZED),
                };
                match self.users.get(&aor.to_ascii_lowercase()) {
                    None => Reply::error(StatusCode::NOT_FOUND),
                    Some(Home::Redirect(root)) => Reply::ok(Document {
                        links: Links {
                            this,
                            redirect: Link::to(root.clone()),
                            ..Links::default()
                        },
                        ..Document::default()
                    }),
                    Some(Home::Here) => Reply::ok(Document {
                        links: Links {
                            this,
                            xframe,
                            ..Links::default()
                        },
                        access_location: Some(self.location),
                        internal_access: Some(self.internal.clone()),
                        external_access: Some(self.external.clone()),
                    }),
                }
            }
            _ => Reply::error(StatusCode::NOT_FOUND),
        }
    }
}

/// The first target of SRV record `name` in the DNS view of whoever has address `ip`.
fn srv_access(lab: &Lab, ip: Option<IpAddr>, name: &str) -> Option<SipAccess> {
    lab.view_for(ip?)?
        .lookup(name)
        .find_map(|record| match &record.data {
            RecordData::Srv { port, target, .. } => Some(SipAccess {
                fqdn: target.clone(),
                port: *port,
            }),
            RecordData::A(_) => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(directory: &Directory, url: &str, caller: Option<&str>) -> Reply {
        let uri: hyper::Uri = url.parse().unwrap();
        let request = Request::get(uri.path_and_query().unwrap().as_str())
            .header(HOST, uri.authority().unwrap().as_str())
            .body(())
            .unwrap();
        directory.answer(&request, caller)
    }

    fn json(reply: &Reply) -> serde_json::Value {
        assert_eq!(reply.status, StatusCode::OK);
        serde_json::to_value(reply.document.as_ref().unwrap()).unwrap()
    }

    const ROOT: &str = "https://lyncdiscover.contoso.test/Autodiscover/AutodiscoverService.svc/root?originalDomain=contoso.test";
    const USER: &str = "https://lyncdiscover.contoso.test/autodiscover/autodiscoverservice.svc/root/oauth/user?originalDomain=contoso.test";

    #[test]
    fn the_root_links_the_user_resource() {
        let e1 = Directory::for_node(&Lab::reference().unwrap(), "E1").unwrap();
        assert_eq!(
            json(&get(&e1, ROOT, Some("alice@contoso.test"))),
            json!({"_links": {
                "self": {"href": ROOT},
                "user": {"href": USER},
                "xframe": {"href": "https://lyncdiscover.contoso.test/autodiscover/xframe/xframe.html"},
            }})
        );
    }

    #[test]
    fn a_user_homed_on_premises_learns_both_accesses() {
        let lab = Lab::reference().unwrap();
        let e1 = Directory::for_node(&lab, "E1").unwrap();
        assert_eq!(
            json(&get(&e1, USER, Some("alice@contoso.test"))),
            json!({
                "_links": {
                    "self": {"href": USER},
                    "xframe": {"href": "https://lyncdiscover.contoso.test/autodiscover/xframe/xframe.html"},
                },
                "AccessLocation": "External",
                "SipClientInternalAccess": {"fqdn": "pool01.contoso.test", "port": 5061},
                "SipClientExternalAccess": {"fqdn": "sip.contoso.test", "port": 443},
            })
        );
        // The front end, asked on the LAN, sees its clients inside; the single-process
        // profile's ports come from the same records.
        let local = lab.localized(183);
        let r1 = Directory::for_node(&local, "R1").unwrap();
        let user = "https://lyncdiscoverinternal.contoso.test:10443/autodiscover/autodiscoverservice.svc/root/user?sipuri=sip:adam@contoso.test";
        let doc = get(&r1, user, Some("adam@contoso.test")).document.unwrap();
        assert_eq!(doc.access_location, Some(AccessLocation::Internal));
        let (kind, access) = doc.sip_access().unwrap();
        assert_eq!(
            (kind, access.to_string()),
            ("SipClientInternalAccess", "pool01.contoso.test:5061".into())
        );
        assert_eq!(
            doc.external_access.unwrap().to_string(),
            "sip.contoso.test:10443"
        );
    }

    #[test]
    fn a_cloud_user_is_redirected_to_the_cloud_which_answers_sipdir() {
        let lab = Lab::reference().unwrap();
        let r1 = Directory::for_node(&lab, "R1").unwrap();
        let user = "https://lyncdiscoverinternal.contoso.test/autodiscover/autodiscoverservice.svc/root/oauth/user?originalDomain=contoso.test";
        assert_eq!(
            json(&get(&r1, user, Some("bella@contoso.test"))),
            json!({"_links": {
                "self": {"href": user},
                "redirect": {"href": "https://webdir.online.lync.test/autodiscover/autodiscoverservice.svc/root?originalDomain=contoso.test"},
            }})
        );
        let ce = Directory::for_node(&lab.localized(183), "CE").unwrap();
        let user = "https://webdir.online.lync.test:10443/autodiscover/autodiscoverservice.svc/root/oauth/user?originalDomain=fabrikam.test";
        let doc = get(&ce, user, Some("berta@fabrikam.test"))
            .document
            .unwrap();
        let access = SipAccess {
            fqdn: "sipdir.online.lync.test".into(),
            port: 10443,
        };
        assert_eq!(doc.access_location, Some(AccessLocation::External));
        assert_eq!(doc.internal_access.as_ref(), Some(&access));
        assert_eq!(doc.external_access.as_ref(), Some(&access));
    }

    #[test]
    fn strangers_impostors_and_other_requests_are_refused() {
        let lab = Lab::reference().unwrap();
        let r1 = Directory::for_node(&lab, "R1").unwrap();
        let ce = Directory::for_node(&lab, "CE").unwrap();
        let user = "https://lyncdiscoverinternal.contoso.test/autodiscover/autodiscoverservice.svc/root/oauth/user";
        let status = |d: &Directory, url: &str, caller| get(d, url, caller).status;
        // Not homed here: another company's user, an on-premises user at the cloud.
        assert_eq!(
            status(&r1, user, Some("anna@fabrikam.test")),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(&ce, user, Some("alice@contoso.test")),
            StatusCode::NOT_FOUND
        );
        // Asking about someone else than the certificate says, or about nobody.
        let other = format!("{user}?sipuri=sip:adam@contoso.test");
        assert_eq!(
            status(&r1, &other, Some("alice@contoso.test")),
            StatusCode::FORBIDDEN
        );
        assert_eq!(status(&r1, user, None), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(&r1, "https://x.test/ucwa", Some("alice@contoso.test")),
            StatusCode::NOT_FOUND
        );
        let post = Request::post(ROOT).header(HOST, "x").body(()).unwrap();
        assert_eq!(
            r1.answer(&post, None).status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert!(Directory::for_node(&lab, "CP1").is_err());
    }
}
