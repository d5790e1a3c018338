//! The change engine every command that touches hosts runs on.
//!
//! An operation is an ordered list of phases over connected [`Node`]s:
//! 1. read-only, on every host of the operation before anything changes (and before any long
//!    download): [`connect`], [`facts`] (one round trip per host), [`phase::preflight`] whose
//!    refusal is a pure function of the facts (exit 2, nothing changed);
//! 2. mutating phases, per host: plan ([`files::push`] with `dry_run`: the same path stops where
//!    a write would be), apply inside a [`Tx`] that records every change and undoes them in reverse
//!    order unless committed (also on drop), verify ([`converge`]).
//!
//! What differs per component stays with it as data or small hooks: the [`files::Item`]s and
//! their units, [`files::Significant`] (etcd's `initial-*` keys), a [`converge::Spec`]'s
//! precheck and reload list, the verify closure, the [`facts::Probe`] and refusal of each role.
//! Results stay typed to the edge: [`phase::HostOutcome`], [`phase::HostFailure`] with its
//! [`tx::Rollback`] state.

pub mod bins;
pub mod connect;
pub mod converge;
pub mod facts;
pub mod files;
pub mod latch;
pub mod phase;
pub mod relay;
pub mod systemd;
pub mod tx;

use std::time::Duration;

pub use bins::Bins;
pub use converge::{Spec, converge};
pub use facts::{Facts, Probe};
pub use latch::Latch;
pub use files::{Item, Pushed, diff, items, needs_change, push, push_known};
pub use phase::{HostFailure, HostOutcome, failed, on_each, preflight};
pub use systemd::{active_units, all_running, journal_tail, systemctl, wait_every, wait_for};
pub use tx::{Change, Rollback, Tx};

pub use crate::host::Node;
use crate::exit::{Exit, Reportable};
use crate::config::Cluster;
use crate::host::parallel::Cancel;
use crate::output::Printer;

/// What a phase of the engine reports when it does not finish: per-host results stay typed
/// ([`HostFailure`]); the edge (`crate::error`) turns this into the one report.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Per-host failures; `refused`: a preflight refusal (exit 2, nothing changed).
    #[error("{what}")]
    Hosts { what: String, hosts: Vec<HostFailure>, hint: Option<String>, refused: bool },
    /// Ctrl-C: what was done and what was not started.
    #[error("interrupted: {what}")]
    Interrupted { what: String },
    #[error("the {component} release artifact has no file {name}")]
    MissingBinary { component: String, name: String },
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Artifacts(#[from] crate::artifacts::ArtifactError),
}

impl Reportable for EngineError {
    fn hint(&self) -> Option<String> {
        match self {
            EngineError::Hosts { hint, .. } => hint.clone(),
            EngineError::Interrupted { .. } => Some("run the command again to finish; what was done is not repeated".into()),
            EngineError::MissingBinary { .. } => Some("check the component's version in the cluster file (and kbin.lock), then run `kbin download` again".into()),
            EngineError::Render(e) => e.hint(),
            EngineError::Artifacts(e) => e.hint(),
        }
    }
    fn exit(&self) -> Exit {
        match self {
            EngineError::Hosts { refused: true, .. } => Exit::Refused,
            EngineError::Interrupted { .. } => Exit::Interrupted,
            EngineError::Render(e) => e.exit(),
            EngineError::Artifacts(e) => e.exit(),
            _ => Exit::Failure,
        }
    }
}

/// The environment of one run: the cluster, how to report, how many hosts at once, Ctrl-C, how
/// long a host may take to become healthy, and whether this is a dry run.
#[derive(Clone)]
pub struct Run<'c> {
    pub cluster: &'c Cluster,
    pub printer: Printer,
    pub concurrency: usize,
    pub cancel: Cancel,
    pub timeout: Duration,
    pub dry_run: bool,
    /// Files this run already read on a host and found as wanted (shared by its clones).
    pub known: Known,
}

/// Digests this run read on the hosts and found equal to what kbin wants there: the relay's
/// check reads every large file once, and the push that follows takes its word instead of
/// reading hundreds of megabytes again. Each entry is used at most once, so a file a later step
/// writes or rolls back is read again.
#[derive(Clone, Debug, Default)]
pub struct Known(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<(String, String), String>>>);

impl Known {
    /// `path` on `host` holds the content with this sha256.
    pub fn note(&self, host: &str, path: &str, sha256: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert((host.to_string(), path.to_string()), sha256.to_string());
    }
    /// Whether `path` on `host` was found holding `sha256` (remembered).
    pub fn holds(&self, host: &str, path: &str, sha256: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&(host.to_string(), path.to_string())).is_some_and(|s| s == sha256)
    }
    /// Whether `path` on `host` was found holding `sha256`; forgets it either way.
    pub fn take(&self, host: &str, path: &str, sha256: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&(host.to_string(), path.to_string())).is_some_and(|s| s == sha256)
    }
}
