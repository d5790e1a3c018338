//! Changes kbin makes to the cluster file itself, preserving its comments and layout
//! (`toml_edit`): a host added by `kbin master add ADDRESS`, the endpoint recorded by
//! `kbin repoint-nodes`.

use std::path::Path;

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use super::{Cluster, ConfigError};

fn document(path: &Path, text: &str) -> Result<DocumentMut, ConfigError> {
    text.parse::<DocumentMut>().map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), line: None, message: e.to_string() })
}

/// The cluster file text with one more `[[hosts]]` entry at the end of the hosts.
pub fn with_host(path: &Path, text: &str, name: &str, address: &str, roles: &[&str]) -> Result<String, ConfigError> {
    let mut doc = document(path, text)?;
    let mut t = Table::new();
    t.insert("name", value(name));
    t.insert("address", value(address));
    let mut r = Array::new();
    for role in roles {
        r.push(*role);
    }
    t.insert("roles", value(r));
    match doc.get_mut("hosts") {
        Some(Item::ArrayOfTables(a)) => a.push(t),
        Some(_) => return Err(ConfigError::Syntax { path: path.to_path_buf(), line: None, message: "`hosts` is not an array of [[hosts]] tables".into() }),
        None => {
            let mut a = ArrayOfTables::new();
            a.push(t);
            doc.insert("hosts", Item::ArrayOfTables(a));
        }
    }
    Ok(doc.to_string())
}

/// The cluster file text with `apiserver.endpoint` set.
pub fn with_endpoint(path: &Path, text: &str, endpoint: &str) -> Result<String, ConfigError> {
    let mut doc = document(path, text)?;
    if doc.get("apiserver").is_none() {
        doc.insert("apiserver", Item::Table(Table::new()));
    }
    let t = doc["apiserver"].as_table_mut().ok_or_else(|| ConfigError::Syntax { path: path.to_path_buf(), line: None, message: "`apiserver` is not a table".into() })?;
    t.insert("endpoint", value(endpoint));
    Ok(doc.to_string())
}

/// The cluster file text with `roles` taken off host `name`'s `roles` list; when no role is
/// left, its whole `[[hosts]]` entry goes (with the comments above it). Everything else, comments
/// included, stays as it was. The roles that were actually removed come back with the text.
pub fn without_roles(path: &Path, text: &str, name: &str, roles: &[&str]) -> Result<(String, Vec<String>), ConfigError> {
    let mut doc = document(path, text)?;
    let bad = |m: String| ConfigError::Syntax { path: path.to_path_buf(), line: None, message: m };
    let hosts = doc.get_mut("hosts").and_then(Item::as_array_of_tables_mut).ok_or_else(|| bad("no [[hosts]] tables".into()))?;
    let i = hosts.iter().position(|t| t.get("name").and_then(Item::as_str) == Some(name)).ok_or_else(|| bad(format!("no [[hosts]] entry named {name:?}")))?;
    let t = hosts.get_mut(i).expect("found");
    let list = t.get_mut("roles").and_then(Item::as_array_mut).ok_or_else(|| bad(format!("host {name:?} has no roles list")))?;
    let mut removed = Vec::new();
    list.retain(|v| match v.as_str() {
        Some(r) if roles.contains(&r) => {
            removed.push(r.to_string());
            false
        }
        _ => true,
    });
    if list.is_empty() {
        hosts.remove(i);
    } else {
        list.fmt();
    }
    Ok((doc.to_string(), removed))
}

/// The cluster file text with `cluster.kubernetes_version` set (an upgrade rolled back).
pub fn with_kubernetes_version(path: &Path, text: &str, version: &str) -> Result<String, ConfigError> {
    let mut doc = document(path, text)?;
    let t = doc.get_mut("cluster").and_then(Item::as_table_mut).ok_or_else(|| ConfigError::Syntax { path: path.to_path_buf(), line: None, message: "no [cluster] table".into() })?;
    match t.get_mut("kubernetes_version").and_then(Item::as_value_mut) {
        // in place: a comment after the value stays
        Some(v) => {
            let decor = v.decor().clone();
            *v = version.into();
            *v.decor_mut() = decor;
        }
        None => {
            t.insert("kubernetes_version", value(version));
        }
    }
    Ok(doc.to_string())
}

