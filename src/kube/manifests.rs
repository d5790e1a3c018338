//! The Kubernetes objects kbin applies to every cluster, from the Handlebars templates in
//! `manifests/`: the bootstrap token Secret and the RBAC for TLS bootstrapping, the
//! apiserver-to-kubelet client, the cluster admins and flannel.
//!
//! Templates are embedded in the binary and rendered in strict mode (an unknown variable is an
//! error) without HTML escaping, like `unit-templates/`. The result is parsed as multi-document
//! YAML into JSON values, and every object is checked (apiVersion, kind, a name, a kind kbin
//! knows) before anything is sent. [`apply_all`] applies them by server-side apply in
//! [`resources::RESOURCES`] order.
//!
//! The Secret carries the bootstrap token's secret half. It is never printed or logged: `Debug`
//! shows objects by name only, reports carry kind and name, and [`to_yaml`] redacts Secret data
//! unless asked not to.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use handlebars::{Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::resources::{self, ObjectRef};
use super::{Client, Endpoint, KubeError};
use crate::config::Cluster;
use crate::exit::Reportable;
use crate::output::Printer;

mod vars;
pub use vars::{BootstrapToken, ServingTls, Vars};

/// The built-in manifests: (file name under `manifests/`, template text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("bootstrap-token.yaml.hbs", include_str!("../../manifests/bootstrap-token.yaml.hbs")),
    ("kubelet-bootstrap.yaml.hbs", include_str!("../../manifests/kubelet-bootstrap.yaml.hbs")),
    ("apiserver-kubelet-client.yaml.hbs", include_str!("../../manifests/apiserver-kubelet-client.yaml.hbs")),
    ("cluster-admins.yaml.hbs", include_str!("../../manifests/cluster-admins.yaml.hbs")),
    ("flannel.yaml.hbs", include_str!("../../manifests/flannel.yaml.hbs")),
];

/// The add-ons, applied once nodes are Ready (so the scheduler spreads their replicas): each
/// renders to nothing when the cluster file turns it off (`[addons]`).
pub const ADDONS: &[(&str, &str)] = &[
    ("coredns.yaml.hbs", include_str!("../../manifests/coredns.yaml.hbs")),
    ("metrics-server.yaml.hbs", include_str!("../../manifests/metrics-server.yaml.hbs")),
];

/// Which manifests: kbin's own objects (bootstrap token, RBAC), the add-ons, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Core,
    Addons,
    All,
}

impl Set {
    fn templates(self) -> Vec<&'static (&'static str, &'static str)> {
        match self {
            Set::Core => BUILTIN.iter().collect(),
            Set::Addons => ADDONS.iter().collect(),
            Set::All => BUILTIN.iter().chain(ADDONS).collect(),
        }
    }
}

/// The field manager of every server-side apply kbin makes.
pub const FIELD_MANAGER: &str = "kbin";

/// What [`to_yaml`] shows instead of a Secret's values.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the bootstrap token {}", path.display())]
    TokenRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a bootstrap token: {message}", path.display())]
    TokenBad { path: PathBuf, message: String },
    #[error("cannot read {}, which the metrics-server add-on needs", path.display())]
    PkiRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest template manifests/{name} is invalid: {message}")]
    Template { name: String, message: String },
    #[error("rendering manifests/{name} failed: {message}")]
    Render { name: String, message: String },
    #[error("manifest {manifest} is not valid YAML: {message}")]
    Yaml { manifest: String, message: String },
    #[error("manifest {manifest}")]
    Object {
        manifest: String,
        #[source]
        source: Box<KubeError>,
    },
    #[error("manifests {first} and {second} both define {object}")]
    Duplicate { object: String, first: String, second: String },
    #[error("applying {object} stopped")]
    Apply {
        object: String,
        #[source]
        source: Box<KubeError>,
    },
    #[error("{failed} of {total} objects were refused by the apiserver at {server}")]
    Refused { server: String, failed: usize, total: usize, problems: Vec<String> },
}

