//! The artifact catalog (`catalog.toml`, embedded): components, URL patterns and pinned digests.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::{Arch, ArtifactError, Digest, Result};

const CATALOG: &str = include_str!("catalog.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Kind {
    #[serde(rename = "binary")]
    Binary,
    #[serde(rename = "tar.gz")]
    TarGz,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// `sha256:<hex>` / `sha512:<hex>` (bare 64 hex digits are a SHA-256).
    pub amd64: Option<Digest>,
    pub arm64: Option<Digest>,
    /// The published material the digests were taken from.
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    /// "kubernetes", "etcd", "flannel" or "catalog".
    pub version_from: String,
    #[serde(default)]
    pub default_version: Option<String>,
    pub roles: Vec<String>,
    pub kind: Kind,
    pub url: String,
    #[serde(default)]
    pub checksum_url: String,
    #[serde(default)]
    pub members: Vec<String>,
    /// The archive component this one can be taken out of: the member of that archive whose file
    /// name is this component's name. Used whenever kbin.lock or the catalog pins the archive
    /// (see `ops::provider`); the component's own `url` stays for clusters that pin it alone.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub pins: BTreeMap<String, Pin>,
    /// Largest download kbin accepts for this component, in MiB (default
    /// [`DEFAULT_MAX_MIB`]): a mirror that streams without Content-Length is cut off there.
    #[serde(default)]
    pub max_mib: Option<u64>,
}

/// The download cap of a component whose catalog entry names none: several times the largest
/// single release binary kbin installs.
pub const DEFAULT_MAX_MIB: u64 = 512;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "component")]
    pub components: Vec<Component>,
}

/// Fill `{version}`, `{semver}`, `{base}` and `{arch}` into a URL or member pattern.
pub fn expand(pattern: &str, version: &str, arch: Arch) -> String {
    pattern
        .replace("{version}", version)
        .replace("{semver}", version.strip_prefix('v').unwrap_or(version))
        .replace("{base}", version.split('-').next().unwrap_or(version))
        .replace("{arch}", arch.as_str())
}

/// One concrete file: a component at a version for an architecture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    pub component: String,
    pub version: String,
    pub arch: Arch,
    pub kind: Kind,
    /// The official URL.
    pub url: String,
    /// The official checksum file, if upstream publishes one.
    pub checksum_url: Option<String>,
    /// The upstream file name (last URL segment).
    pub file_name: String,
    /// Archive members kbin uses (empty for a plain binary).
    pub members: Vec<String>,
    /// Largest body kbin accepts for it, in bytes (the catalog's `max_mib`).
    pub max_bytes: u64,
}

impl Component {
    pub fn artifact(&self, version: &str, arch: Arch) -> Artifact {
        let url = expand(&self.url, version, arch);
        let file_name = url.rsplit('/').next().unwrap_or(&self.name).to_string();
        Artifact {
            component: self.name.clone(),
            version: version.to_string(),
            arch,
            kind: self.kind,
            checksum_url: (!self.checksum_url.is_empty()).then(|| expand(&self.checksum_url, version, arch)),
            file_name,
            members: self.members.iter().map(|m| expand(m, version, arch)).collect(),
            max_bytes: self.max_mib.unwrap_or(DEFAULT_MAX_MIB) << 20,
            url,
        }
    }
    /// The catalog's pinned digest for `version` on `arch`, with its source.
    pub fn pinned(&self, version: &str, arch: Arch) -> Option<(Digest, &str)> {
        let pin = self.pins.get(version)?;
        let d = match arch {
            Arch::Amd64 => pin.amd64,
            Arch::Arm64 => pin.arm64,
        }?;
        Some((d, pin.source.as_str()))
    }
}

impl Catalog {
    /// The catalog compiled into kbin. Its validity is checked by the tests.
    pub fn embedded() -> &'static Catalog {
        static C: OnceLock<Catalog> = OnceLock::new();
        C.get_or_init(|| Catalog::parse(CATALOG).expect("the embedded catalog.toml is valid (checked by tests)"))
    }
    pub fn parse(text: &str) -> Result<Catalog, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
    pub fn names(&self) -> Vec<&str> {
        self.components.iter().map(|c| c.name.as_str()).collect()
    }
    pub fn component(&self, name: &str) -> Result<&Component> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ArtifactError::UnknownComponent { name: name.to_string() })
    }
    /// The archive `c` can be taken out of (its `from`), if any.
    pub fn archive_of(&self, c: &Component) -> Result<Option<&Component>> {
        c.from.as_deref().map(|a| self.component(a)).transpose()
    }
}

