//! kbin's own certificate authority, driven by the table in `pki-profiles/`.
//!
//! - [`init`] issues everything missing and never rewrites what exists (a CA is never replaced).
//! - [`renew`] re-issues named leaves on purpose.
//! - [`inspect`] and [`check`] read the certificates back with x509-parser.
//! - [`import`] adopts an existing CA (for example one made with cfssl).
//!
//! Layout under `<state dir>/pki/` (0700): `ca.{crt,key}`, `etcd/ca.{crt,key}`,
//! `front-proxy-ca.{crt,key}`, `sa.{key,pub}`, cluster-wide client certs (`admin.crt`, ...),
//! per-host certs in `hosts/<name>/`, kubeconfigs in `kubeconfigs/`, and the kubelet bootstrap
//! token in `bootstrap-token` and `token.csv`. Keys and tokens are 0600.

pub mod cacheck;
pub mod encryption;
pub mod issue;
pub mod keys;
pub mod kubeconfig;
pub mod onhost;
pub mod plan;
pub mod profile;
pub mod rotate;

mod import;
mod inspect;
mod store;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rcgen::{Issuer, KeyPair};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use time::OffsetDateTime;

pub use import::{ImportReport, Material, Part as ImportPart, Refused as ImportRefused, check_material, import};
pub use inspect::{CertInfo, Problem, check, expiring, inspect, read_cert_info};
use issue::Validity;
pub use store::Store;
use store::Pending;
use plan::{Instance, San};
use profile::Profile;

use crate::config::Cluster;
use crate::exit::{Exit, Reportable};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    #[error("{}: unusable private key", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: keys::KeyError,
    },
    #[error("signing {name} failed: {message}")]
    Sign { name: String, message: String },
    #[error("the {ca} CA is missing ({}) but certificates it signed exist: {}", path.display(), leaves.join(", "))]
    CaMissing { ca: String, path: PathBuf, leaves: Vec<String> },
    #[error("{} exists but its private key {} is missing", cert.display(), key.display())]
    KeyMissing { name: String, cert: PathBuf, key: PathBuf, is_ca: bool },
    #[error("unknown certificate {name:?}")]
    UnknownName { name: String, known: Vec<String> },
    #[error("{name} is a CA; kbin never replaces a CA")]
    RenewCa { name: String },
    #[error("{} already exists; kbin never replaces a CA", path.display())]
    CaExists { path: PathBuf },
    #[error("cannot import {}: {message}", path.display())]
    Import { path: PathBuf, message: String },
    #[error("{}: the CA fails what verifiers check: {message}", path.display())]
    BadCa { path: PathBuf, message: String },
    #[error("{} is {what}; kbin keeps keys and certificates only in regular files inside pki/", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{} was not stored: {why}", path.display())]
    NotWritten { path: PathBuf, why: String },
}

impl Reportable for PkiError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PkiError::Write { .. } => "check that the directory next to the cluster file is writable and has free space".into(),
            PkiError::Read { .. } | PkiError::BadFile { .. } | PkiError::Key { .. } => {
                "restore the file from a backup, or move it away and run `kbin pki init` to issue a new one".into()
            }
            PkiError::Sign { .. } => "this is a bug in kbin; please report it with the cluster file".into(),
            PkiError::CaMissing { .. } => "restore the CA from a backup, or `kbin pki import` it; a new CA would orphan every certificate it signed".into(),
            PkiError::KeyMissing { is_ca: true, .. } => "restore the CA key from a backup; without it nothing new can be signed".into(),
            PkiError::KeyMissing { name, .. } => format!("restore the key, or re-issue the certificate with `kbin pki renew {name}`"),
            PkiError::UnknownName { known, .. } => format!("names are: {}", known.join(", ")),
            PkiError::RenewCa { .. } => "a CA is rotated, not renewed: `kbin pki rotate-ca kubernetes|etcd|front-proxy` (no downtime, resumable)".into(),
            PkiError::CaExists { .. } => "import into a cluster directory that has no CA of that kind yet".into(),
            PkiError::Import { .. } => "import a root CA that passes the check named above (`openssl x509 -in CERT -noout -text` shows its fields), with its private key (PEM or DER: PKCS#8, PKCS#1 RSA or SEC1 EC)".into(),
            PkiError::NotRegular { path, .. } => format!("move {} away (or replace the link by the file itself) and run the command again; nothing was written", path.display()),
            PkiError::BadCa { .. } => "certificates signed by this CA would be rejected; `kbin pki import` a CA that passes these checks into a new cluster directory".into(),
            PkiError::NotWritten { .. } => "make sure no other program writes to pki/ and run the command again".into(),
        })
    }
    fn exit(&self) -> Exit {
        match self {
            PkiError::CaMissing { .. } | PkiError::KeyMissing { .. } | PkiError::CaExists { .. } | PkiError::RenewCa { .. } | PkiError::NotRegular { .. } | PkiError::BadCa { .. } => Exit::Refused,
            _ => Exit::Failure,
        }
    }
}

