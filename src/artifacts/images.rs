//! Container images as artifacts: OCI image archives (or `docker save` archives) the cluster file
//! names with their SHA-256, fetched into the cache and verified like any release file, carried
//! in bundles, and read for the image references they hold before any node gets them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::Cache;
use super::download::{Fetcher, Outcome};
use super::progress::{Reporter, human_bytes};
use super::{ArtifactError, Digest, Result, Sha256};

/// The largest image archive kbin accepts (a mirror streaming more is cut off there).
pub const MAX_BYTES: u64 = 4 << 30;

/// Where an image archive comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "at")]
pub enum Source {
    /// Downloaded (http or https), checked against the digest.
    Url(String),
    /// A file on the operator's machine, checked against the digest.
    File(PathBuf),
    /// Only from the cache (a bundle loaded with `kbin bundle load`).
    Cache,
}

/// One `[images.<key>]` of the cluster file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spec {
    pub key: String,
    /// The image reference the archive holds, as written.
    pub reference: String,
    /// The archive file's SHA-256.
    pub sha256: Sha256,
    pub source: Source,
}

/// An image archive in the cache, verified, holding [`Spec::reference`].
#[derive(Debug, Clone, Serialize)]
pub struct Archive {
    pub key: String,
    /// The reference, normalized as containerd names it (`docker.io/library/busybox:1.35.0`).
    pub reference: String,
    pub sha256: Sha256,
    pub path: PathBuf,
    pub len: u64,
    pub outcome: Outcome,
}

/// What kbin learnt from an archive once it was verified (kept next to the cache entry, so an
/// unchanged run neither hashes nor reads the archive again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    len: u64,
    references: Vec<String>,
}

/// `reference` as containerd stores it: Docker Hub's implicit host and `library/` made explicit.
pub fn normalize(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or_default();
    let has_host = reference.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    match (has_host, reference.contains('/')) {
        (true, _) => reference.to_string(),
        (false, true) => format!("docker.io/{reference}"),
        (false, false) => format!("docker.io/library/{reference}"),
    }
}

fn image_err(key: &str, message: String) -> ArtifactError {
    ArtifactError::Image { key: key.to_string(), message }
}