/// The members of an archive artifact that are the binary `component` (file name = its name).
pub fn members_named<'a>(members: &'a [String], component: &str) -> impl Iterator<Item = &'a String> {
    members.iter().filter(move |m| m.rsplit('/').next() == Some(component))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalog_table_is_consistent() {
        let c = Catalog::embedded();
        let mut names = HashSet::new();
        for comp in &c.components {
            assert!(names.insert(comp.name.as_str()), "duplicate component {}", comp.name);
            assert!(
                ["kubernetes", "etcd", "flannel", "catalog"].contains(&comp.version_from.as_str()),
                "{}: bad version_from {}",
                comp.name,
                comp.version_from
            );
            assert_eq!(comp.version_from == "catalog", comp.default_version.is_some(), "{}: default_version iff version_from = catalog", comp.name);
            let is_archive_of_others = c.components.iter().any(|o| o.from.as_deref() == Some(comp.name.as_str()));
            assert_eq!(comp.roles.is_empty(), is_archive_of_others, "{}: roles, unless only fetched for the components taken out of it", comp.name);
            for r in &comp.roles {
                assert!(crate::config::Role::parse(r).is_some(), "{}: unknown role {r}", comp.name);
            }
            assert!(comp.url.starts_with("https://"), "{}: official URLs are HTTPS", comp.name);
            assert!(comp.url.contains("{version}") && comp.url.contains("{arch}"), "{}: URL lacks placeholders", comp.name);
            assert!(comp.checksum_url.is_empty() || comp.checksum_url.starts_with("https://"), "{}", comp.name);
            assert_eq!(comp.kind == Kind::TarGz, !comp.members.is_empty(), "{}: archives list members, binaries none", comp.name);
            for (v, pin) in &comp.pins {
                assert!(v.starts_with('v'), "{}: pin version {v} lacks the v", comp.name);
                assert!(pin.amd64.is_some() && pin.arm64.is_some(), "{} {v}: pin both architectures", comp.name);
                assert_ne!(pin.amd64, pin.arm64, "{} {v}: amd64 and arm64 digests must differ", comp.name);
                assert!(pin.source.len() > 20, "{} {v}: say where the digest came from", comp.name);
            }
        }
        for want in [
            "etcd", "kubernetes-server", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy",
            "flanneld", "flannel-cni-plugin", "cni-plugins", "containerd", "runc", "crictl",
        ] {
            assert!(names.contains(want), "catalog lacks {want}");
        }
    }

    #[test]
    fn components_taken_out_of_an_archive_are_consistent() {
        let c = Catalog::embedded();
        let mut taken = 0;
        for comp in &c.components {
            let Some(archive) = c.archive_of(comp).unwrap() else { continue };
            taken += 1;
            assert_eq!(archive.kind, Kind::TarGz, "{}: from names an archive", comp.name);
            assert!(archive.from.is_none(), "{}: no chains of from", comp.name);
            assert_eq!(archive.version_from, comp.version_from, "{}: same version as its archive", comp.name);
            assert_eq!(members_named(&archive.members, &comp.name).count(), 1, "{}: exactly one member of {} is it", comp.name, archive.name);
            // the component's own single binary stays usable for clusters that pin it alone
            assert_eq!(comp.kind, Kind::Binary, "{}", comp.name);
            assert!(!comp.checksum_url.is_empty(), "{}: its own checksum file for unpinned versions", comp.name);
        }
        assert_eq!(taken, 4, "kube-apiserver, kube-controller-manager, kube-scheduler and kube-proxy");
        let a = c.component("kubernetes-server").unwrap().artifact("v1.34.2", Arch::Arm64);
        assert_eq!(a.url, "https://dl.k8s.io/release/v1.34.2/kubernetes-server-linux-arm64.tar.gz");
        assert_eq!(members_named(&a.members, "kube-proxy").collect::<Vec<_>>(), ["kubernetes/server/bin/kube-proxy"]);
    }

    #[test]
    fn no_digest_is_pinned_twice() {
        let mut seen = HashSet::new();
        for comp in &Catalog::embedded().components {
            for pin in comp.pins.values() {
                for d in [pin.amd64, pin.arm64].into_iter().flatten() {
                    assert!(seen.insert(d), "{} pins {d} that another entry also pins", comp.name);
                }
            }
        }
    }

    #[test]
    fn default_versions_are_pinned() {
        // what a cluster file without version overrides downloads must have real digests (its
        // own, or its archive's), except the components listed as unpinned at the top of
        // catalog.toml
        let c = Catalog::embedded();
        let k8s = crate::config::defaults::kubernetes_version();
        let etcd = crate::config::defaults::etcd_version();
        let flannel = crate::config::defaults::flannel_version();
        // no reference held a published digest of these default versions (catalog.toml's header)
        let unpinned = ["flannel-cni-plugin", "etcd", "kubernetes-server", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubectl", "flanneld", "cni-plugins", "containerd", "runc"];
        for comp in &c.components {
            let v = match comp.version_from.as_str() {
                "kubernetes" => k8s.clone(),
                "etcd" => etcd.clone(),
                "flannel" => flannel.clone(),
                _ => comp.default_version.clone().unwrap(),
            };
            let by = c.archive_of(comp).unwrap().unwrap_or(comp);
            let pinned = by.pinned(&v, Arch::Amd64).is_some() && by.pinned(&v, Arch::Arm64).is_some();
            assert_eq!(pinned, !unpinned.contains(&comp.name.as_str()), "{} {v}", comp.name);
        }
    }

    #[test]
    fn expand_fills_placeholders() {
        let c = Catalog::embedded().component("containerd").unwrap();
        let a = c.artifact("v2.1.5", Arch::Arm64);
        assert_eq!(a.url, "https://github.com/containerd/containerd/releases/download/v2.1.5/containerd-2.1.5-linux-arm64.tar.gz");
        assert_eq!(a.file_name, "containerd-2.1.5-linux-arm64.tar.gz");
        let e = Catalog::embedded().component("etcd").unwrap().artifact("v3.5.1", Arch::Amd64);
        assert_eq!(e.members[0], "etcd-v3.5.1-linux-amd64/etcd");
        assert_eq!(e.checksum_url.as_deref(), Some("https://github.com/etcd-io/etcd/releases/download/v3.5.1/SHA256SUMS"));
        let f = Catalog::embedded().component("flannel-cni-plugin").unwrap().artifact("v1.8.0-flannel1", Arch::Arm64);
        assert_eq!(f.url, "https://github.com/flannel-io/cni-plugin/releases/download/v1.8.0-flannel1/cni-plugin-flannel-linux-arm64-v1.8.0.tgz");
        assert_eq!(f.members, ["flannel-arm64"]);
    }
}
