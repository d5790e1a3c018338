//! Which URL an object lives at: the kinds kbin can apply, as a table.
//!
//! The API server serves each kind under a plural resource name, in its API group, either in a
//! namespace or at the cluster scope. A real client learns this from discovery; kbin applies a
//! small, known set of kinds, so the table is data here. Its order is also the apply order:
//! namespaces before what lives in them, roles before the bindings that name them, accounts,
//! secrets and config before the workloads that use them (the same idea as Helm's install order).

use std::fmt;

use serde_json::Value;

use super::KubeError;

/// One kind the API server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; `""` for the core group (`apiVersion: v1`).
    pub group: &'static str,
    pub kind: &'static str,
    /// The resource name in URLs.
    pub plural: &'static str,
    pub namespaced: bool,
}

const fn r(group: &'static str, kind: &'static str, plural: &'static str, namespaced: bool) -> Resource {
    Resource { group, kind, plural, namespaced }
}

/// Every kind kbin can apply, in apply order.
pub const RESOURCES: &[Resource] = &[
    r("", "Namespace", "namespaces", false),
    r("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", false),
    r("", "ServiceAccount", "serviceaccounts", true),
    r("", "Secret", "secrets", true),
    r("", "ConfigMap", "configmaps", true),
    r("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", false),
    r("rbac.authorization.k8s.io", "Role", "roles", true),
    r("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", false),
    r("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", true),
    r("", "Service", "services", true),
    r("apps", "DaemonSet", "daemonsets", true),
    r("apps", "Deployment", "deployments", true),
    r("policy", "PodDisruptionBudget", "poddisruptionbudgets", true),
    r("apiregistration.k8s.io", "APIService", "apiservices", false),
    r("coordination.k8s.io", "Lease", "leases", true),
];

/// The group of an `apiVersion`: `apps/v1` → `apps`, `v1` → `""`.
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// The table row for `kind` in `apiVersion`'s group.
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let group = group_of(api_version);
    RESOURCES.iter().find(|r| r.kind == kind && r.group == group)
}

/// Where a kind comes in the apply order (its row in [`RESOURCES`]).
pub fn rank(res: &Resource) -> usize {
    RESOURCES.iter().position(|r| r == res).unwrap_or(RESOURCES.len())
}

/// The kinds kbin can apply, for messages.
pub fn known_kinds() -> String {
    RESOURCES.iter().map(|r| r.kind).collect::<Vec<_>>().join(", ")
}

/// An object's identity, checked against the table: enough to compute its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub resource: &'static Resource,
}

impl fmt::Display for ObjectRef {
    /// `Kind/name`, as kubectl names objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

fn text<'v>(obj: &'v Value, pointer: &str) -> Option<&'v str> {
    obj.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A name or namespace must be one URL path segment.
fn check_segment(what: &str, s: &str) -> Result<(), String> {
    if s.contains(['/', '%', '?', '#']) || s == "." || s == ".." || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{what} {s:?} cannot be part of a URL path"));
    }
    Ok(())
}

impl ObjectRef {
    /// Read `apiVersion`, `kind`, `metadata.name` and `metadata.namespace` from `obj` and find its
    /// kind in the table. A namespaced kind needs a namespace; a cluster-scoped one must have none.
    pub fn of(obj: &Value) -> Result<ObjectRef, KubeError> {
        let name = text(obj, "/metadata/name");
        let kind = text(obj, "/kind");
        let object = format!("{}/{}", kind.unwrap_or("?"), name.unwrap_or("?"));
        let invalid = |message: String| KubeError::Invalid { object: object.clone(), message };
        if !obj.is_object() {
            return Err(invalid("is not a mapping".into()));
        }
        let api_version = text(obj, "/apiVersion").ok_or_else(|| invalid("has no apiVersion".into()))?;
        let kind = kind.ok_or_else(|| invalid("has no kind".into()))?;
        let name = name.ok_or_else(|| invalid("has no metadata.name".into()))?;
        check_segment("metadata.name", name).map_err(invalid)?;
        let resource = lookup(api_version, kind)
            .ok_or_else(|| KubeError::UnknownKind { object: object.clone(), api_version: api_version.into(), kind: kind.into() })?;
        let namespace = text(obj, "/metadata/namespace");
        match (resource.namespaced, namespace) {
            (true, None) => return Err(invalid(format!("{kind} is namespaced but metadata.namespace is not set"))),
            (false, Some(ns)) => return Err(invalid(format!("{kind} is cluster-scoped but metadata.namespace is {ns:?}"))),
            (true, Some(ns)) => check_segment("metadata.namespace", ns).map_err(invalid)?,
            (false, None) => {}
        }
        Ok(ObjectRef { api_version: api_version.into(), kind: kind.into(), namespace: namespace.map(str::to_string), name: name.into(), resource })
    }

