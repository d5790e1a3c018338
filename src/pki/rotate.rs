//! CA rotation, the `pki/` side: where a rotation of one CA stands, and each step that moves it on.
//! The files say where it stands, so a run stopped anywhere resumes (`kbin pki rotate-ca`,
//! `deploy::rotate_ca`, places each state on the hosts before the next step):
//!
//! | stage       | `<ca>.crt`         | `<ca>.key` | beside it                     |
//! |-------------|--------------------|------------|-------------------------------|
//! | settled     | current            | current    | —                             |
//! | prepared    | old                | old        | `<ca>.new.crt`, `<ca>.new.key`|
//! | trusted     | old + new          | old        | `<ca>.new.*`                  |
//! | reissued    | new + old          | new        | `<ca>.old.*`                  |
//! | finishing   | new                | new        | `<ca>.old.*`                  |
//!
//! The first certificate of `<ca>.crt` is always the one that matches `<ca>.key` (the
//! controller-manager signs with the pair, and kbin's own issuing takes the first); every place
//! that trusts the CA gets the whole file. A CA file is never overwritten with anything but a
//! bundle holding the CA it held, and the retired pair is moved to `pki/retired/`, never deleted.

use std::collections::BTreeSet;

use serde::Serialize;

use super::profile::Profile;
use super::store::{Pending, Store};
use super::{PkiError, keys, kubeconfig, plan};
use crate::config::Cluster;

/// Where a rotation of one CA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// No rotation under way.
    Settled,
    /// A new CA exists beside the current one; nothing trusts it yet.
    Prepared,
    /// Everything trusts both; the old CA still signs.
    Trusted,
    /// The new CA signs; both are trusted.
    Reissued,
    /// Only the new CA is trusted; the old pair waits to be retired.
    Finishing,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Settled => "settled",
            Stage::Prepared => "prepared",
            Stage::Trusted => "trusted",
            Stage::Reissued => "reissued",
            Stage::Finishing => "finishing",
        }
    }
}

/// The files of one CA.
#[derive(Debug, Clone)]
pub struct CaFiles {
    pub id: String,
    pub crt: String,
    pub key: String,
    pub new_crt: String,
    pub new_key: String,
    pub old_crt: String,
    pub old_key: String,
}

/// The CA ids `rotate-ca` knows, and the files of `id`.
pub fn files(id: &str) -> Result<CaFiles, PkiError> {
    let profile = Profile::builtin();
    let row = profile.ca(id).ok_or_else(|| PkiError::UnknownName { name: id.into(), known: profile.cas.iter().map(|c| c.id.clone()).collect() })?;
    let f = &row.file;
    Ok(CaFiles {
        id: id.into(),
        crt: format!("{f}.crt"),
        key: format!("{f}.key"),
        new_crt: format!("{f}.new.crt"),
        new_key: format!("{f}.new.key"),
        old_crt: format!("{f}.old.crt"),
        old_key: format!("{f}.old.key"),
    })
}

/// Each `CERTIFICATE` block of `text` as PEM text and DER.
pub fn blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    pem::parse_many(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| (pem::encode(&b).replace("\r\n", "\n"), b.into_contents()))
        .collect()
}

fn der_of(store: &Store, rel: &str) -> Result<Option<Vec<u8>>, PkiError> {
    Ok(store.read(rel)?.and_then(|t| blocks(&t).into_iter().next()).map(|(_, d)| d))
}

fn bad(store: &Store, rel: &str, message: String) -> PkiError {
    PkiError::BadFile { path: store.path(rel), message }
}

/// Where the rotation of CA `id` stands, from the files.
pub fn stage(cluster: &Cluster, id: &str) -> Result<Stage, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    let text = store.read(&f.crt)?.ok_or_else(|| PkiError::CaMissing { ca: id.into(), path: store.path(&f.crt), leaves: vec![] })?;
    let certs = blocks(&text);
    let new = der_of(&store, &f.new_crt)?;
    let old = der_of(&store, &f.old_crt)?;
    let ders: Vec<&Vec<u8>> = certs.iter().map(|(_, d)| d).collect();
    match (ders.len(), new, old) {
        (1, None, None) => Ok(Stage::Settled),
        (1, Some(n), None) if *ders[0] != n => Ok(Stage::Prepared),
        (2, Some(n), _) if *ders[1] == n || *ders[0] == n => Ok(Stage::Trusted),
        (2, None, Some(o)) if *ders[1] == o => Ok(Stage::Reissued),
        (1, None, Some(o)) if *ders[0] != o => Ok(Stage::Finishing),
        (n, new, old) => Err(bad(
            &store,
            &f.crt,
            format!(
                "holds {n} certificate(s) with {} and {}: not a state of a kbin CA rotation",
                if new.is_some() { format!("{} present", f.new_crt) } else { format!("no {}", f.new_crt) },
                if old.is_some() { format!("{} present", f.old_crt) } else { format!("no {}", f.old_crt) }
            ),
        )),
    }
}

