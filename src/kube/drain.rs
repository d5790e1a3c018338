//! Taking a Node out of service through the API: cordon (`spec.unschedulable`), the pods on it,
//! their eviction (`policy/v1` Eviction, so PodDisruptionBudgets are respected) and the Node's
//! deletion. The waiting (retrying a refused eviction, waiting for the pods to go) belongs to the
//! operation that calls these (`deploy::remove`).

use serde::Serialize;
use serde_json::{Value, json};

use super::{Client, Endpoint, KubeError, json as body_json, query_value, status_error};

/// The media type of a JSON merge patch.
const MERGE_PATCH: &str = "application/merge-patch+json";

/// A pod on the node being drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// Why it is left alone: `daemonset` (its controller puts it back on every node anyway) or
    /// `mirror` (a static pod the kubelet runs from a file; the API cannot evict it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<&'static str>,
    /// Being deleted already (`metadata.deletionTimestamp`).
    pub terminating: bool,
}

impl Pod {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).map(str::to_string)
}

/// One pod of a `PodList`.
pub fn pod(v: &Value) -> Result<Pod, String> {
    let name = text(v, "/metadata/name").ok_or("a Pod without metadata.name")?;
    let namespace = text(v, "/metadata/namespace").unwrap_or_else(|| "default".into());
    let mirror = v.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
    let daemonset = v
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r.get("kind").and_then(Value::as_str) == Some("DaemonSet") && r.get("controller").and_then(Value::as_bool) == Some(true)));
    let skip = if mirror { Some("mirror") } else if daemonset { Some("daemonset") } else { None };
    Ok(Pod { namespace, name, skip, terminating: v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) })
}

/// Every pod of a `PodList`, in its order.
pub fn pod_list(list: &Value) -> Result<Vec<Pod>, String> {
    match list.get("items") {
        Some(Value::Array(a)) => a.iter().map(pod).collect(),
        Some(Value::Null) => Ok(Vec::new()),
        _ => Err("a PodList without items".into()),
    }
}

/// What one eviction request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// Accepted: the pod is being deleted gracefully.
    Accepted,
    /// The pod is gone already.
    Gone,
    /// HTTP 429: a PodDisruptionBudget does not allow it now; its message says which.
    Blocked(String),
}

impl Client {
    /// Mark Node `name` unschedulable (or schedulable again). `Ok(false)`: it already was.
    pub fn cordon(&self, ep: &Endpoint, name: &str, unschedulable: bool) -> Result<bool, KubeError> {
        let path = format!("/api/v1/nodes/{name}");
        let node = self.get(ep, &path)?;
        if node.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false) == unschedulable {
            return Ok(false);
        }
        let patch = serde_json::to_vec(&json!({"spec": {"unschedulable": unschedulable}})).expect("a JSON value serializes");
        let r = self.send(ep, "PATCH", &path, Some((MERGE_PATCH, &patch)))?;
        match r.status {
            200 => Ok(true),
            _ => Err(status_error(ep, "PATCH", &path, &r)),
        }
    }

    /// The pods bound to Node `name` (a field selector on `spec.nodeName`).
    pub fn pods_on(&self, ep: &Endpoint, name: &str) -> Result<Vec<Pod>, KubeError> {
        let path = format!("/api/v1/pods?fieldSelector={}", query_value(&format!("spec.nodeName={name}")));
        let v = self.get(ep, &path)?;
        pod_list(&v).map_err(|message| KubeError::Json { server: ep.label.clone(), path, message })
    }

    /// Ask the API to evict `pod` (`POST .../pods/NAME/eviction`, policy/v1).
    pub fn evict(&self, ep: &Endpoint, pod: &Pod) -> Result<Eviction, KubeError> {
        let path = format!("/api/v1/namespaces/{}/pods/{}/eviction", pod.namespace, pod.name);
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod.name, "namespace": pod.namespace}});
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let r = self.send(ep, "POST", &path, Some(("application/json", &body)))?;
        match r.status {
            200 | 201 => Ok(Eviction::Accepted),
            404 => Ok(Eviction::Gone),
            429 => {
                let msg = body_json(ep, &path, &r).ok().and_then(|v| text(&v, "/message")).unwrap_or_else(|| "a PodDisruptionBudget does not allow it now".into());
                Ok(Eviction::Blocked(msg))
            }
            _ => Err(status_error(ep, "POST", &path, &r)),
        }
    }

    /// Delete Node `name`. `Ok(false)`: there was none.
    pub fn delete_node(&self, ep: &Endpoint, name: &str) -> Result<bool, KubeError> {
        let path = format!("/api/v1/nodes/{name}");
        let r = self.send(ep, "DELETE", &path, None)?;
        match r.status {
            200 | 202 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(ep, "DELETE", &path, &r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemonset_and_mirror_pods_are_left_alone() {
        let list = json!({"kind": "PodList", "items": [
            {"metadata": {"name": "web-1", "namespace": "app", "ownerReferences": [{"kind": "ReplicaSet", "controller": true}]}},
            {"metadata": {"name": "agent-x", "namespace": "kube-system", "ownerReferences": [{"kind": "DaemonSet", "controller": true}]}},
            {"metadata": {"name": "static-n1", "namespace": "kube-system", "annotations": {"kubernetes.io/config.mirror": "abc"}}},
            {"metadata": {"name": "old", "namespace": "app", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
            {"metadata": {"name": "bare"}}
        ]});
        let pods = pod_list(&list).unwrap();
        let skip: Vec<_> = pods.iter().map(|p| p.skip).collect();
        assert_eq!(skip, [None, Some("daemonset"), Some("mirror"), None, None]);
        assert_eq!(pods[0].id(), "app/web-1");
        assert!(pods[3].terminating && !pods[0].terminating);
        assert_eq!(pods[4].namespace, "default");
        assert_eq!(pod_list(&json!({"items": null})).unwrap(), vec![]);
        assert!(pod_list(&json!({"kind": "Status"})).is_err());
    }
}
