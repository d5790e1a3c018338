//! Host key verification against OpenSSH `known_hosts` files.
//!
//! kbin reads the user's `~/.ssh/known_hosts` and its own `<state_dir>/known_hosts` (next to the
//! cluster file) and writes only the latter. Entries may be plain (`10.0.0.1`, `[10.0.0.1]:2222`,
//! patterns with `*`, `?` and `!`) or hashed (`|1|salt|hmac`, what `HashKnownHosts yes` writes).
//! `@revoked` lines refuse a key; `@cert-authority` lines are not used (kbin does not do host
//! certificates) and are skipped.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

/// The answer for a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A matching entry exists.
    Known,
    /// No entry for this host at all.
    Unknown,
    /// Entries exist for this host, none with this key: `expected` holds their fingerprints,
    /// `known_in` where they are (`file:line`).
    Changed { expected: Vec<String>, known_in: Vec<String> },
    /// The key is listed under `@revoked`.
    Revoked { file: String },
}

#[derive(Debug)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Option<String>,
    patterns: String,
    key_type: String,
    blob: Vec<u8>,
}

/// The known_hosts files kbin consults, and the one it records new keys in.
#[derive(Debug)]
pub struct KnownHosts {
    read_only: Vec<PathBuf>,
    state_file: PathBuf,
    write_lock: Mutex<()>,
}

impl KnownHosts {
    /// `~/.ssh/known_hosts` (read only) and `<state_dir>/known_hosts` (read and recorded into).
    pub fn for_state_dir(state_dir: &Path) -> KnownHosts {
        let user = dirs::home_dir().map(|h| h.join(".ssh").join("known_hosts")).into_iter().collect();
        KnownHosts::with_files(user, state_dir.join("known_hosts"))
    }
    pub fn with_files(read_only: Vec<PathBuf>, state_file: PathBuf) -> KnownHosts {
        KnownHosts { read_only, state_file, write_lock: Mutex::new(()) }
    }
    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for f in self.read_only.iter().chain(std::iter::once(&self.state_file)) {
            match std::fs::read_to_string(f) {
                Ok(text) => parse_into(f, &text, &mut out),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", f.display()))),
            }
        }
        Ok(out)
    }

    /// Check a presented host key (its wire blob) for `addr:port`.
    pub fn check(&self, addr: &str, port: u16, blob: &[u8]) -> io::Result<Verdict> {
        let name = host_name(addr, port);
        let entries = self.entries()?;
        let mine: Vec<&Entry> = entries.iter().filter(|e| host_matches(&e.patterns, &name)).collect();
        if let Some(e) = mine.iter().find(|e| e.marker.as_deref() == Some("@revoked") && e.blob == blob) {
            return Ok(Verdict::Revoked { file: format!("{}:{}", e.file.display(), e.line) });
        }
        let plain: Vec<&&Entry> = mine.iter().filter(|e| e.marker.is_none()).collect();
        if plain.iter().any(|e| e.blob == blob) {
            return Ok(Verdict::Known);
        }
        if plain.is_empty() {
            return Ok(Verdict::Unknown);
        }
        Ok(Verdict::Changed {
            expected: plain.iter().map(|e| format!("{} {}", e.key_type, fingerprint(&e.blob))).collect(),
            known_in: plain.iter().map(|e| format!("{}:{}", e.file.display(), e.line)).collect(),
        })
    }

    /// Key types (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...) already known for a host,
    /// so the connection can ask the server for one of those first.
    pub fn known_types(&self, addr: &str, port: u16) -> Vec<String> {
        let name = host_name(addr, port);
        let mut types: Vec<String> = Vec::new();
        for e in self.entries().unwrap_or_default() {
            if e.marker.is_none() && host_matches(&e.patterns, &name) && !types.contains(&e.key_type) {
                types.push(e.key_type);
            }
        }
        types
    }

    /// The known_hosts lines (`name type base64`) of the keys known for `addr:port`: what a host
    /// needs to verify a peer the way kbin verified it.
    pub fn lines_for(&self, addr: &str, port: u16) -> Vec<String> {
        let name = host_name(addr, port);
        self.entries().unwrap_or_default().into_iter().filter(|e| e.marker.is_none() && host_matches(&e.patterns, &name)).map(|e| format!("{name} {} {}", e.key_type, STANDARD.encode(&e.blob))).collect()
    }

    /// Record a key for `addr:port` in the state file (rewritten atomically). Recording a key that
    /// is already there is a no-op.
    pub fn record(&self, addr: &str, port: u16, blob: &[u8]) -> io::Result<()> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let name = host_name(addr, port);
        let mut text = match std::fs::read_to_string(&self.state_file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut existing = Vec::new();
        parse_into(&self.state_file, &text, &mut existing);
        if existing.iter().any(|e| e.marker.is_none() && e.blob == blob && host_matches(&e.patterns, &name)) {
            return Ok(());
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{name} {} {}\n", key_type_of(blob).unwrap_or("unknown"), STANDARD.encode(blob)));
        if let Some(dir) = self.state_file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_atomic(&self.state_file, text.as_bytes(), 0o644)
    }
}

