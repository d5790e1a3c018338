//! `kbin.lock`: the digests one cluster trusts, next to its cluster file.
//!
//! Once an entry is recorded it is the law for that cluster: downloads from any mirror, cache hits
//! and bundles are all checked against it. Entries come from `kbin pin`, from an upstream
//! checksum file verified over HTTPS, or from a bundle being loaded. An entry holds the digest in
//! the algorithm it was trusted by: `sha256` (checksum files, bundles, `kbin pin` with 64 hex
//! digits) or `sha512` (`kbin pin` with 128 hex digits, e.g. from the Kubernetes release notes).
//! Files written before SHA-512 existed read the same.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Arch, ArtifactError, Digest, Result, Sha256, Sha512};

pub const FILE_NAME: &str = "kbin.lock";

const HEADER: &str = "# kbin.lock: the digests (sha256 or sha512) this cluster trusts, one [[artifact]] per component, version\n\
# and architecture. kbin checks every download, cache hit and bundle against these; an entry here\n\
# wins over kbin's built-in catalog. Written by `kbin pin`, `kbin download` and `kbin bundle load`;\n\
# safe to edit by hand. Keep it under version control next to cluster.toml.\n";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawEntry", into = "RawEntry")]
pub struct Entry {
    pub component: String,
    pub version: String,
    pub arch: Arch,
    /// The trusted digest: `sha256 = "…"` or `sha512 = "…"` in the file.
    pub digest: Digest,
    /// How the digest was obtained (`kbin pin`, the checksum file URL, a bundle).
    pub source: String,
}

/// An entry as written in the file: exactly one of `sha256` and `sha512`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    component: String,
    version: String,
    arch: Arch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<Sha256>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha512: Option<Sha512>,
    #[serde(default)]
    source: String,
}

impl TryFrom<RawEntry> for Entry {
    type Error = String;
    fn try_from(r: RawEntry) -> std::result::Result<Entry, String> {
        let digest = match (r.sha256, r.sha512) {
            (Some(d), None) => Digest::Sha256(d),
            (None, Some(d)) => Digest::Sha512(d),
            (None, None) => return Err(format!("{} {} ({}) has no digest: add sha256 = \"<64 hex digits>\" or sha512 = \"<128 hex digits>\"", r.component, r.version, r.arch)),
            (Some(_), Some(_)) => return Err(format!("{} {} ({}) has both sha256 and sha512: keep the one you trust", r.component, r.version, r.arch)),
        };
        Ok(Entry { component: r.component, version: r.version, arch: r.arch, digest, source: r.source })
    }
}

impl From<Entry> for RawEntry {
    fn from(e: Entry) -> RawEntry {
        RawEntry { component: e.component, version: e.version, arch: e.arch, sha256: e.digest.sha256(), sha512: e.digest.sha512(), source: e.source }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "artifact")]
    artifacts: Vec<Entry>,
}

#[derive(Debug, Clone, Default)]
pub struct Lock {
    /// Where the lock lives (it may not exist yet).
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

impl Lock {
    /// `kbin.lock` in `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Read the lock at `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock { path: path.to_path_buf(), entries: Vec::new() }),
            Err(e) => return Err(ArtifactError::io("read", path, e)),
        };
        Lock::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Lock> {
        let file: File = toml::from_str(text).map_err(|e| ArtifactError::LockSyntax {
            path: path.to_path_buf(),
            line: e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().trim().to_string(),
        })?;
        let mut lock = Lock { path: path.to_path_buf(), entries: Vec::new() };
        for e in file.artifacts {
            if lock.get(&e.component, &e.version, e.arch).is_some() {
                return Err(ArtifactError::LockSyntax {
                    path: path.to_path_buf(),
                    line: None,
                    message: format!("{} {} ({}) is listed twice", e.component, e.version, e.arch),
                });
            }
            lock.entries.push(e);
        }
        Ok(lock)
    }

    pub fn get(&self, component: &str, version: &str, arch: Arch) -> Option<&Entry> {
        self.entries.iter().find(|e| e.component == component && e.version == version && e.arch == arch)
    }

