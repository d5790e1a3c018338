//! The operations behind `kbin download`, `kbin pin` and the bundle commands: plan which
//! artifacts a cluster needs, resolve the digest each must match, fetch them in parallel.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::cache::Cache;
use super::catalog::{Artifact, Catalog, Component, Kind, expand, members_named};
use super::download::{Fetcher, Outcome};
use super::extract::{Limits, verify_and_extract};
use super::lock::{Entry, Lock};
use super::progress::{Reporter, human_bytes};
use super::{Arch, ArtifactError, Digest, DigestSource, Result, Sha256};

/// Everything about artifacts that comes from the cluster file and the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub arch: Arch,
    /// `--mirror` on the command line: wins over the cluster file.
    pub cli_mirror: Option<String>,
    /// `artifacts.mirror` in the cluster file.
    pub mirror: Option<String>,
    /// `artifacts.mirrors.<component>` in the cluster file.
    pub mirrors: BTreeMap<String, String>,
    /// `artifacts.versions.<component>`: versions of components the cluster file has no field for.
    pub versions: BTreeMap<String, String>,
    pub kubernetes_version: String,
    pub etcd_version: String,
    pub flannel_version: String,
    pub cache_root: PathBuf,
    pub lock_path: PathBuf,
    /// Parallel downloads.
    pub jobs: usize,
    /// Roles present in the cluster, by name (decides which components it needs).
    pub roles: Vec<String>,
}

impl Settings {
    pub fn version_of(&self, c: &Component) -> String {
        if let Some(v) = self.versions.get(&c.name) {
            return v.clone();
        }
        match c.version_from.as_str() {
            "kubernetes" => self.kubernetes_version.clone(),
            "etcd" => self.etcd_version.clone(),
            "flannel" => self.flannel_version.clone(),
            _ => c.default_version.clone().unwrap_or_default(),
        }
    }

    /// Where to fetch the bytes: `--mirror`, else the component's mirror, else the cluster
    /// file's mirror, else the official URL. A mirror URL with `{file}`, `{version}`, `{semver}`,
    /// `{arch}` or `{component}` placeholders is a template; otherwise the layout is
    /// `<global mirror>/<component>/<version>/<file>` and `<component mirror>/<version>/<file>`.
    pub fn download_url(&self, a: &Artifact) -> String {
        let template = |m: &str| {
            expand(m, &a.version, a.arch).replace("{file}", &a.file_name).replace("{component}", &a.component)
        };
        let global = |m: &str| {
            if m.contains('{') { template(m) } else { format!("{}/{}/{}/{}", m.trim_end_matches('/'), a.component, a.version, a.file_name) }
        };
        if let Some(m) = &self.cli_mirror {
            return global(m);
        }
        if let Some(m) = self.mirrors.get(&a.component) {
            return if m.contains('{') { template(m) } else { format!("{}/{}/{}", m.trim_end_matches('/'), a.version, a.file_name) };
        }
        if let Some(m) = &self.mirror {
            return global(m);
        }
        a.url.clone()
    }
}

/// What one component takes out of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The component; with `--extract DIR` its files land in `DIR/<component>/`.
    pub component: String,
    /// The archive members that are its files (empty for a single binary).
    pub members: Vec<String>,
}

/// An artifact to fetch, with the URL its bytes come from and the components it is fetched for.
#[derive(Debug, Clone)]
pub struct Planned {
    pub artifact: Artifact,
    pub download_url: String,
    /// The artifact's own component with all its members, or, for an archive such as
    /// kubernetes-server, each component taken out of it with its member. One download serves all.
    pub parts: Vec<Part>,
}

/// The component whose artifact provides `c` at `version` on `arch`: `c` itself, or the archive
/// its `from` names. kbin.lock decides first: an entry for `c` itself keeps it a download of its
/// own (a cluster that trusted the single binary keeps it), an entry for the archive takes it out
/// of the archive. Then the catalog: a pinned archive is used. Otherwise `c` is fetched on its
/// own and checked against its own upstream checksum file (a smaller download than the archive).
pub fn provider<'c>(catalog: &'c Catalog, c: &'c Component, version: &str, arch: Arch, lock: &Lock) -> Result<&'c Component> {
    let Some(archive) = catalog.archive_of(c)? else {
        return Ok(c);
    };
    if lock.get(&c.name, version, arch).is_some() {
        return Ok(c);
    }
    if lock.get(&archive.name, version, arch).is_some() || archive.pinned(version, arch).is_some() {
        return Ok(archive);
    }
    Ok(c)
}

