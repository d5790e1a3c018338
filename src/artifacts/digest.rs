//! Trusted digests of either algorithm kbin accepts: SHA-256 (most upstreams, `kbin pin`, the
//! cache's content address) and SHA-512 (what the Kubernetes release notes publish for the
//! release tarballs), and a hasher that computes the ones a check needs in one pass.

use std::fmt;

use serde::{Deserialize, Serialize};


/// A digest type: `$name(pub [u8; $len])`, parsed from hex (with an optional `$prefix:`),
/// shown and serialized as lowercase hex.
macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident, $len:literal, $prefix:literal, $ring:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            #[doc = concat!("Parse ", stringify!($len), " bytes of hex digits (an optional `", $prefix, ":` prefix is accepted).")]
            pub fn parse(s: &str) -> Option<$name> {
                let s = s.trim();
                let s = s.strip_prefix(concat!($prefix, ":")).unwrap_or(s);
                if s.len() != 2 * $len {
                    return None;
                }
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.to_ascii_lowercase(), &mut out).ok()?;
                Some($name(out))
            }
            pub fn hex(&self) -> String {
                hex::encode(self.0)
            }
            pub fn of(bytes: &[u8]) -> $name {
                $name::from_ring(ring::digest::digest(&ring::digest::$ring, bytes))
            }
            pub(crate) fn from_ring(d: ring::digest::Digest) -> $name {
                let mut out = [0u8; $len];
                out.copy_from_slice(d.as_ref());
                $name(out)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::custom(format!(concat!("{:?} is not a ", $what, " digest ({} hex digits)"), s, 2 * $len)))
            }
        }
    };
}

digest_type!(
    /// A SHA-256 digest.
    Sha256, 32, "sha256", SHA256, "SHA-256"
);
digest_type!(
    /// A SHA-512 digest.
    Sha512, 64, "sha512", SHA512, "SHA-512"
);

/// A digest kbin trusts for a file, in the algorithm it was published with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Digest {
    /// Parse `sha256:<64 hex>`, `sha512:<128 hex>`, or bare hex digits (64 are SHA-256, 128 are
    /// SHA-512: the lengths cannot be confused).
    pub fn parse(s: &str) -> Option<Digest> {
        let s = s.trim();
        if let Some(h) = s.strip_prefix("sha256:") {
            return Sha256::parse(h).map(Digest::Sha256);
        }
        if let Some(h) = s.strip_prefix("sha512:") {
            return Sha512::parse(h).map(Digest::Sha512);
        }
        Sha256::parse(s).map(Digest::Sha256).or_else(|| Sha512::parse(s).map(Digest::Sha512))
    }
    /// `"sha256"` or `"sha512"`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Digest::Sha256(_) => "sha256",
            Digest::Sha512(_) => "sha512",
        }
    }
    pub fn hex(&self) -> String {
        match self {
            Digest::Sha256(d) => d.hex(),
            Digest::Sha512(d) => d.hex(),
        }
    }
    /// The SHA-256, when this is one.
    pub fn sha256(&self) -> Option<Sha256> {
        match self {
            Digest::Sha256(d) => Some(*d),
            Digest::Sha512(_) => None,
        }
    }
    /// The SHA-512, when this is one.
    pub fn sha512(&self) -> Option<Sha512> {
        match self {
            Digest::Sha512(d) => Some(*d),
            Digest::Sha256(_) => None,
        }
    }
    /// A file-name-safe key, distinct per algorithm: the bare hex for SHA-256 (the names the
    /// cache has always used), `sha512-<hex>` for SHA-512.
    pub fn key(&self) -> String {
        match self {
            Digest::Sha256(d) => d.hex(),
            Digest::Sha512(d) => format!("sha512-{}", d.hex()),
        }
    }
}

impl From<Sha256> for Digest {
    fn from(d: Sha256) -> Digest {
        Digest::Sha256(d)
    }
}
impl From<&Sha256> for Digest {
    fn from(d: &Sha256) -> Digest {
        Digest::Sha256(*d)
    }
}
impl From<Sha512> for Digest {
    fn from(d: Sha512) -> Digest {
        Digest::Sha512(d)
    }
}
impl From<&Sha512> for Digest {
    fn from(d: &Sha512) -> Digest {
        Digest::Sha512(*d)
    }
}
impl From<&Digest> for Digest {
    fn from(d: &Digest) -> Digest {
        *d
    }
}

/// The hex digits only: messages say the algorithm next to it ("expected sha512 016b…").
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(d) => write!(f, "{d:?}"),
            Digest::Sha512(d) => write!(f, "{d:?}"),
        }
    }
}

