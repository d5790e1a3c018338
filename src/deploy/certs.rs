//! `kbin pki check --hosts`: the certificates as they are on the hosts. Per host, one read-only
//! round trip prints the certificate blocks of every certificate kbin placed there (the list is
//! [`render::host_files`], the same that decides what is pushed) and the certificate lines of
//! every kubeconfig, plus the kubelet's client certificate on nodes; [`crate::pki::onhost`]
//! judges them against `pki/`. Private keys, `client-key-data` and tokens never leave the host:
//! the script prints only `CERTIFICATE` blocks and the two `*-data` lines that hold certificates.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Cluster, Host, Role};
use crate::error::Error;
use crate::host::parallel::{self, Cancel, Outcome};
use crate::host::{Cmd, HostError, Node};
use crate::pki::onhost::{self, FileCheck, Found, Kind, Target};
use crate::pki::profile::Profile;
use crate::render::{self, Templates};

/// `--warn-days` of `pki check --hosts`, and what `kbin status` flags.
pub const WARN_DAYS: i64 = 30;

/// Prints, per `kind:path` argument, `kbin-missing PATH`, or `kbin-begin PATH`, the
/// certificate part of the file, `kbin-end PATH`. Reads nothing else.
const SCRIPT: &str = r#"
for a in "$@"; do
  f=${a#*:}
  if [ ! -e "$f" ]; then echo "kbin-missing $f"; continue; fi
  echo "kbin-begin $f"
  case $a in
    pem:*) sed -n '/^-----BEGIN CERTIFICATE-----$/,/^-----END CERTIFICATE-----$/p' "$f" 2>/dev/null || echo "kbin-unreadable" ;;
    kubeconfig:*) if [ -r "$f" ] && [ -f "$f" ]; then grep -E '^[[:space:]]*(client-certificate-data|certificate-authority-data):' "$f" || true; else echo "kbin-unreadable"; fi ;;
  esac
  echo "kbin-end $f"
done
true
"#;