/// The part of `artifact` (made from component `provider`) that component `c` takes.
fn part_of(c: &Component, provider: &Component, artifact: &Artifact) -> Part {
    let members = if provider.name == c.name { artifact.members.clone() } else { members_named(&artifact.members, &c.name).cloned().collect() };
    Part { component: c.name.clone(), members }
}

/// The artifact of `provider` at `version`, planned whole: all its members, for its own component.
fn whole(settings: &Settings, provider: &Component, version: &str) -> Planned {
    let artifact = provider.artifact(version, settings.arch);
    Planned { download_url: settings.download_url(&artifact), parts: vec![Part { component: provider.name.clone(), members: artifact.members.clone() }], artifact }
}

/// The artifacts the cluster needs (every component whose roles some host has), or the
/// `names` given, in catalog order. Components taken out of one archive share one download.
pub fn plan(catalog: &Catalog, settings: &Settings, names: &[String]) -> Result<Vec<Planned>> {
    for n in names {
        catalog.component(n)?;
    }
    let lock = Lock::load(&settings.lock_path)?;
    let chosen = catalog.components.iter().filter(|c| {
        if names.is_empty() {
            c.roles.iter().any(|r| settings.roles.iter().any(|s| s == r))
        } else {
            names.iter().any(|n| n == &c.name)
        }
    });
    let mut planned: Vec<Planned> = Vec::new();
    for c in chosen {
        let version = settings.version_of(c);
        let p = provider(catalog, c, &version, settings.arch, &lock)?;
        let artifact = p.artifact(&version, settings.arch);
        let part = part_of(c, p, &artifact);
        match planned.iter_mut().find(|x| x.artifact == artifact) {
            Some(x) if !x.parts.contains(&part) => x.parts.push(part),
            Some(_) => {}
            None => planned.push(Planned { download_url: settings.download_url(&artifact), artifact, parts: vec![part] }),
        }
    }
    planned.sort_by_key(|p| catalog.components.iter().position(|c| c.name == p.artifact.component));
    Ok(planned)
}

/// The digest `a` must match: kbin.lock, else the catalog, else the upstream checksum file
/// (fetched over HTTPS from the official origin, never from a mirror, and recorded in `lock`).
pub fn resolve_digest(catalog: &Catalog, a: &Artifact, lock: &mut Lock, fetcher: &Fetcher) -> Result<(Digest, DigestSource)> {
    if let Some(e) = lock.get(&a.component, &a.version, a.arch) {
        return Ok((e.digest, DigestSource::Lock));
    }
    let comp = catalog.component(&a.component)?;
    if let Some((d, source)) = comp.pinned(&a.version, a.arch) {
        return Ok((d, DigestSource::Catalog(source.to_string())));
    }
    let no_digest = |reason: String| ArtifactError::NoDigest { component: a.component.clone(), version: a.version.clone(), arch: a.arch, reason, archive: comp.from.clone() };
    let Some(url) = &a.checksum_url else {
        return Err(no_digest("neither kbin's catalog nor kbin.lock pins it and upstream publishes no checksum file for it".into()));
    };
    let text = fetcher.get_text(url).map_err(|e| match e {
        ArtifactError::Http { status: 404, .. } => {
            no_digest(format!("it is not in kbin's catalog and the upstream checksum file {url} does not exist (is the version right?)"))
        }
        e @ ArtifactError::InsecureChecksum { .. } => e,
        // no internet (or the origin is down): the operator can still pin a digest they trust
        other => no_digest(format!("it is not in kbin's catalog and its upstream checksum file could not be fetched ({other})")),
    })?;
    let d = super::download::parse_checksum_file(&text, &a.file_name).ok_or_else(|| ArtifactError::ChecksumFile { url: url.clone(), file: a.file_name.clone() })?;
    let d = Digest::Sha256(d);
    lock.set(Entry { component: a.component.clone(), version: a.version.clone(), arch: a.arch, digest: d, source: url.clone() });
    Ok((d, DigestSource::Upstream(url.clone())))
}