/// Something on disk that no longer matches the cluster file.
#[derive(Debug, Clone, Serialize)]
pub struct Stale {
    pub name: String,
    pub file: String,
    pub problem: String,
    /// What to do about it.
    pub hint: String,
}

#[derive(Debug, Default, Serialize)]
pub struct InitReport {
    /// Names of certificates issued by this run.
    pub issued: Vec<String>,
    /// Every file this run wrote, relative to the pki directory.
    pub written: Vec<String>,
    /// How many certificates already existed and were kept as they are.
    pub kept: usize,
    pub stale: Vec<Stale>,
}

pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";
pub const BOOTSTRAP_TOKEN: &str = "bootstrap-token";
pub const TOKEN_CSV: &str = "token.csv";

/// A loaded CA able to sign.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

fn load_ca(store: &Store, inst: &Instance<'_>, cert_pem: &str, key: KeyPair) -> Result<Ca, PkiError> {
    let path = store.path(&inst.cert_path());
    let der = pem_to_der(cert_pem, &path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::BadFile { path: path.clone(), message: format!("not an X.509 certificate: {e}") })?;
    let failed = cacheck::all(&cert, OffsetDateTime::now_utc());
    if !failed.is_empty() {
        return Err(PkiError::BadCa { path, message: cacheck::joined(&failed) });
    }
    if !keys::matches_spki(&key, cert.public_key().raw) {
        return Err(PkiError::BadFile { path, message: format!("does not match its key {}", store.path(&inst.key_path()).display()) });
    }
    let not_after = cert.validity().not_after.to_datetime();
    let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key).map_err(|e| PkiError::BadFile { path, message: e.to_string() })?;
    Ok(Ca { issuer, not_after })
}

pub(crate) fn pem_to_der(text: &str, path: &Path) -> Result<Vec<u8>, PkiError> {
    let block = pem::parse(text).map_err(|e| PkiError::BadFile { path: path.to_path_buf(), message: format!("not PEM: {e}") })?;
    if block.tag() != "CERTIFICATE" {
        return Err(PkiError::BadFile { path: path.to_path_buf(), message: format!("holds a {:?}, not a CERTIFICATE", block.tag()) });
    }
    Ok(block.into_contents())
}