/// Settled → prepared: a new CA (new key, same subject) written beside the current one.
pub fn prepare(cluster: &Cluster, id: &str) -> Result<Vec<String>, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    let profile = Profile::builtin();
    let instances = plan::plan(cluster, &profile);
    let inst = instances.iter().find(|i| i.is_ca() && i.id == id).expect("every CA of the table is planned");
    let _lock = store.lock()?;
    let key = keys::generate(cluster.pki.key_algorithm).map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?;
    let mut written = store.write_new_files(&[Pending::key(f.new_key.clone(), key.serialize_pem())])?;
    let stored = store.key(&f.new_key)?.ok_or_else(|| PkiError::NotWritten { path: store.path(&f.new_key), why: "it is gone after writing".into() })?;
    let v = super::validity(cluster)?;
    let pem = super::issue::issue_ca(inst, &stored, v).map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?;
    written.extend(store.write_new_files(&[Pending::public(f.new_crt.clone(), pem)])?);
    Ok(written)
}

/// Prepared → trusted: `<ca>.crt` becomes old + new (the old one first: it still signs).
pub fn trust(cluster: &Cluster, id: &str) -> Result<Vec<String>, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let cur = store.read(&f.crt)?.unwrap_or_default();
    let new = store.read(&f.new_crt)?.ok_or_else(|| bad(&store, &f.new_crt, "is missing".into()))?;
    let (old, new) = (&blocks(&cur)[0].0, &blocks(&new)[0].0);
    store.replace_files(&[Pending::public(f.crt.clone(), format!("{old}{new}"))])
}

/// Trusted → reissued: the new pair signs (`<ca>.crt` = new + old), the old pair kept as
/// `<ca>.old.*`. Safe to repeat after a stop anywhere: the old pair is written first.
pub fn switch_signer(cluster: &Cluster, id: &str) -> Result<Vec<String>, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let new_text = store.read(&f.new_crt)?.ok_or_else(|| bad(&store, &f.new_crt, "is missing".into()))?;
    let (new_pem, new_der) = blocks(&new_text).into_iter().next().ok_or_else(|| bad(&store, &f.new_crt, "holds no certificate".into()))?;
    let new_key = store.read(&f.new_key)?.ok_or_else(|| bad(&store, &f.new_key, "is missing".into()))?;
    let cur = blocks(&store.read(&f.crt)?.unwrap_or_default());
    let (old_pem, _) = cur.iter().find(|(_, d)| *d != new_der).cloned().ok_or_else(|| bad(&store, &f.crt, "holds no certificate but the new one".into()))?;
    let mut written = Vec::new();
    if !store.exists(&f.old_key) {
        let key = store.read(&f.key)?.ok_or_else(|| bad(&store, &f.key, "is missing".into()))?;
        written.extend(store.write_new_files(&[Pending::key(f.old_key.clone(), key), Pending::public(f.old_crt.clone(), old_pem.clone())])?);
    }
    written.extend(store.replace_files(&[Pending::public(f.crt.clone(), format!("{new_pem}{old_pem}")), Pending::key(f.key.clone(), new_key)])?);
    for rel in [&f.new_crt, &f.new_key] {
        std::fs::remove_file(store.path(rel)).map_err(|source| PkiError::Write { path: store.path(rel), source })?;
    }
    Ok(written)
}

/// Reissued → finishing: only the new CA stays in `<ca>.crt`.
pub fn drop_old(cluster: &Cluster, id: &str) -> Result<Vec<String>, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let cur = blocks(&store.read(&f.crt)?.unwrap_or_default());
    store.replace_files(&[Pending::public(f.crt.clone(), cur[0].0.clone())])
}