/// One artifact in the cache, verified.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub component: String,
    pub version: String,
    pub arch: Arch,
    /// The file's SHA-256: its name in the cache and in bundles.
    pub sha256: Sha256,
    /// The trusted digest the file was checked against (`sha256:…` or `sha512:…`).
    pub digest: Digest,
    pub digest_source: DigestSource,
    pub url: String,
    pub path: PathBuf,
    pub outcome: Outcome,
    /// The components it was fetched for (the artifact's own, or those taken out of it).
    pub provides: Vec<String>,
    /// Files written by `--extract`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extracted: Vec<PathBuf>,
}

/// Resolve the digests of `planned` (recording new ones in the lock) and fetch every artifact
/// into the cache, `settings.jobs` at a time. With `extract_to`, the files of each part are
/// also verified-and-extracted into `<extract_to>/<component>/`.
pub fn download(catalog: &Catalog, planned: &[Planned], settings: &Settings, fetcher: &Fetcher, reporter: &Reporter, extract_to: Option<&Path>) -> Result<Vec<Fetched>> {
    let cache = Cache::open(&settings.cache_root)?;
    let mut lock = Lock::load(&settings.lock_path)?;
    let before = lock.entries.clone();
    let mut work = Vec::new();
    for p in planned {
        let (d, source) = resolve_digest(catalog, &p.artifact, &mut lock, fetcher)?;
        if let DigestSource::Upstream(url) = &source {
            reporter.line(&p.artifact.component, &format!("{} is not pinned in kbin's catalog: using the digest published at {url}, recorded in {}", p.artifact.version, lock.path.display()));
        }
        work.push((p.clone(), d, source));
    }
    if lock.entries != before {
        lock.save()?;
    }

    let queue = Mutex::new(work.into_iter().enumerate().collect::<VecDeque<_>>());
    let results: Mutex<Vec<(usize, Result<Fetched>)>> = Mutex::new(Vec::new());
    let jobs = settings.jobs.clamp(1, 16).min(planned.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let Some((i, (p, d, source))) = queue.lock().unwrap().pop_front() else { break };
                    let r = fetch_one(&cache, fetcher, reporter, &p, d, source, extract_to);
                    results.lock().unwrap().push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    let mut first_err = None;
    for (i, r) in results {
        match r {
            Ok(f) => out.push(f),
            Err(e) => {
                reporter.line(&planned[i].artifact.component, &format!("failed: {e}"));
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn fetch_one(cache: &Cache, fetcher: &Fetcher, reporter: &Reporter, p: &Planned, d: Digest, source: DigestSource, extract_to: Option<&Path>) -> Result<Fetched> {
    let a = &p.artifact;
    let label = format!("{} {}", a.component, a.version);
    let bar = reporter.artifact(&label);
    let for_parts = match p.parts.as_slice() {
        [only] if only.component == a.component => String::new(),
        parts => format!(" (for {})", parts.iter().map(|x| x.component.as_str()).collect::<Vec<_>>().join(", ")),
    };
    let fetched = |path: PathBuf, sha256: Sha256, outcome: Outcome, extracted: Vec<PathBuf>| Fetched {
        component: a.component.clone(),
        version: a.version.clone(),
        arch: a.arch,
        sha256,
        digest: d,
        digest_source: source.clone(),
        url: crate::output::redact_url(&p.download_url),
        path,
        outcome,
        provides: p.parts.iter().map(|x| x.component.clone()).collect(),
        extracted,
    };
    // with --extract, a cache hit is verified by the extraction itself (one pass, not two)
    if let (Some(dir), Kind::TarGz, Some((blob, sha256))) = (extract_to, a.kind, cache.lookup(&d)) {
        match extract_parts(&blob, &d, p, dir) {
            Ok(files) => {
                bar.finish(&format!("cached, verified {} {}, extracted {} file(s) to {}{for_parts}", d.algorithm(), short(&d), files.len(), dir.display()));
                return Ok(fetched(blob, sha256, Outcome::Cached, files));
            }
            // a damaged cache entry fails the digest, or breaks the gzip or tar stream before
            // the digest is known: whatever failed, an entry that does not match its digest is
            // dropped and fetched again; only an intact one's error is the artifact's own
            Err(ArtifactError::Mismatch(_)) => cache.forget(&d)?,
            Err(e) => {
                if super::cache::digest_file(&blob, &d)? == d {
                    return Err(e);
                }
                cache.forget(&d)?;
            }
        }
    }
    let stored = fetcher.fetch_limited(&p.download_url, d, a.max_bytes, cache, &bar)?;
    let extracted = match (extract_to, a.kind) {
        (None, _) => Vec::new(),
        (Some(dir), Kind::TarGz) => extract_parts(&stored.path, &d, p, dir)?,
        (Some(dir), Kind::Binary) => p.parts.iter().map(|x| install_binary(&stored.path, &dir.join(&x.component), &x.component)).collect::<Result<_>>()?,
    };
    let msg = match stored.outcome {
        Outcome::Cached => format!("cached, verified {} {}{for_parts}", d.algorithm(), short(&d)),
        Outcome::Downloaded { bytes, resumed } => {
            let secs = bar.elapsed().max(1e-6);
            format!(
                "{} from {} in {:.1}s ({}/s){}, {} {} ok{for_parts}",
                human_bytes(bytes),
                crate::output::redact_url(&p.download_url),
                secs,
                human_bytes((bar.bytes() as f64 / secs) as u64),
                if resumed { ", resumed" } else { "" },
                d.algorithm(),
                short(&d)
            )
        }
    };
    bar.finish(&msg);
    Ok(fetched(stored.path, stored.sha256, stored.outcome, extracted))
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// Verify-and-extract the members `p`'s parts take out of the archive `blob` (one pass over
/// it), then place each part's files in `<dir>/<component>/`.
fn extract_parts(blob: &Path, d: &Digest, p: &Planned, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut members: Vec<String> = p.parts.iter().flat_map(|x| x.members.iter().cloned()).collect();
    members.sort();
    members.dedup();
    std::fs::create_dir_all(dir).map_err(|e| ArtifactError::io("create", dir, e))?;
    let stage = tempfile::Builder::new().prefix(".kbin-parts-").tempdir_in(dir).map_err(|e| ArtifactError::io("create a staging directory in", dir, e))?;
    verify_and_extract(blob, d, Some(&members), stage.path(), true, &Limits::default())?;
    let mut out = Vec::new();
    for part in &p.parts {
        let to = dir.join(&part.component);
        std::fs::create_dir_all(&to).map_err(|e| ArtifactError::io("create", &to, e))?;
        for m in &part.members {
            let name = m.rsplit('/').next().unwrap_or(m);
            out.push(place(&stage.path().join(name), &to.join(name))?);
        }
    }
    Ok(out)
}

/// Put the staged file `from` at `to`, atomically; a hard link, so that one staged file can
/// serve several parts.
fn place(from: &Path, to: &Path) -> Result<PathBuf> {
    let name = to.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = to.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(from, &tmp).map_err(|e| ArtifactError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, to).map_err(|e| ArtifactError::io("write", to, e))?;
    Ok(to.to_path_buf())
}

/// Copy a verified binary out of the cache as `<dir>/<name>`, mode 0755, atomically.
fn install_binary(blob: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| ArtifactError::io("create", dir, e))?;
    let dest = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::copy(blob, &tmp).map_err(|e| ArtifactError::io("write", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| ArtifactError::io("chmod", &tmp, e))?;
    std::fs::rename(&tmp, &dest).map_err(|e| ArtifactError::io("write", &dest, e))?;
    Ok(dest)
}

/// `kbin pin`: record `digest` (a SHA-256, or a SHA-512 such as the Kubernetes release notes
/// publish) as the digest of `component` `version` on `arch` in the lock. Returns the digest
/// recorded and the one it replaced, if any.
pub fn pin(catalog: &Catalog, lock_path: &Path, component: &str, version: &str, arch: Arch, digest: &str) -> Result<(Digest, Option<Digest>)> {
    catalog.component(component)?;
    if let Some(p) = crate::artifacts::version_problem(version) {
        return Err(ArtifactError::BadArgument(format!("{version:?} is not a release version: it {p} (write it like v3.5.1)")));
    }
    let d = Digest::parse(digest).ok_or_else(|| ArtifactError::BadArgument(format!("{digest:?} is not a SHA-256 digest (64 hex digits) or a SHA-512 digest (128 hex digits)")))?;
    let mut lock = Lock::load(lock_path)?;
    let old = lock.set(Entry { component: component.into(), version: version.into(), arch, digest: d, source: "kbin pin".into() });
    lock.save()?;
    Ok((d, old.filter(|o| *o != d)))
}

/// Whether `s` is usable as a mirror URL: `http://` or `https://` with a host. Plain HTTP is
/// fine: a mirror's bytes are always checked against a digest that does not come from it.
pub fn is_mirror_url(s: &str) -> bool {
    match reqwest::Url::parse(s) {
        Ok(u) => matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) && u.query().is_none() && u.fragment().is_none(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            arch: Arch::Amd64,
            cli_mirror: None,
            mirror: None,
            mirrors: BTreeMap::new(),
            versions: BTreeMap::new(),
            kubernetes_version: "v1.34.2".into(),
            etcd_version: "v3.5.1".into(),
            flannel_version: "v0.27.4".into(),
            cache_root: PathBuf::from("/nonexistent"),
            lock_path: PathBuf::from("/nonexistent/kbin.lock"),
            jobs: 4,
            roles: vec!["etcd".into()],
        }
    }

    #[test]
    fn mirror_precedence_and_layouts() {
        let c = Catalog::embedded();
        let mut s = settings();
        let etcd = |s: &Settings| plan(c, s, &["etcd".to_string()]).unwrap().remove(0);
        assert_eq!(etcd(&s).download_url, "https://github.com/etcd-io/etcd/releases/download/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz");
        s.mirror = Some("http://m.example/kbin/".into());
        assert_eq!(etcd(&s).download_url, "http://m.example/kbin/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz");
        s.mirrors.insert("etcd".into(), "http://10.213.0.1:8080/etcd".into());
        assert_eq!(etcd(&s).download_url, "http://10.213.0.1:8080/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz");
        s.cli_mirror = Some("http://cli.example/{component}-{semver}-{arch}/{file}".into());
        let p = etcd(&s);
        assert_eq!(p.download_url, "http://cli.example/etcd-3.5.1-amd64/etcd-v3.5.1-linux-amd64.tar.gz");
        // the digest source never moves to the mirror
        assert_eq!(p.artifact.checksum_url.as_deref(), Some("https://github.com/etcd-io/etcd/releases/download/v3.5.1/SHA256SUMS"));
    }

    #[test]
    fn plan_follows_the_roles_in_the_cluster() {
        let c = Catalog::embedded();
        let mut s = settings();
        let names = |s: &Settings| plan(c, s, &[]).unwrap().into_iter().map(|p| p.artifact.component).collect::<Vec<_>>();
        assert_eq!(names(&s), ["etcd"]);
        s.roles = vec!["etcd".into(), "master".into(), "node".into()];
        assert_eq!(names(&s), ["etcd", "kubernetes-server", "kubectl", "kubelet", "flanneld", "flannel-cni-plugin", "cni-plugins", "containerd", "runc", "crictl"]);
        s.versions.insert("containerd".into(), "v2.0.0".into());
        let p = plan(c, &s, &["containerd".to_string()]).unwrap();
        assert_eq!(p[0].artifact.version, "v2.0.0");
        assert!(matches!(plan(c, &s, &["nope".to_string()]), Err(ArtifactError::UnknownComponent { .. })));
    }

    fn parts(p: &Planned) -> Vec<(&str, Vec<&str>)> {
        p.parts.iter().map(|x| (x.component.as_str(), x.members.iter().map(String::as_str).collect())).collect()
    }

    #[test]
    fn server_components_share_one_pinned_tarball() {
        let c = Catalog::embedded();
        let mut s = settings();
        s.roles = vec!["master".into(), "node".into()];
        let p = plan(c, &s, &[]).unwrap();
        let server: Vec<&Planned> = p.iter().filter(|p| p.artifact.component == "kubernetes-server").collect();
        assert_eq!(server.len(), 1, "one download for the four components");
        assert_eq!(server[0].artifact.url, "https://dl.k8s.io/release/v1.34.2/kubernetes-server-linux-amd64.tar.gz");
        assert_eq!(
            parts(server[0]),
            [
                ("kube-apiserver", vec!["kubernetes/server/bin/kube-apiserver"]),
                ("kube-controller-manager", vec!["kubernetes/server/bin/kube-controller-manager"]),
                ("kube-scheduler", vec!["kubernetes/server/bin/kube-scheduler"]),
                ("kube-proxy", vec!["kubernetes/server/bin/kube-proxy"]),
            ]
        );
        assert!(!p.iter().any(|p| p.artifact.component == "kube-apiserver"));
        // named on its own, a component still comes out of the tarball
        let one = plan(c, &s, &["kube-scheduler".to_string()]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(parts(&one[0]), [("kube-scheduler", vec!["kubernetes/server/bin/kube-scheduler"])]);
        // the tarball named on its own gives all its members
        let all = plan(c, &s, &["kubernetes-server".to_string(), "kube-proxy".to_string()]).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(parts(&all[0])[0].1.len(), 4);
        assert_eq!(parts(&all[0])[1].0, "kube-proxy");
        // a mirror serves the tarball under its own component name
        s.mirror = Some("http://m.example".into());
        assert_eq!(plan(c, &s, &["kube-apiserver".to_string()]).unwrap()[0].download_url, "http://m.example/kubernetes-server/v1.34.2/kubernetes-server-linux-amd64.tar.gz");
    }

    #[test]
    fn provider_follows_the_lock_then_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::embedded();
        let mut s = settings();
        s.lock_path = dir.path().join("kbin.lock");
        let artifacts = |s: &Settings, name: &str| plan(c, s, &[name.to_string()]).unwrap().into_iter().map(|p| p.artifact.component).collect::<Vec<_>>();
        // a version the catalog does not pin: the single binary, with its own checksum file
        s.kubernetes_version = "v1.35.0".into();
        let p = plan(c, &s, &["kube-apiserver".to_string()]).unwrap();
        assert_eq!(p[0].artifact.url, "https://dl.k8s.io/release/v1.35.0/bin/linux/amd64/kube-apiserver");
        assert_eq!(parts(&p[0]), [("kube-apiserver", vec![])]);
        // the operator pins the tarball: all four come out of it
        pin(c, &s.lock_path, "kubernetes-server", "v1.35.0", Arch::Amd64, &"a".repeat(128)).unwrap();
        assert_eq!(artifacts(&s, "kube-apiserver"), ["kubernetes-server"]);
        // a lock that trusted the single binary keeps it (locks written before the tarball existed)
        pin(c, &s.lock_path, "kube-apiserver", "v1.35.0", Arch::Amd64, &"b".repeat(64)).unwrap();
        assert_eq!(artifacts(&s, "kube-apiserver"), ["kube-apiserver"]);
        assert_eq!(artifacts(&s, "kube-proxy"), ["kubernetes-server"]);
        // arm64 is another artifact: nothing pinned there, the single binary
        s.arch = Arch::Arm64;
        assert_eq!(artifacts(&s, "kube-proxy"), ["kube-proxy"]);
    }

    #[test]
    fn pin_validates_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("kbin.lock");
        let c = Catalog::embedded();
        let d1 = "a".repeat(64);
        assert_eq!(pin(c, &lock, "etcd", "v3.5.1", Arch::Amd64, &d1).unwrap().1, None);
        assert_eq!(pin(c, &lock, "etcd", "v3.5.1", Arch::Amd64, &"b".repeat(64)).unwrap().1.map(|d| d.hex()), Some(d1));
        assert!(pin(c, &lock, "etcd", "3.5.1", Arch::Amd64, &"b".repeat(64)).is_err());
        assert!(pin(c, &lock, "etcd", "v3.5.1", Arch::Amd64, "xyz").is_err());
        let d512 = "c".repeat(128);
        let (new, old) = pin(c, &lock, "etcd", "v3.5.1", Arch::Amd64, &format!("sha512:{d512}")).unwrap();
        assert_eq!((new.algorithm(), old.map(|d| d.algorithm())), ("sha512", Some("sha256")));
        assert_eq!(Lock::load(&lock).unwrap().entries[0].digest.hex(), d512);
        assert!(pin(c, &lock, "etdc", "v3.5.1", Arch::Amd64, &"b".repeat(64)).is_err());
        assert_eq!(Lock::load(&lock).unwrap().entries.len(), 1);
    }
}

/// A binary extracted from a verified artifact, with its own digest recorded at extraction.
#[derive(Debug, Clone)]
pub struct ExtractedFile {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub len: u64,
}

/// The binaries of `component`, extracted once per artifact digest into
/// `<cache>/extracted/<digest key>/` (with a `SHA256SUMS` of the extracted files) and reused from
/// there. The first call downloads (verified) and extracts; later calls only read `SHA256SUMS`,
/// so an unchanged deploy does not decompress or hash anything. A component taken out of an
/// archive (kube-apiserver out of kubernetes-server) gets just its own file, named like the
/// component; the archive is downloaded and extracted once for all the components in it.
pub fn extracted(catalog: &Catalog, settings: &Settings, component: &str, fetcher: &Fetcher, reporter: &Reporter) -> Result<Vec<ExtractedFile>> {
    let comp = catalog.component(component)?;
    let mut lock = Lock::load(&settings.lock_path)?;
    let version = settings.version_of(comp);
    let provider = provider(catalog, comp, &version, settings.arch, &lock)?;
    let p = whole(settings, provider, &version);
    let (digest, _) = resolve_digest(catalog, &p.artifact, &mut lock, fetcher)?;
    let cache = Cache::open(&settings.cache_root)?;
    let dir = cache.root.join("extracted").join(digest.key());
    let sums = dir.join("SHA256SUMS");
    // every file of the component itself; only the component's own file out of an archive
    let wanted = |name: &str| provider.name == comp.name || name == comp.name;
    let read_sums = || -> Option<Vec<ExtractedFile>> {
        let text = std::fs::read_to_string(&sums).ok()?;
        let mut out = Vec::new();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (sha, len, name) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?);
            let path = dir.join(name);
            if std::fs::metadata(&path).ok()?.len() != len {
                return None;
            }
            if wanted(name) {
                out.push(ExtractedFile { name: name.to_string(), path, sha256: sha.to_string(), len });
            }
        }
        (!out.is_empty()).then_some(out)
    };
    let cached = |files: Vec<ExtractedFile>| {
        reporter.line(component, &format!("{} binaries from {}", p.artifact.version, dir.display()));
        files
    };
    if let Some(files) = read_sums() {
        return Ok(cached(files));
    }
    // one extraction per artifact at a time: the components taken out of one archive are often
    // asked for at once (the deploy code does), and the first does the work for all of them
    let _extracting = cache.lock_named(&format!("extract-{}", digest.key()))?;
    if let Some(files) = read_sums() {
        return Ok(cached(files));
    }
    let stage = cache.staging()?;
    let fetched = download(catalog, std::slice::from_ref(&p), settings, fetcher, reporter, Some(stage.path()))?;
    let mut lines = String::new();
    for f in fetched.iter().flat_map(|f| &f.extracted) {
        let sha = super::cache::hash_file(f)?;
        let len = std::fs::metadata(f).map_err(|e| ArtifactError::io("stat", f, e))?.len();
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        lines.push_str(&format!("{} {len} {name}\n", sha.hex()));
    }
    let src = stage.path().join(&provider.name);
    std::fs::write(src.join("SHA256SUMS"), lines).map_err(|e| ArtifactError::io("write", &src, e))?;
    std::fs::create_dir_all(dir.parent().expect("has a parent")).map_err(|e| ArtifactError::io("create", &dir, e))?;
    // another kbin may have won the race: theirs is as good as ours
    if std::fs::rename(&src, &dir).is_err() && !sums.exists() {
        return Err(ArtifactError::io("move into the cache", &dir, std::io::Error::other("rename failed")));
    }
    read_sums().ok_or_else(|| ArtifactError::MissingMember { archive: dir.clone(), member: component.to_string() })
}
