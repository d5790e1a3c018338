//! The keys the apiservers encrypt Secrets with in etcd: `pki/encryption-config.yaml`, an
//! EncryptionConfiguration kept 0600 like a private key and placed on every master as it is.
//!
//! aescbc with 32-byte keys from the system's CSPRNG, named `key-<UTC time>` so the newer of two is
//! known without other state; `identity` last, so Secrets written before encryption was turned on
//! stay readable. The first aescbc key encrypts, every key decrypts. A rotation walks
//! `[old]` -> `[old, new]` -> `[new, old]` -> (every Secret rewritten) -> `[new]`, each step on
//! every apiserver before the next: the file itself says where a rotation stands.

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The file in `pki/`.
pub const ENCRYPTION_CONFIG: &str = "encryption-config.yaml";

/// One aescbc key. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ name: {:?}, secret: <redacted> }}", self.name)
    }
}

/// Where a rotation stands, read from the keys themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// One key: nothing under way.
    Settled,
    /// A newer key is second: every apiserver must read it before it writes with it.
    NewKeyReadable,
    /// The newer key is first: apiservers write with it; Secrets are rewritten, then the old key goes.
    NewKeyWriting,
}

/// A new key named by the current UTC time (`stamp`), 32 random bytes.
pub fn new_key(stamp: &str) -> Key {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).expect("system CSPRNG");
    Key { name: format!("key-{}", stamp.to_ascii_lowercase()), secret: base64::engine::general_purpose::STANDARD.encode(raw) }
}

/// The EncryptionConfiguration for `keys` (the first encrypts).
pub fn render(keys: &[Key]) -> String {
    let mut out = String::from(
        "# kbin: the keys the apiservers encrypt Secrets with in etcd. The first aescbc key encrypts,\n\
         # every key decrypts; identity reads Secrets written before encryption. Secret: keep 0600.\n\
         # Rotate with `kbin pki rotate-encryption-key`.\n\
         apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aescbc:\n          keys:\n",
    );
    for k in keys {
        out.push_str(&format!("            - name: {}\n              secret: {}\n", k.name, k.secret));
    }
    out.push_str("      - identity: {}\n");
    out
}

/// The aescbc keys of a configuration kbin wrote, in order; an error that never repeats a secret.
pub fn parse(text: &str) -> Result<Vec<Key>, String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {}", e.to_string().split(':').next().unwrap_or("")))?;
    let keys = v["resources"][0]["providers"][0]["aescbc"]["keys"].as_sequence().ok_or("no resources[0].providers[0].aescbc.keys")?;
    let keys: Vec<Key> = keys.iter().map(|k| serde_yaml_ng::from_value(k.clone()).map_err(|_| "a key without name and secret".to_string())).collect::<Result<_, _>>()?;
    for k in &keys {
        let raw = base64::engine::general_purpose::STANDARD.decode(&k.secret).map_err(|_| format!("key {}: the secret is not base64", k.name))?;
        if raw.len() != 32 {
            return Err(format!("key {}: {} bytes, aescbc wants 32", k.name, raw.len()));
        }
    }
    if keys.is_empty() || keys.len() > 2 {
        return Err(format!("{} aescbc keys: kbin writes one, or two during a rotation", keys.len()));
    }
    Ok(keys)
}

/// Where a rotation of `keys` stands.
pub fn stage(keys: &[Key]) -> Stage {
    match keys {
        [_] => Stage::Settled,
        [first, second] if first.name < second.name => Stage::NewKeyReadable,
        _ => Stage::NewKeyWriting,
    }
}

/// The keys in `pki_dir` (a missing file: run `kbin pki init`).
pub fn load(pki_dir: &std::path::Path) -> Result<Vec<Key>, super::PkiError> {
    let path = pki_dir.join(ENCRYPTION_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|source| super::PkiError::Read { path: path.clone(), source })?;
    parse(&text).map_err(|message| super::PkiError::BadFile { path, message })
}

/// Write `keys` to `pki_dir` atomically, 0600 (the pki's own lock held).
pub fn save(pki_dir: &std::path::Path, keys: &[Key]) -> Result<(), super::PkiError> {
    let store = super::store::Store::new(pki_dir.to_path_buf());
    store.preflight([ENCRYPTION_CONFIG].into_iter())?;
    let _lock = store.lock()?;
    let path = pki_dir.join(ENCRYPTION_CONFIG);
    crate::fsutil::write_atomic(&path, render(keys).as_bytes(), 0o600).map_err(|source| super::PkiError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_the_stage_follows_their_order() {
        let old = new_key("20260101T000000Z");
        let new = new_key("20261201T000000Z");
        assert_ne!(old.secret, new.secret);
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&old.secret).unwrap().len(), 32);
        for keys in [vec![old.clone()], vec![old.clone(), new.clone()], vec![new.clone(), old.clone()]] {
            assert_eq!(parse(&render(&keys)).unwrap(), keys);
        }
        assert_eq!(stage(&[old.clone()]), Stage::Settled);
        assert_eq!(stage(&[old.clone(), new.clone()]), Stage::NewKeyReadable);
        assert_eq!(stage(&[new.clone(), old.clone()]), Stage::NewKeyWriting);
        let text = render(&[new.clone()]);
        assert!(text.contains("- identity: {}") && text.find("aescbc") < text.find("identity"), "{text}");
        assert!(!format!("{new:?}").contains(&new.secret));
    }

    #[test]
    fn a_damaged_file_is_refused_without_showing_a_secret() {
        let k = new_key("20261201T000000Z");
        let short = render(&[Key { name: "k".into(), secret: "c2hvcnQ=".into() }]);
        assert!(parse(&short).unwrap_err().contains("32"));
        let three = render(&[k.clone(), k.clone(), k.clone()]);
        assert!(parse(&three).is_err());
        let e = parse(&render(&[k.clone()]).replace("aescbc", "secretbox")).unwrap_err();
        assert!(!e.contains(&k.secret), "{e}");
    }
}
