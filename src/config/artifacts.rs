//! The `[artifacts]` table: mirrors, per-component mirrors and versions, architecture, cache.

use std::path::Path;

use super::locate::Seg;
use super::checker::{Checker, expand_home};
use super::{Artifacts, RawArtifacts};

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

fn is_http_url(s: &str) -> bool {
    crate::artifacts::ops::is_mirror_url(s)
}

pub(super) fn check(c: &mut Checker<'_>, a: &RawArtifacts, state_dir: &Path) -> Option<Artifacts> {
    let catalog = crate::artifacts::Catalog::embedded();
    let url_hint = "write a base URL such as \"http://10.0.0.1:8080/kbin\" (see docs/artifacts.md for the layout)";
    if let Some(m) = &a.mirror
        && !is_http_url(m)
    {
        c.error(&[k("artifacts"), k("mirror")], format!("{:?} is not an http(s) URL", crate::output::redact_url(m)), Some(url_hint));
    }
    for (name, m) in &a.mirrors {
        let path = [k("artifacts"), k("mirrors"), k(name)];
        let Ok(comp) = catalog.component(name) else {
            c.error(&path, format!("unknown component {name:?}"), Some(&format!("components are {}", catalog.names().join(", "))));
            continue;
        };
        if !is_http_url(m) {
            c.error(&path, format!("{:?} is not an http(s) URL", crate::output::redact_url(m)), Some(url_hint));
        }
        // a component taken out of an archive is fetched from the archive's mirror whenever the
        // archive is pinned (kbin's catalog pins the default version)
        if let Some(archive) = comp.from.as_deref()
            && !a.mirrors.contains_key(archive)
        {
            c.warn(
                &path,
                format!("{name} comes out of the {archive} tarball whenever that is pinned (as kbin's catalog pins the default version); this mirror serves only versions fetched as a single binary"),
                Some(&format!("also set artifacts.mirrors.{archive} (or artifacts.mirror); see docs/artifacts.md")),
            );
        }
    }
    for name in a.versions.keys() {
        let path = [k("artifacts"), k("versions"), k(name)];
        match catalog.component(name) {
            Err(_) => c.error(&path, format!("unknown component {name:?}"), Some(&format!("components are {}", catalog.names().join(", ")))),
            Ok(comp) if comp.version_from != "catalog" => c.error(
                &path,
                format!("the version of {name} comes from cluster.{}_version", comp.version_from),
                Some(&format!("set cluster.{}_version instead", comp.version_from)),
            ),
            Ok(_) => {}
        }
    }
    let arch = match a.arch.as_deref() {
        None => Some(crate::artifacts::Arch::Amd64),
        Some(s) => {
            let arch = crate::artifacts::Arch::parse(s);
            if arch.is_none() {
                c.error(&[k("artifacts"), k("arch")], format!("unknown architecture {s:?}"), Some("use \"amd64\" or \"arm64\""));
            }
            arch
        }
    };
    if a.cache_dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
        c.error(&[k("artifacts"), k("cache_dir")], "empty path".into(), Some("remove the key to use the default cache directory"));
    }
    Some(Artifacts {
        mirror: a.mirror.clone(),
        mirrors: a.mirrors.clone(),
        arch: arch?,
        // a relative cache_dir is relative to the cluster file, like every other path in it
        cache_dir: a.cache_dir.as_deref().map(|d| state_dir.join(expand_home(d))),
        versions: a.versions.clone(),
    })
}

