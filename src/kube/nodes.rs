//! Nodes as the API server reports them: the facts `kbin status` and the deploy phases need,
//! read from a `NodeList` with serde_json.

use serde::Serialize;
use serde_json::Value;

/// One Node's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// The `Ready` condition: `Some(true)` for `True`, `Some(false)` for `False`, `None` for
    /// `Unknown` (the node lifecycle controller heard nothing for the grace period) or no condition.
    pub ready: Option<bool>,
    /// The `Ready` condition's reason, such as `KubeletReady` or `NodeStatusUnknown`.
    pub ready_reason: Option<String>,
    /// The `Ready` condition's `lastHeartbeatTime` (RFC 3339).
    pub last_heartbeat: Option<String>,
    pub kubelet_version: Option<String>,
    /// The first `InternalIP` of `status.addresses`.
    pub internal_ip: Option<String>,
    pub pod_cidr: Option<String>,
    /// `metadata.creationTimestamp` (RFC 3339).
    pub created: Option<String>,
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// One Node object.
pub fn node_status(node: &Value) -> Result<NodeStatus, String> {
    let name = text(node, "/metadata/name").ok_or("a Node without metadata.name")?;
    let conditions = node.pointer("/status/conditions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let ready = conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let internal_ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP")))
        .and_then(|x| text(x, "/address"));
    Ok(NodeStatus {
        ready: ready.and_then(|c| match c.get("status").and_then(Value::as_str) {
            Some("True") => Some(true),
            Some("False") => Some(false),
            _ => None,
        }),
        ready_reason: ready.and_then(|c| text(c, "/reason")),
        last_heartbeat: ready.and_then(|c| text(c, "/lastHeartbeatTime")),
        kubelet_version: text(node, "/status/nodeInfo/kubeletVersion"),
        internal_ip,
        pod_cidr: text(node, "/spec/podCIDR"),
        created: text(node, "/metadata/creationTimestamp"),
        name,
    })
}

/// Every Node of a `NodeList`, in the list's order.
pub fn node_list(list: &Value) -> Result<Vec<NodeStatus>, String> {
    if list.get("kind").and_then(Value::as_str).is_some_and(|k| k != "NodeList") {
        return Err(format!("expected a NodeList, got a {}", list["kind"]));
    }
    let items = list.get("items").ok_or("a NodeList without items")?;
    // an empty list may come as `"items": null`
    let items = match items {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err("items is not a list".into()),
    };
    items.iter().map(node_status).collect()
}

/// `spec.renewTime` of a `Lease` (RFC 3339), the kubelet's liveness signal.
pub fn lease_renew_time(lease: &Value) -> Option<String> {
    text(lease, "/spec/renewTime")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like `GET /api/v1/nodes` from a v1.34 apiserver (fields trimmed, structure kept).
    const NODE_LIST: &str = r#"{
      "kind": "NodeList",
      "apiVersion": "v1",
      "metadata": {"resourceVersion": "4242"},
      "items": [
        {
          "metadata": {
            "name": "master1",
            "uid": "5d1c8d1e-6a43-4b0c-9d1a-0c6d8f7b1a11",
            "resourceVersion": "4200",
            "creationTimestamp": "2025-11-20T08:01:02Z",
            "labels": {"kubernetes.io/hostname": "master1", "kubernetes.io/os": "linux"},
            "annotations": {"flannel.alpha.coreos.com/public-ip": "192.168.0.11"}
          },
          "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
          "status": {
            "capacity": {"cpu": "2", "memory": "4015360Ki", "pods": "110"},
            "conditions": [
              {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2025-11-20T09:00:00Z", "lastTransitionTime": "2025-11-20T08:01:02Z", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
              {"type": "Ready", "status": "True", "lastHeartbeatTime": "2025-11-20T09:00:01Z", "lastTransitionTime": "2025-11-20T08:01:12Z", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
            ],
            "addresses": [{"type": "InternalIP", "address": "192.168.0.11"}, {"type": "Hostname", "address": "master1"}],
            "nodeInfo": {"kubeletVersion": "v1.34.2", "containerRuntimeVersion": "containerd://2.1.4", "architecture": "amd64", "operatingSystem": "linux"}
          }
        },
        {
          "metadata": {"name": "node1", "creationTimestamp": "2025-11-20T08:05:00Z"},
          "spec": {},
          "status": {
            "conditions": [
              {"type": "Ready", "status": "Unknown", "lastHeartbeatTime": "2025-11-20T08:30:00Z", "lastTransitionTime": "2025-11-20T08:31:00Z", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}
            ],
            "addresses": [{"type": "Hostname", "address": "node1"}, {"type": "InternalIP", "address": "192.168.0.12"}],
            "nodeInfo": {"kubeletVersion": "v1.34.2"}
          }
        },
        {"metadata": {"name": "node2"}, "spec": {}, "status": {}}
      ]
    }"#;

    #[test]
    fn node_list_parses_ready_heartbeat_address_and_cidr() {
        let v: Value = serde_json::from_str(NODE_LIST).unwrap();
        let nodes = node_list(&v).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(
            nodes[0],
            NodeStatus {
                name: "master1".into(),
                ready: Some(true),
                ready_reason: Some("KubeletReady".into()),
                last_heartbeat: Some("2025-11-20T09:00:01Z".into()),
                kubelet_version: Some("v1.34.2".into()),
                internal_ip: Some("192.168.0.11".into()),
                pod_cidr: Some("10.244.0.0/24".into()),
                created: Some("2025-11-20T08:01:02Z".into()),
            }
        );
        // Unknown is not "not ready": it is "nobody knows"
        assert_eq!(nodes[1].ready, None);
        assert_eq!(nodes[1].ready_reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(nodes[1].internal_ip.as_deref(), Some("192.168.0.12"), "InternalIP found wherever it is in the list");
        assert_eq!(nodes[1].pod_cidr, None);
        // a Node registered a moment ago has no status yet
        assert_eq!((nodes[2].ready, nodes[2].last_heartbeat.as_deref(), nodes[2].kubelet_version.as_deref()), (None, None, None));
    }

    #[test]
    fn empty_and_malformed_lists() {
        assert_eq!(node_list(&serde_json::json!({"kind": "NodeList", "items": []})).unwrap(), vec![]);
        assert_eq!(node_list(&serde_json::json!({"kind": "NodeList", "items": null})).unwrap(), vec![]);
        assert!(node_list(&serde_json::json!({"kind": "Status"})).is_err());
        assert!(node_list(&serde_json::json!({"kind": "NodeList", "items": [{"metadata": {}}]})).is_err());
    }

    #[test]
    fn lease_renew_time_reads_spec() {
        let lease = serde_json::json!({"kind": "Lease", "metadata": {"name": "m1", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "m1", "leaseDurationSeconds": 40, "renewTime": "2025-11-20T09:00:03.123456Z"}});
        assert_eq!(lease_renew_time(&lease).as_deref(), Some("2025-11-20T09:00:03.123456Z"));
        assert_eq!(lease_renew_time(&serde_json::json!({"spec": {}})), None);
    }
}