/// How OpenSSH names a host in known_hosts: `addr` on port 22, `[addr]:port` otherwise.
pub fn host_name(addr: &str, port: u16) -> String {
    if port == 22 { addr.to_string() } else { format!("[{addr}]:{port}") }
}

/// `SHA256:<base64 without padding>`, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, blob)))
}

/// The key type named inside a wire-format key blob.
pub fn key_type_of(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

fn parse_into(file: &Path, text: &str, out: &mut Vec<Entry>) {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let marker = if first.starts_with('@') {
            let m = first.to_string();
            first = fields.next().unwrap_or("");
            Some(m)
        } else {
            None
        };
        let (Some(key_type), Some(b64)) = (fields.next(), fields.next()) else { continue };
        let Ok(blob) = STANDARD.decode(b64) else { continue };
        if marker.as_deref().is_some_and(|m| m != "@revoked") {
            continue;
        }
        out.push(Entry { file: file.to_path_buf(), line: i + 1, marker, patterns: first.to_string(), key_type: key_type.to_string(), blob });
    }
}

/// Does a known_hosts host field (comma-separated patterns, or one hashed name) match `name`?
fn host_matches(patterns: &str, name: &str) -> bool {
    if let Some(rest) = patterns.strip_prefix("|1|") {
        let mut parts = rest.split('|');
        let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else { return false };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else { return false };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
        return ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok();
    }
    let mut matched = false;
    for p in patterns.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, name) {
                return false;
            }
        } else if glob(p, name) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive, as OpenSSH's match_pattern. Linear backtracking to
