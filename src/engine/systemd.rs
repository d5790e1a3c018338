//! Services and waiting: `systemctl` through [`Cmd`], journal tails for reports, polling.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::host::parallel::Cancel;
use crate::host::{Cmd, HostError, Node, Remote};

/// `systemctl is-active` of each unit (one round trip).
pub fn active_units(remote: &dyn Remote, units: &[&str]) -> Result<BTreeMap<String, bool>, HostError> {
    let mut argv = vec!["systemctl", "is-active", "--"];
    argv.extend_from_slice(units);
    let out = remote.run(&Cmd::new(argv))?;
    let states: Vec<String> = out.stdout_str().lines().map(|l| l.trim().to_string()).collect();
    Ok(units.iter().enumerate().map(|(i, u)| (u.to_string(), states.get(i).is_some_and(|s| s == "active"))).collect())
}

/// `Ok` when every unit runs, else which do not, as one message.
pub fn all_running(remote: &dyn Remote, units: &[&str]) -> Result<(), String> {
    let a = active_units(remote, units).map_err(|e| e.chain())?;
    match a.iter().filter(|(_, up)| !**up).map(|(u, _)| u.as_str()).collect::<Vec<_>>() {
        down if down.is_empty() => Ok(()),
        down => Err(format!("{} not running", down.join(" and "))),
    }
}

pub fn systemctl(node: &Node<'_>, args: &[&str]) -> Result<(), HostError> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    node.remote.check(&Cmd::new(argv).sudo()).map(|_| ())
}

/// The last lines of a unit's journal, for error reports: `host unit: line`.
pub fn journal_tail(node: &Node<'_>, unit: &str, lines: usize) -> Vec<String> {
    let n = lines.to_string();
    node.remote
        .run(&Cmd::new(["journalctl", "-u", unit, "-n", n.as_str(), "--no-pager", "-o", "cat"]).sudo())
        .map(|o| o.stdout_str().lines().map(|l| format!("{} {unit}: {l}", node.host.name)).collect())
        .unwrap_or_default()
}

/// Poll `check` (every 250 ms) until it returns `Ok`, or return its last error after `timeout`.
pub fn wait_for(timeout: Duration, cancel: &Cancel, check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    wait_every(timeout, Duration::from_millis(250), cancel, check)
}

/// [`wait_for`], polling every `every` (a check that costs the cluster something: each of ten
/// nodes asking the apiserver four times a second is forty TLS handshakes a second).
pub fn wait_every(timeout: Duration, every: Duration, cancel: &Cancel, mut check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!("{last} (waited {}s)", timeout.as_secs()));
        }
        if cancel.is_cancelled() {
            return Err(format!("{last} (interrupted)"));
        }
        std::thread::sleep(every);
    }
}