/// Finishing → settled: the old pair moved to `pki/retired/<id>-<stamp>/`; the directory it went to.
pub fn retire(cluster: &Cluster, id: &str) -> Result<String, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let dir = format!("retired/{id}-{}", crate::fsutil::utc_stamp());
    let target = store.path(&dir);
    crate::fsutil::private_dir(&target).map_err(|source| PkiError::Write { path: target.clone(), source })?;
    for (rel, name) in [(&f.old_crt, "ca.crt"), (&f.old_key, "ca.key")] {
        let to = target.join(name);
        std::fs::rename(store.path(rel), &to).map_err(|source| PkiError::Write { path: to, source })?;
    }
    Ok(dir)
}

/// The DER of the CA being rotated away from (`None` when settled).
pub fn old_ca(cluster: &Cluster, id: &str) -> Result<Option<Vec<u8>>, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    Ok(match stage(cluster, id)? {
        Stage::Settled => None,
        Stage::Prepared | Stage::Trusted => {
            let new = der_of(&store, &f.new_crt)?;
            blocks(&store.read(&f.crt)?.unwrap_or_default()).into_iter().map(|(_, d)| d).find(|d| Some(d) != new.as_ref())
        }
        Stage::Reissued | Stage::Finishing => der_of(&store, &f.old_crt)?,
    })
}

/// The leaves signed by CA `id` that the signing CA (the first of `<ca>.crt`) did not sign:
/// their `pki renew` names.
pub fn unsigned_leaves(cluster: &Cluster, id: &str) -> Result<Vec<String>, PkiError> {
    let f = files(id)?;
    let store = Store::new(cluster.pki_dir());
    let Some(ca_der) = der_of(&store, &f.crt)? else { return Ok(vec![]) };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(&ca_der) else { return Err(bad(&store, &f.crt, "not an X.509 certificate".into())) };
    let profile = Profile::builtin();
    let mut out = BTreeSet::new();
    for inst in plan::plan(cluster, &profile).iter().filter(|i| !i.is_ca() && i.ca_id() == id) {
        let signed = der_of(&store, &inst.cert_path())?.is_some_and(|d| {
            x509_parser::parse_x509_certificate(&d).is_ok_and(|(_, c)| c.issuer() == ca.subject() && c.verify_signature(Some(ca.public_key())).is_ok())
        });
        if !signed {
            out.insert(inst.name.clone());
        }
    }
    Ok(out.into_iter().collect())
}

/// Every kubeconfig in `pki/` trusting `pki/ca.crt` as it is now, and carrying the client
/// certificate files as they are now; each keeps its server. The ones that changed.
pub fn refresh_kubeconfigs(cluster: &Cluster) -> Result<Vec<String>, PkiError> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let store = Store::new(cluster.pki_dir());
    let profile = Profile::builtin();
    let _lock = store.lock()?;
    let ca = store.read("ca.crt")?.ok_or_else(|| bad(&store, "ca.crt", "is missing".into()))?;
    let mut out = Vec::new();
    for row in &profile.kubeconfigs {
        let Some(text) = store.read(&row.file)? else { continue };
        let mut k = kubeconfig::parse(&text).map_err(|e| bad(&store, &row.file, format!("not a kubeconfig: {e}")))?;
        for c in &mut k.clusters {
            c.cluster.certificate_authority_data = Some(b64(&ca));
        }
        if let Some(cert) = &row.cert {
            let crow = profile.cert(cert).expect("checked by the table tests");
            let (Some(c), Some(key)) = (store.read(&format!("{}.crt", crow.file))?, store.read(&format!("{}.key", crow.file))?) else { continue };
            for u in &mut k.users {
                u.user.client_certificate_data = Some(b64(&c));
                u.user.client_key_data = Some(b64(&key));
            }
        }
        let new = kubeconfig::render(&k);
        if new != text {
            out.extend(store.replace_files(&[Pending::key(row.file.clone(), new)])?);
        }
    }
    Ok(out)
}

