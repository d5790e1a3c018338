//! Human output conventions: `[phase] host: message` lines on stderr, data on stdout.
//!
//! Only data goes to stdout so `--json` output can be piped. Colour is never required to read a
//! line, and `NO_COLOR` turns it off.

use std::io::{IsTerminal, Write};

#[derive(Debug, Clone, Copy, Default)]
pub struct Printer {
    pub quiet: bool,
    pub color: bool,
}

impl Printer {
    pub fn new(quiet: bool) -> Self {
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal();
        Printer { quiet, color }
    }

    /// A progress line: `[phase] host: message`, or `[phase] message` without a host.
    pub fn phase(&self, phase: &str, host: Option<&str>, message: &str) {
        if self.quiet {
            return;
        }
        let line = match host {
            Some(h) => format!("[{phase}] {h}: {message}"),
            None => format!("[{phase}] {message}"),
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// A warning, always shown (even with `--quiet`).
    pub fn warn(&self, message: &str, hint: Option<&str>) {
        let mut e = std::io::stderr().lock();
        let tag = if self.color { "\x1b[33mwarning\x1b[0m" } else { "warning" };
        let _ = writeln!(e, "{tag}: {message}");
        if let Some(h) = hint {
            let _ = writeln!(e, "  hint: {h}");
        }
    }
}

/// `"s"` after a count that is not one (`3 hosts`, `1 host`).
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `url` with its credentials replaced by `***` (`http://user:pw@host/x` -> `http://***@host/x`),
/// for anything kbin prints or reports: every URL shown to a person or written to `--json` goes
/// through here. Works on text that is not a valid URL too (an invalid mirror in an error).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_string(),
    }
}

/// Every URL inside a free text (an error message from an HTTP library) redacted.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // the scheme starts after the last character that cannot be in one
        let start = rest[..i].rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))).map_or(0, |j| j + 1);
        let end = rest[i..].find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ',')).map_or(rest.len(), |j| i + j);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_password_in_url_is_redacted() {
        assert_eq!(redact_url("http://user:pw@10.0.0.1:8080/kbin"), "http://***@10.0.0.1:8080/kbin");
        assert_eq!(redact_url("https://token@host/a@b"), "https://***@host/a@b");
        assert_eq!(redact_url("http://u:p@ss@host/"), "http://***@host/");
        assert_eq!(redact_url("http://host/x?u=a@b"), "http://host/x?u=a@b");
        assert_eq!(redact_url("not a url"), "not a url");
        let msg = "error sending request for url (http://user:secret@10.0.0.1/etcd/v3/etcd.tgz): connection refused";
        assert_eq!(redact_urls_in(msg), "error sending request for url (http://***@10.0.0.1/etcd/v3/etcd.tgz): connection refused");
    }
}
