use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Issue every CA, key, certificate, token and kubeconfig the cluster needs
    ///
    /// Only what is missing is issued: existing files are never rewritten and a CA is never
    /// replaced, so re-running after adding a host to the cluster file issues exactly that host's
    /// certificates. Certificates whose SANs no longer match the cluster file are reported (fix
    /// them on purpose with `kbin pki renew`).
    Init {
        /// Print the report as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Re-issue the named certificates (keeping their keys) and the kubeconfigs that embed them
    ///
    /// NAME is a certificate id for every host that has it (`apiserver`), one host's
    /// certificate (`apiserver/master1`), or `kubeconfig/<id>` to rewrite one kubeconfig.
    /// CAs are never renewed.
    Renew {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Print the report as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Rotate the key the apiservers encrypt Secrets with in etcd, with no downtime
    ///
    /// Three stages, each on every master one at a time (apiserver restarted, verified, rolled
    /// back if it does not come back) before the next: the new key added for reading; the new
    /// key made the one that encrypts; every Secret rewritten under it and the old key dropped.
    /// pki/encryption-config.yaml says where a rotation stands: run it again to resume.
    RotateEncryptionKey(super::cluster::DeployArgs),
    /// Rotate a CA (kubernetes, etcd or front-proxy) with no downtime, in resumable stages
    ///
    /// 1 trust: a new CA, and old + new placed wherever the CA is trusted (apiservers, kubelets,
    /// every kubeconfig, etcd peers and clients, the controller-manager's root CA that pods get as
    /// `kube-root-ca.crt`); 2 reissue: the new CA signs, every certificate it signs is re-issued
    /// and placed, and (kubernetes CA) each kubelet gets a client certificate of the new CA;
    /// 3 finish: the old CA leaves every bundle, every host is read back, the old pair moves to
    /// pki/retired/. Each stage is placed like `kbin up` (etcd members and masters one at a
    /// time, verified; only services whose files changed restart). Refused (exit 2, nothing
    /// changed) unless every host answers, etcd is healthy and every node Ready. The files in
    /// pki/ say where a rotation stands: run the command again to resume.
    RotateCa(RotateCaArgs),
    /// Rotate the service-account signing key with no token refused, in resumable stages
    ///
    /// 1 trust: a new key pair, both public keys accepted by every apiserver; 2 reissue: the new
    /// key signs (apiservers, controller-manager); 3 finish, once the new key has signed for
    /// --drop-after seconds (the kubelets refresh the pods' tokens within 24 hours): the old public
    /// key is no longer accepted and moves to pki/retired/. Until then a run stops after stage 2
    /// and says when to run it again. Refused (exit 2) unless every host answers, etcd is healthy
    /// and every node Ready.
    RotateSaKey(RotateSaArgs),
    /// Show every certificate: subject, issuer, SANs, key type, expiry and days left
    Inspect {
        /// Print JSON on stdout instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Verify chains, key pairs, SANs against the cluster file, and expiry
    ///
    /// Exits 1 and lists every problem when anything is wrong. With --hosts, reads the
    /// certificates as they are on every host over SSH instead (never a private key): each
    /// certificate and kubeconfig kbin placed, and the kubelet's client certificate on nodes.
    Check {
        /// Report certificates that expire within this many days
        #[arg(long, default_value_t = 30, value_name = "DAYS")]
        warn_days: i64,
        /// Read the certificates on every host: subject, issuer, days left, same as pki/ or not,
        /// signed by the cluster's CA or not; exits 1 when a host is unreachable or a file is
        /// missing, differs, is not signed by the CA or expires within --warn-days
        #[arg(long)]
        hosts: bool,
        #[command(flatten)]
        ssh: super::SshArgs,
        /// Print the problems (with --hosts: the report) as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Adopt an existing CA (for example one made with cfssl) as one of kbin's CAs
    ///
    /// The key may be PKCS#8, PKCS#1 RSA or SEC1 EC PEM; it is stored as PKCS#8 with mode 0600.
    /// A CA that exists is never replaced.
    Import {
        /// Which CA to import
        #[arg(long, value_enum)]
        ca: CaKind,
        /// The CA certificate (PEM or DER)
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The CA private key (PEM or DER: PKCS#8, PKCS#1 or SEC1)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RotateCaArgs {
    /// Which CA to rotate
    #[arg(value_enum)]
    pub ca: CaKind,
    /// The longest to wait, in seconds, until every running pod's service-account volume holds
    /// the new CA (read on the nodes) before the apiservers serve certificates of the new CA
    /// (kubernetes CA only; the kubelets refresh those volumes on their own sync)
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub settle: u64,
    /// Stop once this stage is placed (trusted, reissued); run again without it to go on
    #[arg(long, value_enum, value_name = "STAGE")]
    pub until: Option<UntilStage>,
    #[command(flatten)]
    pub deploy: super::cluster::DeployArgs,
}

#[derive(Debug, clap::Args)]
pub struct RotateSaArgs {
    /// Seconds the new key must have signed before the old one is dropped
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    pub drop_after: u64,
    /// Stop once this stage is placed (trusted, reissued); run again without it to go on
    #[arg(long, value_enum, value_name = "STAGE")]
    pub until: Option<UntilStage>,
    #[command(flatten)]
    pub deploy: super::cluster::DeployArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UntilStage {
    Trusted,
    Reissued,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CaKind {
    /// The Kubernetes cluster CA (pki/ca.crt)
    Kubernetes,
    /// The etcd CA (pki/etcd/ca.crt)
    Etcd,
    /// The front-proxy CA (pki/front-proxy-ca.crt)
    FrontProxy,
}

impl CaKind {
    fn id(self) -> &'static str {
        match self {
            CaKind::Kubernetes => "ca",
            CaKind::Etcd => "etcd-ca",
            CaKind::FrontProxy => "front-proxy-ca",
        }
    }
}

pub fn exec(global: &Global, cmd: &PkiCommand) -> kbin::Result<()> {
    let p = global.printer();
    let cluster = global.cluster()?;
    let dir = cluster.pki_dir();
    match cmd {
        PkiCommand::Init { json: as_json } => {
            let r = kbin::pki::init(&cluster)?;
            if r.issued.is_empty() {
                p.phase("pki", None, &format!("nothing to issue: {} items already in {}", r.kept, dir.display()));
            } else {
                p.phase("pki", None, &format!("issued {} items, kept {}, in {}", r.issued.len(), r.kept, dir.display()));
                p.phase("pki", None, &format!("issued: {}", r.issued.join(", ")));
            }
            for s in &r.stale {
                p.warn(&format!("{} ({}): {}", s.name, s.file, s.problem), Some(&s.hint));
            }
            if *as_json {
                super::print_json(&r);
            }
        }
        PkiCommand::RotateCa(a) => return rotate(global, a.ca.id(), a.settle, a.until, 0, &a.deploy),
        PkiCommand::RotateSaKey(a) => return rotate(global, "sa", 0, a.until, a.drop_after, &a.deploy),
        PkiCommand::RotateEncryptionKey(d) => return super::cluster::deploy_cmd(global, d, |o, c| kbin::deploy::encryption::rotate(o, &c)),
        PkiCommand::Renew { names, json: as_json } => {
            let r = kbin::pki::renew(&cluster, names)?;
            p.phase("pki", None, &format!("renewed: {}", r.renewed.join(", ")));
            if *as_json {
                super::print_json(&r);
            }
        }
        PkiCommand::Inspect { json: as_json } => {
            let certs = kbin::pki::inspect(&cluster)?;
            if *as_json {
                super::print_json(&certs);
            } else {
                print_table(&certs);
            }
        }
        PkiCommand::Check { warn_days, hosts: true, ssh, json: as_json } => {
            let run = super::run(global, &cluster, ssh, std::time::Duration::from_secs(30), false);
            let report = kbin::deploy::certs::report(&run, ssh.accept_new_host_keys, *warn_days);
            let report = match report {
                Ok(r) => r,
                Err(e) => return super::emit::<()>(*as_json, Err(e)),
            };
            if !*as_json {
                print_hosts_table(&report);
            }
            let verdict = kbin::deploy::certs::verdict(&report);
            if verdict.is_ok() {
                p.phase("pki", None, &format!("every certificate on {} hosts is kbin's, signed by the cluster's CA and expires in more than {warn_days} days", report.hosts.len()));
            }
            return super::emit_with(*as_json, &report, verdict);
        }
        PkiCommand::Check { warn_days, json: as_json, .. } => {
            let problems = kbin::pki::check(&cluster, *warn_days)?;
            if *as_json {
                super::print_json(&problems);
            }
            if !problems.is_empty() {
                return Err(kbin::Error::Failed {
                    what: format!("{} problem{} in {}", problems.len(), kbin::output::plural(problems.len()), dir.display()),
                    problems: problems.iter().map(|x| format!("{} ({}): {}\n    hint: {}", x.name, x.file, x.message, x.hint)).collect(),
                    hint: Some("fix the problems listed above; `kbin pki inspect` shows every certificate".into()),
                });
            }
            p.phase("pki", None, &format!("all certificates in {} are valid, match the cluster file and expire in more than {warn_days} days", dir.display()));
        }
        PkiCommand::Import { ca, cert, key } => {
            let r = kbin::pki::import(&cluster, ca.id(), cert, key)?;
            p.phase("pki", None, &format!("imported {} CA {} ({}, valid until {}) as {}", r.ca, r.subject, r.key, r.not_after, r.written.join(" + ")));
        }
    }
    Ok(())
}

fn rotate(global: &Global, id: &str, settle: u64, until: Option<UntilStage>, drop_after: u64, d: &super::cluster::DeployArgs) -> kbin::Result<()> {
    use kbin::deploy::rotate_ca;
    use kbin::pki::rotate::Stage;
    let cluster = global.cluster()?;
    let fetch = |c: &kbin::config::Cluster, parts: &[kbin::render::Component]| super::cluster::binaries(global, c, &d.net, parts);
    let mut o = super::cluster::opts(global, &d.ssh, d.timeout, d.dry_run, &fetch);
    o.relay = d.relay_mode();
    let until = until.map(|u| match u {
        UntilStage::Trusted => Stage::Trusted,
        UntilStage::Reissued => Stage::Reissued,
    });
    let secs = std::time::Duration::from_secs;
    let opts = rotate_ca::Options { ca: id.to_string(), settle: secs(settle), until, drop_after: secs(drop_after) };
    let mut report = rotate_ca::Report::default();
    let result = rotate_ca::rotate(&o, &cluster, &opts, &mut report);
    if result.is_ok() && !report.dry_run {
        let at = report.after.map(|s| s.as_str()).unwrap_or("-");
        global.printer().phase("rotate-ca", None, &format!("{}: {at} after {} ms; {} certificates re-issued, {} services restarted", report.ca, report.millis, report.renewed.len(), report.restarted.len()));
    }
    super::emit_with(d.json, &report, result)
}

fn print_table(certs: &[kbin::pki::CertInfo]) {
    let header = ["NAME", "SUBJECT", "ISSUER", "KEY", "NOT AFTER", "DAYS", "SANS"].map(String::from);
    let rows: Vec<[String; 7]> = certs
        .iter()
        .map(|c| {
            if c.status == "missing" {
                return [c.name.clone(), "(missing)".into(), String::new(), String::new(), String::new(), String::new(), String::new()];
            }
            [
                c.name.clone(),
                c.subject.clone(),
                c.issuer.clone(),
                c.key.clone(),
                c.not_after.get(..10).unwrap_or("").to_string(),
                c.days_left.to_string(),
                if c.sans.is_empty() { "-".to_string() } else { c.sans.join(",") },
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{:w$}  ", c, w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    print!("{out}");
}

/// `pki check --hosts`: one row per host and file.
fn print_hosts_table(r: &kbin::deploy::certs::Report) {
    let mut rows: Vec<[String; 5]> = vec![["HOST", "FILE", "SUBJECT", "DAYS", "STATUS"].map(String::from)];
    for h in &r.hosts {
        if let Some(e) = &h.error {
            let status = if h.reachable { "unreadable" } else { "unreachable" };
            rows.push([h.host.clone(), "-".into(), e.lines().next().unwrap_or("").to_string(), "-".into(), status.into()]);
            continue;
        }
        for f in &h.files {
            let days = f.days_left.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
            rows.push([h.host.clone(), f.path.clone(), f.subject.clone().unwrap_or_else(|| "-".into()), days, f.status.as_str().into()]);
        }
    }
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| if i + 1 == r.len() { c.clone() } else { format!("{:w$}", c, w = widths[i]) }).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    print!("{out}");
}
