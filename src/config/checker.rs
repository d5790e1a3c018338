//! The findings about a cluster file and the checker that collects them with their lines: shared
//! by the whole-file validation (`validate`) and the `[artifacts]` checks (`artifacts`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;
use toml_edit::Document;

use super::locate::{self, Seg};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the cluster file, with the field and the line it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `hosts[2].address` style path of the field.
    pub field: String,
    pub line: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// `cluster.toml:14: hosts[1].address: ... ` plus an indented hint line.
    pub fn render(&self, file: &Path) -> String {
        let loc = match self.line {
            Some(l) => format!("{}:{l}", file.display()),
            None => file.display().to_string(),
        };
        let tag = if self.severity == Severity::Warning { "warning: " } else { "" };
        let mut s = if self.field.is_empty() {
            format!("{tag}{loc}: {}", self.message)
        } else {
            format!("{tag}{loc}: {}: {}", self.field, self.message)
        };
        if let Some(h) = &self.hint {
            s.push_str(&format!("\n    hint: {h}"));
        }
        s
    }
}

pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) doc: &'a Document<String>,
    pub(super) out: Vec<Diagnostic>,
}


impl Checker<'_> {
    fn push(&mut self, severity: Severity, path: &[Seg], message: String, hint: Option<&str>) {
        let line = locate::span(self.doc, path).map(|r| locate::line_of(self.text, r.start));
        self.out.push(Diagnostic {
            severity,
            field: locate::display(path),
            line,
            message,
            hint: hint.map(str::to_string),
        });
    }
    pub(super) fn error(&mut self, path: &[Seg], message: String, hint: Option<&str>) {
        self.push(Severity::Error, path, message, hint)
    }
    pub(super) fn warn(&mut self, path: &[Seg], message: String, hint: Option<&str>) {
        self.push(Severity::Warning, path, message, hint)
    }
    pub(super) fn ip(&mut self, path: &[Seg], s: &str) -> Option<IpAddr> {
        match s.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(path, format!("{s:?} is not an IP address"), Some("write an IPv4 or IPv6 address such as 192.168.0.11"));
                None
            }
        }
    }
    pub(super) fn cidr(&mut self, path: &[Seg], s: &str) -> Option<IpNet> {
        match s.trim().parse::<IpNet>() {
            Ok(net) if net.trunc() != net => {
                self.error(
                    path,
                    format!("{s:?} has host bits set"),
                    Some(&format!("write the network address: {}", net.trunc())),
                );
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                self.error(path, format!("{s:?} is not a CIDR"), Some("write a network such as 10.96.0.0/12"));
                None
            }
        }
    }
}

pub(super) fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(p),
    }
}

/// A DNS-1123 subdomain (what Kubernetes accepts for node names and what is valid in a SAN).
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}