/// A client certificate for the kubelet of node `host` (`system:node:<host>` in `system:nodes`,
/// what TLS bootstrapping gives it), signed by the kubernetes CA's signing pair as it is now, with
/// a new key: the certificate and the key in one PEM, as the kubelet keeps them in
/// `kubelet-client-current.pem`. Held in memory only: it goes to the node, never into `pki/`.
pub fn kubelet_client(cluster: &Cluster, host: &str) -> Result<String, PkiError> {
    let store = Store::new(cluster.pki_dir());
    let profile = Profile::builtin();
    let instances = plan::plan(cluster, &profile);
    let ca_inst = instances.iter().find(|i| i.is_ca() && i.id == "ca").expect("the table has the kubernetes CA");
    let (Some(cert), Some(key)) = (store.read(&ca_inst.cert_path())?, store.key(&ca_inst.key_path())?) else {
        return Err(PkiError::KeyMissing { name: ca_inst.name.clone(), cert: store.path(&ca_inst.cert_path()), key: store.path(&ca_inst.key_path()), is_ca: true });
    };
    let ca = super::load_ca(&store, ca_inst, &cert, key)?;
    let row = super::profile::CertRow {
        id: "kubelet-client".into(),
        file: String::new(),
        per: super::profile::Per::Cluster,
        ca: "ca".into(),
        cn: format!("system:node:{host}"),
        o: vec!["system:nodes".into()],
        usage: super::profile::Usage::Client,
        sans: vec![],
    };
    let inst = plan::Instance { id: "kubelet-client", host: Some(host.into()), name: format!("kubelet-client/{host}"), file: String::new(), kind: plan::Kind::Leaf(&row), cn: row.cn.clone(), o: row.o.clone(), sans: vec![] };
    let key = keys::generate(cluster.pki.key_algorithm).map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?;
    let v = super::validity(cluster)?;
    let pem = super::issue::issue_leaf(&inst, &key, &ca.issuer, ca.not_after, v).map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?;
    Ok(format!("{pem}{}", key.serialize_pem()))
}

// --- the service-account signing key --------------------------------------------------------------
//
// The same stages for `sa.key` / `sa.pub`: `sa.pub` is what the apiservers accept tokens signed by
// (`--service-account-key-file`, several keys in one file), `sa.key` what they and the
// controller-manager sign with. prepared: `sa.new.key`; trusted: `sa.pub` = old + new; reissued:
// `sa.key` = new, `sa.pub` = new + old, `sa.old.key` kept (its time says when new tokens began to be
// signed by the new key); finishing: `sa.pub` = new.

/// The id `rotate` uses for the service-account key.
pub const SA: &str = "sa";
const SA_NEW: &str = "sa.new.key";
const SA_OLD: &str = "sa.old.key";

/// Each `PUBLIC KEY` block of `text`, as PEM text.
pub fn public_keys(text: &str) -> Vec<String> {
    pem::parse_many(text).unwrap_or_default().into_iter().filter(|b| b.tag() == "PUBLIC KEY").map(|b| pem::encode(&b).replace("\r\n", "\n")).collect()
}

fn pub_of(store: &Store, rel: &str) -> Result<Option<String>, PkiError> {
    Ok(match store.key(rel)? {
        Some(k) => Some(public_keys(&k.public_key_pem()).into_iter().next().unwrap_or_default()),
        None => None,
    })
}

/// Where the rotation of the service-account key stands.
pub fn sa_stage(cluster: &Cluster) -> Result<Stage, PkiError> {
    let store = Store::new(cluster.pki_dir());
    let pubs = public_keys(&store.read(super::SA_PUB)?.unwrap_or_default());
    let (new, old) = (pub_of(&store, SA_NEW)?, pub_of(&store, SA_OLD)?);
    match (pubs.len(), new, old) {
        (1, None, None) => Ok(Stage::Settled),
        (1, Some(n), None) if pubs[0] != n => Ok(Stage::Prepared),
        (2, Some(n), _) if pubs.contains(&n) => Ok(Stage::Trusted),
        (2, None, Some(o)) if pubs[1] == o => Ok(Stage::Reissued),
        (1, None, Some(o)) if pubs[0] != o => Ok(Stage::Finishing),
        (n, _, _) => Err(bad(&store, super::SA_PUB, format!("holds {n} public key(s) beside {}{}: not a state of a kbin key rotation", if store.exists(SA_NEW) { SA_NEW } else { "" }, if store.exists(SA_OLD) { SA_OLD } else { "" }))),
    }
}

