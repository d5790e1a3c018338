//! Phases over many hosts: read-only preflight (facts, then a pure refusal) on every host before
//! anything changes, and the fan-out of a mutating phase with one typed result per host.

use serde::Serialize;

use super::Run;
use super::facts::{self, Facts, Probe};
use super::tx::Rollback;
use super::EngineError as Error;
use crate::host::parallel::{self, Outcome};
use crate::exit::Reportable;
use crate::host::{HostError, Node};

/// What converging one host did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub part: String,
    pub changed: Vec<String>,
    pub bytes_sent: u64,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub dry_run: bool,
}

/// Why a host failed, in which phase, and what the rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct HostFailure {
    pub host: String,
    pub phase: String,
    /// One line: what failed (file or unit) and its cause.
    pub error: String,
    /// Journal lines of the units involved.
    pub journal: Vec<String>,
    pub rollback: Rollback,
    /// What to do about it, when the error says (a host error's hint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl HostFailure {
    pub fn new(host: &str, phase: &str, error: impl Into<String>) -> HostFailure {
        HostFailure { host: host.into(), phase: phase.into(), error: error.into(), journal: Vec::new(), rollback: Rollback::NotNeeded, hint: None }
    }
    /// `[phase] host: error`, `[rollback] host: ...`, then the journal lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("[{}] {}: {}", self.phase, self.host, self.error)];
        if let Some(r) = self.rollback.line() {
            out.push(format!("[rollback] {}: {r}", self.host));
        }
        out.extend(self.journal.iter().map(|l| format!("  journal: {l}")));
        out
    }
}

impl From<HostError> for HostFailure {
    fn from(e: HostError) -> Self {
        let host = e.host().to_string();
        // a HostError names its host: do not say it twice
        let chain = e.chain();
        let error = chain.strip_prefix(&format!("{host}: ")).map(str::to_string).unwrap_or(chain);
        HostFailure { hint: e.hint(), ..HostFailure::new(&host, "push", error) }
    }
}

/// Turn per-host failures into the one error the CLI reports.
pub fn failed<E: From<Error>>(what: String, failures: Vec<HostFailure>, hint: &str) -> E {
    Error::Hosts { what, hosts: failures, hint: Some(hint.to_string()), refused: false }.into()
}

/// Gather something on every node in parallel (read-only) and judge each with `refusal`: the
/// gathered values (complete only when there are no problems) and every problem, typed.
pub fn gather_all<T: Send>(run: &Run<'_>, nodes: &[Node<'_>], gather: &(dyn Fn(&Node<'_>) -> Result<T, HostError> + Sync), refusal: &dyn Fn(&Node<'_>, &T) -> Vec<String>) -> Result<(Vec<T>, Vec<HostFailure>), Error> {
    let results = parallel::for_each(nodes, |n| n.host.name.clone(), "preflight", run.concurrency, &run.cancel, gather);
    let mut problems = Vec::new();
    let mut all = Vec::new();
    for (r, n) in results.into_iter().zip(nodes) {
        match r.outcome {
            Outcome::Done(t) => {
                problems.extend(refusal(n, &t).into_iter().map(|p| HostFailure::new(&n.host.name, "preflight", p)));
                all.push(t);
            }
            Outcome::Failed(e) => problems.push(HostFailure { phase: "preflight".into(), ..HostFailure::from(e) }),
            Outcome::Skipped => return Err(Error::Interrupted { what: "stopped during preflight; nothing was changed".into() }),
        }
    }
    Ok((all, problems))
}

/// Gather the facts `probe` names on every node, then ask `refusal` — a pure function of the
/// facts — whether each can take its part. Refuses (exit 2, nothing changed) with every problem
/// of every host at once.
pub fn preflight(run: &Run<'_>, nodes: &[Node<'_>], what: &str, probe: &(dyn Fn(&Node<'_>) -> Probe + Sync), refusal: &dyn Fn(&Node<'_>, &Facts) -> Vec<String>) -> Result<Vec<Facts>, Error> {
    let (all, problems) = gather_all(run, nodes, &|n| facts::gather(n, &probe(n)), refusal)?;
    if !problems.is_empty() {
        let bad = problems.iter().map(|p| p.host.as_str()).collect::<std::collections::BTreeSet<_>>().len();
        return Err(Error::Hosts {
            what: format!("preflight refused the {what} run on {bad} of {} hosts; nothing was changed", nodes.len()),
            hosts: problems,
            hint: Some("fix the hosts listed above (or the cluster file) and run the command again".into()),
            refused: true,
        });
    }
    Ok(all)
}

/// Run `f` on every node (with its index), `concurrency` at a time; collect outcomes, or the
/// failures.
pub fn on_each<'c>(run: &Run<'_>, concurrency: usize, nodes: &[Node<'c>], phase: &str, f: impl Fn(usize, &Node<'c>) -> Result<HostOutcome, HostFailure> + Sync) -> (Vec<HostOutcome>, Vec<HostFailure>) {
    let idx: Vec<usize> = (0..nodes.len()).collect();
    let results = parallel::for_each(&idx, |i| nodes[*i].host.name.clone(), phase, concurrency, &run.cancel, |i| Ok(f(*i, &nodes[*i])));
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (r, n) in results.into_iter().zip(nodes) {
        match r.outcome {
            Outcome::Done(Ok(o)) => ok.push(o),
            Outcome::Done(Err(f)) => bad.push(f),
            Outcome::Failed(e) => bad.push(e.into()),
            Outcome::Skipped => bad.push(HostFailure::new(&n.host.name, "skipped", "not started (interrupted)")),
        }
    }
    (ok, bad)
}