/// SANs carried by a parsed certificate.
pub(crate) fn cert_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<San> {
    use x509_parser::extensions::GeneralName;
    let mut out = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => {
                    out.insert(San::Dns(d.to_string()));
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        out.insert(San::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    out.into_iter().collect()
}

/// Compare a certificate's SANs with the expected ones; `None` when they match.
pub(crate) fn san_problem(actual: &[San], expected: &[San]) -> Option<String> {
    let missing: Vec<String> = expected.iter().filter(|s| !actual.contains(s)).map(|s| s.to_string()).collect();
    let extra: Vec<String> = actual.iter().filter(|s| !expected.contains(s)).map(|s| s.to_string()).collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("lacks {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("has {} that the cluster file no longer implies", extra.join(", ")));
    }
    Some(format!("SANs differ from the cluster file: {}", parts.join("; ")))
}

fn validity(cluster: &Cluster) -> Result<Validity, PkiError> {
    Validity::new(OffsetDateTime::now_utc(), cluster.pki.ca_validity_days, cluster.pki.leaf_validity_days)
        .map_err(|message| PkiError::Sign { name: "every certificate".into(), message })
}

/// Run `f` over `items` on all cores, keeping the order.
fn parallel_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    if n <= 1 {
        return items.into_iter().map(f).collect();
    }
    let workers = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).min(n);
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let results = std::sync::Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((i, item)) = next else { break };
                    let r = f(item);
                    results.lock().unwrap().push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}` from the system CSPRNG.
pub fn new_bootstrap_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(23);
    while out.len() < 23 {
        if out.len() == 6 {
            out.push('.');
            continue;
        }
        let mut b = [0u8; 1];
        rng.fill(&mut b).expect("system CSPRNG");
        // rejection sampling keeps the distribution uniform
        if (b[0] as usize) < 252 {
            out.push(ALPHABET[b[0] as usize % 36] as char);
        }
    }
    out
}

/// `token.csv` for kube-apiserver's `--token-auth-file`: token, user, uid, groups.
pub fn token_csv(token: &str) -> String {
    format!("{token},kubelet-bootstrap,10001,\"system:bootstrappers\"\n")
}

/// Everything that is produced in memory before a single file is written.
struct Batch<'s> {
    store: &'s Store,
    files: Vec<Pending>,
}

impl Batch<'_> {
    /// Text of `rel`: what this batch is about to write, else what is on disk.
    fn text(&self, rel: &str) -> Result<Option<String>, PkiError> {
        if let Some(p) = self.files.iter().rev().find(|p| p.rel == rel) {
            return Ok(Some(p.bytes.clone()));
        }
        self.store.read(rel)
    }
}

/// Issue a batch of leaves (in parallel), reusing existing keys where given.
fn issue_leaves<'p>(
    work: Vec<(&Instance<'p>, Option<KeyPair>)>,
    cas: &HashMap<String, Ca>,
    cluster: &Cluster,
    v: Validity,
) -> Result<Vec<(String, Option<String>, String, String)>, PkiError> {
    let algo = cluster.pki.key_algorithm;
    let results = parallel_map(work, |(inst, key)| -> Result<_, PkiError> {
        let new_key = key.is_none();
        let key = match key {
            Some(k) => k,
            None => keys::generate(algo).map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?,
        };
        let ca = &cas[inst.ca_id()];
        let cert = issue::issue_leaf(inst, &key, &ca.issuer, ca.not_after, v)
            .map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?;
        Ok((inst.file.clone(), new_key.then(|| key.serialize_pem()), cert, inst.name.clone()))
    });
    results.into_iter().collect()
}

/// Issue everything the cluster needs that does not exist yet. Existing files are never touched.
pub fn init(cluster: &Cluster) -> Result<InitReport, PkiError> {
    let profile = Profile::builtin();
    let instances = plan::plan(cluster, &profile);
    let store = Store::new(cluster.pki_dir());
    let v = validity(cluster)?;
    // 0. Every place a file goes is a regular file or nothing (checked before anything is
    //    written), then one kbin at a time, and what a killed run left is removed.
    let mut rels: Vec<String> = instances.iter().flat_map(|i| [i.cert_path(), i.key_path()]).collect();
    rels.extend([SA_KEY, SA_PUB, BOOTSTRAP_TOKEN, TOKEN_CSV, encryption::ENCRYPTION_CONFIG].map(String::from));
    rels.extend(profile.kubeconfigs.iter().map(|k| k.file.clone()));
    store.preflight(rels.iter().map(String::as_str))?;
    let _lock = store.lock()?;
    let mut report = InitReport::default();
    let mut batch = Batch { store: &store, files: Vec::new() };

    // 1. CAs that exist: loaded and checked (as a verifier would) before anything is written.
    let mut cas: HashMap<String, Ca> = HashMap::new();
    let mut new_cas = Vec::new();
    for inst in instances.iter().filter(|i| i.is_ca()) {
        let cert = store.read(&inst.cert_path())?;
        let key = store.key(&inst.key_path())?;
        match (cert, key) {
            (Some(cert), Some(key)) => {
                report.kept += 1;
                cas.insert(inst.id.to_string(), load_ca(&store, inst, &cert, key)?);
            }
            (Some(_), None) => {
                return Err(PkiError::KeyMissing { name: inst.name.clone(), cert: store.path(&inst.cert_path()), key: store.path(&inst.key_path()), is_ca: true });
            }
            (None, key) => {
                let leaves: Vec<String> = instances
                    .iter()
                    .filter(|l| !l.is_ca() && l.ca_id() == inst.id && store.exists(&l.cert_path()))
                    .map(|l| l.name.clone())
                    .collect();
                if !leaves.is_empty() {
                    return Err(PkiError::CaMissing { ca: inst.name.clone(), path: store.path(&inst.cert_path()), leaves });
                }
                new_cas.push((inst, key));
            }
        }
    }

    // 2. Leaves: keep what exists (reporting SAN drift), issue what is missing.
    let mut work = Vec::new();
    for inst in instances.iter().filter(|i| !i.is_ca()) {
        let cert = store.read(&inst.cert_path())?;
        let key_exists = store.exists(&inst.key_path());
        match (cert, key_exists) {
            (Some(pem), true) => {
                report.kept += 1;
                let path = store.path(&inst.cert_path());
                let der = pem_to_der(&pem, &path)?;
                let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::BadFile { path: path.clone(), message: format!("not an X.509 certificate: {e}") })?;
                if let Some(problem) = san_problem(&cert_sans(&cert), &inst.sans) {
                    report.stale.push(Stale { name: inst.name.clone(), file: inst.cert_path(), problem, hint: format!("re-issue it on purpose with `kbin pki renew {}`", inst.name) });
                }
            }
            (Some(_), false) => {
                return Err(PkiError::KeyMissing { name: inst.name.clone(), cert: store.path(&inst.cert_path()), key: store.path(&inst.key_path()), is_ca: false });
            }
            (None, true) => work.push((inst, store.key(&inst.key_path())?)),
            (None, false) => work.push((inst, None)),
        }
    }

    // 3. New CAs: a new key is stored and read back before it signs anything.
    for (inst, key) in new_cas {
        let key = match key {
            Some(k) => k,
            None => {
                let k = keys::generate(cluster.pki.key_algorithm).map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?;
                report.written.extend(store.write_new_files(&[Pending::key(inst.key_path(), k.serialize_pem())])?);
                let stored = store.key(&inst.key_path())?.ok_or_else(|| PkiError::NotWritten { path: store.path(&inst.key_path()), why: "it is gone after writing".into() })?;
                if stored.public_key_raw() != k.public_key_raw() {
                    return Err(PkiError::NotWritten { path: store.path(&inst.key_path()), why: "reading it back gave another key".into() });
                }
                stored
            }
        };
        let pem = issue::issue_ca(inst, &key, v).map_err(|e| PkiError::Sign { name: inst.name.clone(), message: e.to_string() })?;
        batch.files.push(Pending::public(inst.cert_path(), pem.clone()));
        report.issued.push(inst.name.clone());
        cas.insert(inst.id.to_string(), load_ca(&store, inst, &pem, key)?);
    }
    for (file, key_pem, cert_pem, name) in issue_leaves(work, &cas, cluster, v)? {
        if let Some(k) = key_pem {
            batch.files.push(Pending::key(format!("{file}.key"), k));
        }
        batch.files.push(Pending::public(format!("{file}.crt"), cert_pem));
        report.issued.push(name);
    }

    // 4. Service-account key pair (never a CA key).
    match (store.exists(SA_KEY), store.exists(SA_PUB)) {
        (false, _) => {
            let k = keys::generate(cluster.pki.key_algorithm).map_err(|e| PkiError::Sign { name: "sa".into(), message: e.to_string() })?;
            batch.files.push(Pending::key(SA_KEY.into(), k.serialize_pem()));
            batch.files.push(Pending::public(SA_PUB.into(), k.public_key_pem()));
            report.issued.push("sa".into());
        }
        (true, false) => {
            let k = store.key(SA_KEY)?.expect("exists");
            batch.files.push(Pending::public(SA_PUB.into(), k.public_key_pem()));
        }
        (true, true) => report.kept += 1,
    }

    // 5. Kubelet bootstrap token and the static token file.
    let token = match store.read(BOOTSTRAP_TOKEN)? {
        Some(t) => t.trim().to_string(),
        None => {
            let t = new_bootstrap_token();
            batch.files.push(Pending::key(BOOTSTRAP_TOKEN.into(), format!("{t}\n")));
            report.issued.push("bootstrap-token".into());
            t
        }
    };
    if !store.exists(TOKEN_CSV) {
        batch.files.push(Pending::key(TOKEN_CSV.into(), token_csv(&token)));
    }

    // 5b. The key the apiservers encrypt Secrets with in etcd (never replaced: `kbin pki
    //     rotate-encryption-key` rotates it).
    if !store.exists(encryption::ENCRYPTION_CONFIG) {
        let key = encryption::new_key(&crate::fsutil::utc_stamp());
        batch.files.push(Pending::key(encryption::ENCRYPTION_CONFIG.into(), encryption::render(&[key])));
        report.issued.push("encryption-key".into());
    }

    // 6. Kubeconfigs.
    for row in &profile.kubeconfigs {
        let expected = render_kubeconfig(cluster, &profile, row, &batch, &token)?;
        match store.read(&row.file)? {
            None => {
                batch.files.push(Pending::key(row.file.clone(), expected));
                report.issued.push(format!("kubeconfig/{}", row.id));
            }
            Some(existing) => {
                report.kept += 1;
                if let Some((problem, moved)) = kubeconfig_problem(&existing, &expected) {
                    report.stale.push(Stale { name: format!("kubeconfig/{}", row.id), file: row.file.clone(), problem, hint: kubeconfig_hint(row, moved) });
                }
            }
        }
    }

    // 7. Write: keys before certificates, so an interrupted run resumes with the same keys.
    let (first, second): (Vec<Pending>, Vec<Pending>) = batch.files.into_iter().partition(|p| p.mode == 0o600 && p.rel.ends_with(".key"));
    report.written.extend(store.write_new_files(&first)?);
    report.written.extend(store.write_new_files(&second)?);
    Ok(report)
}

