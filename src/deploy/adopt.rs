//! Local state a deploy needs before any host changes: the pki (whatever the cluster file needs
//! and the pki lacks) and hosts adopted into the cluster file by address.

use crate::config::{Cluster, Host, Role};
use crate::engine::Run;
use crate::engine::connect::Connector;
use crate::error::Error;
use crate::host::Cmd;

/// Issue whatever the cluster file needs and the pki lacks (a new host's certificates); never
/// touches what exists. Warns about files that no longer match.
pub fn ensure_pki(run: &Run<'_>, cluster: &Cluster) -> Result<crate::pki::InitReport, Error> {
    let mut r = crate::pki::init(cluster)?;
    for s in &r.stale {
        run.printer.warn(&format!("pki/{}: {}", s.file, s.problem), Some(stale_hint(s)));
    }
    r.issued.extend(renew_expiring(run, cluster)?);
    Ok(r)
}

/// Re-issue (keys kept) every kbin-issued leaf with fewer than `pki.renew_before_days` left, so
/// the deploy that follows places them and restarts only what uses them; the names renewed.
pub fn renew_expiring(run: &Run<'_>, cluster: &Cluster) -> Result<Vec<String>, Error> {
    if cluster.pki.renew_before_days == 0 {
        return Ok(Vec::new());
    }
    let due = crate::pki::expiring(cluster, cluster.pki.renew_before_days)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = due.iter().map(|c| c.name.clone()).collect();
    let r = crate::pki::renew(cluster, &names)?;
    let soonest = due.iter().map(|c| c.days_left).min().unwrap_or_default();
    run.printer.phase("pki", None, &format!("renewed {} (fewer than {} days left, the soonest {soonest}): the rollout places them", r.renewed.join(", "), cluster.pki.renew_before_days));
    Ok(r.renewed.iter().map(|n| format!("{n} (renewed)")).collect())
}

/// For `master add` and `node add`: [`ensure_pki`] unless this is a dry run, saying what was issued.
pub fn ensure_pki_for_add(run: &Run<'_>, cluster: &Cluster) -> Result<(), Error> {
    if !run.dry_run {
        let r = ensure_pki(run, cluster)?;
        if !r.issued.is_empty() {
            run.printer.phase("pki", None, &format!("issued {}", r.issued.join(", ")));
        }
    }
    Ok(())
}

/// What to do about a pki file that no longer matches the cluster file.
fn stale_hint(s: &crate::pki::Stale) -> &'static str {
    if s.problem.starts_with("server is") {
        // re-issuing it and pushing it would move the nodes at once, without any check
        "the nodes still use the old address; `kbin repoint-nodes` moves them safely and updates this file"
    } else {
        "`kbin pki renew NAME` re-issues it; then deploy again"
    }
}

/// Resolve `spec` to a host of the cluster file; a new address is added to the file with
/// `role` (name from `name` or the host's hostname), once kbin could log in to it. Returns the
/// (possibly reloaded) cluster and the host's name.
pub fn resolve_or_add(run: &Run<'_>, cluster: Cluster, spec: &str, name: Option<&str>, role: Role, accept_new_host_keys: bool) -> Result<(Cluster, String), Error> {
    if let Some(h) = cluster.host(spec) {
        if !h.has(role) {
            return Err(Error::Refused {
                what: format!("{} does not have the {} role in {}", h.name, role.as_str(), cluster.file.display()),
                problems: vec![],
                hint: Some(format!("add \"{}\" to the roles of {} in the cluster file and run this again", role.as_str(), h.name)),
            });
        }
        return Ok((cluster.clone(), h.name.clone()));
    }
    let Ok(address) = spec.parse::<std::net::IpAddr>() else {
        return Err(Error::other(format!("no host {spec:?} in {}", cluster.file.display()), Some("give a host name from the cluster file, or the IP address of a new host")));
    };
    let p = run.printer;
    // reach it first (with the cluster's SSH defaults): an address kbin cannot log in to is not
    // written into the file
    let probe = Host { name: name.unwrap_or(spec).to_string(), address, roles: vec![role], ssh: cluster.ssh.default.clone(), lb_interface: String::new(), lb_priority: 0, labels: vec![] };
    let connector = Connector { cluster: &cluster, concurrency: 1, ..run.connector(accept_new_host_keys) };
    let node = connector.connect_all(&[&probe])?.remove(0);
    let name = match name {
        Some(n) => n.to_string(),
        None => node.remote.check(&Cmd::new(["hostname", "-s"]))?.stdout_str().trim().to_lowercase(),
    };
    if cluster.host(&name).is_some() {
        return Err(Error::other(format!("{spec} is not in {}, but its name {name:?} is taken by another host", cluster.file.display()), Some("pick a name with --name")));
    }
    let text = std::fs::read_to_string(&cluster.file).map_err(|e| Error::other(format!("cannot read {}: {e}", cluster.file.display()), None))?;
    let new_text = crate::config::edit::with_host(&cluster.file, &text, &name, spec, &[role.as_str()])?;
    if run.dry_run {
        p.phase("dry-run", None, &format!("would add host {name} ({spec}, role {}) to {}", role.as_str(), cluster.file.display()));
        let c = crate::config::parse(&cluster.file, &new_text)?;
        return Ok((c, name));
    }
    let c = crate::config::edit::replace(&cluster, &new_text)?;
    p.phase("config", None, &format!("added host {name} ({spec}, role {}) to {}", role.as_str(), cluster.file.display()));
    Ok((c, name))
}
