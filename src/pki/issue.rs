//! The one generic function that turns a planned [`Instance`] into a signed certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use super::plan::{Instance, Kind, San};

/// How far in the past `notBefore` is set, so hosts with a slightly slow clock accept new certs.
pub const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub now: OffsetDateTime,
    pub ca_days: u32,
    pub leaf_days: u32,
}

/// The last instant an X.509 time can hold (GeneralizedTime has four year digits, RFC 5280).
pub fn latest_not_after() -> OffsetDateTime {
    time::Date::from_calendar_date(9999, time::Month::December, 31)
        .and_then(|d| d.with_hms(23, 59, 59))
        .expect("a valid date")
        .assume_utc()
}

impl Validity {
    /// Validity periods starting at `now`, refused (with the reason) when one would end after
    /// the year 9999, which no certificate can express.
    pub fn new(now: OffsetDateTime, ca_days: u32, leaf_days: u32) -> Result<Validity, String> {
        for (what, days) in [("ca_validity_days", ca_days), ("leaf_validity_days", leaf_days)] {
            let end = now.checked_add(Duration::days(days as i64));
            if end.is_none_or(|e| e > latest_not_after()) {
                return Err(format!("pki.{what} = {days} ends after 9999-12-31, the last date a certificate can hold"));
            }
        }
        Ok(Validity { now, ca_days, leaf_days })
    }
}

/// A positive 127-bit random serial number.
pub fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).expect("system CSPRNG");
    b[0] = (b[0] & 0x7f) | 0x40; // positive, and no leading zero byte to strip
    SerialNumber::from_slice(&b)
}

fn params(inst: &Instance<'_>, v: Validity, rsa: bool, ca_not_after: Option<OffsetDateTime>) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for o in &inst.o {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, inst.cn.as_str());
    p.distinguished_name = dn;
    p.serial_number = Some(random_serial());
    p.not_before = v.now - BACKDATE;
    match &inst.kind {
        Kind::Ca(_) => {
            p.not_after = v.now + Duration::days(v.ca_days as i64);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        }
        Kind::Leaf(row) => {
            let mut not_after = v.now + Duration::days(v.leaf_days as i64);
            if let Some(ca_end) = ca_not_after {
                not_after = not_after.min(ca_end); // never outlive the CA
            }
            p.not_after = not_after;
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            if rsa {
                p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
            }
            if row.usage.server() {
                p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
            }
            if row.usage.client() {
                p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
            }
            p.use_authority_key_identifier_extension = true;
            for s in &inst.sans {
                p.subject_alt_names.push(match s {
                    San::Ip(ip) => SanType::IpAddress(*ip),
                    San::Dns(d) => SanType::DnsName(d.clone().try_into()?),
                });
            }
        }
    }
    Ok(p)
}

fn is_rsa(key: &KeyPair) -> bool {
    key.algorithm() == &rcgen::PKCS_RSA_SHA256
}

/// Self-sign a CA certificate for `key`.
pub fn issue_ca(inst: &Instance<'_>, key: &KeyPair, v: Validity) -> Result<String, rcgen::Error> {
    let p = params(inst, v, is_rsa(key), None)?;
    Ok(p.self_signed(key)?.pem())
}

/// Sign a leaf certificate for `key` with `issuer`.
pub fn issue_leaf(
    inst: &Instance<'_>,
    key: &KeyPair,
    issuer: &Issuer<'_, KeyPair>,
    ca_not_after: OffsetDateTime,
    v: Validity,
) -> Result<String, rcgen::Error> {
    let p = params(inst, v, is_rsa(key), Some(ca_not_after))?;
    Ok(p.signed_by(key, issuer)?.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ca_validity_days = 2913500` panicked (exit 101) while signing: a period ending after
    /// 9999-12-31 is an error naming the field.
    #[test]
    fn validity_ending_after_9999_is_an_error_not_a_panic() {
        let now = OffsetDateTime::now_utc();
        let e = Validity::new(now, 2_913_500, 365).unwrap_err();
        assert!(e.contains("pki.ca_validity_days = 2913500"), "{e}");
        assert!(Validity::new(now, 3650, u32::MAX).unwrap_err().contains("pki.leaf_validity_days"));
        let late = latest_not_after() - Duration::days(10);
        assert!(Validity::new(late, 11, 1).is_err() && Validity::new(late, 9, 1).is_ok());
    }
}
