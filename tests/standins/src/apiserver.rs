//! kube-apiserver stand-in. See README.md for what it honours and what it simplifies.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use crate::etcd::Etcd;
use crate::net::{Request, Response};
use crate::objects::{self, Res, details, meta, remove_meta, set_meta, status};
use crate::rbac::{self, Attrs, User};
use crate::util::{self, Flags};
use crate::{log, version};

struct StaticToken {
    token: String,
    user: String,
    groups: Vec<String>,
}

struct Api {
    etcd: Etcd,
    /// --client-ca-file, for the x509 authenticator.
    client_ca: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    bootstrap_tokens: bool,
    static_tokens: Vec<StaticToken>,
    anonymous: bool,
    always_allow: bool,
}

const VALUED: &[&str] = &[
    "bind-address",
    "secure-port",
    "tls-cert-file",
    "tls-private-key-file",
    "client-ca-file",
    "token-auth-file",
    "etcd-servers",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "authorization-mode",
];

pub fn main(args: &[String]) {
    let f = Flags::parse(args, VALUED);
    if f.bool("version") {
        println!("Kubernetes {}", version());
        return;
    }
    f.require_files(&[
        "service-account-key-file",
        "service-account-signing-key-file",
        "kubelet-client-certificate",
        "kubelet-client-key",
        "kubelet-certificate-authority",
        "requestheader-client-ca-file",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        "token-auth-file",
    ]);
    let bind = f.get_or("bind-address", "0.0.0.0");
    let port = f.get_or("secure-port", "6443");
    let cert = crate::net::read(&f.require("tls-cert-file")).unwrap_or_else(|e| util::fatal(&e));
    let key = crate::net::read(&f.require("tls-private-key-file")).unwrap_or_else(|e| util::fatal(&e));
    let client_ca = f.get("client-ca-file").map(|p| crate::net::read(p).unwrap_or_else(|e| util::fatal(&e)));
    let etcd = Etcd::new(&f.require("etcd-servers"), &f.require("etcd-cafile"), &f.require("etcd-certfile"), &f.require("etcd-keyfile")).unwrap_or_else(|e| util::fatal(&e));
    let static_tokens = match f.get("token-auth-file") {
        Some(p) => parse_token_file(&String::from_utf8_lossy(&crate::net::read(p).unwrap_or_else(|e| util::fatal(&e)))).unwrap_or_else(|e| util::fatal(&format!("{p}: {e}"))),
        None => Vec::new(),
    };
    let api = Arc::new(Api {
        etcd,
        client_ca: client_ca.as_deref().map(|ca| crate::net::client_verifier(ca).unwrap_or_else(|e| util::fatal(&format!("--client-ca-file: {e}")))),
        bootstrap_tokens: f.bool("enable-bootstrap-token-auth"),
        static_tokens,
        anonymous: f.get("anonymous-auth") != Some("false"),
        always_allow: f.get_or("authorization-mode", "Node,RBAC").split(',').any(|m| m == "AlwaysAllow"),
    });
    let auth = match client_ca.as_deref() {
        Some(ca) => crate::net::ClientAuth::Request(ca),
        None => crate::net::ClientAuth::None,
    };
    let cfg = crate::net::server_config(&cert, &key, auth).unwrap_or_else(|e| util::fatal(&e));
    let addr = if bind.contains(':') { format!("[{bind}]:{port}") } else { format!("{bind}:{port}") };
    log!(
        "serving on https://{addr} (etcd {}, bootstrap tokens {}, static tokens {}, client CA {})",
        f.get_or("etcd-servers", ""),
        api.bootstrap_tokens,
        api.static_tokens.len(),
        client_ca.is_some()
    );
    let a = api.clone();
    if let Err(e) = crate::net::serve_tls(&addr, cfg, move |req| a.handle(req)) {
        util::fatal(&format!("cannot listen on {addr}: {e}"));
    }
}

/// `token,user,uid,"group1,group2"` lines (upstream's --token-auth-file).
fn parse_token_file(text: &str) -> Result<Vec<StaticToken>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() < 3 {
            return Err(format!("line {}: want token,user,uid[,\"groups\"]", n + 1));
        }
        let groups = fields.get(3).map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        out.push(StaticToken { token: fields[0].clone(), user: fields[1].clone(), groups });
    }
    Ok(out)
}

enum Authn {
    User(User),
    Unauthorized,
}