fn render_kubeconfig(cluster: &Cluster, profile: &Profile, row: &profile::KubeconfigRow, batch: &Batch<'_>, token: &str) -> Result<String, PkiError> {
    let ca_row = profile.ca("ca").expect("table has the kubernetes CA");
    let ca_pem = batch.text(&format!("{}.crt", ca_row.file))?.unwrap_or_default();
    let server = cluster.endpoint_url();
    let k = match (&row.cert, &row.token) {
        (Some(cert), _) => {
            let crow = profile.cert(cert).expect("checked by the table tests");
            let cert_pem = batch.text(&format!("{}.crt", crow.file))?.unwrap_or_default();
            let key_pem = batch.text(&format!("{}.key", crow.file))?.unwrap_or_default();
            kubeconfig::build(&cluster.name, &server, &ca_pem, &row.user, kubeconfig::Credential::Cert { cert_pem: &cert_pem, key_pem: &key_pem })
        }
        _ => kubeconfig::build(&cluster.name, &server, &ca_pem, &row.user, kubeconfig::Credential::Token(token)),
    };
    Ok(kubeconfig::render(&k))
}

/// How an existing kubeconfig differs from what the cluster file implies, if it does, and
/// whether that is its server (the VIP or `apiserver.endpoint` changed in the cluster file).
fn kubeconfig_problem(existing: &str, expected: &str) -> Option<(String, bool)> {
    let Ok(have) = kubeconfig::parse(existing) else { return Some(("is not a valid kubeconfig".into(), false)) };
    let want = kubeconfig::parse(expected).expect("kbin's own kubeconfig parses");
    let (hc, wc) = (have.clusters.first()?, want.clusters.first()?);
    if hc.cluster.server != wc.cluster.server {
        return Some((format!("server is {}, the cluster file implies {}", hc.cluster.server, wc.cluster.server), true));
    }
    if hc.cluster.certificate_authority_data != wc.cluster.certificate_authority_data {
        return Some(("embeds a CA certificate other than pki/ca.crt".into(), false));
    }
    if have.users.first().map(|u| &u.user) != want.users.first().map(|u| &u.user) {
        return Some(("embeds credentials other than the current certificate files".into(), false));
    }
    None
}