/// As `<algorithm>:<hex>` (JSON output, the catalog).
impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}:{}", self.algorithm(), self.hex()))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not a digest (sha256: and 64 hex digits, or sha512: and 128 hex digits)"))
        })
    }
}

/// Hashes a stream with the algorithms a check needs, in one pass.
#[derive(Clone)]
pub struct Hasher {
    sha256: Option<ring::digest::Context>,
    sha512: Option<ring::digest::Context>,
}

/// What a [`Hasher`] computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashes {
    pub sha256: Option<Sha256>,
    pub sha512: Option<Sha512>,
}

impl Hasher {
    /// A hasher for checking against `expected`; with `also_sha256`, it computes the SHA-256
    /// too (the cache's address for a file trusted by its SHA-512).
    pub fn new(expected: &Digest, also_sha256: bool) -> Hasher {
        let sha512 = matches!(expected, Digest::Sha512(_));
        Hasher::with(!sha512 || also_sha256, sha512)
    }
    /// A hasher computing the algorithms asked for.
    pub fn with(sha256: bool, sha512: bool) -> Hasher {
        Hasher {
            sha256: sha256.then(|| ring::digest::Context::new(&ring::digest::SHA256)),
            sha512: sha512.then(|| ring::digest::Context::new(&ring::digest::SHA512)),
        }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(c) = &mut self.sha256 {
            c.update(bytes);
        }
        if let Some(c) = &mut self.sha512 {
            c.update(bytes);
        }
    }
    pub fn finish(self) -> Hashes {
        Hashes { sha256: self.sha256.map(|c| Sha256::from_ring(c.finish())), sha512: self.sha512.map(|c| Sha512::from_ring(c.finish())) }
    }
}

impl Hashes {
    /// The computed digest in `expected`'s algorithm. A hasher made with [`Hasher::new`] for
    /// `expected` always computed it.
    pub fn like(&self, expected: &Digest) -> Digest {
        match expected {
            Digest::Sha256(_) => Digest::Sha256(self.sha256.expect("a hasher made for a SHA-256 computes it")),
            Digest::Sha512(_) => Digest::Sha512(self.sha512.expect("a hasher made for a SHA-512 computes it")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS 180-2 test vector: SHA-512("abc")
    const ABC512: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

    #[test]
    fn parses_both_algorithms_by_prefix_or_length() {
        let d = Digest::parse(ABC512).unwrap();
        assert_eq!(d, Digest::Sha512(Sha512::of(b"abc")));
        assert_eq!(Digest::parse(&format!("sha512:{}", ABC512.to_uppercase())), Some(d));
        let s = Sha256::of(b"abc");
        assert_eq!(Digest::parse(&s.hex()), Some(Digest::Sha256(s)));
        assert_eq!(Digest::parse(&format!("sha256:{}", s.hex())), Some(Digest::Sha256(s)));
        // a prefix must match the length
        assert_eq!(Digest::parse(&format!("sha256:{ABC512}")), None);
        assert_eq!(Digest::parse(&format!("sha512:{}", s.hex())), None);
        assert_eq!(Digest::parse(&"a".repeat(96)), None);
        assert_eq!(Digest::parse("xyz"), None);
    }

    #[test]
    fn keys_and_serialization_name_the_algorithm() {
        let s = Sha256::of(b"x");
        assert_eq!(Digest::from(s).key(), s.hex(), "SHA-256 keys are the cache's old names");
        assert_eq!(Digest::parse(ABC512).unwrap().key(), format!("sha512-{ABC512}"));
        assert_eq!(serde_json::to_string(&Digest::parse(ABC512).unwrap()).unwrap(), format!("\"sha512:{ABC512}\""));
        let back: Digest = serde_json::from_str(&format!("\"sha256:{}\"", s.hex())).unwrap();
        assert_eq!(back, Digest::Sha256(s));
    }

    #[test]
    fn hasher_computes_what_the_check_needs_in_one_pass() {
        let d512 = Digest::parse(ABC512).unwrap();
        let mut h = Hasher::new(&d512, true);
        h.update(b"a");
        h.update(b"bc");
        let got = h.finish();
        assert_eq!(got.like(&d512), d512);
        assert_eq!(got.sha256, Some(Sha256::of(b"abc")));
        let only512 = Hasher::new(&d512, false).finish();
        assert_eq!(only512.sha256, None);
        let d256 = Digest::from(Sha256::of(b"abc"));
        let mut h = Hasher::new(&d256, true);
        h.update(b"abc");
        let got = h.finish();
        assert_eq!((got.like(&d256), got.sha512), (d256, None));
    }
}
