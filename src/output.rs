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
