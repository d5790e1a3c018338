//! `kbin.lock`: the digests one cluster trusts, next to its cluster file.
//!
//! Once an entry is recorded it is the law for that cluster: downloads from any mirror, cache hits
//! and bundles are all checked against it. Entries come from `kbin pin`, from an upstream
//! checksum file verified over HTTPS, or from a bundle being loaded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Arch, ArtifactError, Result, Sha256};

pub const FILE_NAME: &str = "kbin.lock";

const HEADER: &str = "# kbin.lock: the SHA-256 digests this cluster trusts, one [[artifact]] per component, version\n\
# and architecture. kbin checks every download, cache hit and bundle against these; an entry here\n\
# wins over kbin's built-in catalog. Written by `kbin pin`, `kbin download` and `kbin bundle load`;\n\
# safe to edit by hand. Keep it under version control next to cluster.toml.\n";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub component: String,
    pub version: String,
    pub arch: Arch,
    pub sha256: Sha256,
    /// How the digest was obtained (`kbin pin`, the checksum file URL, a bundle).
    #[serde(default)]
    pub source: String,
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
    pub fn set(&mut self, entry: Entry) -> Option<Sha256> {
        let old = match self.entries.iter_mut().find(|e| e.component == entry.component && e.version == entry.version && e.arch == entry.arch) {
            Some(e) => {
                let old = e.sha256;
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
        Entry { component: c.into(), version: v.into(), arch: Arch::Amd64, sha256: Sha256([d; 32]), source: "test".into() }
    }

    #[test]
    fn lock_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = Lock::path_in(dir.path());
        let mut lock = Lock::load(&path).unwrap();
        assert!(lock.entries.is_empty());
        assert_eq!(lock.set(entry("etcd", "v3.5.1", 1)), None);
        lock.set(entry("crictl", "v1.34.0", 2));
        assert_eq!(lock.set(entry("etcd", "v3.5.1", 3)), Some(Sha256([1; 32])));
        lock.save().unwrap();
        let back = Lock::load(&path).unwrap();
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.entries[0].component, "crictl", "entries are sorted");
        assert_eq!(back.get("etcd", "v3.5.1", Arch::Amd64).unwrap().sha256, Sha256([3; 32]));
        assert!(back.get("etcd", "v3.5.1", Arch::Arm64).is_none());
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