impl Reportable for ManifestError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ManifestError::TokenRead { .. } | ManifestError::TokenBad { .. } => {
                "run `kbin pki init`: it writes pki/bootstrap-token (`<6 chars>.<16 chars>`, lowercase letters and digits) if it is missing".into()
            }
            ManifestError::PkiRead { .. } => "run `kbin pki init`: it issues metrics-server's serving certificate if it is missing (`kbin up` does so too)".into(),
            ManifestError::Template { .. } | ManifestError::Render { .. } | ManifestError::Yaml { .. } | ManifestError::Duplicate { .. } => {
                "this is a bug in kbin's built-in manifests; please report it".into()
            }
            ManifestError::Object { source, .. } | ManifestError::Apply { source, .. } => return source.hint(),
            ManifestError::Refused { .. } => "each object's error is listed above; objects not listed were applied. Fix the cause and run the command again".into(),
        })
    }
}


// ---------------------------------------------------------------------------------------------
// Rendering and parsing
// ---------------------------------------------------------------------------------------------

/// `{{base64 a b ...}}`: the base64 of its arguments, concatenated (for Secret `data`).
fn base64_helper(h: &Helper<'_>, _: &Handlebars<'_>, _: &Context, _: &mut RenderContext<'_, '_>, out: &mut dyn Output) -> HelperResult {
    let mut text = String::new();
    if h.params().is_empty() {
        return Err(RenderErrorReason::ParamNotFoundForIndex("base64", 0).into());
    }
    for p in h.params() {
        if p.is_value_missing() {
            return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
        }
        match p.value() {
            Value::String(s) => text.push_str(s),
            _ => return Err(RenderErrorReason::InvalidParamType("string").into()),
        }
    }
    out.write(&B64.encode(text))?;
    Ok(())
}

fn registry() -> Result<Handlebars<'static>, ManifestError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("base64", Box::new(base64_helper));
    for (name, text) in BUILTIN.iter().chain(ADDONS) {
        hb.register_template_string(name, *text).map_err(|e| ManifestError::Template { name: name.to_string(), message: e.to_string() })?;
    }
    Ok(hb)
}

/// One object to apply. `Debug` shows where it comes from and what it is, never its content.
#[derive(Clone)]
pub struct Manifest {
    /// `manifests/<file>#<n>`: the template and the document's number in it (from 1).
    pub source: String,
    pub target: ObjectRef,
    object: Value,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Manifest({} from {})", self.target, self.source)
    }
}

impl Manifest {
    /// Check one parsed document: identity fields, a known kind, the right scope.
    pub fn new(source: &str, object: Value) -> Result<Manifest, ManifestError> {
        let target = ObjectRef::of(&object).map_err(|source_err| ManifestError::Object { manifest: source.to_string(), source: Box::new(source_err) })?;
        Ok(Manifest { source: source.to_string(), target, object })
    }
    /// The object as it is sent (a Secret's data included).
    pub fn object(&self) -> &Value {
        &self.object
    }
    /// The object with every value of a Secret's `data` and `stringData` replaced by
    /// [`REDACTED`]; other kinds unchanged.
    pub fn redacted(&self) -> Value {
        let mut v = self.object.clone();
        if self.target.kind == "Secret" && self.target.resource.group.is_empty() {
            for field in ["data", "stringData"] {
                if let Some(Value::Object(m)) = v.get_mut(field) {
                    for val in m.values_mut() {
                        *val = Value::String(REDACTED.into());
                    }
                }
            }
        }
        v
    }
}

/// Parse multi-document YAML into JSON values, skipping empty documents (only comments, or a
/// trailing `---`). `source` names the text in messages.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| ManifestError::Yaml { manifest: format!("{source}#{}", i + 1), message: e.to_string() })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Sort into apply order: by kind as [`resources::RESOURCES`] lists them, keeping the file order
/// within a kind.
pub fn in_apply_order(mut manifests: Vec<Manifest>) -> Vec<Manifest> {
    manifests.sort_by_key(|m| resources::rank(m.target.resource));
    manifests
}

/// Render every built-in manifest with `vars`, parse and check each object, refuse an object
/// defined twice, and return them in apply order.
pub fn render_with(vars: &Vars, set: Set) -> Result<Vec<Manifest>, ManifestError> {
    let hb = registry()?;
    let ctx = vars.context();
    let mut all: Vec<Manifest> = Vec::new();
    for (name, _) in set.templates() {
        let text = hb.render(name, &ctx).map_err(|e| ManifestError::Render { name: name.to_string(), message: e.to_string() })?;
        let source = format!("manifests/{name}");
        for (i, v) in parse_documents(&source, &text)?.into_iter().enumerate() {
            let m = Manifest::new(&format!("{source}#{}", i + 1), v)?;
            if let Some(first) = all.iter().find(|o| o.target.path() == m.target.path()) {
                return Err(ManifestError::Duplicate { object: m.target.to_string(), first: first.source.clone(), second: m.source });
            }
            all.push(m);
        }
    }
    Ok(in_apply_order(all))
}

