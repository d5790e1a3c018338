//! JSON object helpers: the resource table the apiserver stand-in serves, merge patches,
//! `Status` error bodies.

use serde_json::{Map, Value, json};

use crate::net::Response;

/// One kind of API object the stand-in serves.
pub struct Res {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Subresources that can be read or written.
    pub subresources: &'static [&'static str],
    /// The path component under /registry/ in etcd (upstream's names, e.g. nodes are "minions").
    pub etcd: &'static str,
}

pub const RESOURCES: &[Res] = &[
    Res { group: "", version: "v1", resource: "nodes", kind: "Node", namespaced: false, subresources: &["status"], etcd: "minions" },
    Res { group: "", version: "v1", resource: "namespaces", kind: "Namespace", namespaced: false, subresources: &["status"], etcd: "namespaces" },
    Res { group: "", version: "v1", resource: "secrets", kind: "Secret", namespaced: true, subresources: &[], etcd: "secrets" },
    Res { group: "", version: "v1", resource: "configmaps", kind: "ConfigMap", namespaced: true, subresources: &[], etcd: "configmaps" },
    Res { group: "", version: "v1", resource: "serviceaccounts", kind: "ServiceAccount", namespaced: true, subresources: &[], etcd: "serviceaccounts" },
    Res { group: "", version: "v1", resource: "services", kind: "Service", namespaced: true, subresources: &["status"], etcd: "services/specs" },
    Res { group: "", version: "v1", resource: "endpoints", kind: "Endpoints", namespaced: true, subresources: &[], etcd: "services/endpoints" },
    Res { group: "", version: "v1", resource: "pods", kind: "Pod", namespaced: true, subresources: &["status", "eviction"], etcd: "pods" },
    Res { group: "policy", version: "v1", resource: "poddisruptionbudgets", kind: "PodDisruptionBudget", namespaced: true, subresources: &["status"], etcd: "poddisruptionbudgets" },
    Res { group: "", version: "v1", resource: "events", kind: "Event", namespaced: true, subresources: &[], etcd: "events" },
    Res { group: "coordination.k8s.io", version: "v1", resource: "leases", kind: "Lease", namespaced: true, subresources: &[], etcd: "leases" },
    Res {
        group: "certificates.k8s.io",
        version: "v1",
        resource: "certificatesigningrequests",
        kind: "CertificateSigningRequest",
        namespaced: false,
        subresources: &["approval", "status"],
        etcd: "certificatesigningrequests",
    },
    Res { group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterroles", kind: "ClusterRole", namespaced: false, subresources: &[], etcd: "clusterroles" },
    Res { group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false, subresources: &[], etcd: "clusterrolebindings" },
    Res { group: "rbac.authorization.k8s.io", version: "v1", resource: "roles", kind: "Role", namespaced: true, subresources: &[], etcd: "roles" },
    Res { group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings", kind: "RoleBinding", namespaced: true, subresources: &[], etcd: "rolebindings" },
    Res { group: "apps", version: "v1", resource: "daemonsets", kind: "DaemonSet", namespaced: true, subresources: &["status"], etcd: "daemonsets" },
    Res { group: "apps", version: "v1", resource: "deployments", kind: "Deployment", namespaced: true, subresources: &["status"], etcd: "deployments" },
];

pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static Res> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.resource == resource)
}

impl Res {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/{name}", self.etcd),
            _ => format!("/registry/{}/{name}", self.etcd),
        }
    }

    pub fn prefix(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.etcd),
            _ => format!("/registry/{}/", self.etcd),
        }
    }

    /// `nodes` or `certificatesigningrequests.certificates.k8s.io`, as upstream names it in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.resource.to_string() } else { format!("{}.{}", self.resource, self.group) }
    }
}

/// An upstream-shaped `Status` failure.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    Response::json(code, &s)
}

pub fn details(res: &Res, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": res.resource});
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// A simplified strategic merge patch: like a merge patch, except that lists of objects that
/// all carry a `type` field (conditions, addresses) are merged item by item on `type`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if k.starts_with("$") {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                } else {
                    strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        Value::Array(items) if keyed(items) && target.as_array().is_some_and(|a| keyed(a)) => {
            let t = target.as_array_mut().expect("array");
            for item in items {
                match t.iter_mut().find(|e| e["type"] == item["type"]) {
                    Some(existing) => strategic_merge(existing, item),
                    None => t.push(item.clone()),
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn keyed(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| i.get("type").is_some_and(Value::is_string))
}

/// Parses a request body: JSON, or YAML for apply patches.
pub fn parse_body(body: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(je) => serde_yaml_ng::from_slice::<Value>(body).map_err(|ye| format!("body is neither JSON ({je}) nor YAML ({ye})")),
    }
}

pub fn meta<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str)
}

pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"][field] = value;
}

pub fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_conditions() {
        let mut t = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}});
        strategic_merge(&mut t, &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert_eq!(t["status"]["conditions"][0]["status"], "True");
        assert_eq!(t["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn merge_removes_nulls() {
        let mut t = json!({"a": 1, "b": {"c": 2}});
        merge_patch(&mut t, &json!({"a": null, "b": {"d": 3}}));
        assert_eq!(t, json!({"b": {"c": 2, "d": 3}}));
    }
}
