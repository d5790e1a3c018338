//! The content-addressed artifact cache, shared by all clusters of a user.
//!
//! Layout under the cache root (`$KBIN_CACHE_DIR`, else `$XDG_CACHE_HOME/kbin`):
//! `sha256/<hex>` holds verified files, named by their digest; `partial/<hex>.partial` is a
//! download in progress (kept for resuming) and `partial/<hex>.lock` serialises kbin processes
//! fetching the same file; `tmp/` holds staging areas (bundle loads). A file only ever enters
//! `sha256/` by an atomic rename after its digest was checked.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{ArtifactError, Result, Sha256};

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
        for sub in ["sha256", "partial", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| ArtifactError::io("create", &d, e))?;
        }
        Ok(Cache { root: root.to_path_buf() })
    }

    pub fn blob_path(&self, d: &Sha256) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }
    pub fn partial_path(&self, d: &Sha256) -> PathBuf {
        self.root.join("partial").join(format!("{}.partial", d.hex()))
    }

    /// Lock the digest against other kbin processes (blocks until they are done with it).
    pub fn lock(&self, d: &Sha256) -> Result<DigestLock> {
        let p = self.root.join("partial").join(format!("{}.lock", d.hex()));
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&p).map_err(|e| ArtifactError::io("create", &p, e))?;
        f.lock().map_err(|e| ArtifactError::io("lock", &p, e))?;
        Ok(DigestLock { _file: f })
    }

    /// The cached file for `d`, re-hashed before it is handed out. A cached file that no longer
    /// matches its name (disk damage, tampering) is removed and `None` returned.
    pub fn verified(&self, d: &Sha256) -> Result<Option<PathBuf>> {
        let p = self.blob_path(d);
        if !p.exists() {
            return Ok(None);
        }
        if hash_file(&p)? == *d {
            Ok(Some(p))
        } else {
            fs::remove_file(&p).map_err(|e| ArtifactError::io("remove", &p, e))?;
            Ok(None)
        }
    }

    /// Whether a file for `d` is present (not re-hashed).
    pub fn contains(&self, d: &Sha256) -> bool {
        self.blob_path(d).exists()
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
        assert_eq!(cache.verified(&d).unwrap(), Some(cache.blob_path(&d)));
        fs::write(cache.blob_path(&d), b"hellO").unwrap();
        assert_eq!(cache.verified(&d).unwrap(), None);
        assert!(!cache.blob_path(&d).exists());
    }
}
