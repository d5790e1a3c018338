//! Rewriting every Secret as it is, so the apiserver stores it again under the encryption key it
//! writes with now (the step of a key rotation between "every apiserver writes with the new key"
//! and "the old key is dropped").

use serde_json::Value;

use super::{Client, Endpoint, KubeError, status_error};

impl Client {
    /// Replace every Secret with itself (`PUT`, its resourceVersion kept: a Secret changed in
    /// between is read again and replaced once more; one deleted in between is skipped). The
    /// number rewritten. Secret data goes only to the apiserver, never to a log.
    pub fn rewrite_secrets(&self, ep: &Endpoint) -> Result<usize, KubeError> {
        let list = self.get(ep, "/api/v1/secrets")?;
        let mut done = 0;
        for item in list["items"].as_array().into_iter().flatten() {
            let (Some(ns), Some(name)) = (item["metadata"]["namespace"].as_str(), item["metadata"]["name"].as_str()) else { continue };
            let path = format!("/api/v1/namespaces/{ns}/secrets/{name}");
            let mut current: Value = item.clone();
            for attempt in 0.. {
                current["apiVersion"] = "v1".into();
                current["kind"] = "Secret".into();
                let body = serde_json::to_vec(&current).expect("a JSON value serializes");
                let r = self.send(ep, "PUT", &path, Some(("application/json", &body)))?;
                match r.status {
                    200 | 201 => {
                        done += 1;
                        break;
                    }
                    404 => break,
                    409 if attempt < 5 => match self.get_opt(ep, &path)? {
                        Some(v) => current = v,
                        None => break,
                    },
                    _ => return Err(status_error(ep, "PUT", &path, &r)),
                }
            }
        }
        Ok(done)
    }
}
