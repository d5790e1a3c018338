//! etcd's v3 JSON gateway and `/health`, spoken over mutual TLS through any byte stream.
//!
//! kbin reaches members through the SSH connection to their host, so calls take a stream (an SSH
//! direct-tcpip channel, or a plain TCP socket in tests) and the member's address, which must be
//! in the member's server certificate.

use std::io::{Read, Write};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::tls::{self, Identity, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("etcd at {server} answered {path} with HTTP {status}: {body}")]
    Status { server: String, path: String, status: u16, body: String },
    #[error("etcd at {server} answered {path} with unexpected JSON: {message}")]
    Json { server: String, path: String, message: String },
}

/// A member as `member list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub id: u64,
    /// Empty for a member added but not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// A member's own view (`/v3/maintenance/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader: u64,
    pub version: String,
    pub db_size: u64,
    pub revision: u64,
    pub raft_term: u64,
}

/// The gateway encodes 64-bit integers as strings.
fn u64_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        Value::Null => Some(0),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn member_of(v: &Value) -> Option<Member> {
    Some(Member {
        id: u64_of(v.get("ID")?)?,
        name: v.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        peer_urls: strings(v.get("peerURLs").unwrap_or(&Value::Null)),
        client_urls: strings(v.get("clientURLs").unwrap_or(&Value::Null)),
        is_learner: v.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// A client for one cluster: the etcd CA and a client certificate signed by it.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(id: &Identity) -> Result<Client, ApiError> {
        Ok(Client { config: tls::client_config(id)? })
    }

    fn call<S: Read + Write>(&self, stream: S, server: &str, path: &str, body: Value) -> Result<Value, ApiError> {
        let body = body.to_string();
        let r = tls::request(stream, self.config.clone(), server, "POST", path, "application/json", Some(body.as_bytes()))?;
        if r.status != 200 {
            return Err(ApiError::Status { server: server.into(), path: path.into(), status: r.status, body: r.text().trim().to_string() });
        }
        serde_json::from_slice(&r.body).map_err(|e| ApiError::Json { server: server.into(), path: path.into(), message: e.to_string() })
    }

    fn bad(server: &str, path: &str, what: &str) -> ApiError {
        ApiError::Json { server: server.into(), path: path.into(), message: format!("no {what}") }
    }

    /// `GET /health`: `Ok(true)` when the member reports healthy (it has a leader and can serve).
    pub fn health<S: Read + Write>(&self, stream: S, server: &str) -> Result<bool, ApiError> {
        let r = tls::request(stream, self.config.clone(), server, "GET", "/health", "application/json", None)?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| ApiError::Json { server: server.into(), path: "/health".into(), message: e.to_string() })?;
        Ok(r.status == 200 && v.get("health").and_then(Value::as_str) == Some("true"))
    }

    pub fn status<S: Read + Write>(&self, stream: S, server: &str) -> Result<Status, ApiError> {
        let p = "/v3/maintenance/status";
        let v = self.call(stream, server, p, json!({}))?;
        let h = v.get("header").ok_or_else(|| Self::bad(server, p, "header"))?;
        let num = |x: Option<&Value>, what: &str| x.and_then(u64_of).ok_or_else(|| Self::bad(server, p, what));
        Ok(Status {
            member_id: num(h.get("member_id"), "member_id")?,
            cluster_id: num(h.get("cluster_id"), "cluster_id")?,
            leader: num(v.get("leader"), "leader")?,
            version: v.get("version").and_then(Value::as_str).unwrap_or("").to_string(),
            db_size: num(v.get("dbSize"), "dbSize")?,
            revision: num(h.get("revision"), "revision")?,
            raft_term: num(h.get("raft_term"), "raft_term")?,
        })
    }

    pub fn member_list<S: Read + Write>(&self, stream: S, server: &str) -> Result<Vec<Member>, ApiError> {
        let p = "/v3/cluster/member/list";
        let v = self.call(stream, server, p, json!({}))?;
        Ok(v.get("members").and_then(Value::as_array).map(|a| a.iter().filter_map(member_of).collect()).unwrap_or_default())
    }

    /// Announce a new member by its peer URL; it must then start with `initial-cluster-state: existing`.
    /// A learner (`learner`) replicates but does not vote until [`Client::member_promote`].
    pub fn member_add<S: Read + Write>(&self, stream: S, server: &str, peer_url: &str, learner: bool) -> Result<Member, ApiError> {
        let p = "/v3/cluster/member/add";
        let v = self.call(stream, server, p, json!({ "peerURLs": [peer_url], "isLearner": learner }))?;
        v.get("member").and_then(member_of).ok_or_else(|| Self::bad(server, p, "member"))
    }

    /// Make a learner a voting member; etcd refuses until it has caught up with the leader.
    pub fn member_promote<S: Read + Write>(&self, stream: S, server: &str, id: u64) -> Result<(), ApiError> {
        self.call(stream, server, "/v3/cluster/member/promote", json!({ "ID": id.to_string() }))?;
        Ok(())
    }

    /// Defragment this member's backend (it stalls while it does).
    pub fn defragment<S: Read + Write>(&self, stream: S, server: &str) -> Result<(), ApiError> {
        self.call(stream, server, "/v3/maintenance/defragment", json!({}))?;
        Ok(())
    }

    /// Hand the leadership to member `target` (sent to the leader; etcd refuses elsewhere).
    pub fn move_leader<S: Read + Write>(&self, stream: S, server: &str, target: u64) -> Result<(), ApiError> {
        self.call(stream, server, "/v3/maintenance/transfer-leadership", json!({ "targetID": target.to_string() }))?;
        Ok(())
    }

    pub fn member_remove<S: Read + Write>(&self, stream: S, server: &str, id: u64) -> Result<(), ApiError> {
        self.call(stream, server, "/v3/cluster/member/remove", json!({ "ID": id.to_string() }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_gateway_json() {
        let v: Value = serde_json::from_str(r#"{"ID":"9372538179322589801","name":"m1","peerURLs":["https://10.0.0.1:2380"],"clientURLs":["https://10.0.0.1:2379"]}"#).unwrap();
        let m = member_of(&v).unwrap();
        assert_eq!(m.id, 9372538179322589801);
        assert_eq!(m.name, "m1");
        assert!(!m.is_learner);
        // a member added but not started has no name and no client URLs
        let v: Value = serde_json::from_str(r#"{"ID":"5","peerURLs":["https://10.0.0.4:2380"]}"#).unwrap();
        assert_eq!(member_of(&v).unwrap().name, "");
    }
}