/// What [`SCRIPT`] printed, by path.
fn parse(out: &str) -> HashMap<String, Found> {
    let mut found = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in out.lines() {
        if let Some(p) = line.strip_prefix("kbin-missing ") {
            found.insert(p.to_string(), Found::Missing);
        } else if let Some(p) = line.strip_prefix("kbin-begin ") {
            current = Some((p.to_string(), String::new()));
        } else if let Some(p) = line.strip_prefix("kbin-end ") {
            if let Some((path, text)) = current.take().filter(|(path, _)| path == p) {
                let f = if text.lines().any(|l| l == "kbin-unreadable") { Found::Unreadable } else { Found::Text(text) };
                found.insert(path, f);
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    found
}

/// The files to look at on `host`: the certificates and kubeconfigs [`render::host_files`]
/// pushes from `pki/`, and on nodes the kubelet's client certificate.
pub fn targets(cluster: &Cluster, host: &Host, templates: &Templates) -> Result<Vec<Target>, Error> {
    let profile = Profile::builtin();
    let files = render::host_files(cluster, host, templates, &render::Options::default())?;
    let mut out: Vec<Target> = files
        .iter()
        .filter_map(|f| {
            // `pki/<rel>`, or `pki/<rel> (server ...)` for a kubeconfig given the master's own apiserver
            let rel = f.source.strip_prefix("pki/")?.split(' ').next()?;
            onhost::Target::of_pki_file(&profile, &host.name, rel, &f.path, &f.content)
        })
        .filter(|t| !t.path.ends_with(".key"))
        .collect();
    if host.has(Role::Node) {
        out.push(Target::kubelet_client(&cluster.layout.k8s_ssl));
    }
    Ok(out)
}

/// Read `targets` on `node` (one round trip) and judge each against `pki/`.
pub fn on_host(node: &Node<'_>, targets: &[Target], cas: &HashMap<String, Vec<u8>>, now: OffsetDateTime, warn_days: i64) -> Result<Vec<FileCheck>, HostError> {
    let found = read(node, targets)?;
    Ok(targets.iter().map(|t| onhost::judge(t, found.get(&t.path).unwrap_or(&Found::Unreadable), cas, now, warn_days)).collect())
}

/// What `node` holds for each of `targets`, by path (one round trip; certificate parts only).
pub fn read(node: &Node<'_>, targets: &[Target]) -> Result<HashMap<String, Found>, HostError> {
    let mut argv = vec!["sh".to_string(), "-c".into(), SCRIPT.into(), "kbin-certs".into()];
    argv.extend(targets.iter().map(|t| match t.kind {
        Kind::Certificate => format!("pem:{}", t.path),
        Kind::Kubeconfig => format!("kubeconfig:{}", t.path),
    }));
    let out = node.remote.check(&Cmd::new(argv).sudo())?;
    Ok(parse(&out.stdout_str()))
}

/// One host's certificates.
#[derive(Debug, Clone, Serialize)]
pub struct HostCerts {
    pub host: String,
    pub address: String,
    pub reachable: bool,
    /// Why the host could not be read.
    pub error: Option<String>,
    pub files: Vec<FileCheck>,
}

impl HostCerts {
    /// Days left by file name, as found on the host.
    pub fn days_left(&self) -> BTreeMap<String, i64> {
        self.files.iter().filter_map(|f| Some((f.name.clone(), f.days_left?))).collect()
    }
}

/// One thing `pki check --hosts` flags.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub host: String,
    /// The path on the host; `None` when the host could not be read at all.
    pub path: Option<String>,
    pub status: String,
    pub message: String,
    pub hint: String,
}

impl Problem {
    /// `host: path: message` and its hint, for the error report.
    pub fn line(&self) -> String {
        match &self.path {
            Some(p) => format!("{}: {p}: {}\n    hint: {}", self.host, self.message, self.hint),
            None => format!("{}: {}\n    hint: {}", self.host, self.message, self.hint),
        }
    }
}

/// What `kbin pki check --hosts` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub warn_days: i64,
    pub hosts: Vec<HostCerts>,
    pub problems: Vec<Problem>,
}

/// Everything `h` flags.
pub fn problems_of(h: &HostCerts) -> Vec<Problem> {
    if let Some(e) = &h.error {
        let hint = "check that the host is up and reachable over SSH (`kbin hosts check`)".to_string();
        let e = e.strip_prefix(&format!("{}: ", h.host)).unwrap_or(e);
        let status = if h.reachable { "unreadable" } else { "unreachable" };
        return vec![Problem { host: h.host.clone(), path: None, status: status.into(), message: format!("{status}: {e}"), hint }];
    }
    h.files
        .iter()
        .flat_map(|f| f.findings.iter().map(|x| Problem { host: h.host.clone(), path: Some(f.path.clone()), status: x.status.as_str().into(), message: format!("{} {}", f.name, x.message), hint: x.hint.clone() }))
        .collect()
}

/// What is needed to check the hosts, prepared before any SSH: each host's files (a host kbin
/// cannot render for is an error here) and the local CAs.
pub struct Prepared {
    targets: HashMap<String, Vec<Target>>,
    cas: HashMap<String, Vec<u8>>,
}

impl Prepared {
    pub fn new(cluster: &Cluster) -> Result<Prepared, Error> {
        let templates = Templates::load(cluster)?;
        let mut t = HashMap::new();
        for h in &cluster.hosts {
            t.insert(h.name.clone(), targets(cluster, h, &templates)?);
        }
        Ok(Prepared { targets: t, cas: onhost::local_cas(cluster)? })
    }
    /// One host: read and judged, or why it could not be.
    pub fn host(&self, h: &Host, node: Result<&Node<'_>, &str>, warn_days: i64) -> HostCerts {
        let mut out = HostCerts { host: h.name.clone(), address: h.address.to_string(), reachable: node.is_ok(), error: None, files: Vec::new() };
        let targets = self.targets.get(&h.name).map(Vec::as_slice).unwrap_or_default();
        match node {
            Ok(n) => match on_host(n, targets, &self.cas, OffsetDateTime::now_utc(), warn_days) {
                Ok(files) => out.files = files,
                Err(e) => out.error = Some(e.chain()),
            },
            Err(e) => out.error = Some(e.to_string()),
        }
        out
    }
}

/// Check every host of `conns` in parallel (`concurrency` at a time). A host that is
/// unreachable or cannot be read is reported as such.
pub fn check(prep: &Prepared, conns: &[(&Host, Result<Node<'_>, String>)], concurrency: usize, cancel: &Cancel, warn_days: i64) -> Report {
    let results = parallel::for_each(conns, |(h, _)| h.name.clone(), "certs", concurrency, cancel, |(h, n)| Ok(prep.host(h, n.as_ref().map_err(String::as_str), warn_days)));
    let mut hosts = Vec::new();
    for (r, (h, _)) in results.into_iter().zip(conns) {
        match r.outcome {
            Outcome::Done(c) => hosts.push(c),
            Outcome::Failed(e) => hosts.push(HostCerts { host: h.name.clone(), address: h.address.to_string(), reachable: true, error: Some(e.chain()), files: Vec::new() }),
            Outcome::Skipped => hosts.push(HostCerts { host: h.name.clone(), address: h.address.to_string(), reachable: false, error: Some("interrupted".into()), files: Vec::new() }),
        }
    }
    let problems = hosts.iter().flat_map(problems_of).collect();
    Report { warn_days, hosts, problems }
}

/// Connect to every host of the cluster file and [`check`] them.
pub fn report(run: &crate::engine::Run<'_>, accept_new_host_keys: bool, warn_days: i64) -> Result<Report, Error> {
    let cluster = run.cluster;
    let prep = Prepared::new(cluster)?;
    let all: Vec<&Host> = cluster.hosts.iter().collect();
    let conns: Vec<(&Host, Result<Node<'_>, String>)> = run.connector(accept_new_host_keys).connect(&all).into_iter().map(|(h, r)| (h, r.map_err(|e| e.chain()))).collect();
    Ok(check(&prep, &conns, run.concurrency, &run.cancel, warn_days))
}

/// `N problems on M hosts` as the error the edge reports (exit 1), `Ok` when there is none.
pub fn verdict(r: &Report) -> Result<(), Error> {
    if r.problems.is_empty() {
        return Ok(());
    }
    let hosts: std::collections::BTreeSet<&str> = r.problems.iter().map(|p| p.host.as_str()).collect();
    Err(Error::Failed {
        what: format!("{} certificate problem{} on {} host{}", r.problems.len(), crate::output::plural(r.problems.len()), hosts.len(), crate::output::plural(hosts.len())),
        problems: r.problems.iter().map(Problem::line).collect(),
        hint: Some("fix the problems listed above; `kbin pki check --hosts --json` shows every file".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_begin_end_blocks_and_missing_files() {
        let out = "kbin-missing /a\nkbin-begin /b\n-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\nkbin-end /b\nkbin-begin /c\nkbin-unreadable\nkbin-end /c\n";
        let f = parse(out);
        assert_eq!(f["/a"], Found::Missing);
        assert_eq!(f["/b"], Found::Text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into()));
        assert_eq!(f["/c"], Found::Unreadable);
    }
}
