//! `kbin pki import`: any certificate and key bytes (PEM or DER), no panic; whatever is accepted
//! passes every check a verifier makes on a CA.
#![no_main]

use kbin::pki::check_material;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the key starts at the first PEM block that holds a private key (or, in DER, after a 0 byte)
    let split = find(data, b"-----BEGIN ").and_then(|_| {
        let mut at = 0;
        while let Some(i) = find(&data[at..], b"-----BEGIN ") {
            let start = at + i;
            if data[start..].iter().take(40).collect::<Vec<_>>().windows(11).any(|w| w.iter().map(|b| **b).eq(*b"PRIVATE KEY")) {
                return Some(start);
            }
            at = start + 1;
        }
        None
    });
    let split = split.or_else(|| data.iter().position(|b| *b == 0)).unwrap_or(data.len());
    let (cert, key) = data.split_at(split);
    if let Ok(ok) = check_material(cert, key, time::OffsetDateTime::now_utc()) {
        assert!(ok.not_before <= time::OffsetDateTime::now_utc(), "accepted a CA not valid yet");
        assert!(ok.not_after > time::OffsetDateTime::now_utc(), "accepted an expired CA");
    }
});

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