/// Settled → prepared: a new key pair beside the current one.
pub fn sa_prepare(cluster: &Cluster) -> Result<Vec<String>, PkiError> {
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let key = keys::generate(cluster.pki.key_algorithm).map_err(|e| PkiError::Sign { name: "sa".into(), message: e.to_string() })?;
    store.write_new_files(&[Pending::key(SA_NEW.into(), key.serialize_pem())])
}

/// Prepared → trusted: `sa.pub` = old + new.
pub fn sa_trust(cluster: &Cluster) -> Result<Vec<String>, PkiError> {
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let old = public_keys(&store.read(super::SA_PUB)?.unwrap_or_default()).into_iter().next().ok_or_else(|| bad(&store, super::SA_PUB, "holds no public key".into()))?;
    let new = pub_of(&store, SA_NEW)?.ok_or_else(|| bad(&store, SA_NEW, "is missing".into()))?;
    store.replace_files(&[Pending::public(super::SA_PUB.into(), format!("{old}{new}"))])
}

/// Trusted → reissued: the new key signs, `sa.pub` = new + old, the old key kept as `sa.old.key`.
pub fn sa_switch(cluster: &Cluster) -> Result<Vec<String>, PkiError> {
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let new_key = store.read(SA_NEW)?.ok_or_else(|| bad(&store, SA_NEW, "is missing".into()))?;
    let new = pub_of(&store, SA_NEW)?.unwrap_or_default();
    let old = public_keys(&store.read(super::SA_PUB)?.unwrap_or_default()).into_iter().find(|p| *p != new).ok_or_else(|| bad(&store, super::SA_PUB, "holds no key but the new one".into()))?;
    let mut written = Vec::new();
    if !store.exists(SA_OLD) {
        let key = store.read(super::SA_KEY)?.ok_or_else(|| bad(&store, super::SA_KEY, "is missing".into()))?;
        written.extend(store.write_new_files(&[Pending::key(SA_OLD.into(), key)])?);
    }
    written.extend(store.replace_files(&[Pending::public(super::SA_PUB.into(), format!("{new}{old}")), Pending::key(super::SA_KEY.into(), new_key)])?);
    std::fs::remove_file(store.path(SA_NEW)).map_err(|source| PkiError::Write { path: store.path(SA_NEW), source })?;
    Ok(written)
}

/// Since when the new key signs (the time `sa.old.key` was written), when reissued.
pub fn sa_switched_at(cluster: &Cluster) -> Option<std::time::SystemTime> {
    std::fs::metadata(cluster.pki_dir().join(SA_OLD)).and_then(|m| m.modified()).ok()
}

/// Reissued → finishing: only the new public key stays in `sa.pub`.
pub fn sa_drop_old(cluster: &Cluster) -> Result<Vec<String>, PkiError> {
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let first = public_keys(&store.read(super::SA_PUB)?.unwrap_or_default()).into_iter().next().ok_or_else(|| bad(&store, super::SA_PUB, "holds no public key".into()))?;
    store.replace_files(&[Pending::public(super::SA_PUB.into(), first)])
}

/// Finishing → settled: `sa.old.key` moved to `pki/retired/sa-<stamp>/`.
pub fn sa_retire(cluster: &Cluster) -> Result<String, PkiError> {
    let store = Store::new(cluster.pki_dir());
    let _lock = store.lock()?;
    let dir = format!("retired/sa-{}", crate::fsutil::utc_stamp());
    let target = store.path(&dir);
    crate::fsutil::private_dir(&target).map_err(|source| PkiError::Write { path: target.clone(), source })?;
    std::fs::rename(store.path(SA_OLD), target.join("sa.key")).map_err(|source| PkiError::Write { path: target.join("sa.key"), source })?;
    Ok(dir)
}

/// The old public key (PEM) while a rotation is under way.
pub fn sa_old_public(cluster: &Cluster) -> Result<Option<String>, PkiError> {
    let store = Store::new(cluster.pki_dir());
    Ok(match sa_stage(cluster)? {
        Stage::Settled => None,
        Stage::Prepared | Stage::Trusted => {
            let new = pub_of(&store, SA_NEW)?;
            public_keys(&store.read(super::SA_PUB)?.unwrap_or_default()).into_iter().find(|p| Some(p) != new.as_ref())
        }
        Stage::Reissued | Stage::Finishing => pub_of(&store, SA_OLD)?,
    })
}