/// The image references an archive names: an OCI layout's `index.json` (containerd's
/// `io.containerd.image.name` or a full `org.opencontainers.image.ref.name`) or a `docker save`
/// archive's `manifest.json` (`RepoTags`), normalized. Nothing is extracted.
pub fn references(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).map_err(|e| ArtifactError::io("read", path, e))?;
    let mut tar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, file));
    let bad = |m: String| ArtifactError::UnsafeArchive { archive: path.to_path_buf(), member: "index.json".into(), reason: m };
    let mut out = Vec::new();
    let mut layout = false;
    for entry in tar.entries().map_err(|e| ArtifactError::io("read", path, e))? {
        let mut entry = entry.map_err(|e| ArtifactError::io("read", path, e))?;
        let name = entry.path().map_err(|e| ArtifactError::io("read", path, e))?.to_string_lossy().trim_start_matches("./").to_string();
        if name != "index.json" && name != "manifest.json" {
            continue;
        }
        let mut text = String::new();
        entry.by_ref().take(1 << 20).read_to_string(&mut text).map_err(|e| bad(format!("is not readable text: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("{name} is not JSON: {e}")))?;
        if name == "index.json" {
            layout = true;
            for m in v["manifests"].as_array().into_iter().flatten() {
                let a = &m["annotations"];
                let named = a["io.containerd.image.name"].as_str().or(a["org.opencontainers.image.ref.name"].as_str().filter(|r| r.contains([':', '@'])));
                out.extend(named.map(normalize));
            }
        } else if !layout {
            for m in v.as_array().into_iter().flatten() {
                out.extend(m["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).map(normalize));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn record_path(cache: &Cache, d: &Sha256) -> PathBuf {
    cache.root.join("images").join(format!("{}.json", d.hex()))
}

/// Copy a local archive into the cache, hashing as it goes; refused unless it matches `d`.
fn insert_file(cache: &Cache, from: &Path, d: Sha256) -> Result<(PathBuf, Sha256)> {
    let mut src = File::open(from).map_err(|e| ArtifactError::io("read", from, e))?;
    let stage = cache.staging()?;
    let tmp = stage.path().join("image");
    let mut out = File::create(&tmp).map_err(|e| ArtifactError::io("write", &tmp, e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(|e| ArtifactError::io("read", from, e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| ArtifactError::io("write", &tmp, e))?;
    }
    let actual = Sha256::from_ring(ctx.finish());
    if actual != d {
        return Err(ArtifactError::mismatch(from.display().to_string(), Digest::Sha256(d), Digest::Sha256(actual)));
    }
    Ok((cache.insert(&tmp, &d)?, d))
}

/// Every image of `specs` in the cache, verified, each checked to hold its reference; fetched
/// or copied when missing. A cache entry verified before is taken as it is (its size checked):
/// an unchanged run reads nothing.
pub fn fetch(specs: &[Spec], cache_root: &Path, fetcher: &Fetcher, reporter: &Reporter) -> Result<Vec<Archive>> {
    let cache = Cache::open(cache_root)?;
    fs::create_dir_all(cache.root.join("images")).map_err(|e| ArtifactError::io("create", cache.root.join("images"), e))?;
    specs.iter().map(|s| fetch_one(&cache, s, fetcher, reporter)).collect()
}

fn fetch_one(cache: &Cache, s: &Spec, fetcher: &Fetcher, reporter: &Reporter) -> Result<Archive> {
    let label = format!("image {}", s.key);
    let reference = normalize(&s.reference);
    let known = fs::read(record_path(cache, &s.sha256)).ok().and_then(|b| serde_json::from_slice::<Record>(&b).ok());
    let blob = cache.blob_path(&s.sha256);
    if let Some(r) = known.filter(|r| fs::metadata(&blob).is_ok_and(|m| m.len() == r.len)) {
        if !r.references.contains(&reference) {
            return Err(image_err(&s.key, format!("the archive sha256 {} holds {}, not {}", s.sha256, list(&r.references), s.reference)));
        }
        reporter.line(&label, &format!("{} cached, sha256 {} verified before", s.reference, short(&s.sha256)));
        return Ok(Archive { key: s.key.clone(), reference, sha256: s.sha256, path: blob, len: r.len, outcome: Outcome::Cached });
    }
    let d = Digest::Sha256(s.sha256);
    let (path, outcome) = match &s.source {
        Source::Url(u) => {
            let bar = reporter.artifact(&label);
            let stored = fetcher.fetch_limited(u, d, MAX_BYTES, cache, &bar)?;
            bar.finish(&match stored.outcome {
                Outcome::Cached => format!("{} cached, sha256 {} ok", s.reference, short(&s.sha256)),
                Outcome::Downloaded { bytes, .. } => format!("{} {} from {}, sha256 {} ok", s.reference, human_bytes(bytes), crate::output::redact_url(u), short(&s.sha256)),
            });
            (stored.path, stored.outcome)
        }
        Source::File(f) => {
            let _guard = cache.lock(d)?;
            let (path, _) = match cache.verified(d)? {
                Some(hit) => hit,
                None => insert_file(cache, f, s.sha256)?,
            };
            reporter.line(&label, &format!("{} from {}, sha256 {} ok", s.reference, f.display(), short(&s.sha256)));
            (path, Outcome::Cached)
        }
        Source::Cache => match cache.verified(d)? {
            Some((path, _)) => (path, Outcome::Cached),
            None => {
                return Err(image_err(&s.key, format!("{} (sha256 {}) is not in the cache and images.{}.url names no place to get it", s.reference, s.sha256, s.key)));
            }
        },
    };
    let references = references(&path)?;
    if !references.contains(&reference) {
        return Err(image_err(&s.key, format!("the archive sha256 {} holds {}, not {}", s.sha256, list(&references), s.reference)));
    }
    let len = fs::metadata(&path).map_err(|e| ArtifactError::io("read", &path, e))?.len();
    let rec = serde_json::to_vec(&Record { len, references }).expect("serializable");
    let rp = record_path(cache, &s.sha256);
    crate::fsutil::write_atomic(&rp, &rec, 0o644).map_err(|e| ArtifactError::io("write", &rp, e))?;
    Ok(Archive { key: s.key.clone(), reference, sha256: s.sha256, path, len, outcome })
}

fn list(refs: &[String]) -> String {
    if refs.is_empty() { "no image reference kbin can read (no index.json naming one, no manifest.json with RepoTags)".into() } else { refs.join(", ") }
}

fn short(d: &Sha256) -> String {
    d.hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_containerd() {
        assert_eq!(normalize("busybox:1.35.0"), "docker.io/library/busybox:1.35.0");
        assert_eq!(normalize("team/web:1"), "docker.io/team/web:1");
        assert_eq!(normalize("registry.k8s.io/pause:3.10.1"), "registry.k8s.io/pause:3.10.1");
        assert_eq!(normalize("localhost/x:1"), "localhost/x:1");
        assert_eq!(normalize("10.0.0.5:5000/x:1"), "10.0.0.5:5000/x:1");
    }

    fn tar_with(files: &[(&str, &str)]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (name, text) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
        b.finish().unwrap();
        f
    }

    #[test]
    fn an_oci_layout_and_a_docker_archive_name_their_images() {
        let oci = tar_with(&[("oci-layout", "{}"), ("index.json", r#"{"manifests":[{"annotations":{"io.containerd.image.name":"registry.k8s.io/pause:3.10.1","org.opencontainers.image.ref.name":"3.10.1"}}]}"#)]);
        assert_eq!(references(oci.path()).unwrap(), ["registry.k8s.io/pause:3.10.1"]);
        let tag_only = tar_with(&[("./index.json", r#"{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"3.10.1"}}]}"#)]);
        assert!(references(tag_only.path()).unwrap().is_empty(), "a bare tag names no image");
        let docker = tar_with(&[("manifest.json", r#"[{"Config":"c.json","RepoTags":["busybox:1.35.0"],"Layers":[]}]"#)]);
        assert_eq!(references(docker.path()).unwrap(), ["docker.io/library/busybox:1.35.0"]);
        let junk = tar_with(&[("index.json", "not json")]);
        assert!(references(junk.path()).is_err());
    }
}