fn b64d(v: &Value) -> String {
    v.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Api {
    /// Upstream's authenticator chain: x509 client certificate, then bearer tokens (token file,
    /// bootstrap tokens), then anonymous. A certificate that does not verify against
    /// --client-ca-file is an error that ends the chain with 401 (unless a token succeeds),
    /// as is a bearer token that no token authenticator accepts.
    fn authenticate(&self, req: &Request) -> Authn {
        let mut failed = false;
        if let (Some(leaf), Some(verifier)) = (req.peer_certs.first(), &self.client_ca) {
            let end = rustls::pki_types::CertificateDer::from(leaf.as_slice());
            let chain: Vec<_> = req.peer_certs[1..].iter().map(|c| rustls::pki_types::CertificateDer::from(c.as_slice())).collect();
            match verifier.verify_client_cert(&end, &chain, rustls::pki_types::UnixTime::now()) {
                Ok(_) => {
                    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) {
                        let subj = cert.subject();
                        let cn = subj.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("").to_string();
                        let mut groups: Vec<String> = subj.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
                        groups.push("system:authenticated".into());
                        return Authn::User(User { name: cn, groups });
                    }
                    failed = true;
                }
                Err(e) => {
                    log!("x509: verifying certificate from {} failed: {e}", req.remote);
                    failed = true;
                }
            }
        }
        if let Some(h) = req.header("authorization") {
            let Some(token) = h.strip_prefix("Bearer ").map(str::trim) else { return Authn::Unauthorized };
            if let Some(t) = self.static_tokens.iter().find(|t| constant_time_eq(t.token.as_bytes(), token.as_bytes())) {
                let mut groups = t.groups.clone();
                groups.push("system:authenticated".into());
                return Authn::User(User { name: t.user.clone(), groups });
            }
            if self.bootstrap_tokens
                && let Some(u) = self.bootstrap_token(token) {
                    return Authn::User(u);
                }
            return Authn::Unauthorized;
        }
        if self.anonymous && !failed {
            return Authn::User(User { name: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] });
        }
        Authn::Unauthorized
    }

    /// Upstream's bootstrap token authenticator: `<id>.<secret>` checked against the Secret
    /// kube-system/bootstrap-token-<id> (type bootstrap.kubernetes.io/token,
    /// usage-bootstrap-authentication "true", not expired).
    fn bootstrap_token(&self, token: &str) -> Option<User> {
        let (id, secret) = token.split_once('.')?;
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok(id, 6) || !ok(secret, 16) {
            return None;
        }
        let res = objects::find("", "v1", "secrets")?;
        let kv = match self.etcd.get(&res.key(Some("kube-system"), &format!("bootstrap-token-{id}"))) {
            Ok(Some(kv)) => kv,
            Ok(None) => return None,
            Err(e) => {
                log!("bootstrap token lookup failed: {e}");
                return None;
            }
        };
        let s: Value = serde_json::from_slice(&kv.value).ok()?;
        let data = s.get("data")?;
        if s.get("type").and_then(Value::as_str) != Some("bootstrap.kubernetes.io/token") || meta(&s, "deletionTimestamp").is_some() {
            return None;
        }
        if b64d(&data["token-id"]) != id || !constant_time_eq(b64d(&data["token-secret"]).as_bytes(), secret.as_bytes()) || b64d(&data["usage-bootstrap-authentication"]) != "true" {
            return None;
        }
        let exp = b64d(&data["expiration"]);
        if !exp.is_empty() && util::parse_rfc3339(&exp).is_none_or(|t| t <= util::now_secs()) {
            log!("bootstrap token {id} has expired");
            return None;
        }
        let mut groups = vec!["system:bootstrappers".to_string()];
        for g in b64d(&data["auth-extra-groups"]).split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !g.starts_with("system:bootstrappers:") {
                log!("bootstrap token {id}: extra group {g:?} is not system:bootstrappers:*; token refused");
                return None;
            }
            groups.push(g.to_string());
        }
        groups.push("system:authenticated".into());
        Some(User { name: format!("system:bootstrap:{id}"), groups })
    }

    /// The authorizer chain: system:masters, Node, RBAC.
    fn authorize(&self, u: &User, a: &Attrs) -> bool {
        if self.always_allow || u.in_group("system:masters") {
            return true;
        }
        if rbac::node_authorizer(u, a) == Some(true) {
            return true;
        }
        let rbac_res = |r: &str| objects::find("rbac.authorization.k8s.io", "v1", r).expect("rbac resource");
        let stored = |res: &Res, ns: Option<&str>| -> Vec<Value> {
            match self.etcd.list(&res.prefix(ns)) {
                Ok((kvs, _)) => kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect(),
                Err(e) => {
                    log!("RBAC lookup failed: {e}");
                    Vec::new()
                }
            }
        };
        let cluster_roles = || {
            let mut all = rbac::builtin_roles();
            all.extend(stored(rbac_res("clusterroles"), None));
            all
        };
        let role_rules = |role_ref: &Value, ns: Option<&str>| -> Vec<Value> {
            let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
            let role = match (role_ref.get("kind").and_then(Value::as_str), ns) {
                (Some("Role"), Some(ns)) => stored(rbac_res("roles"), Some(ns)).into_iter().rev().find(|r| meta(r, "name") == Some(name)),
                (Some("ClusterRole"), _) => cluster_roles().into_iter().rev().find(|r| meta(r, "name") == Some(name)),
                _ => None,
            };
            role.and_then(|r| r.get("rules").and_then(Value::as_array).cloned()).unwrap_or_default()
        };
        let mut bindings: Vec<(Value, Option<String>)> = rbac::builtin_bindings().into_iter().map(|b| (b, None)).collect();
        bindings.extend(stored(rbac_res("clusterrolebindings"), None).into_iter().map(|b| (b, None)));
        if !a.namespace.is_empty() {
            bindings.extend(stored(rbac_res("rolebindings"), Some(&a.namespace)).into_iter().map(|b| (b, Some(a.namespace.clone()))));
        }
        bindings.iter().filter(|(b, _)| rbac::subject_matches(&b["subjects"], u)).any(|(b, ns)| role_rules(&b["roleRef"], ns.as_deref()).iter().any(|r| rbac::rule_allows(r, a)))
    }

    fn handle(&self, req: Request) -> Response {
        let resp = self.route(&req);
        // Heartbeats (node status patches, lease renewals) succeed every few seconds per node:
        // only their failures are worth a journal line.
        let heartbeat = (req.method == "PATCH" && req.path.ends_with("/status")) || (req.method == "PUT" && req.path.contains("/leases/"));
        if resp.status >= 400 || (req.method != "GET" && !heartbeat) {
            log!("{} {} {} from {}", req.method, req.path, resp.status, req.remote);
        }
        resp
    }

    fn route(&self, req: &Request) -> Response {
        let user = match self.authenticate(req) {
            Authn::User(u) => u,
            Authn::Unauthorized => return status(401, "Unauthorized", "Unauthorized", None),
        };
        let path = req.path.trim_end_matches('/');
        match path {
            "/healthz" | "/readyz" => return self.health(req),
            "/livez" => return Response::text(200, "ok"),
            "/version" => return Response::json(200, &version_info()),
            _ => {}
        }
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _] => {
                if !user.in_group("system:authenticated") {
                    return forbidden_url(&user, path);
                }
                return discovery(&segs);
            }
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return status(404, "NotFound", "the server could not find the requested resource", None),
        };
        // namespaces/<ns>/<resource>... or <resource>...
        let (ns, rest): (Option<&str>, &[&str]) = if rest.len() >= 3 && rest[0] == "namespaces" && !(group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize")) {
            (Some(rest[1]), &rest[2..])
        } else {
            (None, rest)
        };
        let (resource, name, sub) = match rest {
            [r] => (*r, None, None),
            [r, n] => (*r, Some(*n), None),
            [r, n, s] => (*r, Some(*n), Some(*s)),
            _ => return status(404, "NotFound", "the server could not find the requested resource", None),
        };
        if group == "authentication.k8s.io" && resource == "selfsubjectreviews" && name.is_none() && req.method == "POST" {
            // `kubectl auth whoami`: open to every authenticated user, as upstream.
            if !user.in_group("system:authenticated") {
                return status(403, "Forbidden", &format!("selfsubjectreviews.authentication.k8s.io is forbidden: User \"{}\" cannot create resource \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope", user.name), None);
            }
            return Response::json(201, &json!({"kind": "SelfSubjectReview", "apiVersion": format!("authentication.k8s.io/{version}"), "metadata": {"creationTimestamp": null}, "status": {"userInfo": {"username": user.name, "groups": user.groups}}}));
        }
        if group == "authorization.k8s.io" && resource == "subjectaccessreviews" && name.is_none() {
            return self.subject_access_review(req, &user);
        }
        let Some(res) = objects::find(group, version, resource) else {
            return status(404, "NotFound", "the server could not find the requested resource", None);
        };
        if res.namespaced && ns.is_none() && name.is_some() {
            return status(404, "NotFound", "the server could not find the requested resource", None);
        }
        if let Some(s) = sub
            && !res.subresources.contains(&s) {
                return status(404, "NotFound", "the server could not find the requested resource", None);
            }
        // POST .../pods/NAME/eviction: the create verb on the eviction subresource, as upstream
        let verb = match (req.method.as_str(), name, sub) {
            ("POST", Some(_), Some("eviction")) => "create",
            _ => "",
        };
        let verb = if !verb.is_empty() { verb } else { match (req.method.as_str(), name) {
            ("GET", Some(_)) => "get",
            ("GET", None) if req.param("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
            ("GET", None) => "list",
            ("POST", None) => "create",
            ("PUT", Some(_)) => "update",
            ("PATCH", Some(_)) => "patch",
            ("DELETE", Some(_)) => "delete",
            _ => return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", None),
        } };
        if verb == "watch" {
            return status(405, "MethodNotAllowed", "watch is not implemented by the kbin stand-in; poll with GET", None);
        }
        let body = if matches!(verb, "create" | "update" | "patch") {
            match objects::parse_body(&req.body) {
                Ok(v) => Some(v),
                Err(e) => return status(400, "BadRequest", &e, None),
            }
        } else {
            None
        };
        let attr_name = match (name, &body) {
            (Some(n), _) => n.to_string(),
            (None, Some(b)) => meta(b, "name").unwrap_or("").to_string(),
            _ => String::new(),
        };
        let attrs = Attrs { verb: verb.into(), group: group.into(), resource: resource.into(), subresource: sub.unwrap_or("").into(), namespace: ns.unwrap_or("").into(), name: attr_name };
        if !self.authorize(&user, &attrs) {
            let scope = match ns {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            let what = match sub {
                Some(s) => format!("{}/{s}", res.resource),
                None => res.resource.to_string(),
            };
            let subject = if name.is_some() { format!("{} \"{}\"", res.qualified(), attrs.name) } else { res.qualified() };
            let msg = format!("{subject} is forbidden: User \"{}\" cannot {verb} resource \"{what}\" in API group \"{group}\" {scope}", user.name);
            return status(403, "Forbidden", &msg, Some(details(res, &attrs.name)));
        }
        let ns = if res.namespaced { ns } else { None };
        match verb {
            "get" => self.get(res, ns, name.unwrap_or_default()),
            "list" => self.list(res, ns, req.param("fieldSelector")),
            "create" if sub == Some("eviction") => self.evict(res, ns.unwrap_or_default(), name.unwrap_or_default(), &body.unwrap_or_default()),
            "create" => self.create(res, ns, body.unwrap_or_default(), &user),
            "update" => self.update(res, ns, name.unwrap_or_default(), sub, body.unwrap_or_default()),
            "patch" => self.patch(req, res, ns, name.unwrap_or_default(), sub, body.unwrap_or_default()),
            "delete" => self.delete(res, ns, name.unwrap_or_default()),
            _ => unreachable!(),
        }
    }

    fn health(&self, req: &Request) -> Response {
        let verbose = req.param("verbose").is_some();
        match self.etcd.health() {
            Ok(()) => {
                if verbose {
                    Response::text(200, "[+]ping ok\n[+]etcd ok\nhealthz check passed\n")
                } else {
                    Response::text(200, "ok")
                }
            }
            Err(e) => {
                log!("health check: {e}");
                Response::text(500, "[+]ping ok\n[-]etcd failed: reason withheld\nhealthz check failed\n")
            }
        }
    }

    fn load(&self, res: &Res, ns: Option<&str>, name: &str) -> Result<Option<(Value, i64)>, Response> {
        match self.etcd.get(&res.key(ns, name)) {
            Ok(Some(kv)) => {
                let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| status(500, "InternalError", &format!("stored object is corrupt: {e}"), None))?;
                set_meta(&mut v, "resourceVersion", json!(kv.mod_revision.to_string()));
                Ok(Some((v, kv.mod_revision)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(storage_error(&e)),
        }
    }

    /// Objects can be created only in a namespace that exists (the four that upstream makes at
    /// start always do).
    fn namespace_exists(&self, ns: &str) -> Result<(), Response> {
        let res = objects::find("", "v1", "namespaces").expect("namespaces");
        if builtin(res, ns).is_some() {
            return Ok(());
        }
        match self.load(res, None, ns) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(status(404, "NotFound", &format!("namespaces \"{ns}\" not found"), Some(details(res, ns)))),
            Err(r) => Err(r),
        }
    }

    fn get(&self, res: &Res, ns: Option<&str>, name: &str) -> Response {
        match self.load(res, ns, name) {
            Ok(Some((v, _))) => Response::json(200, &v),
            Ok(None) => match builtin(res, name) {
                Some(v) => Response::json(200, &v),
                None => not_found(res, name),
            },
            Err(r) => r,
        }
    }

    /// Every object of `res` (in `ns`), those matching a field selector of `path=value` terms
    /// (`spec.nodeName=n1`, comma-separated) when one is given.
    fn list(&self, res: &Res, ns: Option<&str>, fields: Option<&str>) -> Response {
        let terms: Vec<(String, String)> = fields.unwrap_or("").split(',').filter(|t| !t.is_empty()).filter_map(|t| t.split_once('=')).map(|(k, v)| (format!("/{}", k.replace('.', "/")), v.to_string())).collect();
        match self.etcd.list(&res.prefix(ns)) {
            Ok((kvs, rev)) => {
                let items: Vec<Value> = kvs
                    .iter()
                    .filter_map(|kv| {
                        let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
                        set_meta(&mut v, "resourceVersion", json!(kv.mod_revision.to_string()));
                        Some(v)
                    })
                    .filter(|v| terms.iter().all(|(k, want)| v.pointer(k).and_then(Value::as_str).unwrap_or("") == want))
                    .collect();
                Response::json(200, &json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items}))
            }
            Err(e) => storage_error(&e),
        }
    }

    fn check_kind(res: &Res, obj: &Value) -> Result<(), Response> {
        let kind = obj.get("kind").and_then(Value::as_str);
        let av = obj.get("apiVersion").and_then(Value::as_str);
        if kind.is_some_and(|k| k != res.kind) || av.is_some_and(|a| a != res.api_version()) {
            return Err(status(400, "BadRequest", &format!("the body is a {} {}, not a {} {}", av.unwrap_or("?"), kind.unwrap_or("?"), res.api_version(), res.kind), None));
        }
        Ok(())
    }

    fn write(&self, res: &Res, ns: Option<&str>, name: &str, mut obj: Value, expected: i64, code: u16) -> Response {
        obj["kind"] = json!(res.kind);
        obj["apiVersion"] = json!(res.api_version());
        remove_meta(&mut obj, "resourceVersion");
        let bytes = serde_json::to_vec(&obj).unwrap_or_default();
        match self.etcd.put_if(&res.key(ns, name), &bytes, expected) {
            Ok(Some(rev)) => {
                set_meta(&mut obj, "resourceVersion", json!(rev.to_string()));
                Response::json(code, &obj)
            }
            Ok(None) if expected == 0 => status(409, "AlreadyExists", &format!("{} \"{name}\" already exists", res.qualified()), Some(details(res, name))),
            Ok(None) => conflict(res, name),
            Err(e) => storage_error(&e),
        }
    }

    fn create(&self, res: &Res, ns: Option<&str>, mut obj: Value, user: &User) -> Response {
        if let Err(r) = Self::check_kind(res, &obj) {
            return r;
        }
        let name = match (meta(&obj, "name"), meta(&obj, "generateName")) {
            (Some(n), _) => n.to_string(),
            (None, Some(g)) => format!("{g}{}", util::random_suffix(5)),
            _ => return status(422, "Invalid", &format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", res.kind), None),
        };
        if let Some(ns) = ns {
            if meta(&obj, "namespace").is_some_and(|n| n != ns) {
                return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request", None);
            }
            set_meta(&mut obj, "namespace", json!(ns));
        }
        if let Some(ns) = ns
            && let Err(r) = self.namespace_exists(ns) {
                return r;
            }
        set_meta(&mut obj, "name", json!(name));
        set_meta(&mut obj, "uid", json!(util::uuid4()));
        set_meta(&mut obj, "creationTimestamp", json!(util::now_rfc3339()));
        prepare(res, &mut obj);
        if res.resource == "certificatesigningrequests" {
            // As upstream: who asked is recorded by the server, not taken from the body.
            obj["spec"]["username"] = json!(user.name);
            obj["spec"]["groups"] = json!(user.groups);
            obj["status"] = json!({});
        }
        self.write(res, ns, &name, obj, 0, 201)
    }

    /// Keeps what a write to `sub` may not change: the main resource keeps the stored status
    /// (Nodes, CSRs, ...), `status` keeps everything but status, `approval` everything but
    /// status.conditions.
    fn restrict(res: &Res, old: &Value, mut new: Value, sub: Option<&str>) -> Value {
        let has_status = res.subresources.contains(&"status");
        match sub {
            None if has_status => {
                new["status"] = old.get("status").cloned().unwrap_or(json!({}));
            }
            Some("status") => {
                // Status writes keep the spec; labels and annotations may change (flanneld
                // annotates its Node through nodes/status).
                let mut out = old.clone();
                out["status"] = new.get("status").cloned().unwrap_or(json!({}));
                for f in ["labels", "annotations"] {
                    if let Some(v) = new["metadata"].get(f) {
                        set_meta(&mut out, f, v.clone());
                    }
                }
                if res.resource == "certificatesigningrequests" {
                    out["status"]["conditions"] = old["status"].get("conditions").cloned().unwrap_or(Value::Null);
                    if out["status"]["conditions"].is_null() {
                        out["status"].as_object_mut().map(|m| m.remove("conditions"));
                    }
                }
                new = out;
            }
            Some("approval") => {
                let mut out = old.clone();
                if !out.get("status").is_some_and(Value::is_object) {
                    out["status"] = json!({});
                }
                out["status"]["conditions"] = new["status"].get("conditions").cloned().unwrap_or(json!([]));
                new = out;
            }
            _ => {}
        }
        for f in ["uid", "creationTimestamp", "name", "namespace"] {
            match old["metadata"].get(f) {
                Some(v) => set_meta(&mut new, f, v.clone()),
                None => remove_meta(&mut new, f),
            }
        }
        new
    }

    fn update(&self, res: &Res, ns: Option<&str>, name: &str, sub: Option<&str>, obj: Value) -> Response {
        if let Err(r) = Self::check_kind(res, &obj) {
            return r;
        }
        if meta(&obj, "name").is_some_and(|n| n != name) {
            return status(400, "BadRequest", "the name of the object does not match the name on the URL", None);
        }
        let (old, rev) = match self.load(res, ns, name) {
            Ok(Some(x)) => x,
            Ok(None) => return not_found(res, name),
            Err(r) => return r,
        };
        if let Some(rv) = meta(&obj, "resourceVersion")
            && rv != rev.to_string() {
                return conflict(res, name);
            }
        let mut new = Self::restrict(res, &old, obj, sub);
        prepare(res, &mut new);
        if same(&old, &new) {
            return Response::json(200, &old);
        }
        if let Err(r) = validate_update(res, &old, &new) {
            return r;
        }
        self.write(res, ns, name, new, rev, 200)
    }

    fn patch(&self, req: &Request, res: &Res, ns: Option<&str>, name: &str, sub: Option<&str>, patch: Value) -> Response {
        let ct = req.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        let apply = ct == "application/apply-patch+yaml";
        if apply && req.param("fieldManager").is_none_or(str::is_empty) {
            return status(400, "BadRequest", "PATCH requests with Content-Type application/apply-patch+yaml require a fieldManager query parameter", None);
        }
        if !matches!(ct.as_str(), "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/apply-patch+yaml") {
            return status(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (the kbin stand-in does not do JSON patch); got {ct:?}"), None);
        }
        if apply {
            if let Err(r) = Self::check_kind(res, &patch) {
                return r;
            }
            if meta(&patch, "name").is_some_and(|n| n != name) {
                return status(400, "BadRequest", "the name of the object does not match the name on the URL", None);
            }
        }
        for _attempt in 0..5 {
            let (old, rev) = match self.load(res, ns, name) {
                Ok(Some(x)) => x,
                Ok(None) if apply && sub.is_none() => {
                    // Server-side apply creates what does not exist.
                    if let Some(ns) = ns
                        && let Err(r) = self.namespace_exists(ns) {
                            return r;
                        }
                    let mut obj = patch.clone();
                    set_meta(&mut obj, "name", json!(name));
                    if let Some(ns) = ns {
                        set_meta(&mut obj, "namespace", json!(ns));
                    }
                    set_meta(&mut obj, "uid", json!(util::uuid4()));
                    set_meta(&mut obj, "creationTimestamp", json!(util::now_rfc3339()));
                    prepare(res, &mut obj);
                    let r = self.write(res, ns, name, obj, 0, 201);
                    if r.status == 409 {
                        continue;
                    }
                    return r;
                }
                Ok(None) => return not_found(res, name),
                Err(r) => return r,
            };
            let mut new = old.clone();
            if ct == "application/merge-patch+json" {
                objects::merge_patch(&mut new, &patch);
            } else {
                // Strategic merge, and apply (simplified: the applied fields are merged into the
                // live object; fields other managers set are kept, fields are never removed).
                objects::strategic_merge(&mut new, &patch);
            }
            if let Some(rv) = meta(&patch, "resourceVersion")
                && rv != rev.to_string() {
                    return conflict(res, name);
                }
            let mut new = Self::restrict(res, &old, new, sub);
            prepare(res, &mut new);
            if same(&old, &new) {
                return Response::json(200, &old);
            }
            if let Err(r) = validate_update(res, &old, &new) {
                return r;
            }
            let r = self.write(res, ns, name, new, rev, 200);
            if r.status == 409 {
                continue;
            }
            return r;
        }
        conflict(res, name)
    }

    fn delete(&self, res: &Res, ns: Option<&str>, name: &str) -> Response {
        let (old, rev) = match self.load(res, ns, name) {
            Ok(Some(x)) => x,
            Ok(None) => return not_found(res, name),
            Err(r) => return r,
        };
        match self.etcd.delete(&res.key(ns, name), rev) {
            Ok(true) => Response::json(200, &old),
            Ok(false) => conflict(res, name),
            Err(e) => storage_error(&e),
        }
    }

    /// POST .../pods/NAME/eviction (policy/v1 Eviction): the pod is deleted unless a
    /// PodDisruptionBudget of its namespace selects it and would drop below `minAvailable` (or
    /// above `maxUnavailable` unavailable, counting the budget's pods as all expected), which
    /// answers 429 as upstream. Pods count as healthy unless they are being deleted.
    fn evict(&self, res: &Res, ns: &str, name: &str, eviction: &Value) -> Response {
        if eviction.get("kind").and_then(Value::as_str) != Some("Eviction") {
            return status(400, "BadRequest", "the body is not an Eviction", None);
        }
        let pod = match self.load(res, Some(ns), name) {
            Ok(Some((v, _))) => v,
            Ok(None) => return not_found(res, name),
            Err(r) => return r,
        };
        let labels = |v: &Value| v.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        let selects = |pdb: &Value, pod: &Value| {
            let want = pdb.pointer("/spec/selector/matchLabels").and_then(Value::as_object).cloned().unwrap_or_default();
            let have = labels(pod);
            want.iter().all(|(k, v)| have.get(k) == Some(v))
        };
        let stored = |r: &Res| -> Result<Vec<Value>, Response> {
            let (kvs, _) = self.etcd.list(&r.prefix(Some(ns))).map_err(|e| storage_error(&e))?;
            Ok(kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
        };
        let pdbs = match stored(objects::find("policy", "v1", "poddisruptionbudgets").expect("pdbs")) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let pods = match stored(res) {
            Ok(p) => p,
            Err(r) => return r,
        };
        for pdb in pdbs.iter().filter(|b| selects(b, &pod)) {
            let healthy = pods.iter().filter(|p| selects(pdb, p) && p.pointer("/metadata/deletionTimestamp").is_none()).count() as i64;
            let allowed = match (pdb.pointer("/spec/minAvailable").and_then(Value::as_i64), pdb.pointer("/spec/maxUnavailable").and_then(Value::as_i64)) {
                (Some(min), _) => healthy - min,
                (None, Some(max)) => max,
                _ => 0,
            };
            if allowed < 1 {
                let msg = format!("Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {} needs {} healthy pods and has {healthy} currently", meta(pdb, "name").unwrap_or("?"), pdb.pointer("/spec/minAvailable").and_then(Value::as_i64).unwrap_or(healthy));
                return status(429, "TooManyRequests", &msg, None);
            }
        }
        match self.delete(res, Some(ns), name).status {
            200 => Response::json(201, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})),
            _ => not_found(res, name),
        }
    }

    /// POST /apis/authorization.k8s.io/v1/subjectaccessreviews, evaluated by the same chain.
    fn subject_access_review(&self, req: &Request, user: &User) -> Response {
        if req.method != "POST" {
            return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", None);
        }
        let a = Attrs { verb: "create".into(), group: "authorization.k8s.io".into(), resource: "subjectaccessreviews".into(), subresource: String::new(), namespace: String::new(), name: String::new() };
        if !self.authorize(user, &a) {
            return status(403, "Forbidden", &format!("subjectaccessreviews.authorization.k8s.io is forbidden: User \"{}\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope", user.name), None);
        }
        let mut sar = match objects::parse_body(&req.body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &e, None),
        };
        let spec = sar["spec"].clone();
        let ra = &spec["resourceAttributes"];
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let subject = User {
            name: s(&spec, "user"),
            groups: spec.get("groups").and_then(Value::as_array).map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default(),
        };
        let attrs = Attrs { verb: s(ra, "verb"), group: s(ra, "group"), resource: s(ra, "resource"), subresource: s(ra, "subresource"), namespace: s(ra, "namespace"), name: s(ra, "name") };
        let allowed = !attrs.verb.is_empty() && self.authorize(&subject, &attrs);
        sar["status"] = json!({"allowed": allowed});
        sar["kind"] = json!("SubjectAccessReview");
        sar["apiVersion"] = json!("authorization.k8s.io/v1");
        Response::json(201, &sar)
    }
}

