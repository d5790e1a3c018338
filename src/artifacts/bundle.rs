//! Offline bundles: one tar file with every artifact a cluster needs plus the lock listing their
//! digests, for operators without internet.
//!
//! Layout: `kbin.lock` first (every bundled artifact with its SHA-256), then
//! `artifacts/<sha256>` for each file. `load` stages every file, checks each digest (and that it
//! agrees with kbin's catalog and the cluster's own lock, hashing with SHA-512 too where either
//! trusts the artifact by a SHA-512) and only then moves them into the cache: a bundle with one
//! altered byte adds nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::cache::Cache;
use super::catalog::Catalog;
use super::lock::{Entry, Lock};
use super::ops::Fetched;
use super::{ArtifactError, Digest, DigestSource, Hasher, Hashes, Result, Sha256};

const LOCK_MEMBER: &str = "kbin.lock";
const BLOB_DIR: &str = "artifacts/";

fn bundle_err(path: &Path, message: impl Into<String>) -> ArtifactError {
    ArtifactError::Bundle { path: path.to_path_buf(), message: message.into() }
}

/// The lock entry a bundle lists an image archive under: `image:<key>`, its reference as the
/// version. Image entries are never copied into a cluster's kbin.lock: the cluster file's
/// `[images]` holds their digests.
pub const IMAGE_PREFIX: &str = "image:";

