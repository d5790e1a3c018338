//! The release binaries a deploy pushes, from verified artifacts in the cache.

use std::collections::{BTreeMap, BTreeSet};

use crate::artifacts::download::Fetcher;
use std::path::PathBuf;

use crate::artifacts::cache::Cache;
use crate::artifacts::lock::Lock;
use crate::artifacts::ops::{self, ExtractedFile, Settings};
use crate::artifacts::progress::Reporter;
use crate::artifacts::{ArtifactError, Catalog};
use crate::config::Cluster;
use super::EngineError;
use crate::host::Source;
use crate::render::{self, Component};

/// Binaries by (catalog component, file name), each with the digest recorded when it was
/// extracted from its verified artifact.
#[derive(Debug, Default, Clone)]
pub struct Bins {
    files: BTreeMap<(String, String), Source>,
    /// The cluster's image archives, verified (what every node gets and imports).
    pub images: Vec<crate::artifacts::images::Archive>,
}

impl Bins {
    /// The components the hosts of `parts` need.
    pub fn components(cluster: &Cluster, parts: &[Component]) -> BTreeSet<&'static str> {
        cluster.hosts.iter().flat_map(|h| render::binaries(cluster, h)).filter(|b| parts.contains(&b.part)).map(|b| b.component).collect()
    }

    /// Download (verified, in parallel, at most `settings.jobs` at once) and extract each of
    /// `components` once per artifact digest; later runs only read the extraction records.
    pub fn resolve(catalog: &Catalog, settings: &Settings, fetcher: &Fetcher, reporter: &Reporter, components: &BTreeSet<&str>) -> Result<Bins, ArtifactError> {
        let list: Vec<&str> = components.iter().copied().collect();
        let mut results: Vec<Option<Result<Vec<ExtractedFile>, ArtifactError>>> = (0..list.len()).map(|_| None).collect();
        for chunk in list.chunks(settings.jobs.max(1)).zip(results.chunks_mut(settings.jobs.max(1))) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk.0.iter().map(|c| s.spawn(move || ops::extracted(catalog, settings, c, fetcher, reporter))).collect();
                for (slot, h) in chunk.1.iter_mut().zip(handles) {
                    *slot = Some(h.join().unwrap_or_else(|_| Err(ArtifactError::BadArgument("kbin panicked while extracting".into()))));
                }
            });
        }
        let mut bins = Bins::default();
        for (c, r) in list.iter().zip(results) {
            for f in r.expect("every slot filled")? {
                bins.files.insert((c.to_string(), f.name.clone()), Source::file_with_digest(&f.path, &f.sha256, f.len));
            }
        }
        Ok(bins)
    }

    /// The cluster file's images, fetched (verified) into the cache when missing; only when
    /// `parts` installs nodes.
    pub fn resolve_images(&mut self, cluster: &Cluster, settings: &Settings, fetcher: &Fetcher, reporter: &Reporter, parts: &[Component]) -> Result<(), ArtifactError> {
        if parts.contains(&Component::Node) && cluster.hosts_with(crate::config::Role::Node).next().is_some() {
            let specs: Vec<_> = cluster.workloads.images.values().cloned().collect();
            self.images = crate::artifacts::images::fetch(&specs, &settings.cache_root, fetcher, reporter)?;
        }
        Ok(())
    }

    /// For tests: binaries given directly.
    pub fn insert(&mut self, component: &str, name: &str, src: Source) {
        self.files.insert((component.to_string(), name.to_string()), src);
    }

    pub fn get(&self, component: &str, name: &str) -> Result<Source, EngineError> {
        self.files.get(&(component.to_string(), name.to_string())).cloned().ok_or_else(|| {
            EngineError::MissingBinary { component: component.into(), name: name.into() }
        })
    }
}

/// The artifact settings of a cluster: its `[artifacts]` table and versions, the roles its hosts
/// have, and `--mirror` from the command line (which wins).
pub fn settings(cluster: &Cluster, cli_mirror: Option<&str>) -> Result<Settings, ArtifactError> {
    let a = &cluster.artifacts;
    // KBIN_CACHE_DIR (the invocation) wins over artifacts.cache_dir (the cluster file)
    let env = std::env::var_os("KBIN_CACHE_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache_root = match env.or_else(|| a.cache_dir.clone()) {
        Some(d) => d,
        None => Cache::default_root().ok_or_else(|| ArtifactError::BadArgument("no cache directory: set KBIN_CACHE_DIR or artifacts.cache_dir".into()))?,
    };
    let mut roles: Vec<String> = cluster.hosts.iter().flat_map(|h| h.roles.iter().map(|r| r.as_str().to_string())).collect();
    roles.sort();
    roles.dedup();
    Ok(Settings {
        arch: a.arch,
        cli_mirror: cli_mirror.map(str::to_string),
        mirror: a.mirror.clone(),
        mirrors: a.mirrors.clone(),
        versions: a.versions.clone(),
        kubernetes_version: cluster.kubernetes_version.clone(),
        etcd_version: cluster.etcd_version.clone(),
        flannel_version: cluster.flannel_version.clone(),
        cache_root,
        lock_path: Lock::path_in(&cluster.state_dir),
        jobs: 4,
        roles,
    })
}
