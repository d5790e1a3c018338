//! The content-addressed artifact cache, shared by all clusters of a user.
//!
//! Layout under the cache root (`$KBIN_CACHE_DIR`, else `$XDG_CACHE_HOME/kbin`):
//! `sha256/<hex>` holds verified files, named by their SHA-256; `sha512/<hex>` is a one-line
//! alias naming the `sha256/` file that matched that SHA-512 (for artifacts trusted by a SHA-512:
//! a hint where to look, never trusted, since the file is re-hashed with SHA-512 on every use);
//! `partial/<key>.partial` is a download in progress (kept for resuming) and `partial/<key>.lock`
//! serialises kbin processes fetching the same file (`<key>` is the SHA-256 hex, or
//! `sha512-<hex>`); `tmp/` holds staging areas (bundle loads). A file only ever enters `sha256/`
//! by an atomic rename after its digest was checked.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{ArtifactError, Digest, Hasher, Result, Sha256, Sha512};

#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// Holds the per-digest lock file locked; released on drop.
#[derive(Debug)]
pub struct DigestLock {
    _file: File,
}

/// SHA-256 of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> Result<Sha256> {
    let mut f = File::open(path).map_err(|e| ArtifactError::io("read", path, e))?;
    hash_reader(&mut f).map_err(|e| ArtifactError::io("read", path, e))
}

pub fn hash_reader(r: &mut impl Read) -> std::io::Result<Sha256> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(Sha256::from_ring(ctx.finish()))
}

/// The digest of a file in `like`'s algorithm, read in 1 MiB blocks.
pub fn digest_file(path: &Path, like: &Digest) -> Result<Digest> {
    let mut f = File::open(path).map_err(|e| ArtifactError::io("read", path, e))?;
    let mut h = Hasher::new(like, false);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ArtifactError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().like(like))
}

