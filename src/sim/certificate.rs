//! A self-signed certificate for loopback TLS: tests, examples, and the
//! simulator serving TLS, all offline.
//!
//! One RSA-2048 key and an X.509 v3 certificate for `127.0.0.1` and
//! `localhost` (both in the subject alternative names, which is what
//! host-name checks look at), good for a year; or for other names
//! ([`self_signed`]), to see a client refuse a certificate it trusts but
//! that names another host. RSA, because Douyu's
//! endpoint uses RSA key exchange (`CipherPolicy::Legacy`), and that needs
//! an RSA key that may encipher. The certificate signs itself, so a client
//! trusts it by taking the certificate itself as its CA
//! (`TlsClientConfig::with_ca_pem(&cert.cert_pem)`).

use std::io;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct SelfSigned {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Makes a fresh key and a certificate for `127.0.0.1` and `localhost`.
/// Takes a fraction of a second (the RSA key).
pub fn self_signed_localhost() -> io::Result<SelfSigned> {
    self_signed(&["127.0.0.1"], &["localhost"])
}

/// Makes a fresh key and a certificate for these IP addresses and DNS
/// names (its common name is the first name, else the first address).
pub fn self_signed(ips: &[&str], names: &[&str]) -> io::Result<SelfSigned> {
    build(ips, names).map_err(|e| io::Error::other(format!("making a self-signed certificate: {e}")))
}

fn build(ips: &[&str], names: &[&str]) -> Result<SelfSigned, ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;

    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", names.first().or(ips.first()).copied().unwrap_or("barrage"))?;
    name.append_entry_by_text("O", "barrage test")?;
    let name = name.build();

    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;

    let mut cert = X509::builder()?;
    cert.set_version(2)?; // X.509 v3, counted from 0
    let serial = serial.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(365)?);
    cert.set_not_before(&not_before)?;
    cert.set_not_after(&not_after)?;
    cert.append_extension(BasicConstraints::new().critical().build()?)?;
    // keyEncipherment: RSA key exchange encrypts the premaster secret to it.
    cert.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build()?)?;
    cert.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut alternatives = SubjectAlternativeName::new();
    for ip in ips {
        alternatives.ip(ip);
    }
    for name in names {
        alternatives.dns(name);
    }
    cert.append_extension(alternatives.build(&cert.x509v3_context(None, None))?)?;
    cert.sign(&key, MessageDigest::sha256())?;

    Ok(SelfSigned { cert_pem: cert.build().to_pem()?, key_pem: key.private_key_to_pem_pkcs8()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_loopback_by_address_and_name_and_signs_itself() {
        let made = self_signed_localhost().unwrap();
        let cert = X509::from_pem(&made.cert_pem).unwrap();
        let key = PKey::private_key_from_pem(&made.key_pem).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key), "the key is the certificate's");
        assert_eq!(cert.issuer_name().to_der().unwrap(), cert.subject_name().to_der().unwrap());
        assert!(cert.verify(&key).unwrap(), "signed by its own key");
        let names = cert.subject_alt_names().expect("SAN");
        let ips: Vec<&[u8]> = names.iter().filter_map(|n| n.ipaddress()).collect();
        let dns: Vec<&str> = names.iter().filter_map(|n| n.dnsname()).collect();
        assert_eq!(ips, vec![&[127, 0, 0, 1][..]]);
        assert_eq!(dns, vec!["localhost"]);
        assert_eq!(key.bits(), 2048);
    }

    #[test]
    fn a_certificate_for_other_names_names_only_those() {
        let made = self_signed(&[], &["barrage.invalid"]).unwrap();
        let cert = X509::from_pem(&made.cert_pem).unwrap();
        let names = cert.subject_alt_names().expect("SAN");
        let dns: Vec<&str> = names.iter().filter_map(|n| n.dnsname()).collect();
        assert_eq!(dns, vec!["barrage.invalid"]);
        assert!(names.iter().all(|n| n.ipaddress().is_none()), "no address");
    }
}
