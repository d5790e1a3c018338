//! Exit codes and the [`Reportable`] trait: the leaf every layer's error enum builds on.
//!
//! Library modules implement [`Reportable`] for their own errors (a hint and an exit code); only
//! the edge ([`crate::error`] and the binary) turns them into one report.

/// Process exit codes, the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    /// The operation failed.
    Failure = 1,
    /// A precondition (preflight) refused the operation; nothing was changed.
    Refused = 2,
    /// The cluster file (or another input file) is invalid; nothing was changed.
    BadConfig = 3,
    /// Interrupted by the user (Ctrl-C).
    Interrupted = 130,
}

/// An error and its sources on one line (`a: b: c`), for per-host and per-endpoint reports.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Anything that can be reported at the edge: a message chain, a hint and an exit code.
pub trait Reportable: std::error::Error {
    /// What the user should do next, printed as `hint: ...`.
    fn hint(&self) -> Option<String> {
        None
    }
    fn exit(&self) -> Exit {
        Exit::Failure
    }
}