    /// Record an entry, replacing one for the same artifact. Returns the digest it replaced.
    pub fn set(&mut self, entry: Entry) -> Option<Digest> {
        let old = match self.entries.iter_mut().find(|e| e.component == entry.component && e.version == entry.version && e.arch == entry.arch) {
            Some(e) => {
                let old = e.digest;
                *e = entry;
                Some(old)
            }
            None => {
                self.entries.push(entry);
                None
            }
        };
        self.entries.sort_by(|a, b| (&a.component, &a.version, a.arch).cmp(&(&b.component, &b.version, b.arch)));
        old
    }

    pub fn render(&self) -> String {
        let body = toml::to_string_pretty(&File { artifacts: self.entries.clone() }).expect("lock entries serialize");
        format!("{HEADER}\n{body}")
    }

    /// Write the lock atomically (never half-written).
    pub fn save(&self) -> Result<()> {
        crate::fsutil::write_atomic(&self.path, self.render().as_bytes(), 0o644).map_err(|e| ArtifactError::io("write", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(c: &str, v: &str, d: u8) -> Entry {
        Entry { component: c.into(), version: v.into(), arch: Arch::Amd64, digest: Digest::Sha256(Sha256([d; 32])), source: "test".into() }
    }

    #[test]
    fn lock_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = Lock::path_in(dir.path());
        let mut lock = Lock::load(&path).unwrap();
        assert!(lock.entries.is_empty());
        assert_eq!(lock.set(entry("etcd", "v3.5.1", 1)), None);
        lock.set(entry("crictl", "v1.34.0", 2));
        assert_eq!(lock.set(entry("etcd", "v3.5.1", 3)), Some(Digest::Sha256(Sha256([1; 32]))));
        lock.save().unwrap();
        let back = Lock::load(&path).unwrap();
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.entries[0].component, "crictl", "entries are sorted");
        assert_eq!(back.get("etcd", "v3.5.1", Arch::Amd64).unwrap().digest, Digest::Sha256(Sha256([3; 32])));
        assert!(back.get("etcd", "v3.5.1", Arch::Arm64).is_none());
    }

    #[test]
    fn sha512_entries_round_trip_and_old_files_read_the_same() {
        // a lock written before SHA-512 existed
        let old = "[[artifact]]\ncomponent = \"etcd\"\nversion = \"v3.5.1\"\narch = \"amd64\"\nsha256 = \"".to_string() + &"ab".repeat(32) + "\"\nsource = \"kbin pin\"\n";
        let lock = Lock::parse(Path::new("kbin.lock"), &old).unwrap();
        assert_eq!(lock.entries[0].digest, Digest::Sha256(Sha256([0xab; 32])));
        assert!(lock.render().ends_with(&old), "rendered the same way: {}", lock.render());

        let mut lock = Lock::default();
        lock.set(Entry { component: "kubernetes-server".into(), version: "v1.34.3".into(), arch: Arch::Arm64, digest: Digest::Sha512(Sha512([7; 64])), source: "kbin pin".into() });
        let text = lock.render();
        assert!(text.contains(&format!("sha512 = \"{}\"", "07".repeat(64))) && !text.contains("sha256 ="), "{text}");
        let back = Lock::parse(Path::new("kbin.lock"), &text).unwrap();
        assert_eq!(back.entries, lock.entries);
    }

    #[test]
    fn entry_needs_exactly_one_digest() {
        let base = "[[artifact]]\ncomponent = \"etcd\"\nversion = \"v3.5.1\"\narch = \"amd64\"\n";
        let none = Lock::parse(Path::new("kbin.lock"), base).unwrap_err().to_string();
        assert!(none.starts_with("kbin.lock:1:") && none.contains("etcd v3.5.1 (amd64) has no digest"), "{none}");
        let both = format!("{base}sha256 = \"{}\"\nsha512 = \"{}\"\n", "a".repeat(64), "b".repeat(128));
        let e = Lock::parse(Path::new("kbin.lock"), &both).unwrap_err().to_string();
        assert!(e.contains("has both sha256 and sha512"), "{e}");
    }

    #[test]
    fn bad_digest_in_lock_names_the_line() {
        let text = "[[artifact]]\ncomponent = \"etcd\"\nversion = \"v3.5.1\"\narch = \"amd64\"\nsha256 = \"abc\"\n";
        let err = Lock::parse(Path::new("kbin.lock"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("kbin.lock:5:"), "{msg}");
        assert!(msg.contains("not a SHA-256 digest"), "{msg}");
    }
}