    /// The object's URL path, such as `/api/v1/namespaces/kube-system/secrets/x` or
    /// `/apis/rbac.authorization.k8s.io/v1/clusterroles/y`.
    pub fn path(&self) -> String {
        let base = if self.resource.group.is_empty() { format!("/api/{}", self.api_version) } else { format!("/apis/{}", self.api_version) };
        match &self.namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{}/{}", self.resource.plural, self.name),
            None => format!("{base}/{}/{}", self.resource.plural, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(obj: Value) -> String {
        ObjectRef::of(&obj).unwrap().path()
    }

    #[test]
    fn urls_follow_group_scope_and_plural() {
        assert_eq!(path(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-flannel"}})), "/api/v1/namespaces/kube-flannel");
        assert_eq!(
            path(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}})),
            "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef"
        );
        assert_eq!(
            path(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "kbin:flannel"}})),
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kbin:flannel"
        );
        assert_eq!(
            path(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "ns"}})),
            "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings/rb"
        );
        assert_eq!(
            path(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel"}})),
            "/apis/apps/v1/namespaces/kube-flannel/daemonsets/kube-flannel-ds"
        );
        assert_eq!(
            path(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "m1", "namespace": "kube-node-lease"}})),
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/m1"
        );
    }

    #[test]
    fn unknown_kinds_and_wrong_groups_are_named() {
        let e = ObjectRef::of(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"}})).unwrap_err();
        assert!(matches!(&e, KubeError::UnknownKind { kind, .. } if kind == "Pod"), "{e}");
        assert!(e.to_string().contains("Pod/p"), "{e}");
        // ClusterRole is not in the core group
        let e = ObjectRef::of(&json!({"apiVersion": "v1", "kind": "ClusterRole", "metadata": {"name": "r"}})).unwrap_err();
        assert!(matches!(e, KubeError::UnknownKind { .. }));
    }

    #[test]
    fn identity_fields_and_scope_are_checked() {
        let bad = [
            json!({"kind": "Namespace", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ""}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a/b"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "x"}}),
            json!(["not", "a", "mapping"]),
        ];
        for b in bad {
            assert!(matches!(ObjectRef::of(&b), Err(KubeError::Invalid { .. })), "{b} should be refused");
        }
    }

    #[test]
    fn table_order_puts_namespaces_first_and_roles_before_bindings() {
        let pos = |kind: &str| RESOURCES.iter().position(|r| r.kind == kind).unwrap();
        assert_eq!(pos("Namespace"), 0);
        assert!(pos("ClusterRole") < pos("ClusterRoleBinding"));
        assert!(pos("Role") < pos("RoleBinding"));
        assert!(pos("ServiceAccount") < pos("DaemonSet") && pos("ConfigMap") < pos("Deployment"));
        // no kind twice in the same group
        for (i, a) in RESOURCES.iter().enumerate() {
            assert!(!RESOURCES[i + 1..].iter().any(|b| a.group == b.group && a.kind == b.kind), "{} twice", a.kind);
        }
    }
}