impl Cache {
    /// `$KBIN_CACHE_DIR`, else the user's cache directory + `kbin`.
    pub fn default_root() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("KBIN_CACHE_DIR").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(d));
        }
        dirs::cache_dir().map(|d| d.join("kbin"))
    }

    /// Open (and create) a cache rooted at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        for sub in ["sha256", "sha512", "partial", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| ArtifactError::io("create", &d, e))?;
        }
        Ok(Cache { root: root.to_path_buf() })
    }

    pub fn blob_path(&self, d: &Sha256) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }
    /// Where a download checked against `d` streams to (kept between runs for resuming).
    pub fn partial_path(&self, d: impl Into<Digest>) -> PathBuf {
        self.root.join("partial").join(format!("{}.partial", d.into().key()))
    }
    /// The alias file naming the cached file that matched the SHA-512 `d`.
    pub fn alias_path(&self, d: &Sha512) -> PathBuf {
        self.root.join("sha512").join(d.hex())
    }

    /// Lock the digest against other kbin processes (blocks until they are done with it).
    pub fn lock(&self, d: impl Into<Digest>) -> Result<DigestLock> {
        self.lock_named(&d.into().key())
    }

    /// Lock `name` (a digest key, or another job on one artifact such as `extract-<key>`)
    /// against other kbin processes and threads; blocks until they are done with it.
    pub fn lock_named(&self, name: &str) -> Result<DigestLock> {
        let p = self.root.join("partial").join(format!("{name}.lock"));
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&p).map_err(|e| ArtifactError::io("create", &p, e))?;
        f.lock().map_err(|e| ArtifactError::io("lock", &p, e))?;
        Ok(DigestLock { _file: f })
    }

    /// The cached file matching `d` and its SHA-256 (its address), re-hashed with `d`'s
    /// algorithm before it is handed out. A cached file that no longer matches its name (disk
    /// damage, tampering) is removed, an alias pointing at a file that does not match the SHA-512
    /// is dropped, and `None` returned.
    pub fn verified(&self, d: impl Into<Digest>) -> Result<Option<(PathBuf, Sha256)>> {
        let d = d.into();
        let Some((p, sha256)) = self.lookup(&d) else {
            return Ok(None);
        };
        if digest_file(&p, &d)? == d {
            return Ok(Some((p, sha256)));
        }
        self.forget(&d)?;
        Ok(None)
    }

    /// The cached file for `d` and its SHA-256, if present (not re-hashed: the caller checks it,
    /// as verify-and-extract does while it decompresses).
    pub fn lookup(&self, d: &Digest) -> Option<(PathBuf, Sha256)> {
        let sha256 = match d {
            Digest::Sha256(s) => *s,
            Digest::Sha512(s) => Sha256::parse(&fs::read_to_string(self.alias_path(s)).ok()?)?,
        };
        let p = self.blob_path(&sha256);
        p.exists().then_some((p, sha256))
    }

    /// Drop what the cache holds for `d` after it failed a check: the file itself for a SHA-256
    /// (its name is its content), only the alias for a SHA-512 (the file may be fine for the
    /// SHA-256 it is named by; if not, its own next check removes it).
    pub fn forget(&self, d: &Digest) -> Result<()> {
        let p = match d {
            Digest::Sha256(s) => self.blob_path(s),
            Digest::Sha512(s) => self.alias_path(s),
        };
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ArtifactError::io("remove", &p, e)),
            _ => Ok(()),
        }
    }

    /// Whether a file for `d` is present (not re-hashed).
    pub fn contains(&self, d: &Sha256) -> bool {
        self.blob_path(d).exists()
    }

    /// Record that the cached file `sha256` matched the SHA-512 `d` (written atomically).
    pub fn alias(&self, d: &Sha512, sha256: &Sha256) -> Result<()> {
        let p = self.alias_path(d);
        crate::fsutil::write_atomic(&p, format!("{}\n", sha256.hex()).as_bytes(), 0o644).map_err(|e| ArtifactError::io("write", &p, e))
    }

    /// Move a file whose digest was just checked into the cache (same file system: atomic).
    pub fn insert(&self, verified_file: &Path, d: &Sha256) -> Result<PathBuf> {
        let dest = self.blob_path(d);
        let _ = fs::set_permissions(verified_file, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        fs::rename(verified_file, &dest).map_err(|e| ArtifactError::io("move into the cache", &dest, e))?;
        if let Ok(dir) = File::open(self.root.join("sha256")) {
            let _ = dir.sync_all();
        }
        Ok(dest)
    }

    /// A fresh staging directory inside the cache (removed on drop).
    pub fn staging(&self) -> Result<tempfile::TempDir> {
        let d = self.root.join("tmp");
        tempfile::Builder::new().prefix("stage-").tempdir_in(&d).map_err(|e| ArtifactError::io("create a staging directory in", &d, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_cache_entry_is_dropped_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let d = Sha256::of(b"hello");
        let tmp = dir.path().join("tmp/x");
        fs::write(&tmp, b"hello").unwrap();
        cache.insert(&tmp, &d).unwrap();
        assert_eq!(cache.verified(d).unwrap(), Some((cache.blob_path(&d), d)));
        fs::write(cache.blob_path(&d), b"hellO").unwrap();
        assert_eq!(cache.verified(d).unwrap(), None);
        assert!(!cache.blob_path(&d).exists());
    }

    #[test]
    fn sha512_alias_is_a_hint_rechecked_on_every_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let (d256, d512) = (Sha256::of(b"hello"), Sha512::of(b"hello"));
        assert_eq!(cache.verified(d512).unwrap(), None, "no alias yet");
        let tmp = dir.path().join("tmp/x");
        fs::write(&tmp, b"hello").unwrap();
        cache.insert(&tmp, &d256).unwrap();
        cache.alias(&d512, &d256).unwrap();
        assert_eq!(cache.verified(d512).unwrap(), Some((cache.blob_path(&d256), d256)));
        // an alias pointing at another file is dropped; the file stays for its own SHA-256
        let other = Sha512::of(b"other");
        cache.alias(&other, &d256).unwrap();
        assert_eq!(cache.verified(other).unwrap(), None);
        assert!(!cache.alias_path(&other).exists());
        assert_eq!(cache.verified(d256).unwrap(), Some((cache.blob_path(&d256), d256)));
        // a damaged file fails its SHA-512 check too
        fs::write(cache.blob_path(&d256), b"hellO").unwrap();
        assert_eq!(cache.verified(d512).unwrap(), None);
        assert!(!cache.alias_path(&d512).exists());
    }
}
