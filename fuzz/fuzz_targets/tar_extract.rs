//! Verify-and-extract of a release tarball: any tar (gzipped here), no panic, nothing written
//! outside the target directory, and a refused archive leaves the target empty.
#![no_main]

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use kbin::artifacts::Sha256;
use kbin::artifacts::extract::{Limits, verify_and_extract};
use libfuzzer_sys::fuzz_target;

#[path = "common/manifest.rs"]
mod manifest;

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fn files_under(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        let ft = e.file_type().expect("file type");
        out.push(path.clone());
        if ft.is_dir() {
            files_under(&path, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (flags, rest) = data.split_first().map(|(f, t)| (*f, t)).unwrap_or((0, data));
    let tar = manifest::tar_bytes(rest);
    let tar = tar.as_slice();
    let root = dir().path().join("run");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("mkdir");
    let archive = root.join("a.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).expect("gzip");
    let bytes = gz.finish().expect("gzip");
    std::fs::write(&archive, &bytes).expect("write");
    // a wrong digest now and then: nothing may be written then
    let digest = if flags & 4 != 0 { Sha256([0; 32]) } else { Sha256::of(&bytes) };
    let dest = root.join("out");
    let members = vec!["a/b".to_string(), "kubernetes/server/bin/kubelet".to_string(), "etcd".to_string()];
    let members = (flags & 1 != 0).then_some(members.as_slice());
    let limits = Limits { max_member: 1 << 16, max_total: 1 << 18, max_entries: 64 };
    let result = verify_and_extract(&archive, digest, members, &dest, flags & 2 != 0, &limits);
    let mut all = Vec::new();
    files_under(&root, &mut all);
    for p in &all {
        assert!(p == &archive || p == &dest || p.starts_with(&dest), "{} written outside {}", p.display(), dest.display());
        let meta = std::fs::symlink_metadata(p).expect("stat");
        assert!(!meta.file_type().is_symlink(), "symlink {} extracted", p.display());
    }
    match result {
        Ok(files) => {
            for f in files {
                assert!(f.starts_with(&dest), "{} returned outside {}", f.display(), dest.display());
            }
        }
        Err(_) => {
            let leftovers: Vec<_> = all.iter().filter(|p| p.starts_with(&dest) && **p != dest).collect();
            assert!(leftovers.is_empty(), "a refused archive left {leftovers:?}");
        }
    }
});