/// the last `*` only: a pattern of many stars cannot make it run for ever.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&s[si]))) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = ring::hmac::sign(&key, name.as_bytes());
        format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(tag.as_ref()))
    }

    fn store(user: &str, state: &str) -> (tempfile::TempDir, KnownHosts) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("user_known_hosts"), user).unwrap();
        if !state.is_empty() {
            std::fs::write(d.path().join("known_hosts"), state).unwrap();
        }
        let kh = KnownHosts::with_files(vec![d.path().join("user_known_hosts")], d.path().join("known_hosts"));
        (d, kh)
    }

    #[test]
    fn plain_port_and_hashed_entries_are_understood() {
        let k1 = blob("ssh-ed25519", b"one");
        let k2 = blob("ssh-ed25519", b"two");
        let k3 = blob("ecdsa-sha2-nistp256", b"three");
        let user = format!(
            "# comment\n10.0.0.1 ssh-ed25519 {}\n[10.0.0.2]:2222 ssh-ed25519 {}\n{} ecdsa-sha2-nistp256 {}\n",
            STANDARD.encode(&k1),
            STANDARD.encode(&k2),
            hashed("[10.0.0.3]:2200", b"saltsaltsaltsaltsalt"),
            STANDARD.encode(&k3)
        );
        let (_d, kh) = store(&user, "");
        assert_eq!(kh.check("10.0.0.1", 22, &k1).unwrap(), Verdict::Known);
        assert_eq!(kh.check("10.0.0.2", 2222, &k2).unwrap(), Verdict::Known);
        // the port is part of the name: the same address on port 22 is a different host
        assert_eq!(kh.check("10.0.0.2", 22, &k2).unwrap(), Verdict::Unknown);
        assert_eq!(kh.check("10.0.0.3", 2200, &k3).unwrap(), Verdict::Known);
        assert_eq!(kh.check("10.0.0.3", 22, &k3).unwrap(), Verdict::Unknown);
        assert_eq!(kh.known_types("10.0.0.3", 2200), vec!["ecdsa-sha2-nistp256".to_string()]);
    }

    #[test]
    fn a_different_key_for_a_known_host_is_a_change_with_both_fingerprints() {
        let old = blob("ssh-ed25519", b"old");
        let new = blob("ssh-ed25519", b"new");
        let (d, kh) = store(&format!("10.0.0.1 ssh-ed25519 {}\n", STANDARD.encode(&old)), "");
        match kh.check("10.0.0.1", 22, &new).unwrap() {
            Verdict::Changed { expected, known_in } => {
                assert_eq!(expected, vec![format!("ssh-ed25519 {}", fingerprint(&old))]);
                assert_eq!(known_in, vec![format!("{}:1", d.path().join("user_known_hosts").display())]);
            }
            v => panic!("expected a change, got {v:?}"),
        }
    }

    #[test]
    fn glob_matches_like_openssh() {
        for (p, s, want) in [("*", "", true), ("10.0.0.*", "10.0.0.5", true), ("10.0.0.?", "10.0.0.15", false), ("*.EXAMPLE.com", "a.b.example.COM", true), ("a*b*c", "axxbyyc", true), ("a*b*c", "axxbyy", false), ("", "a", false)] {
            assert_eq!(glob(p, s), want, "{p:?} vs {s:?}");
        }
    }

    /// A known_hosts pattern of many `*` against a long name took exponential time (found
    /// while writing the known_hosts fuzz target, which would report it as a timeout).
    #[test]
    fn pattern_of_many_stars_does_not_hang() {
        let started = std::time::Instant::now();
        assert!(!glob(&format!("{}x", "*".repeat(64)), &"a".repeat(256)));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
    }

    #[test]
    fn revoked_and_patterns() {
        let k = blob("ssh-ed25519", b"k");
        let text = format!("@revoked * ssh-ed25519 {}\n", STANDARD.encode(&k));
        let (_d, kh) = store(&text, "");
        assert!(matches!(kh.check("10.1.1.1", 22, &k).unwrap(), Verdict::Revoked { .. }));
        let text = format!("10.0.0.*,!10.0.0.9 ssh-ed25519 {}\n", STANDARD.encode(&k));
        let (_d, kh) = store(&text, "");
        assert_eq!(kh.check("10.0.0.5", 22, &k).unwrap(), Verdict::Known);
        assert_eq!(kh.check("10.0.0.9", 22, &k).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn record_appends_once_to_the_state_file_only() {
        let k = blob("ssh-ed25519", b"k");
        let (d, kh) = store("", "# kept\n");
        kh.record("127.0.0.1", 2022, &k).unwrap();
        kh.record("127.0.0.1", 2022, &k).unwrap();
        let text = std::fs::read_to_string(d.path().join("known_hosts")).unwrap();
        assert_eq!(text, format!("# kept\n[127.0.0.1]:2022 ssh-ed25519 {}\n", STANDARD.encode(&k)));
        assert_eq!(std::fs::read_to_string(d.path().join("user_known_hosts")).unwrap(), "");
        assert_eq!(kh.check("127.0.0.1", 2022, &k).unwrap(), Verdict::Known);
    }

    #[test]
    fn fingerprint_matches_ssh_keygen_format() {
        // `ssh-keygen -lf` of this public key prints SHA256:gyb3Y8TSQhXV8fgRnrLkhYOuBK8e/f3cNJd1A1pnN4A
        let pubkey = "AAAAC3NzaC1lZDI1NTE5AAAAIBN9ahwsZnmgKl+tt8NyaBD1mWyBRcAZ+Kj1SITUl2es";
        let b = STANDARD.decode(pubkey).unwrap();
        assert_eq!(key_type_of(&b), Some("ssh-ed25519"));
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-f", "/dev/stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(format!("ssh-ed25519 {pubkey}\n").as_bytes())?;
                c.wait_with_output()
            })
            .expect("ssh-keygen (openssh-client) is needed for this test");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains(&fingerprint(&b)), "ssh-keygen says {printed}, we say {}", fingerprint(&b));
    }
}
