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
}