/// The cluster's manifests: [`render_with`] the cluster's name and bootstrap token.
pub fn render(cluster: &Cluster, set: Set) -> Result<Vec<Manifest>, ManifestError> {
    render_with(&Vars::for_cluster(cluster)?, set)
}

/// The manifests as one multi-document YAML text, Secret data redacted unless `show_secrets`.
pub fn to_yaml(manifests: &[Manifest], show_secrets: bool) -> String {
    let mut out = String::new();
    for m in manifests {
        let v = if show_secrets { m.object.clone() } else { m.redacted() };
        out.push_str(&format!("---\n# {}\n", m.source));
        out.push_str(&serde_yaml_ng::to_string(&v).expect("a JSON value serializes as YAML"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------------------------

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    /// Dry run: the object does not exist.
    WouldCreate,
    /// Dry run: the object exists (a real run says unchanged or configured).
    Exists,
    /// The apiserver refused it (see `error`).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::WouldCreate => "would create",
            Outcome::Exists => "exists",
            Outcome::Failed => "failed",
        }
    }
}

impl From<super::ApplyOutcome> for Outcome {
    fn from(o: super::ApplyOutcome) -> Self {
        match o {
            super::ApplyOutcome::Created => Outcome::Created,
            super::ApplyOutcome::Unchanged => Outcome::Unchanged,
            super::ApplyOutcome::Configured => Outcome::Configured,
        }
    }
}

/// One object's line of the report: what it is and what happened, never its content.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`apply_all`] did, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The apiserver used, such as `master1 (192.168.0.11:6443)`.
    pub server: String,
    pub dry_run: bool,
    pub objects: Vec<ObjectReport>,
    /// How many objects had each outcome (kebab-case names, as in `objects`).
    pub counts: BTreeMap<String, usize>,
}

impl ApplyReport {
    pub fn count(&self, o: Outcome) -> usize {
        self.objects.iter().filter(|x| x.outcome == o).count()
    }

    fn push(&mut self, m: &Manifest, outcome: Outcome, error: Option<String>) {
        let key = serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        *self.counts.entry(key).or_default() += 1;
        self.objects.push(ObjectReport { kind: m.target.kind.clone(), namespace: m.target.namespace.clone(), name: m.target.name.clone(), outcome, error });
    }

    /// `8 objects: 2 created, 6 unchanged` (outcomes in a fixed order).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for o in [Outcome::Created, Outcome::Configured, Outcome::Unchanged, Outcome::WouldCreate, Outcome::Exists, Outcome::Failed] {
            let n = self.count(o);
            // as a count: "8 to create", "8 existing"
            let word = match o {
                Outcome::WouldCreate => "to create",
                Outcome::Exists => "existing",
                o => o.as_str(),
            };
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        let n = self.objects.len();
        format!("{n} object{}: {}", if n == 1 { "" } else { "s" }, if parts.is_empty() { "none".into() } else { parts.join(", ") })
    }

    /// `8 objects: 8 created through master1 (192.168.0.11:6443)`, for the closing line.
    pub fn headline(&self) -> String {
        format!("{} through {}{}", self.summary(), self.server, if self.dry_run { " (dry run: nothing was changed)" } else { "" })
    }

    /// An error listing every refused object, if any was.
    pub fn check(&self) -> Result<(), ManifestError> {
        let problems: Vec<String> = self
            .objects
            .iter()
            .filter(|o| o.outcome == Outcome::Failed)
            .map(|o| format!("[manifests] {}/{}: {}", o.kind, o.name, o.error.as_deref().unwrap_or("refused")))
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(ManifestError::Refused { server: self.server.clone(), failed: problems.len(), total: self.objects.len(), problems })
    }
}

