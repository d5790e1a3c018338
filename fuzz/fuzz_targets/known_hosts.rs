//! known_hosts parsing and matching: any file content, no panic, no runaway pattern matching,
//! and a key recorded for a host is known for that host afterwards.
#![no_main]

use std::sync::OnceLock;

use kbin::host::known_hosts::{KnownHosts, Verdict};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

/// A wire-format key blob: string type, then a body.
fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
    let mut b = (kind.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind.as_bytes());
    b.extend_from_slice(body);
    b
}

fuzz_target!(|data: &[u8]| {
    let file = dir().path().join("known_hosts");
    std::fs::write(&file, data).expect("write");
    let kh = KnownHosts::with_files(Vec::new(), file.clone());
    let key = blob("ssh-ed25519", &[7; 32]);
    for (addr, port) in [("10.0.0.1", 22), ("10.0.0.1", 2222), ("node-1.example", 22), ("fd00::1", 22)] {
        let Ok(v) = kh.check(addr, port, &key) else { return }; // not UTF-8: an error, not a panic
        let _ = kh.known_types(addr, port);
        if v == Verdict::Unknown {
            kh.record(addr, port, &key).expect("record");
            assert_eq!(kh.check(addr, port, &key).expect("re-read"), Verdict::Known, "{addr}:{port} recorded but not known");
            std::fs::write(&file, data).expect("write");
        }
    }
});
