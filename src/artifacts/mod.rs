//! Release artifacts: the catalog of what kbin installs, the lock file of digests a cluster
//! trusts, verified downloads into a content-addressed cache, safe tarball extraction and
//! offline bundles.
//!
//! Trust flows one way: a digest comes from `kbin.lock` (the law for a cluster once recorded),
//! else from the catalog embedded in kbin, else from the upstream checksum file fetched over
//! HTTPS from the official origin (and then recorded in the lock). Mirrors only ever provide
//! bytes, which are checked against that digest before they enter the cache. A trusted digest is
//! a SHA-256 or a SHA-512 (what upstream published); the cache is addressed by SHA-256 either way.

pub mod bundle;
pub mod cache;
pub mod catalog;
pub mod digest;
pub mod download;
pub mod extract;
pub mod images;
pub mod lock;
pub mod ops;
pub mod progress;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use catalog::{Catalog, Component, Kind};
pub use digest::{Digest, Hasher, Hashes, Sha256, Sha512};
pub use lock::Lock;

/// The CPU architectures kbin installs for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
    pub fn parse(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the digest an artifact is checked against came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "detail")]
pub enum DigestSource {
    /// `kbin.lock` next to the cluster file.
    Lock,
    /// The catalog embedded in kbin; the detail names the published material.
    Catalog(String),
    /// The upstream checksum file at this URL, fetched now and recorded in the lock.
    Upstream(String),
}

impl fmt::Display for DigestSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestSource::Lock => f.write_str("kbin.lock"),
            DigestSource::Catalog(_) => f.write_str("catalog"),
            DigestSource::Upstream(u) => write!(f, "upstream checksum file {u}"),
        }
    }
}

/// Downloaded (or cached) bytes do not match the trusted digest.
#[derive(Debug, thiserror::Error)]
#[error("digest mismatch for {url}: expected {} {expected}, got {actual}", expected.algorithm())]
pub struct DigestMismatch {
    /// Where the bytes came from (a URL, or the cached file's path).
    pub url: String,
    pub expected: Digest,
    pub actual: Digest,
}

/// Two sources of trust disagree about one artifact's digest. `theirs` is in the algorithm of
/// `ours`, so the two can be compared by eye.
#[derive(Debug, thiserror::Error)]
#[error("{component} {version} ({arch}): {what} says {} {theirs}, but {ours_from} says {} {ours}", theirs.algorithm(), ours.algorithm())]
pub struct DigestConflict {
    pub component: String,
    pub version: String,
    pub arch: Arch,
    /// The newcomer (a bundle).
    pub what: String,
    pub theirs: Digest,
    /// What kbin already trusted (the catalog, kbin.lock).
    pub ours_from: String,
    pub ours: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("unknown component {name:?}")]
    UnknownComponent { name: String },
    #[error("no trusted digest for {component} {version} ({arch})")]
    NoDigest {
        component: String,
        version: String,
        arch: Arch,
        reason: String,
        /// The archive the component can also be taken out of (`from` in the catalog).
        archive: Option<String>,
    },
    #[error("{url}: server answered {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: no data for {secs:.1}s, gave up after {attempts} attempt(s)")]
    Timeout { url: String, secs: f64, attempts: u32 },
    #[error("{url}: {message}")]
    Network { url: String, message: String, attempts: u32 },
    #[error("{url}: the body is larger than {} MiB, the most kbin accepts for this artifact", limit >> 20)]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: body ended after {got} of {expected} bytes, gave up after {attempts} attempt(s)")]
    Truncated { url: String, got: u64, expected: u64, attempts: u32 },
    #[error("{0}")]
    Mismatch(Box<DigestMismatch>),
    #[error("checksum file {url} has no usable digest for {file}")]
    ChecksumFile { url: String, file: String },
    #[error("refusing to fetch a checksum file over plain HTTP: {url}")]
    InsecureChecksum { url: String },
    #[error("{path}:{line}: {message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    LockSyntax { path: PathBuf, line: Option<usize>, message: String },
    #[error("cannot {action} {path}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unsafe archive {archive}: member {member:?} {reason}", archive = archive.display())]
    UnsafeArchive { archive: PathBuf, member: String, reason: String },
    #[error("archive {archive} lacks member {member:?}", archive = archive.display())]
    MissingMember { archive: PathBuf, member: String },
    #[error("bundle {path}: {message}", path = path.display())]
    Bundle { path: PathBuf, message: String },
    #[error("bundle {path}: {member} does not match its digest: expected sha256 {expected}, got {actual}", path = path.display())]
    BundleMismatch { path: PathBuf, member: String, expected: Sha256, actual: Sha256 },
    #[error("{0}")]
    Conflict(Box<DigestConflict>),
    #[error("images.{key}: {message}")]
    Image { key: String, message: String },
    #[error("{0}")]
    BadArgument(String),
}

