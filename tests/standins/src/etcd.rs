//! The apiserver stand-in's storage: the real etcd, through its v3 JSON gateway
//! (`/v3/kv/range`, `/v3/kv/txn`, `/v3/kv/deleterange`, keys and values base64) over mutual TLS
//! with the `--etcd-*` files. Every member of `--etcd-servers` is tried in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde_json::{Value, json};

use crate::net::{Auth, Client};

pub struct Etcd {
    members: Vec<Client>,
    next: AtomicUsize,
}

fn enc(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn dec(v: &Value) -> Vec<u8> {
    v.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()).unwrap_or_default()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The first key after every key that starts with `prefix` (etcd's range_end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub struct Kv {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl Etcd {
    pub fn new(servers: &str, ca: &str, cert: &str, key: &str) -> Result<Etcd, String> {
        let ca = crate::net::read(ca)?;
        let cert = crate::net::read(cert)?;
        let key = crate::net::read(key)?;
        let members = servers
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| Client::new(s.trim(), &ca, Auth::Cert { cert_pem: cert.clone(), key_pem: key.clone() }))
            .collect::<Result<Vec<_>, _>>()?;
        if members.is_empty() {
            return Err("--etcd-servers is empty".into());
        }
        Ok(Etcd { members, next: AtomicUsize::new(0) })
    }

    /// POSTs to the first member that answers; a member that answers with an error status
    /// is an answer too.
    fn call(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let start = self.next.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..self.members.len() {
            let idx = (start + i) % self.members.len();
            let m = &self.members[idx];
            let r = if path == "/health" { m.get_json(path) } else { m.send_json("POST", path, "application/json", body) };
            match r {
                Ok((status, v)) if status < 500 || path == "/health" => {
                    self.next.store(idx, Ordering::Relaxed);
                    return Ok((status, v));
                }
                Ok((status, v)) => errors.push(format!("{}: HTTP {status} {v}", m.server)),
                Err(e) => errors.push(e),
            }
        }
        Err(format!("no etcd member answered: {}", errors.join("; ")))
    }

    /// GET /health on the members until one reports healthy.
    pub fn health(&self) -> Result<(), String> {
        let (status, v) = self.call("/health", &Value::Null)?;
        if status == 200 && v.get("health").and_then(Value::as_str) == Some("true") {
            Ok(())
        } else {
            Err(format!("etcd is not healthy: HTTP {status} {v}"))
        }
    }

    fn ok(&self, path: &str, body: Value) -> Result<Value, String> {
        let (status, v) = self.call(path, &body)?;
        if status != 200 {
            return Err(format!("etcd {path}: HTTP {status} {v}"));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Result<Option<Kv>, String> {
        let v = self.ok("/v3/kv/range", json!({"key": enc(key.as_bytes())}))?;
        Ok(v.get("kvs").and_then(Value::as_array).and_then(|a| a.first()).map(|kv| Kv {
            value: dec(&kv["value"]),
            mod_revision: int(&kv["mod_revision"]),
        }))
    }

    pub fn list(&self, prefix: &str) -> Result<(Vec<Kv>, i64), String> {
        let v = self.ok("/v3/kv/range", json!({"key": enc(prefix.as_bytes()), "range_end": enc(&prefix_end(prefix.as_bytes()))}))?;
        let rev = int(&v["header"]["revision"]);
        let kvs = v
            .get("kvs")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|kv| Kv { value: dec(&kv["value"]), mod_revision: int(&kv["mod_revision"]) }).collect())
            .unwrap_or_default();
        Ok((kvs, rev))
    }

    /// Writes `value` if the key's modification revision is `expected` (0: the key must not
    /// exist). Returns the new revision, or None when the comparison failed.
    pub fn put_if(&self, key: &str, value: &[u8], expected: i64) -> Result<Option<i64>, String> {
        let compare = if expected == 0 {
            json!({"key": enc(key.as_bytes()), "result": "EQUAL", "target": "CREATE", "create_revision": "0"})
        } else {
            json!({"key": enc(key.as_bytes()), "result": "EQUAL", "target": "MOD", "mod_revision": expected.to_string()})
        };
        let body = json!({"compare": [compare], "success": [{"request_put": {"key": enc(key.as_bytes()), "value": enc(value)}}]});
        let v = self.ok("/v3/kv/txn", body)?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) { Ok(Some(int(&v["header"]["revision"]))) } else { Ok(None) }
    }

    pub fn delete(&self, key: &str, expected: i64) -> Result<bool, String> {
        let compare = json!({"key": enc(key.as_bytes()), "result": "EQUAL", "target": "MOD", "mod_revision": expected.to_string()});
        let body = json!({"compare": [compare], "success": [{"request_delete_range": {"key": enc(key.as_bytes())}}]});
        let v = self.ok("/v3/kv/txn", body)?;
        Ok(v.get("succeeded").and_then(Value::as_bool) == Some(true))
    }
}
