//! Shared helpers for CLI tests: run the real `kbin` binary in a fresh temp dir.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const EXPANSION: &str = include_str!("../../examples/expansion/cluster.toml");
pub const PRIVATE_HA: &str = include_str!("../../examples/private-ha/cluster.toml");

pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    /// A temp dir with `cluster.toml` holding `text`.
    pub fn with_cluster(text: &str) -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cluster.toml"), text).unwrap();
        Dir { tmp }
    }
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
    pub fn pki(&self) -> PathBuf {
        self.path().join("pki")
    }
    pub fn write_cluster(&self, text: &str) {
        std::fs::write(self.path().join("cluster.toml"), text).unwrap();
    }
    /// Run kbin with `args` in this directory.
    pub fn kbin(&self, args: &[&str]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_kbin")).args(args).current_dir(self.path()).env("NO_COLOR", "1").output().unwrap();
        Out(out)
    }
    /// Every file under pki/ with its bytes.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let root = self.pki();
        if root.exists() {
            walk(&root, &root, &mut out);
        }
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
        }
    }
}

pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn ok(self) -> Out {
        assert!(self.0.status.success(), "kbin failed ({}):\nstdout:\n{}\nstderr:\n{}", self.code(), self.stdout(), self.stderr());
        self
    }
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Out {
        assert_eq!(self.code(), code, "expected exit {code}:\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
}

/// Run `openssl` with `args` in `dir`; returns (success, stdout+stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must be installed (apt-get install openssl)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `openssl x509 -text` of a certificate file.
pub fn x509_text(dir: &Path, cert: &str) -> String {
    let (ok, text) = openssl(dir, &["x509", "-in", cert, "-noout", "-text"]);
    assert!(ok, "{cert}: {text}");
    text
}

/// Assert `openssl verify` accepts `cert` under `ca` (both relative to `dir`).
#[track_caller]
pub fn assert_verifies(dir: &Path, ca: &str, cert: &str) {
    let (ok, text) = openssl(dir, &["verify", "-x509_strict", "-CAfile", ca, cert]);
    assert!(ok && text.contains(": OK"), "openssl verify -CAfile {ca} {cert}: {text}");
}

/// A small valid cluster: one master (also etcd and node).
pub const SMALL: &str = r#"
[cluster]
name = "small"
service_cidr = "10.96.0.0/16"
pod_cidr = "10.244.0.0/16"

[[hosts]]
name = "m1"
address = "10.213.0.11"
roles = ["master", "etcd", "node"]
"#;