/// What to do about a kubeconfig in pki/ that differs from the cluster file. When its server
/// moved and the nodes use it, renewing it would point new nodes at an address that may not
/// answer yet: the nodes move with the LB and `repoint-nodes`, which rewrites it too.
pub fn kubeconfig_hint(row: &profile::KubeconfigRow, server_moved: bool) -> String {
    if server_moved && row.nodes {
        format!(
            "the nodes use this kubeconfig: do not renew it; move them safely with `kbin lb deploy`, then `kbin repoint-nodes --vip` (or `--endpoint HOST`), which also rewrites {}",
            row.file
        )
    } else {
        format!("rewrite it with `kbin pki renew kubeconfig/{}`", row.id)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct RenewReport {
    pub renewed: Vec<String>,
    pub written: Vec<String>,
}

/// Every name `renew` accepts: row ids (all hosts) and `id/host` instance names.
pub fn renewable_names(cluster: &Cluster) -> Vec<String> {
    let profile = Profile::builtin();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for i in plan::plan(cluster, &profile).iter().filter(|i| !i.is_ca()) {
        names.insert(i.id.to_string());
        names.insert(i.name.clone());
    }
    for k in &profile.kubeconfigs {
        names.insert(format!("kubeconfig/{}", k.id));
    }
    names.into_iter().collect()
}

/// Re-issue the named leaves (keeping their keys), and rewrite the kubeconfigs that embed them.
/// `kubeconfig/<id>` names re-render a kubeconfig alone (for example after the VIP changed).
pub fn renew(cluster: &Cluster, names: &[String]) -> Result<RenewReport, PkiError> {
    let profile = Profile::builtin();
    let instances = plan::plan(cluster, &profile);
    let store = Store::new(cluster.pki_dir());
    let v = validity(cluster)?;
    let mut selected: Vec<&Instance<'_>> = Vec::new();
    let mut kube_ids: BTreeSet<String> = BTreeSet::new();
    for name in names {
        if let Some(id) = name.strip_prefix("kubeconfig/")
            && profile.kubeconfigs.iter().any(|k| k.id == id)
        {
            kube_ids.insert(id.to_string());
            continue;
        }
        let hits: Vec<&Instance<'_>> = instances.iter().filter(|i| i.name == *name || i.id == name.as_str()).collect();
        if hits.is_empty() {
            return Err(PkiError::UnknownName { name: name.clone(), known: renewable_names(cluster) });
        }
        if hits.iter().any(|i| i.is_ca()) {
            return Err(PkiError::RenewCa { name: name.clone() });
        }
        for h in hits {
            if !selected.iter().any(|s| s.name == h.name) {
                selected.push(h);
            }
        }
    }
    let mut cas: HashMap<String, Ca> = HashMap::new();
    for inst in instances.iter().filter(|i| i.is_ca()) {
        if !selected.iter().any(|s| s.ca_id() == inst.id) {
            continue;
        }
        let (Some(cert), Some(key)) = (store.read(&inst.cert_path())?, store.key(&inst.key_path())?) else {
            return Err(PkiError::KeyMissing { name: inst.name.clone(), cert: store.path(&inst.cert_path()), key: store.path(&inst.key_path()), is_ca: true });
        };
        cas.insert(inst.id.to_string(), load_ca(&store, inst, &cert, key)?);
    }
    let mut work = Vec::new();
    for inst in &selected {
        work.push((*inst, store.key(&inst.key_path())?));
    }
    let mut report = RenewReport::default();
    let mut batch = Batch { store: &store, files: Vec::new() };
    for (file, key_pem, cert_pem, name) in issue_leaves(work, &cas, cluster, v)? {
        if let Some(k) = key_pem {
            batch.files.push(Pending::key(format!("{file}.key"), k));
        }
        batch.files.push(Pending::public(format!("{file}.crt"), cert_pem));
        report.renewed.push(name);
    }
    for row in &profile.kubeconfigs {
        let embeds_renewed = row.cert.as_ref().is_some_and(|c| selected.iter().any(|s| s.id == c.as_str()));
        if embeds_renewed || kube_ids.contains(&row.id) {
            let token = store.read(BOOTSTRAP_TOKEN)?.map(|t| t.trim().to_string()).unwrap_or_default();
            let text = render_kubeconfig(cluster, &profile, row, &batch, &token)?;
            batch.files.push(Pending::key(row.file.clone(), text));
            if !embeds_renewed {
                report.renewed.push(format!("kubeconfig/{}", row.id));
            }
        }
    }
    let (first, second): (Vec<Pending>, Vec<Pending>) = batch.files.into_iter().partition(|p| p.rel.ends_with(".key"));
    store.preflight(first.iter().chain(&second).map(|p| p.rel.as_str()))?;
    let _lock = store.lock()?;
    report.written = store.replace_files(&first)?;
    report.written.extend(store.replace_files(&second)?);
    Ok(report)
}