/// Validate `new_text` as a cluster file and, if it is valid, replace the file atomically.
pub fn replace(cluster: &Cluster, new_text: &str) -> Result<Cluster, ConfigError> {
    let c = super::parse(&cluster.file, new_text)?;
    let mode = std::fs::metadata(&cluster.file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap_or(0o644);
    crate::fsutil::write_atomic(&cluster.file, new_text.as_bytes(), mode).map_err(|source| ConfigError::Read { path: cluster.file.clone(), source })?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# my cluster\n[cluster]\nname = \"t\" # the name\n\n[[hosts]]\n# first master\nname = \"m1\"\naddress = \"10.0.0.11\"\nroles = [\"master\", \"etcd\"]\n\n[ssh]\nuser = \"root\"\n";

    #[test]
    fn the_kubernetes_version_is_set_in_place_keeping_its_comment() {
        let text = "[cluster]\nname = \"t\"\nkubernetes_version = \"v1.34.3\" # bumped for the upgrade\n\n[[hosts]]\nname = \"m1\"\naddress = \"10.0.0.11\"\nroles = [\"master\", \"etcd\"]\n";
        let out = with_kubernetes_version(Path::new("c.toml"), text, "v1.34.2").unwrap();
        assert_eq!(out, text.replace("v1.34.3", "v1.34.2"));
        let c = super::super::parse(Path::new("c.toml"), &out).unwrap();
        assert_eq!(c.kubernetes_version, "v1.34.2");
    }

    #[test]
    fn adding_a_host_keeps_comments_and_validates() {
        let out = with_host(Path::new("c.toml"), FILE, "m2", "10.0.0.12", &["master"]).unwrap();
        assert!(out.contains("# my cluster") && out.contains("# the name") && out.contains("# first master"), "{out}");
        let c = super::super::parse(Path::new("c.toml"), &out).unwrap();
        let m2 = c.host("10.0.0.12").unwrap();
        assert_eq!(m2.name, "m2");
        assert_eq!(c.hosts.len(), 2);
        assert!(out.starts_with(FILE.split("[ssh]").next().unwrap().trim_end()), "the original text comes first, unchanged:\n{out}");
    }

    #[test]
    fn endpoint_is_set_in_place() {
        let text = "[cluster]\nname = \"t\"\n\n[apiserver]\n# the VIP\nvip = \"10.0.0.88\"\n";
        let out = with_endpoint(Path::new("c.toml"), text, "10.0.0.88").unwrap();
        assert!(out.contains("# the VIP\nvip = \"10.0.0.88\"\nendpoint = \"10.0.0.88\""), "{out}");
    }

    const TWO: &str = "# my cluster\n[cluster]\nname = \"t\"\n\n[[hosts]]\n# first master\nname = \"m1\"\naddress = \"10.0.0.11\"\nroles = [\"master\", \"etcd\", \"node\"]\n\n# the worker\n[[hosts]]\nname = \"n1\"\naddress = \"10.0.0.21\"\nroles = [\"node\"] # only a node\n\n[ssh]\n# who\nuser = \"root\"\n";

    #[test]
    fn a_host_without_roles_left_goes_with_its_comment_and_nothing_else_changes() {
        let (out, removed) = without_roles(Path::new("c.toml"), TWO, "n1", &["node"]).unwrap();
        assert_eq!(removed, ["node"]);
        assert_eq!(out, TWO.replace("# the worker\n[[hosts]]\nname = \"n1\"\naddress = \"10.0.0.21\"\nroles = [\"node\"] # only a node\n\n", ""), "{out}");
    }

    #[test]
    fn a_host_with_other_roles_only_loses_the_role() {
        let (out, removed) = without_roles(Path::new("c.toml"), TWO, "m1", &["node", "lb"]).unwrap();
        assert_eq!(removed, ["node"]);
        assert_eq!(out, TWO.replace("roles = [\"master\", \"etcd\", \"node\"]", "roles = [\"master\", \"etcd\"]"), "{out}");
        assert!(without_roles(Path::new("c.toml"), TWO, "x9", &["node"]).is_err());
    }
}
