//! The lab CA and the two kinds of certificate it issues: node interfaces and users.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::pem::parse_x509_pem;

use crate::{NodeIdentity, PkiError, UserIdentity};

/// The subject CN of every lab CA, so `openssl x509 -issuer` tells lab certificates apart.
const CA_COMMON_NAME: &str = "siplab lab CA";

/// The subject O of every certificate, for the same reason.
const ORGANIZATION: &str = "siplab";

/// How long certificates live: long enough that a checked-out lab never expires under
/// anyone's feet (about ten years).
const LIFETIME: Duration = Duration::days(3653);

/// A lab CA that can issue certificates: generated fresh or loaded from its PEM files.
#[derive(Debug)]
pub struct LabCa {
    cert_pem: String,
    /// The CA's name, key identifier and signing key; its `Debug` elides the key.
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    /// Leaves the private key out of logs and test failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

impl LabCa {
    /// Makes a new self-signed CA, CN `siplab lab CA`, that may sign leaves but no
    /// intermediate CAs (path length 0): the lab has no use for a deeper chain.
    pub fn generate() -> Result<Self, PkiError> {
        let subject = "CA";
        let key = new_key(subject)?;
        let mut params = base_params(CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|source| certificate_error(subject, source))?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and private key, both PEM.
    ///
    /// Refuses a certificate that is no CA or is out of its validity period, and a key that
    /// does not match the certificate: each would only show later as leaves that fail to
    /// verify in a TLS handshake.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Self::load(cert_pem, "CA certificate", key_pem, "CA key")
    }

