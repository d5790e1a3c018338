//! Exit codes and the error type the CLI edge reports.
//!
//! Every library module has its own error enum carrying the facts a user needs (file, field, host,
//! expected vs. actual). They all convert into [`Error`], which knows its exit code and its hint.
//! Exactly one place (the binary's `main`) prints errors.

pub use crate::exit::{Exit, Reportable};

/// The top-level error: one variant per library module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Artifacts(#[from] crate::artifacts::ArtifactError),
    /// A precondition refused the run. `problems` are listed one per line.
    #[error("{what}")]
    Refused { what: String, problems: Vec<String>, hint: Option<String> },
    /// An operation that failed with a list of findings (for example `pki check`).
    #[error("{what}")]
    Failed { what: String, problems: Vec<String>, hint: Option<String> },
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// Per-host results of a phase: each host's failure stays typed to the edge. `refused`: a
    /// preflight refusal (exit 2, nothing changed).
    #[error("{what}")]
    Hosts { what: String, hosts: Vec<crate::engine::HostFailure>, hint: Option<String>, refused: bool },
    /// The user pressed Ctrl-C: `what` says what was done and what was not started.
    #[error("interrupted: {what}")]
    Interrupted { what: String },
    /// A failure with no module of its own (I/O at the edge and the like).
    #[error("{message}")]
    Other { message: String, hint: Option<String>, #[source] source: Option<Box<dyn std::error::Error + Send + Sync>> },
}

impl Error {
    pub fn other(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Other { message: message.into(), hint: hint.map(str::to_string), source: None }
    }
    pub fn exit(&self) -> Exit {
        match self {
            Error::Config(e) => Reportable::exit(e),
            Error::Pki(e) => Reportable::exit(e),
            Error::Render(e) => Reportable::exit(e),
            Error::Host(e) => Reportable::exit(e),
            Error::Artifacts(e) => Reportable::exit(e),
            Error::Refused { .. } => Exit::Refused,
            Error::Hosts { refused: true, .. } => Exit::Refused,
            Error::Hosts { .. } => Exit::Failure,
            Error::Interrupted { .. } => Exit::Interrupted,
            Error::Failed { .. } | Error::Other { .. } => Exit::Failure,
        }
    }
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => Reportable::hint(e),
            Error::Pki(e) => Reportable::hint(e),
            Error::Render(e) => Reportable::hint(e),
            Error::Host(e) => Reportable::hint(e),
            Error::Artifacts(e) => Reportable::hint(e),
            Error::Refused { hint, .. } | Error::Failed { hint, .. } | Error::Other { hint, .. } | Error::Hosts { hint, .. } => hint.clone(),
            Error::Interrupted { .. } => Some("run the command again to finish; what was done is not repeated".into()),
        }
    }
    /// Extra lines printed under the headline (each problem of a refused precondition, every
    /// diagnostic of a bad cluster file).
    pub fn details(&self) -> Vec<String> {
        match self {
            Error::Config(e) => e.details(),
            Error::Refused { problems, .. } | Error::Failed { problems, .. } => problems.clone(),
            Error::Hosts { hosts, .. } => hosts.iter().flat_map(|h| h.lines()).collect(),
            _ => Vec::new(),
        }
    }
}

impl From<crate::engine::EngineError> for Error {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match e {
            E::Hosts { what, hosts, hint, refused } => Error::Hosts { what, hosts, hint, refused },
            E::Interrupted { what } => Error::Interrupted { what },
            E::Render(e) => Error::Render(e),
            E::Artifacts(e) => Error::Artifacts(e),
            e @ E::MissingBinary { .. } => Error::Other { message: e.to_string(), hint: e.hint(), source: None },
        }
    }
}

impl From<crate::kube::masters::NotReady> for Error {
    fn from(e: crate::kube::masters::NotReady) -> Self {
        Error::Refused { what: e.what, problems: e.problems, hint: Some(e.hint) }
    }
}

impl From<crate::kube::KubeError> for Error {
    fn from(e: crate::kube::KubeError) -> Self {
        Error::Other { message: e.to_string(), hint: e.hint(), source: Some(Box::new(e)) }
    }
}

impl From<crate::kube::manifests::ManifestError> for Error {
    fn from(e: crate::kube::manifests::ManifestError) -> Self {
        use crate::kube::manifests::ManifestError;
        match e {
            ManifestError::Refused { ref problems, .. } => Error::Failed { what: e.to_string(), problems: problems.clone(), hint: e.hint() },
            e => Error::Other { message: e.to_string(), hint: e.hint(), source: Some(Box::new(e)) },
        }
    }
}

/// An error as data, for `--json`: the same facts the text report shows.
#[derive(Debug, serde::Serialize)]
pub struct ErrorReport {
    pub message: String,
    pub exit: i32,
    /// The lines printed under the headline.
    pub details: Vec<String>,
    /// The `caused by:` chain.
    pub causes: Vec<String>,
    pub hint: Option<String>,
    /// Per-host failures (host, phase, error, rollback state), when the error has them.
    pub hosts: Vec<crate::engine::HostFailure>,
}

impl ErrorReport {
    pub fn of(err: &Error) -> ErrorReport {
        let head = err.to_string();
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(err);
        // transparent variants forward `source` to the inner error; skip a source that prints the same
        while let Some(s) = source {
            let text = s.to_string();
            if text != head {
                causes.push(text);
            }
            source = s.source();
        }
        let hosts = if let Error::Hosts { hosts, .. } = err { hosts.clone() } else { Vec::new() };
        ErrorReport { message: head, exit: err.exit() as i32, details: err.details(), causes, hint: err.hint(), hosts }
    }
}

/// Render an error the way the CLI prints it: headline, details, `caused by:` chain, `hint:`.
pub fn render(err: &Error) -> String {
    let r = ErrorReport::of(err);
    let mut out = format!("error: {}\n", r.message);
    r.details.iter().for_each(|d| out.push_str(&format!("  {d}\n")));
    r.causes.iter().for_each(|c| out.push_str(&format!("caused by: {c}\n")));
    if let Some(h) = r.hint {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