/// Write a bundle of `fetched` and `images` (already in the cache) to `out`, atomically.
pub fn create(out: &Path, fetched: &[Fetched], images: &[super::images::Archive], arch: super::Arch) -> Result<()> {
    let mut lock = Lock { path: PathBuf::from(LOCK_MEMBER), entries: Vec::new() };
    for f in fetched {
        let source = match &f.digest_source {
            DigestSource::Lock => "kbin.lock".to_string(),
            DigestSource::Catalog(s) => format!("kbin catalog: {s}"),
            DigestSource::Upstream(u) => u.clone(),
        };
        let source = match f.digest {
            Digest::Sha512(_) => format!("{source} (checked against its sha512)"),
            Digest::Sha256(_) => source,
        };
        lock.set(Entry { component: f.component.clone(), version: f.version.clone(), arch: f.arch, digest: Digest::Sha256(f.sha256), source });
    }
    for i in images {
        lock.set(Entry { component: format!("{IMAGE_PREFIX}{}", i.key), version: i.reference.clone(), arch, digest: Digest::Sha256(i.sha256), source: format!("cluster file images.{}", i.key) });
    }
    let blobs: Vec<(Sha256, &Path)> = fetched.iter().map(|f| (f.sha256, f.path.as_path())).chain(images.iter().map(|i| (i.sha256, i.path.as_path()))).collect();
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().ok_or_else(|| bundle_err(out, "is not a file name"))?.to_string_lossy().to_string();
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp).map_err(|e| ArtifactError::io("create", &tmp, e))?;
        let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file));
        let io_err = |e| ArtifactError::io("write", &tmp, e);
        let text = lock.render();
        let mut h = tar::Header::new_ustar();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, LOCK_MEMBER, text.as_bytes()).map_err(io_err)?;
        let mut done = std::collections::BTreeSet::new();
        for (sha256, path) in &blobs {
            if !done.insert(*sha256) {
                continue;
            }
            let mut src = File::open(path).map_err(|e| ArtifactError::io("read", path, e))?;
            let len = src.metadata().map_err(|e| ArtifactError::io("read", path, e))?.len();
            let mut h = tar::Header::new_ustar();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            tar.append_data(&mut h, format!("{BLOB_DIR}{}", sha256.hex()), &mut src).map_err(io_err)?;
        }
        let mut w = tar.into_inner().map_err(io_err)?;
        w.flush().map_err(io_err)?;
        w.get_ref().sync_all().map_err(io_err)?;
        drop(w);
        fs::rename(&tmp, out).map_err(|e| ArtifactError::io("write", out, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `e` (a bundle entry, by SHA-256) disagrees with `ours`; `theirs` is the bundled file's digest
/// in `ours`'s algorithm.
fn conflict(e: &Entry, bundle: &Path, ours_from: String, theirs: Digest, ours: Digest) -> ArtifactError {
    ArtifactError::Conflict(Box::new(super::DigestConflict {
        component: e.component.clone(),
        version: e.version.clone(),
        arch: e.arch,
        what: format!("bundle {}", bundle.display()),
        theirs,
        ours_from,
        ours,
    }))
}

/// What a bundle held.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Loaded {
    pub entries: Vec<Entry>,
    /// Entries that were new to the cluster's lock.
    pub added_to_lock: usize,
}

/// The digest kbin already trusts for `e`, as a deploy would: the cluster lock's entry (the law
/// for that cluster, even where it pins another build than the catalog), else the catalog's pin.
fn trusted(e: &Entry, catalog: &Catalog, cluster: Option<&Lock>) -> Result<Vec<(String, Digest)>> {
    if e.component.starts_with(IMAGE_PREFIX) {
        // checked against the cluster file's [images] when a deploy uses it
        return Ok(Vec::new());
    }
    let comp = catalog.component(&e.component)?;
    if let Some(ours) = cluster.and_then(|cl| cl.get(&e.component, &e.version, e.arch).map(|o| (cl, o))) {
        return Ok(vec![(ours.0.path.display().to_string(), ours.1.digest)]);
    }
    Ok(comp.pinned(&e.version, e.arch).map(|(d, _)| ("kbin's catalog".to_string(), d)).into_iter().collect())
}

/// A bundled file, staged and hashed.
struct Staged {
    sha256: Sha256,
    hashes: Hashes,
    path: PathBuf,
}

/// Verify every file of the bundle at `path` and add them to `cache`. With `cluster_lock`,
/// the bundle's digests must agree with it, and entries it lacks are added to it.
pub fn load(path: &Path, cache: &Cache, catalog: &Catalog, cluster_lock: Option<&Path>) -> Result<Loaded> {
    let mut cluster = match cluster_lock {
        Some(p) => Some(Lock::load(p)?),
        None => None,
    };
    let file = File::open(path).map_err(|e| ArtifactError::io("read", path, e))?;
    let mut tar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, file));
    let staging = cache.staging()?;
    let mut lock: Option<Lock> = None;
    let mut staged: Vec<Staged> = Vec::new();
    let read_err = |e| ArtifactError::io("read", path, e);
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let name = entry.path().map_err(read_err)?.to_string_lossy().to_string();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bundle_err(path, format!("member {name:?} is not a regular file")));
        }
        if name == LOCK_MEMBER {
            let mut text = String::new();
            entry.take(1 << 20).read_to_string(&mut text).map_err(read_err)?;
            let l = Lock::parse(Path::new(LOCK_MEMBER), &text).map_err(|e| bundle_err(path, format!("its kbin.lock is invalid: {e}")))?;
            if let Some(e) = l.entries.iter().find(|e| e.digest.sha256().is_none()) {
                return Err(bundle_err(path, format!("its kbin.lock lists {} {} ({}) by {}: bundles list the sha256 their files are named by", e.component, e.version, e.arch, e.digest.algorithm())));
            }
            lock = Some(l);
            continue;
        }
        let Some(hex) = name.strip_prefix(BLOB_DIR) else {
            return Err(bundle_err(path, format!("unexpected member {name:?}")));
        };
        let Some(lock) = &lock else {
            return Err(bundle_err(path, "kbin.lock must come first"));
        };
        let expected = Sha256::parse(hex).filter(|d| d.hex() == hex).ok_or_else(|| bundle_err(path, format!("member {name:?} is not named by a digest")))?;
        let listed: Vec<&Entry> = lock.entries.iter().filter(|e| e.digest == Digest::Sha256(expected)).collect();
        if listed.is_empty() {
            return Err(bundle_err(path, format!("member {name:?} is not listed in its kbin.lock")));
        }
        // hash with SHA-512 too when the catalog or the cluster trusts the artifact by one
        let mut need_sha512 = false;
        for e in &listed {
            need_sha512 |= trusted(e, catalog, cluster.as_ref())?.iter().any(|(_, d)| d.sha512().is_some());
        }
        let out = staging.path().join(hex);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o644).open(&out).map_err(|e| ArtifactError::io("create", &out, e))?;
        let mut hasher = Hasher::with(true, need_sha512);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            f.write_all(&buf[..n]).map_err(|e| ArtifactError::io("write", &out, e))?;
        }
        let hashes = hasher.finish();
        let actual = hashes.sha256.expect("bundled files are hashed with SHA-256");
        if actual != expected {
            return Err(ArtifactError::BundleMismatch { path: path.to_path_buf(), member: name, expected, actual });
        }
        f.sync_all().map_err(|e| ArtifactError::io("sync", &out, e))?;
        staged.push(Staged { sha256: expected, hashes, path: out });
    }
    let lock = lock.ok_or_else(|| bundle_err(path, "it has no kbin.lock"))?;
    let mut added = 0;
    for e in &lock.entries {
        let Some(file) = staged.iter().find(|s| Digest::Sha256(s.sha256) == e.digest) else {
            return Err(bundle_err(path, format!("{} {} ({}) is listed but its file is missing", e.component, e.version, e.arch)));
        };
        // the bundle must agree with what kbin already trusts
        let trust = trusted(e, catalog, cluster.as_ref())?;
        for (from, ours) in &trust {
            let theirs = file.hashes.like(ours);
            if theirs != *ours {
                return Err(conflict(e, path, from.clone(), theirs, *ours));
            }
        }
        if let Some(cl) = &mut cluster
            && trust.is_empty()
            && !e.component.starts_with(IMAGE_PREFIX)
        {
            cl.set(e.clone());
            added += 1;
        }
    }
    // everything verified: move into the cache, then record the lock
    for s in &staged {
        let _guard = cache.lock(s.sha256)?;
        if !cache.contains(&s.sha256) {
            cache.insert(&s.path, &s.sha256)?;
        }
        if let Some(d512) = &s.hashes.sha512 {
            cache.alias(d512, &s.sha256)?;
        }
    }
    if let Some(cl) = &cluster
        && added > 0
    {
        cl.save()?;
    }
    Ok(Loaded { entries: lock.entries, added_to_lock: added })
}