    /// [`LabCa::from_pem`] with the origins (file names) that errors should name.
    pub(crate) fn load(
        cert_pem: &str,
        cert_origin: &str,
        key_pem: &str,
        key_origin: &str,
    ) -> Result<Self, PkiError> {
        let bad_cert = |reason: String| PkiError::CaCertificate {
            origin: cert_origin.to_owned(),
            reason,
        };
        let (_, pem) = parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| bad_cert(format!("not a PEM certificate: {e}")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| bad_cert(format!("not an X.509 certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(bad_cert(
                "not a CA certificate (no basicConstraints CA:TRUE)".into(),
            ));
        }
        if !cert.validity().is_valid() {
            let not_after = cert.validity().not_after;
            return Err(bad_cert(format!(
                "outside its validity period (not after {not_after})"
            )));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::CaKey {
            origin: key_origin.to_owned(),
            source,
        })?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::CaKeyMismatch {
                cert: cert_origin.to_owned(),
                key: key_origin.to_owned(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&pem.contents.as_slice().into(), key)
            .map_err(|e| bad_cert(format!("cannot act as issuer: {e}")))?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM: what every node and client trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM (PKCS#8), for writing it next to the certificate.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues the certificate of a node interface: every DNS name and address as SAN, since
    /// TLS clients check the name they dialled against the SANs only; usable as server and as
    /// client, since a proxy both accepts and dials.
    pub fn issue_node(&self, id: &NodeIdentity) -> Result<IssuedCert, PkiError> {
        id.check()?;
        let subject = id.label();
        let common_name = id.dns_names.first().unwrap_or(&id.name);
        let mut params = leaf_params(common_name);
        for dns_name in &id.dns_names {
            let san = dns_name
                .as_str()
                .try_into()
                .map_err(|source| certificate_error(&subject, source))?;
            params.subject_alt_names.push(SanType::DnsName(san));
        }
        params
            .subject_alt_names
            .extend(id.ips.iter().copied().map(SanType::IpAddress));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(&subject, &params)
    }

    /// Issues the certificate of a user: CN the AOR and the URI SAN `sip:<aor>`, which a front
    /// end compares with the AOR of a REGISTER. It allows server use too, so tests may dial a
    /// client directly.
    pub fn issue_user(&self, id: &UserIdentity) -> Result<IssuedCert, PkiError> {
        id.check()?;
        let subject = id.label();
        let mut params = leaf_params(&id.aor);
        let uri = id
            .sip_uri()
            .try_into()
            .map_err(|source| certificate_error(&subject, source))?;
        params.subject_alt_names.push(SanType::URI(uri));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        self.sign(&subject, &params)
    }

    /// Signs `params` over a fresh key. The serial number is left to rcgen, which derives it
    /// from the public key, so fresh keys give distinct serials.
    fn sign(&self, subject: &str, params: &CertificateParams) -> Result<IssuedCert, PkiError> {
        let key = new_key(subject)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| certificate_error(subject, source))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A fresh ECDSA P-256 key: fast to make and accepted by every TLS stack the lab uses.
fn new_key(subject: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| certificate_error(subject, source))
}

/// What CA and leaves share: subject, and a validity that starts yesterday so that a clock
/// a little behind (a container's, a CI machine's) still accepts a certificate made just now.
fn base_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, ORGANIZATION);
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + LIFETIME;
    params
}

/// A leaf: explicitly no CA (webpki refuses a CA certificate as end entity), signing only
/// (ECDSA keys do no key encipherment), and an authority key identifier so that OpenSSL finds
/// the issuer by key as well as by name.
fn leaf_params(common_name: &str) -> CertificateParams {
    let mut params = base_params(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params
}

fn certificate_error(subject: &str, source: rcgen::Error) -> PkiError {
    PkiError::Certificate {
        subject: subject.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use webpki::{EndEntityCert, KeyUsage};
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;
    use x509_parser::parse_x509_certificate;

    use super::*;
    use crate::testing::{alice, cex, der, e1x};

    fn sans<'a>(cert: &'a X509Certificate<'a>) -> Vec<GeneralName<'a>> {
        let ext = cert
            .subject_alternative_name()
            .unwrap()
            .expect("a SAN extension");
        ext.value.general_names.clone()
    }

    fn common_name(cert: &X509Certificate<'_>) -> String {
        let cn = cert.subject().iter_common_name().next().expect("a CN");
        cn.as_str().unwrap().to_owned()
    }

    fn ip_bytes(ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }

    /// Checks a leaf as rustls would: chain to the CA as trust anchor, for `usage`.
    fn webpki_verify(ca: &LabCa, leaf_pem: &str, usage: KeyUsage) -> Result<(), webpki::Error> {
        let ca_der = CertificateDer::from(der(ca.cert_pem()));
        let anchor = webpki::anchor_from_trusted_cert(&ca_der)?;
        let leaf_der = CertificateDer::from(der(leaf_pem));
        let leaf = EndEntityCert::try_from(&leaf_der)?;
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            UnixTime::now(),
            usage,
            None,
            None,
        )?;
        Ok(())
    }

    #[test]
    fn the_ca_is_a_ca_named_siplab_lab_ca() {
        let ca = LabCa::generate().unwrap();
        let der = der(ca.cert_pem());
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        assert!(cert.is_ca());
        assert_eq!(common_name(&cert), "siplab lab CA");
        assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
    }

    #[test]
    fn node_certificate_names_every_fqdn_and_address_and_serves_both_ways() {
        let ca = LabCa::generate().unwrap();
        let node = e1x();
        let issued = ca.issue_node(&node).unwrap();
        let der = der(&issued.cert_pem);
        let (_, cert) = parse_x509_certificate(&der).unwrap();

        assert_eq!(common_name(&cert), "sip.contoso.test");
        let sans = sans(&cert);
        assert!(sans.contains(&GeneralName::DNSName("sip.contoso.test")));
        for ip in &node.ips {
            assert!(
                sans.contains(&GeneralName::IPAddress(&ip_bytes(*ip))),
                "{ip}"
            );
        }
        assert_eq!(sans.len(), 3);

        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
        let basic = cert
            .basic_constraints()
            .unwrap()
            .expect("explicit basicConstraints");
        assert!(!basic.value.ca);
    }

    #[test]
    fn a_node_with_two_fqdns_gets_both_and_the_first_as_cn() {
        let ca = LabCa::generate().unwrap();
        let issued = ca.issue_node(&cex()).unwrap();
        let der = der(&issued.cert_pem);
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        assert_eq!(common_name(&cert), "sipdir.online.lync.test");
        let sans = sans(&cert);
        assert!(sans.contains(&GeneralName::DNSName("sipdir.online.lync.test")));
        assert!(sans.contains(&GeneralName::DNSName("sipfed.online.lync.test")));
    }

    #[test]
    fn user_certificate_carries_the_sip_uri_and_the_aor_as_cn() {
        let ca = LabCa::generate().unwrap();
        let issued = ca.issue_user(&alice()).unwrap();
        let der = der(&issued.cert_pem);
        let (_, cert) = parse_x509_certificate(&der).unwrap();

        assert_eq!(common_name(&cert), "alice@contoso.test");
        assert_eq!(sans(&cert), [GeneralName::URI("sip:alice@contoso.test")]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
        assert!(!cert.is_ca());
    }

    #[test]
    fn webpki_accepts_nodes_as_servers_and_clients_and_users_as_clients() {
        let ca = LabCa::generate().unwrap();
        let node = ca.issue_node(&e1x()).unwrap();
        webpki_verify(&ca, &node.cert_pem, KeyUsage::server_auth()).unwrap();
        webpki_verify(&ca, &node.cert_pem, KeyUsage::client_auth()).unwrap();
        let user = ca.issue_user(&alice()).unwrap();
        webpki_verify(&ca, &user.cert_pem, KeyUsage::client_auth()).unwrap();

        let leaf_der = CertificateDer::from(der(&node.cert_pem));
        let leaf = EndEntityCert::try_from(&leaf_der).unwrap();
        for name in ["sip.contoso.test", "192.0.2.11", "2001:db8::11"] {
            let name = ServerName::try_from(name).unwrap();
            leaf.verify_is_valid_for_subject_name(&name).unwrap();
        }
        let other = ServerName::try_from("sip.fabrikam.test").unwrap();
        assert!(leaf.verify_is_valid_for_subject_name(&other).is_err());
    }

    #[test]
    fn webpki_rejects_a_leaf_of_another_ca() {
        let ca = LabCa::generate().unwrap();
        let stranger = LabCa::generate().unwrap().issue_node(&e1x()).unwrap();
        assert!(webpki_verify(&ca, &stranger.cert_pem, KeyUsage::server_auth()).is_err());
    }

    #[test]
    fn a_ca_loaded_from_pem_issues_what_the_original_trusts() {
        let original = LabCa::generate().unwrap();
        let loaded = LabCa::from_pem(original.cert_pem(), &original.key_pem()).unwrap();
        assert_eq!(loaded.cert_pem(), original.cert_pem());
        let issued = loaded.issue_node(&e1x()).unwrap();
        webpki_verify(&original, &issued.cert_pem, KeyUsage::server_auth()).unwrap();
    }

    #[test]
    fn leaves_get_distinct_serials() {
        let ca = LabCa::generate().unwrap();
        let serial = |pem: &str| {
            let der = der(pem);
            let (_, cert) = parse_x509_certificate(&der).unwrap();
            cert.raw_serial().to_vec()
        };
        let first = ca.issue_node(&e1x()).unwrap();
        let second = ca.issue_node(&e1x()).unwrap();
        assert_ne!(serial(&first.cert_pem), serial(&second.cert_pem));
    }

    #[test]
    fn from_pem_refuses_garbage_without_panicking() {
        let ca = LabCa::generate().unwrap();
        let err = LabCa::from_pem("garbage", &ca.key_pem()).unwrap_err();
        assert!(matches!(err, PkiError::CaCertificate { .. }), "{err}");
        assert!(err.to_string().starts_with("CA certificate: "), "{err}");

        let err = LabCa::from_pem(ca.cert_pem(), "garbage").unwrap_err();
        assert!(matches!(err, PkiError::CaKey { .. }), "{err}");

        let err = LabCa::from_pem("", "").unwrap_err();
        assert!(matches!(err, PkiError::CaCertificate { .. }), "{err}");
    }

    #[test]
    fn from_pem_refuses_a_leaf_as_ca_and_a_key_of_another_ca() {
        let ca = LabCa::generate().unwrap();
        let leaf = ca.issue_node(&e1x()).unwrap();
        let err = LabCa::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");

        let other = LabCa::generate().unwrap();
        let err = LabCa::from_pem(ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err}");
    }

    #[test]
    fn the_debug_form_shows_no_private_key() {
        let ca = LabCa::generate().unwrap();
        let issued = ca.issue_user(&alice()).unwrap();
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }
}
