//! Converge the services of one host: push the files that differ, start what is not running,
//! restart (or reload) what runs on changed files, verify; undo everything if verification fails.

use super::files::{Item, push_known};
use super::phase::{HostFailure, HostOutcome};
use super::systemd::{active_units, journal_tail};
use super::{Rollback, Run, Tx};
use crate::host::{Cmd, Node};

/// What to converge on one host (`..Default::default()` for the hooks and checks not used).
#[derive(Default)]
pub struct Spec<'a> {
    pub items: &'a [Item],
    /// The services, in start order.
    pub units: &'a [&'a str],
    /// Services that are reloaded, not restarted, when they run and their files changed
    /// (nginx: a reload keeps open connections).
    pub reload: &'a [&'a str],
    /// A command that must succeed on the new files before anything is (re)started (`nginx -t`,
    /// the node preparation), with the short name errors use for it.
    pub precheck: Option<(&'a str, Cmd)>,
    /// Work that must be done once a unit is (re)started and before the units after it start,
    /// failing like verify (the node's images into containerd before the kubelet runs, so no pod
    /// scheduled there finds one missing): the unit's name and the hook.
    pub after_start: Option<Hook<'a>>,
    /// Work that must be done once, right before the named unit or the first unit after it in
    /// start order is (re)started, failing like verify (a node waits there for its control
    /// plane: containerd and the images need none, flanneld and the kubelet do). Not run when
    /// none of those units (re)starts.
    pub before_start: Option<Hook<'a>>,
}

/// A unit's name and work tied to its start ([`Spec::after_start`], [`Spec::before_start`]).
pub type Hook<'a> = (&'a str, &'a dyn Fn(&Node<'_>) -> Result<(), String>);

/// Push the spec's items to `node`, then start the units that are not running and restart (or
/// reload) the running ones whose files changed, in the order given, then `verify`. Every change
/// goes into a [`Tx`]: if anything after the push fails, it is rolled back (previous files, units
/// this run started stopped again, restarted ones restarted on the previous files) and the
/// failure says what the rollback did.
pub fn converge(run: &Run<'_>, node: &Node<'_>, part: &str, spec: &Spec<'_>, verify: &dyn Fn(&Node<'_>) -> Result<(), String>) -> Result<HostOutcome, HostFailure> {
    let (items, units) = (spec.items, spec.units);
    let name = node.host.name.clone();
    let mut out = HostOutcome { host: name.clone(), part: part.to_string(), dry_run: run.dry_run, ..Default::default() };
    let active = active_units(node.remote.as_ref(), units)?;
    let mut tx = Tx::new(node.remote.clone(), &run.cluster.layout.units);
    let pushed = push_known(&run.printer, node, &run.cluster.layout.units, items, &mut tx, run.dry_run, &run.known)?;
    out.changed = pushed.changed.clone();
    out.bytes_sent = pushed.bytes_sent;
    let to_start: Vec<&str> = units.iter().copied().filter(|u| !active[*u]).collect();
    let to_restart: Vec<&str> = units.iter().copied().filter(|u| active[*u] && pushed.restart.contains(*u)).collect();
    if run.dry_run {
        let mut what = Vec::new();
        if !to_start.is_empty() {
            what.push(format!("would start {}", to_start.join(" ")));
        }
        if !to_restart.is_empty() {
            what.push(format!("would restart {}", to_restart.join(" ")));
        }
        let summary = if pushed.changed.is_empty() && what.is_empty() { "up to date".to_string() } else { format!("{} files would change; {}", pushed.changed.len(), if what.is_empty() { "no restarts".into() } else { what.join(", ") }) };
        run.printer.phase("dry-run", Some(&name), &format!("{part}: {summary}"));
        out.started = to_start.iter().map(|s| s.to_string()).collect();
        out.restarted = to_restart.iter().map(|s| s.to_string()).collect();
        return Ok(out);
    }
    if pushed.changed.is_empty() && to_start.is_empty() {
        run.printer.phase(part, Some(&name), "up to date, nothing sent");
        return Ok(out);
    }
    run.printer.phase(part, Some(&name), &format!("{} files changed, {} bytes sent", pushed.changed.len(), pushed.bytes_sent));
    let mut apply = || -> Result<(), String> {
        if let Some((what, c)) = &spec.precheck {
            let o = node.remote.run(c).map_err(|e| e.chain())?;
            if !o.success() {
                return Err(format!("{what} failed: {}", o.stderr_str().trim()));
            }
        }
        let sys = |a: &[&str]| super::systemd::systemctl(node, a).map_err(|e| e.chain());
        if pushed.unit_files || !to_start.is_empty() {
            sys(&["daemon-reload"])?;
        }
        if !to_start.is_empty() {
            let mut a = vec!["enable", "--quiet"];
            a.extend(&to_start);
            sys(&a)?;
        }
        // one unit after the other, in dependency order (containerd before kubelet)
        let mut before = spec.before_start.and_then(|(from, hook)| units.iter().position(|u| *u == from).map(|i| (i, hook)));
        for (i, u) in units.iter().enumerate().filter(|(_, u)| to_start.contains(u) || to_restart.contains(u)) {
            if let Some((_, hook)) = before.take_if(|(from, _)| i >= *from) {
                hook(node)?;
            }
            let verb = if to_restart.contains(u) && spec.reload.contains(u) { "reload" } else { "restart" };
            if to_start.contains(u) { tx.started(u) } else { tx.restarted(u, verb) }
            sys(&[verb, u]).map_err(|e| format!("{u}: {e}"))?;
            match spec.after_start {
                Some((after, hook)) if after == *u => hook(node)?,
                _ => {}
            }
        }
        Ok(())
    };
    let result = apply().and_then(|()| {
        if !to_start.is_empty() {
            run.printer.phase(part, Some(&name), &format!("started {}", to_start.join(" ")));
        }
        if !to_restart.is_empty() {
            run.printer.phase(part, Some(&name), &format!("restarted {} (their files changed)", to_restart.join(" ")));
        }
        verify(node)
    });
    match result {
        Ok(()) => {
            tx.commit();
            out.started = to_start.iter().map(|s| s.to_string()).collect();
            out.restarted = to_restart.iter().map(|s| s.to_string()).collect();
            Ok(out)
        }
        Err(error) => {
            let journal: Vec<String> = units.iter().filter(|u| to_start.contains(u) || to_restart.contains(u)).flat_map(|u| journal_tail(node, u, 8)).collect();
            run.printer.phase("rollback", Some(&name), &format!("{part} did not become healthy: restoring the previous files"));
            let mut rollback = tx.rollback();
            // services restarted on the previous files: the rollback is done when they answer
            // again (a real apiserver takes seconds), not when systemd has started them
            if let (Rollback::Done { what }, false) = (&rollback, to_restart.is_empty()) {
                rollback = match verify(node) {
                    Ok(()) => Rollback::Done { what: format!("{what}, healthy again") },
                    Err(e) => Rollback::Incomplete { what: what.clone(), error: format!("still not healthy: {e}") },
                };
            }
            Err(HostFailure { journal, rollback, ..HostFailure::new(&name, "verify", error) })
        }
    }
}
