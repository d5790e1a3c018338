//! `kbin bundle load`: any tar file, no panic; a refused bundle adds nothing to the cache or the
//! cluster's lock.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use kbin::artifacts::Catalog;
use kbin::artifacts::bundle;
use kbin::artifacts::cache::Cache;
use libfuzzer_sys::fuzz_target;

#[path = "common/manifest.rs"]
mod manifest;

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fn count(p: &Path) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let root = dir().path().join("run");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("mkdir");
    let file = root.join("bundle.tar");
    std::fs::write(&file, manifest::tar_bytes(data)).expect("write");
    let cache = Cache::open(&root.join("cache")).expect("cache");
    let lock = root.join("kbin.lock");
    let with_lock = data.len() % 2 == 0;
    let r = bundle::load(&file, &cache, Catalog::embedded(), with_lock.then_some(lock.as_path()));
    if r.is_err() {
        assert_eq!(count(&root.join("cache").join("sha256")), 0, "a refused bundle added to the cache");
        assert!(!lock.exists(), "a refused bundle wrote the lock");
    }
});