/// Upstream's update validation for the few immutable fields kbin's flows touch.
fn validate_update(res: &Res, old: &Value, new: &Value) -> Result<(), Response> {
    let name = meta(old, "name").unwrap_or("");
    let invalid = |field: &str, why: &str| {
        let group = if res.group.is_empty() { String::new() } else { format!(".{}", res.group) };
        status(422, "Invalid", &format!("{}{group} \"{name}\" is invalid: {field}: {why}", res.kind), Some(details(res, name)))
    };
    match res.resource {
        "clusterrolebindings" | "rolebindings" if old["roleRef"] != new["roleRef"] => Err(invalid("roleRef", &format!("Invalid value: {}: cannot change roleRef", new["roleRef"]))),
        "secrets" if old.get("type") != new.get("type") && new.get("type").is_some() => Err(invalid("type", "Invalid value: field is immutable")),
        "nodes" => {
            let before = old["spec"]["podCIDR"].as_str().unwrap_or("");
            let after = new["spec"]["podCIDR"].as_str().unwrap_or("");
            if !before.is_empty() && before != after {
                Err(invalid("spec.podCIDR", "Forbidden: node updates may not change podCIDR except from \"\" to valid"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// Server-side normalisation before a write.
fn prepare(res: &Res, obj: &mut Value) {
    if res.resource == "secrets" {
        // stringData is write-only: merged into data (base64) as upstream does.
        if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
            obj.as_object_mut().map(|m| m.remove("stringData"));
        }
        if obj.get("type").is_none() {
            obj["type"] = json!("Opaque");
        }
    }
    if res.resource == "namespaces" && obj.get("status").is_none() {
        obj["status"] = json!({"phase": "Active"});
    }
    if res.resource == "nodes" && obj.get("spec").is_none() {
        obj["spec"] = json!({});
    }
}

fn same(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        remove_meta(&mut v, "resourceVersion");
        remove_meta(&mut v, "managedFields");
        if let Some(m) = v.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// Upstream's default RBAC objects are readable like stored ones.
fn builtin(res: &Res, name: &str) -> Option<Value> {
    match res.resource {
        "clusterroles" => rbac::builtin_roles().into_iter().find(|r| meta(r, "name") == Some(name)),
        "clusterrolebindings" => rbac::builtin_bindings().into_iter().find(|r| meta(r, "name") == Some(name)),
        "namespaces" if ["default", "kube-system", "kube-public", "kube-node-lease"].contains(&name) => {
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}))
        }
        _ => None,
    }
}

fn not_found(res: &Res, name: &str) -> Response {
    status(404, "NotFound", &format!("{} \"{name}\" not found", res.qualified()), Some(details(res, name)))
}

fn conflict(res: &Res, name: &str) -> Response {
    status(409, "Conflict", &format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", res.qualified()), Some(details(res, name)))
}

fn storage_error(e: &str) -> Response {
    log!("storage: {e}");
    status(500, "InternalError", "Internal error occurred: etcd is unavailable", None)
}

fn forbidden_url(u: &User, path: &str) -> Response {
    status(403, "Forbidden", &format!("forbidden: User \"{}\" cannot get path \"{path}\"", u.name), None)
}

pub fn version_info() -> Value {
    let v = version();
    let mut parts = v.trim_start_matches('v').split('.');
    json!({
        "major": parts.next().unwrap_or("1"),
        "minor": parts.next().unwrap_or("0"),
        "gitVersion": v,
        "gitCommit": "kbin-standin",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (kbin stand-in, Rust)",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

fn discovery(segs: &[&str]) -> Response {
    let resources = |group: &str, version: &str| -> Value {
        let list: Vec<Value> = objects::RESOURCES
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .flat_map(|r| {
                let mut v = vec![json!({"name": r.resource, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update"]})];
                v.extend(r.subresources.iter().map(|s| json!({"name": format!("{}/{s}", r.resource), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})));
                v
            })
            .collect();
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
    };
    let mut groups: Vec<&str> = objects::RESOURCES.iter().map(|r| r.group).filter(|g| !g.is_empty()).collect();
    groups.push("authorization.k8s.io");
    groups.push("authentication.k8s.io");
    groups.sort();
    groups.dedup();
    match segs {
        ["api"] => Response::json(200, &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})),
        ["api", "v1"] => Response::json(200, &resources("", "v1")),
        ["apis"] => Response::json(
            200,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.iter().map(|g| json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})).collect::<Vec<_>>()}),
        ),
        ["apis", g] if groups.contains(g) => Response::json(200, &json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})),
        ["apis", g, "v1"] if groups.contains(g) => Response::json(200, &resources(g, "v1")),
        _ => status(404, "NotFound", "the server could not find the requested resource", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(r: &str) -> &'static Res {
        objects::RESOURCES.iter().find(|x| x.resource == r).unwrap()
    }

    #[test]
    fn subresources_keep_what_they_may_not_change() {
        let nodes = res("nodes");
        let old = json!({"metadata": {"name": "n", "uid": "u"}, "spec": {"podCIDR": "10.0.0.0/24"}, "status": {"phase": "x"}});
        let main = Api::restrict(nodes, &old, json!({"metadata": {"name": "n", "labels": {"a": "b"}}, "spec": {"podCIDR": "10.0.0.0/24"}, "status": {"phase": "changed"}}), None);
        assert_eq!(main["status"]["phase"], "x");
        assert_eq!(main["metadata"]["uid"], "u");
        let st = Api::restrict(nodes, &old, json!({"metadata": {"annotations": {"k": "v"}}, "spec": {"podCIDR": "other"}, "status": {"phase": "y"}}), Some("status"));
        assert_eq!(st["status"]["phase"], "y");
        assert_eq!(st["spec"]["podCIDR"], "10.0.0.0/24");
        assert_eq!(st["metadata"]["annotations"]["k"], "v");
        let csrs = res("certificatesigningrequests");
        let old = json!({"metadata": {"name": "c"}, "spec": {"username": "u"}, "status": {}});
        let ap = Api::restrict(csrs, &old, json!({"spec": {"username": "evil"}, "status": {"conditions": [{"type": "Approved"}], "certificate": "x"}}), Some("approval"));
        assert_eq!(ap["spec"]["username"], "u");
        assert_eq!(ap["status"]["conditions"][0]["type"], "Approved");
        assert!(ap["status"].get("certificate").is_none());
    }

    #[test]
    fn immutable_fields() {
        let crb = res("clusterrolebindings");
        let old = json!({"metadata": {"name": "b"}, "roleRef": {"name": "a"}});
        assert!(validate_update(crb, &old, &json!({"metadata": {"name": "b"}, "roleRef": {"name": "b"}})).is_err());
        assert!(validate_update(crb, &old, &old).is_ok());
        let nodes = res("nodes");
        let old = json!({"spec": {}});
        assert!(validate_update(nodes, &old, &json!({"spec": {"podCIDR": "10.0.0.0/24"}})).is_ok());
        let set = json!({"spec": {"podCIDR": "10.0.0.0/24"}});
        assert!(validate_update(nodes, &set, &json!({"spec": {"podCIDR": "10.0.1.0/24"}})).is_err());
    }

    #[test]
    fn secrets_store_string_data_as_data() {
        let mut s = json!({"stringData": {"token-id": "abcdef"}});
        prepare(res("secrets"), &mut s);
        assert_eq!(s["data"]["token-id"], "YWJjZGVm");
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn token_file() {
        let t = parse_token_file("abc,kubelet-bootstrap,10001,\"system:bootstrappers,extra\"\n# c\n").unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].user, "kubelet-bootstrap");
        assert_eq!(t[0].groups, vec!["system:bootstrappers", "extra"]);
    }
}
