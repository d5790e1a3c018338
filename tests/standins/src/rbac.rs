//! Authorization in the apiserver stand-in, in the order `--authorization-mode=Node,RBAC` gives:
//!
//! 1. `system:masters` may do anything (as upstream, which bypasses every authorizer for it).
//! 2. Node (+ NodeRestriction): a user `system:node:<name>` in group `system:nodes` may read
//!    every Node, create/update/patch only its own Node (and its `status`), read and write only
//!    its own Lease in `kube-node-lease`, and create/get/list/watch CSRs.
//! 3. RBAC: ClusterRoleBindings (and RoleBindings in the request's namespace) stored through
//!    the API, plus a few of upstream's default roles and bindings built in (`builtin_*`).
//!    Rules match on apiGroups, resources (`res`, `res/sub`, `*`), verbs and resourceNames.
//!    ServiceAccount subjects, aggregation rules and nonResourceURLs rules are not evaluated.
//!
//! Non-resource URLs: /healthz, /livez, /readyz and /version are open to everyone (upstream's
//! system:public-info-viewer); discovery (/api, /apis...) to every authenticated user.

use serde_json::{Value, json};

pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
}

#[derive(Debug, Clone)]
pub struct Attrs {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// Decision of the Node authorizer: Some(true) allow, None no opinion.
pub fn node_authorizer(u: &User, a: &Attrs) -> Option<bool> {
    let node = u.name.strip_prefix("system:node:")?;
    if !u.in_group("system:nodes") {
        return None;
    }
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    let allowed = match (a.group.as_str(), a.resource.as_str()) {
        // For create, the apiserver passes the new object's name (NodeRestriction's check).
        ("", "nodes") => read || (matches!(a.verb.as_str(), "create" | "update" | "patch") && a.name == node),
        ("coordination.k8s.io", "leases") => a.namespace == "kube-node-lease" && a.name == node && matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete"),
        ("certificates.k8s.io", "certificatesigningrequests") => a.subresource.is_empty() && matches!(a.verb.as_str(), "create" | "get" | "list" | "watch"),
        ("", "events") => matches!(a.verb.as_str(), "create" | "update" | "patch"),
        // The kubelet's webhook authentication and authorization.
        ("authorization.k8s.io", "subjectaccessreviews") | ("authentication.k8s.io", "tokenreviews") => a.verb == "create",
        ("", "services" | "endpoints" | "namespaces") => read,
        _ => false,
    };
    if allowed { Some(true) } else { None }
}

/// Whether one RBAC rule allows `a`.
pub fn rule_allows(rule: &Value, a: &Attrs) -> bool {
    let list = |f: &str| rule.get(f).and_then(Value::as_array).map(|v| v.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>()).unwrap_or_default();
    let groups = list("apiGroups");
    let resources = list("resources");
    let verbs = list("verbs");
    let names = list("resourceNames");
    let res = if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let res_ok = resources.iter().any(|r| r == "*" || *r == res || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource)));
    groups.iter().any(|g| g == "*" || *g == a.group) && res_ok && verbs.iter().any(|v| v == "*" || *v == a.verb) && (names.is_empty() || names.contains(&a.name))
}

pub fn subject_matches(subjects: &Value, u: &User) -> bool {
    subjects.as_array().is_some_and(|s| {
        s.iter().any(|sub| {
            let name = sub.get("name").and_then(Value::as_str).unwrap_or("");
            match sub.get("kind").and_then(Value::as_str) {
                Some("User") => name == u.name,
                Some("Group") => u.in_group(name),
                _ => false,
            }
        })
    })
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules,
    })
}

fn binding(name: &str, role: &str, kind: &str, subject: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
    })
}

/// A subset of upstream's default ClusterRoles (same names; rules reduced to what matters here).
pub fn builtin_roles() -> Vec<Value> {
    let read = ["get", "list", "watch"];
    vec![
        cluster_role("cluster-admin", vec![rule(&["*"], &["*"], &["*"])]),
        cluster_role("system:node-bootstrapper", vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"])]),
        cluster_role("system:certificates.k8s.io:certificatesigningrequests:nodeclient", vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"], &["create"])]),
        cluster_role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"], &["create"])]),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(&[""], &["nodes"], &read),
                rule(&[""], &["services", "endpoints"], &["list", "watch"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["list", "watch"]),
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
            ],
        ),
        cluster_role(
            "system:kube-scheduler",
            vec![
                rule(&[""], &["nodes", "pods", "namespaces", "services"], &read),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "update"]),
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
            ],
        ),
        // Upstream's controller-manager runs each controller with its own service account
        // (--use-service-account-credentials) and roles system:controller:*; the stand-in
        // uses its own identity, so this role holds what its two controllers need.
        cluster_role(
            "system:kube-controller-manager",
            vec![
                rule(&[""], &["nodes"], &["get", "list", "watch", "update", "patch"]),
                rule(&[""], &["nodes/status"], &["update", "patch"]),
                rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &read),
                rule(&["certificates.k8s.io"], &["certificatesigningrequests/approval", "certificatesigningrequests/status"], &["update"]),
                rule(&["certificates.k8s.io"], &["signers"], &["approve", "sign"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "update"]),
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
            ],
        ),
        cluster_role("system:kubelet-api-admin", vec![rule(&[""], &["nodes"], &["get", "list", "watch", "proxy"]), rule(&[""], &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"], &["*"])]),
    ]
}

/// Upstream's default bindings for the roles above.
pub fn builtin_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", "Group", "system:masters"),
        binding("system:node-proxier", "system:node-proxier", "User", "system:kube-proxy"),
        binding("system:kube-scheduler", "system:kube-scheduler", "User", "system:kube-scheduler"),
        binding("system:kube-controller-manager", "system:kube-controller-manager", "User", "system:kube-controller-manager"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attrs {
        Attrs { verb: verb.into(), group: group.into(), resource: resource.into(), subresource: sub.into(), namespace: ns.into(), name: name.into() }
    }

    #[test]
    fn node_may_write_only_itself() {
        let u = User { name: "system:node:n1".into(), groups: vec!["system:nodes".into(), "system:authenticated".into()] };
        assert_eq!(node_authorizer(&u, &attrs("patch", "", "nodes", "status", "", "n1")), Some(true));
        assert_eq!(node_authorizer(&u, &attrs("patch", "", "nodes", "status", "", "n2")), None);
        assert_eq!(node_authorizer(&u, &attrs("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "n1")), Some(true));
        assert_eq!(node_authorizer(&u, &attrs("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "n2")), None);
        assert_eq!(node_authorizer(&u, &attrs("get", "", "secrets", "", "kube-system", "x")), None);
    }

    #[test]
    fn rules() {
        let r = rule(&["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"], &["create"]);
        assert!(rule_allows(&r, &attrs("create", "certificates.k8s.io", "certificatesigningrequests", "nodeclient", "", "")));
        assert!(!rule_allows(&r, &attrs("create", "certificates.k8s.io", "certificatesigningrequests", "", "", "")));
        assert!(rule_allows(&rule(&["*"], &["*"], &["*"]), &attrs("delete", "", "nodes", "status", "", "x")));
    }
}