/// Apply `manifests` in order through `ep` by server-side apply (field manager `kbin`, forced),
/// printing `[manifests] Kind/name: created|configured|unchanged` lines. An object the
/// apiserver refuses is recorded (see [`ApplyReport::check`]) and the others are still applied;
/// losing the apiserver stops the run. With `dry_run`, each object is only read: `would create`
/// or `exists`.
pub fn apply_all(client: &Client, ep: &Endpoint, manifests: &[Manifest], printer: &Printer, dry_run: bool) -> Result<ApplyReport, ManifestError> {
    let mut report = ApplyReport { server: ep.label.clone(), dry_run, objects: Vec::new(), counts: BTreeMap::new() };
    // read every object at once (one stream each); only what is missing or differs is then
    // applied, one after the other in apply order
    let live: Vec<Result<Option<serde_json::Value>, KubeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = manifests.iter().map(|m| s.spawn(move || client.get_opt(ep, &m.target.path()))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Ok(None))).collect()
    });
    for (m, live) in manifests.iter().zip(live) {
        let what = m.target.to_string();
        let result = match (dry_run, live) {
            (_, Err(e)) => Err(e),
            (true, Ok(v)) => Ok(if v.is_some() { Outcome::Exists } else { Outcome::WouldCreate }),
            (false, Ok(Some(v))) if super::contains(&v, &m.object) => Ok(Outcome::Unchanged),
            (false, Ok(_)) => client.apply(ep, &m.object, FIELD_MANAGER).map(Outcome::from),
        };
        match result {
            Ok(outcome) => {
                printer.phase("manifests", Some(&what), outcome.as_str());
                report.push(m, outcome, None);
            }
            Err(e @ KubeError::Status { .. }) => {
                printer.phase("manifests", Some(&what), &format!("failed: {e}"));
                report.push(m, Outcome::Failed, Some(e.to_string()));
            }
            Err(e) => return Err(ManifestError::Apply { object: what, source: Box::new(e) }),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::addons::{Addons, CoreDns, METRICS_SERVER_PORT, MetricsServer};
    use crate::pki::profile::Profile;
    use serde_json::json;

    fn vars() -> Vars {
        let addons = Addons {
            coredns: Some(CoreDns { ip: "10.96.0.10".into(), domain: "cluster.local".into(), image: "registry.k8s.io/coredns/coredns:v1.12.1".into(), replicas: 2, min_domains: 2 }),
            metrics_server: Some(MetricsServer { image: "registry.k8s.io/metrics-server/metrics-server:v0.8.0".into(), port: METRICS_SERVER_PORT }),
        };
        let metrics_tls = Some(ServingTls { cert: "CERT\n".into(), key: "KEY\n".into(), ca_bundle: "CA1\nCA2\n".into() });
        Vars { cluster_name: "t".into(), token: BootstrapToken::parse("abcdef.0123456789abcdef").unwrap(), addons, metrics_tls }
    }

    fn find<'m>(ms: &'m [Manifest], kind: &str, name: &str) -> &'m Manifest {
        ms.iter().find(|m| m.target.kind == kind && m.target.name == name).unwrap_or_else(|| panic!("no {kind}/{name}"))
    }

    #[test]
    fn every_template_renders_in_strict_mode_into_named_known_objects() {
        let ms = render_with(&vars(), Set::Core).unwrap();
        let names: Vec<String> = ms.iter().map(|m| m.target.to_string()).collect();
        assert_eq!(
            names,
            [
                "Secret/bootstrap-token-abcdef",
                "ClusterRole/kbin:flannel",
                "ClusterRoleBinding/kbin:kubelet-bootstrap",
                "ClusterRoleBinding/kbin:node-autoapprove-bootstrap",
                "ClusterRoleBinding/kbin:node-autoapprove-certificate-rotation",
                "ClusterRoleBinding/kbin:apiserver-kubelet-client",
                "ClusterRoleBinding/kbin:cluster-admins",
                "ClusterRoleBinding/kbin:flannel",
            ]
        );
        for (name, _) in BUILTIN {
            assert!(ms.iter().any(|m| m.source.starts_with(&format!("manifests/{name}#"))), "{name} yields objects");
        }
        for m in &ms {
            assert_eq!(m.object()["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kbin", "{m:?}");
        }
    }

    #[test]
    fn addons_render_what_the_cluster_file_turns_on_with_its_dns_address_and_images() {
        let mut v = vars();
        let ms = render_with(&v, Set::Addons).unwrap();
        let dns = find(&ms, "Service", "kube-dns").object();
        assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
        let d = find(&ms, "Deployment", "coredns").object();
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "registry.k8s.io/coredns/coredns:v1.12.1");
        assert_eq!(d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"], "DoNotSchedule");
        // applied before the nodes are up: the second replica waits for a second node
        assert_eq!(d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["minDomains"], 2);
        let corefile = find(&ms, "ConfigMap", "coredns").object()["data"]["Corefile"].as_str().unwrap().to_string();
        assert!(corefile.contains("kubernetes cluster.local in-addr.arpa ip6.arpa"), "{corefile}");
        let api = find(&ms, "APIService", "v1beta1.metrics.k8s.io").object();
        assert_eq!(api["spec"]["service"]["name"], "metrics-server");
        let ms_args = find(&ms, "Deployment", "metrics-server").object()["spec"]["template"]["spec"]["containers"][0]["args"].clone();
        assert!(ms_args.as_array().unwrap().iter().any(|a| a == "--secure-port=4443"), "{ms_args}");
        assert!(!ms_args.as_array().unwrap().iter().any(|a| a.as_str().unwrap().contains("insecure")), "kubelets are verified: {ms_args}");
        // metrics-server serves kbin's certificate, and the apiservers check it against the CA bundle
        let b64 = |s: &str| serde_json::Value::String(B64.encode(s));
        assert!(api["spec"].get("insecureSkipTLSVerify").is_none(), "{api}");
        assert_eq!(api["spec"]["caBundle"], b64("CA1\nCA2\n"));
        let service = format!("{}.{}", api["spec"]["service"]["name"].as_str().unwrap(), api["spec"]["service"]["namespace"].as_str().unwrap());
        assert_eq!(service, crate::pki::plan::METRICS_SERVER_SERVICE, "the name its certificate is issued for");
        let tls = find(&ms, "Secret", "metrics-server-tls").object();
        assert_eq!((tls["type"].as_str(), &tls["data"]["tls.crt"], &tls["data"]["tls.key"]), (Some("kubernetes.io/tls"), &b64("CERT\n"), &b64("KEY\n")));
        assert!(ms_args.as_array().unwrap().iter().any(|a| a == "--tls-cert-file=/etc/metrics-server/tls/tls.crt") && ms_args.as_array().unwrap().iter().any(|a| a == "--tls-private-key-file=/etc/metrics-server/tls/tls.key"), "{ms_args}");
        let pod = &find(&ms, "Deployment", "metrics-server").object()["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][1]["secret"], json!({"secretName": "metrics-server-tls", "defaultMode": 0o440}));
        assert!(!to_yaml(&ms, false).contains(B64.encode("KEY\n").as_str()), "the key is redacted");
        // turned off: nothing at all, and kbin's own objects never include the add-ons
        v.addons = Addons::default();
        assert!(render_with(&v, Set::Addons).unwrap().is_empty());
        assert_eq!(render_with(&vars(), Set::All).unwrap().len(), render_with(&vars(), Set::Core).unwrap().len() + ms.len());
    }

    #[test]
    fn rbac_names_the_subjects_of_the_certificate_table() {
        let ms = render_with(&vars(), Set::Core).unwrap();
        let subject = |name: &str| {
            let o = find(&ms, "ClusterRoleBinding", name).object();
            (o["roleRef"]["name"].as_str().unwrap().to_string(), o["subjects"][0]["kind"].as_str().unwrap().to_string(), o["subjects"][0]["name"].as_str().unwrap().to_string())
        };
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(subject("kbin:kubelet-bootstrap"), s("system:node-bootstrapper", "Group", "system:bootstrappers"));
        assert_eq!(subject("kbin:node-autoapprove-bootstrap"), s("system:certificates.k8s.io:certificatesigningrequests:nodeclient", "Group", "system:bootstrappers"));
        assert_eq!(subject("kbin:node-autoapprove-certificate-rotation"), s("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group", "system:nodes"));
        assert_eq!(subject("kbin:apiserver-kubelet-client"), s("system:kubelet-api-admin", "User", "kube-apiserver-kubelet-client"));
        assert_eq!(subject("kbin:cluster-admins"), s("cluster-admin", "Group", "kbin:cluster-admins"));
        assert_eq!(subject("kbin:flannel"), s("kbin:flannel", "User", "flannel"));
        let profile = Profile::builtin();
        assert_eq!(profile.cert("apiserver-kubelet-client").unwrap().cn, "kube-apiserver-kubelet-client");
        assert_eq!(profile.cert("flannel").unwrap().cn, "flannel");
        assert_eq!(profile.cert("admin").unwrap().o, ["kbin:cluster-admins"]);
        let rules = &find(&ms, "ClusterRole", "kbin:flannel").object()["rules"];
        assert_eq!(rules, &json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}, {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]}]));
    }

    #[test]
    fn the_secret_carries_the_token_of_a_real_pki_dir_and_is_never_shown() {
        let d = tempfile::tempdir().unwrap();
        let cluster = crate::config::parse(
            &d.path().join("cluster.toml"),
            "[cluster]\nname = \"tok\"\n[addons]\nmetrics_server = true\n[[hosts]]\nname = \"m1\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\", \"node\"]\n",
        )
        .unwrap();
        crate::pki::init(&cluster).unwrap();
        let token = std::fs::read_to_string(d.path().join("pki/bootstrap-token")).unwrap().trim().to_string();
        let (id, secret) = token.split_once('.').unwrap();
        let ms = render(&cluster, Set::Core).unwrap();
        let s = find(&ms, "Secret", &format!("bootstrap-token-{id}"));
        let o = s.object();
        let data = |k: &str| String::from_utf8(B64.decode(o["data"][k].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!((o["type"].as_str(), o["metadata"]["namespace"].as_str()), (Some("bootstrap.kubernetes.io/token"), Some("kube-system")));
        assert_eq!((data("token-id").as_str(), data("token-secret").as_str()), (id, secret));
        assert_eq!(data("usage-bootstrap-authentication"), "true");
        assert_eq!(data("usage-bootstrap-signing"), "true");
        assert_eq!(data("auth-extra-groups"), "system:bootstrappers:kbin:default-node-token");
        assert_eq!(data("description"), "kubelet bootstrap token of cluster tok, managed by kbin");
        assert!(o.get("stringData").is_none() && o["data"].get("expiration").is_none());

        // metrics-server's serving pair and the CA bundle, as in pki/
        let addons = render(&cluster, Set::Addons).unwrap();
        let tls = find(&addons, "Secret", "metrics-server-tls").object();
        let pki = |f: &str| std::fs::read_to_string(d.path().join("pki").join(f)).unwrap();
        assert_eq!((tls["data"]["tls.crt"].as_str().unwrap(), tls["data"]["tls.key"].as_str().unwrap()), (B64.encode(pki("metrics-server.crt")).as_str(), B64.encode(pki("metrics-server.key")).as_str()));
        assert_eq!(find(&addons, "APIService", "v1beta1.metrics.k8s.io").object()["spec"]["caBundle"].as_str().unwrap(), B64.encode(pki("ca.crt")));

        // the secret half and the serving key appear nowhere they could be printed or logged
        let b64 = B64.encode(secret);
        let key = pki("metrics-server.key");
        let key_line = key.lines().nth(1).unwrap().to_string();
        let shown = [to_yaml(&ms, false), format!("{ms:?}"), format!("{:?}", Vars::for_cluster(&cluster).unwrap()), to_yaml(&addons, false), format!("{addons:?}")];
        for text in &shown {
            assert!(!text.contains(secret) && !text.contains(&b64), "secret leaked into: {text}");
            assert!(!text.contains(&key_line) && !text.contains(&B64.encode(&key)), "the serving key leaked into: {text}");
        }
        assert!(shown[0].contains(&format!("token-secret: {REDACTED}")));
        // --show-secrets prints it as is, for kubectl apply -f -
        let full = to_yaml(&ms, true);
        assert!(full.contains(&b64));
        let back = parse_documents("roundtrip", &full).unwrap();
        assert_eq!(back.len(), ms.len());
        assert_eq!(back[0], *ms[0].object());
    }

    #[test]
    fn bad_tokens_are_refused_without_repeating_them() {
        for bad in ["", "abcdef", "abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abcdef.0123456789abcdeF", "abc.def.0123456789abcdef"] {
            let e = BootstrapToken::parse(bad).unwrap_err();
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
        assert_eq!(BootstrapToken::parse("abcdef.0123456789abcdef\n").unwrap().id, "abcdef");
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(BootstrapToken::read(d.path()), Err(ManifestError::TokenRead { .. })));
        std::fs::write(d.path().join("bootstrap-token"), "hunter2\n").unwrap();
        let e = BootstrapToken::read(d.path()).unwrap_err();
        assert!(matches!(e, ManifestError::TokenBad { .. }) && !e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn strict_mode_refuses_unknown_variables_and_missing_helper_args() {
        let mut hb = registry().unwrap();
        hb.register_template_string("x", "name: {{nope}}").unwrap();
        assert!(hb.render("x", &vars().context()).is_err());
        hb.register_template_string("y", "v: {{base64 token.nope}}").unwrap();
        assert!(hb.render("y", &vars().context()).is_err());
        hb.register_template_string("z", "v: {{base64 \"a\" \"b\"}}").unwrap();
        assert_eq!(hb.render("z", &vars().context()).unwrap(), format!("v: {}", B64.encode("ab")));
    }

    #[test]
    fn apply_order_is_namespaces_roles_then_bindings_and_others() {
        let docs = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds, namespace: kube-flannel}\n---\n\
                    apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\n---\n\
                    # only a comment\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: kube-flannel}\n---\n\
                    apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n---\n\
                    apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: kube-flannel}\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-flannel}\n---\n";
        let vals = parse_documents("test", docs).unwrap();
        assert_eq!(vals.len(), 6, "the comment-only document is skipped");
        let ms: Vec<Manifest> = vals.into_iter().enumerate().map(|(i, v)| Manifest::new(&format!("test#{i}"), v).unwrap()).collect();
        let kinds: Vec<String> = in_apply_order(ms).iter().map(|m| m.target.kind.clone()).collect();
        assert_eq!(kinds, ["Namespace", "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
    }

    #[test]
    fn unknown_kinds_and_nameless_objects_name_the_manifest() {
        let e = Manifest::new("manifests/x.yaml.hbs#2", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"}})).unwrap_err();
        let text = crate::kube::chain(&e);
        assert!(text.contains("manifests/x.yaml.hbs#2") && text.contains("kind Pod"), "{text}");
        assert!(e.hint().unwrap().contains("ClusterRoleBinding"), "the hint lists the known kinds");
        let e = Manifest::new("manifests/y.yaml.hbs#1", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "d"}})).unwrap_err();
        assert!(crate::kube::chain(&e).contains("has no metadata.name"), "{e}");
        assert!(matches!(parse_documents("bad", "a: [1, 2\n"), Err(ManifestError::Yaml { .. })));
    }

    #[test]
    fn reports_count_summarise_and_list_refusals() {
        let ms = render_with(&vars(), Set::Core).unwrap();
        let mut r = ApplyReport { server: "m1 (10.0.0.1:6443)".into(), dry_run: false, objects: Vec::new(), counts: BTreeMap::new() };
        r.push(&ms[0], Outcome::Created, None);
        r.push(&ms[1], Outcome::Unchanged, None);
        r.push(&ms[2], Outcome::Unchanged, None);
        assert_eq!(r.summary(), "3 objects: 1 created, 2 unchanged");
        let mut dry = ApplyReport { dry_run: true, ..r.clone() };
        dry.objects.clear();
        dry.push(&ms[0], Outcome::WouldCreate, None);
        dry.push(&ms[1], Outcome::Exists, None);
        assert_eq!(dry.headline(), "2 objects: 1 to create, 1 existing through m1 (10.0.0.1:6443) (dry run: nothing was changed)");
        assert!(r.check().is_ok());
        r.push(&ms[3], Outcome::Failed, Some("HTTP 422 Invalid".into()));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["counts"], json!({"created": 1, "unchanged": 2, "failed": 1}));
        assert_eq!(v["objects"][0], json!({"kind": "Secret", "namespace": "kube-system", "name": "bootstrap-token-abcdef", "outcome": "created"}));
        let e = r.check().unwrap_err();
        assert!(e.to_string().starts_with("1 of 4 objects were refused"), "{e}");
        let err: crate::Error = e.into();
        assert_eq!(err.details(), ["[manifests] ClusterRoleBinding/kbin:node-autoapprove-bootstrap: HTTP 422 Invalid"]);
    }
}