impl ArtifactError {
    pub(crate) fn mismatch(url: impl Into<String>, expected: Digest, actual: Digest) -> Self {
        ArtifactError::Mismatch(Box::new(DigestMismatch { url: url.into(), expected, actual }))
    }
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArtifactError::Io { action, path: path.into(), source }
    }
}

impl crate::exit::Reportable for ArtifactError {
    fn hint(&self) -> Option<String> {
        use ArtifactError::*;
        Some(match self {
            UnknownComponent { .. } => format!("known components: {}", catalog::Catalog::embedded().names().join(", ")),
            NoDigest { component, version, reason, archive, .. } => {
                let mut h = format!("{reason}; if you have verified the file yourself, pin it: kbin pin {component} {version} <sha256>");
                if let Some(a) = archive {
                    h.push_str(&format!(" (or pin the archive {component} is taken out of: kbin pin {a} {version} <sha256 or sha512>)"));
                }
                h
            }
            Http { status: 404, .. } => "the file is not there: check the version, and the mirror's layout (see docs/artifacts.md)".into(),
            Http { .. } => "the server refused the download; try again later or use another mirror (--mirror URL)".into(),
            Timeout { .. } | Network { .. } | Truncated { .. } => {
                "check the network, proxy settings (HTTPS_PROXY) and the mirror URL; run again to resume the download".into()
            }
            TooLarge { .. } => "the mirror serves something else than the release file (or the catalog's max_mib is too small for it); nothing was cached: check the mirror".into(),
            Mismatch(_) => "nothing was cached; the server sent other bytes than the trusted digest: check the mirror's copy, or if the release was re-published upstream, verify it and pin the new digest with kbin pin".into(),
            ChecksumFile { .. } => "the upstream checksum file does not list this artifact; verify it yourself and pin it with kbin pin".into(),
            InsecureChecksum { .. } => "checksum files are only trusted over HTTPS from the official origin; pin the digest with kbin pin instead".into(),
            LockSyntax { .. } => "fix kbin.lock at that line, or delete the entry and run kbin pin / kbin download again".into(),
            Io { .. } => "check that the path exists and is writable (the cache is under $XDG_CACHE_HOME/kbin, or KBIN_CACHE_DIR)".into(),
            UnsafeArchive { .. } => "kbin refuses archives that could write outside their target; the file was not extracted".into(),
            MissingMember { .. } => "the archive is not laid out like the upstream release; check where it came from".into(),
            Bundle { .. } => "make the bundle again with kbin bundle create on a machine that has the artifacts".into(),
            BundleMismatch { .. } => "the bundle was altered or damaged in transit; nothing was added to the cache; copy it again".into(),
            Conflict(_) => "one of the two is wrong: check which digest is right and fix kbin.lock (kbin pin replaces an entry)".into(),
            Image { key, .. } => format!("check images.{key} in the cluster file: ref must be the reference the archive holds, sha256 the archive file's digest (sha256sum FILE); load a bundle that carries it with kbin bundle load, or give url or file"),
            BadArgument(_) => return None,
        })
    }
    fn exit(&self) -> crate::exit::Exit {
        match self {
            ArtifactError::UnknownComponent { .. } | ArtifactError::LockSyntax { .. } | ArtifactError::BadArgument(_) => {
                crate::exit::Exit::BadConfig
            }
            _ => crate::exit::Exit::Failure,
        }
    }
}

pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// Why `v` is not a release tag `vMAJOR.MINOR.PATCH[-pre][+build]` (semver's characters only:
/// versions land in URLs, file names and template variables).
pub fn version_problem(v: &str) -> Option<String> {
    let Some(rest) = v.strip_prefix('v') else { return Some("does not start with 'v'".into()) };
    let (core, tail) = match rest.find(['-', '+']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Some("is not vMAJOR.MINOR.PATCH".into());
    }
    let suffix = tail.get(1..).unwrap_or_default();
    if !tail.is_empty() && (tail.len() > 64 || suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))) {
        return Some("has a suffix other than semver's -pre.release or +build (letters, digits, '.', '-')".into());
    }
    None
}
