//! `kbin etcd restore SNAPSHOT`: disaster recovery. Every member is restored from one snapshot
//! as a new cluster (same names, peer URLs and token), with the control plane stopped before and
//! started after, so no apiserver serves (or writes) anything in between.
//!
//! Read-only first (exit 2, nothing changed): the snapshot verified locally (bbolt header and
//! the SHA-256 `etcdctl snapshot save` appends), every etcd host and master answers, every etcd
//! host passes the etcd preflight. Then: the control plane stopped on every master; etcd stopped
//! on every member; on each member the snapshot restored into a new directory next to the data
//! directory (`etcdutl snapshot restore`, which checks the hash again), the current data moved
//! aside (`<data>.kbin-before-restore-<time>`, kept) and the restored one moved in; etcd started
//! on every member at once (a new cluster needs its quorum) and waited for; the control plane
//! started again, each apiserver ready; every node Ready again. A failure before etcd is healthy
//! puts each member's previous data back and starts everything again.

use std::path::Path;

use serde::Serialize;

use super::etcd::{self, Ctx, etcd_hosts, peer_url};
use crate::config::{Cluster, Host, Role};
use crate::engine;
use crate::error::Error;
use crate::host::parallel::{self, Outcome};
use crate::host::{Cmd, HostError, Node, Source, WriteOpts};

const CONTROL_PLANE: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

#[derive(Debug, Default, Serialize)]
pub struct Restored {
    pub dry_run: bool,
    pub snapshot: String,
    pub sha256: String,
    pub members: Vec<String>,
    /// Where each member's previous data was kept (`host:path`).
    pub previous_data: Vec<String>,
    pub masters: Vec<String>,
}

fn names(nodes: &[Node<'_>]) -> String {
    nodes.iter().map(|n| n.host.name.as_str()).collect::<Vec<_>>().join(" ")
}

/// Run `f` on every node at once; the failures as one list.
fn each<T: Send>(run: &engine::Run<'_>, nodes: &[Node<'_>], phase: &str, f: impl Fn(&Node<'_>) -> Result<T, HostError> + Sync) -> Result<Vec<T>, Vec<engine::HostFailure>> {
    let results = parallel::for_each(nodes, |n| n.host.name.clone(), phase, nodes.len().max(1).min(run.concurrency.max(1)), &run.cancel, |n| f(n));
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (r, n) in results.into_iter().zip(nodes) {
        match r.outcome {
            Outcome::Done(t) => ok.push(t),
            Outcome::Failed(e) => bad.push(engine::HostFailure { phase: phase.into(), ..engine::HostFailure::from(e) }),
            Outcome::Skipped => bad.push(engine::HostFailure::new(&n.host.name, phase, "not started: interrupted")),
        }
    }
    if bad.is_empty() { Ok(ok) } else { Err(bad) }
}

fn systemctl(n: &Node<'_>, verb: &str, units: &[&str]) -> Result<(), HostError> {
    let mut argv = vec!["systemctl", verb];
    argv.extend_from_slice(units);
    n.remote.check(&Cmd::new(argv).sudo()).map(|_| ())
}

/// The `etcdutl snapshot restore` of `host`'s member into `dir` (etcd 3.6 removed the restore
/// from etcdctl; etcdutl has it since 3.5, with the same flags).
pub fn restore_cmd(cluster: &Cluster, members: &[&Host], host: &Host, snapshot: &str, dir: &str) -> Cmd {
    let initial = members.iter().map(|h| format!("{}={}", h.name, peer_url(h))).collect::<Vec<_>>().join(",");
    let etcdutl = format!("{}/etcdutl", cluster.layout.etcd_bin);
    Cmd::new([
        etcdutl,
        "snapshot".into(),
        "restore".into(),
        snapshot.into(),
        "--name".into(),
        host.name.clone(),
        "--initial-cluster".into(),
        initial,
        "--initial-cluster-token".into(),
        format!("etcd-{}", cluster.name),
        "--initial-advertise-peer-urls".into(),
        peer_url(host),
        "--data-dir".into(),
        dir.into(),
    ])
    .sudo()
}

/// `kbin etcd restore SNAPSHOT`.
pub fn restore(opts: &super::Opts<'_>, cluster: &Cluster, snapshot: &Path) -> Result<Restored, Error> {
    let bad_file = |what: String| Error::Refused { what, problems: vec![], hint: Some("give a file written by `kbin etcd backup` (or `etcdctl snapshot save`)".into()) };
    let data = std::fs::read(snapshot).map_err(|e| bad_file(format!("cannot read the snapshot {}: {e}", snapshot.display())))?;
    super::etcd_maint::verify_snapshot(&data).map_err(|e| bad_file(format!("{} is not a usable etcd snapshot: {e}; nothing was changed", snapshot.display())))?;
    let sha256 = crate::host::sha256_hex(&data);
    let run = opts.run(cluster);
    let mut report = Restored { dry_run: run.dry_run, snapshot: snapshot.display().to_string(), sha256, ..Default::default() };

    // read-only: every etcd host and master answers; the etcd hosts are this cluster's
    let member_hosts = etcd_hosts(cluster);
    let master_hosts: Vec<&Host> = cluster.hosts_with(Role::Master).collect();
    let c = run.connector(opts.accept_new_host_keys);
    let members = c.connect_all(&member_hosts)?;
    let masters = c.connect_all(&master_hosts)?;
    let ctx = Ctx::new(run.clone())?;
    etcd::preflight(&ctx, &members)?;
    report.members = members.iter().map(|n| n.host.name.clone()).collect();
    report.masters = masters.iter().map(|n| n.host.name.clone()).collect();
    let d = &cluster.layout.etcd_data;
    let stamp = crate::fsutil::utc_stamp();
    let (restored_dir, previous_dir) = (format!("{d}.kbin-restore"), format!("{d}.kbin-before-restore-{stamp}"));
    if run.dry_run {
        for n in &masters {
            run.printer.phase("dry-run", Some(&n.host.name), &format!("would stop {}", CONTROL_PLANE.join(" ")));
        }
        for n in &members {
            run.printer.phase("dry-run", Some(&n.host.name), &format!("would stop etcd, restore the snapshot as member {} into {d} and keep the current data at {previous_dir}", n.host.name));
        }
        run.printer.phase("dry-run", None, &format!("would start etcd on {} at once, then {} on {}", names(&members), CONTROL_PLANE.join(" "), names(&masters)));
        return Ok(report);
    }

    // the control plane first: nothing reads or writes etcd while it changes
    let fail = |what: &str, hosts: Vec<engine::HostFailure>, hint: &str| -> Error { engine::failed(what.to_string(), hosts, hint) };
    each(&run, &masters, "restore", |n| {
        systemctl(n, "stop", &CONTROL_PLANE)?;
        run.printer.phase("restore", Some(&n.host.name), &format!("stopped {}", CONTROL_PLANE.join(" ")));
        Ok(())
    })
    .map_err(|b| fail("cannot stop the control plane; etcd was not touched", b, "start it again with `kbin up`, fix the host, then run the restore again"))?;
    let start_control_plane = || {
        each(&run, &masters, "restore", |n| {
            systemctl(n, "start", &CONTROL_PLANE)?;
            run.printer.phase("restore", Some(&n.host.name), &format!("started {}", CONTROL_PLANE.join(" ")));
            Ok(())
        })
    };

    // every member: stopped, the snapshot restored beside the data, swapped in
    let remote_snapshot = format!("/var/tmp/kbin-restore-{}.db", std::process::id());
    let src = Source::file_with_digest(snapshot, &report.sha256, data.len() as u64);
    let all: Vec<&Host> = members.iter().map(|n| n.host).collect();
    let swapped = std::sync::Mutex::new(Vec::<String>::new());
    let restored = each(&run, &members, "restore", |n| {
        systemctl(n, "stop", &["etcd"])?;
        n.remote.check(&Cmd::new(["rm", "-rf", "--", restored_dir.as_str()]).sudo())?;
        n.remote.write_file(&remote_snapshot, &src, &WriteOpts::mode(0o600))?;
        let r = n.remote.check(&restore_cmd(cluster, &all, n.host, &remote_snapshot, &restored_dir));
        let _ = n.remote.run(&Cmd::new(["rm", "-f", "--", remote_snapshot.as_str()]).sudo());
        r?;
        // the previous data kept (moved, not copied), the restored data in its place
        n.remote.check(&Cmd::new(["sh", "-c", r#"set -e; if [ -e "$1" ]; then mv -T -- "$1" "$2"; fi; mv -T -- "$3" "$1""#, "kbin-swap", d, previous_dir.as_str(), restored_dir.as_str()]).sudo())?;
        swapped.lock().unwrap().push(n.host.name.clone());
        run.printer.phase("restore", Some(&n.host.name), &format!("restored the snapshot as member {} (previous data kept at {previous_dir})", n.host.name));
        Ok(format!("{}:{previous_dir}", n.host.name))
    });
    let started = restored.and_then(|kept| {
        report.previous_data = kept;
        // a new cluster: every member at once, or none finds its quorum
        each(&run, &members, "restore", |n| n.remote.check(&Cmd::new(["systemctl", "start", "--no-block", "etcd"]).sudo()).map(|_| ()))?;
        let refs: Vec<&Node<'_>> = members.iter().collect();
        etcd::wait_healthy(&ctx, &refs).map_err(|bad| bad.into_iter().map(|(h, e)| engine::HostFailure { journal: members.iter().find(|n| n.host.name == h).map(|n| engine::journal_tail(n, "etcd", 15)).unwrap_or_default(), ..engine::HostFailure::new(&h, "etcd", e) }).collect::<Vec<_>>())?;
        run.printer.phase("restore", None, &format!("etcd healthy on {} from the snapshot", names(&members)));
        Ok(())
    });
    if let Err(bad) = started {
        // back to the data each member had, and everything started again
        let swapped = swapped.into_inner().unwrap();
        let undo = each(&run, &members, "rollback", |n| {
            let _ = systemctl(n, "stop", &["etcd"]);
            if swapped.contains(&n.host.name) {
                n.remote.check(&Cmd::new(["sh", "-c", r#"set -e; rm -rf -- "$1"; mv -T -- "$2" "$1""#, "kbin-unswap", d, previous_dir.as_str()]).sudo())?;
            }
            let _ = n.remote.run(&Cmd::new(["rm", "-rf", "--", restored_dir.as_str()]).sudo());
            n.remote.check(&Cmd::new(["systemctl", "start", "--no-block", "etcd"]).sudo()).map(|_| ())
        });
        let cp = start_control_plane();
        let rollback = match (undo, cp) {
            (Ok(_), Ok(_)) => engine::Rollback::Done { what: "each member's previous data put back, etcd and the control plane started again".into() },
            (u, c) => engine::Rollback::Incomplete { what: String::new(), error: u.err().into_iter().chain(c.err()).flatten().map(|f| format!("{}: {}", f.host, f.error)).collect::<Vec<_>>().join("; ") },
        };
        let bad = bad.into_iter().map(|f| engine::HostFailure { rollback: rollback.clone(), ..f }).collect();
        return Err(fail("the restore did not finish", bad, "see the journal lines; the snapshot may be from another etcd version or cluster"));
    }

    // the control plane back, each apiserver ready on the restored data
    start_control_plane().map_err(|b| fail("etcd is restored but the control plane did not start", b, "see `kbin status` and the journal of kube-apiserver"))?;
    let client = super::api_client(cluster)?;
    for n in &masters {
        engine::wait_for(run.timeout, &run.cancel, || super::master::apiserver_ready(&client, cluster, n)).map_err(|e| fail("etcd is restored but an apiserver is not ready", vec![engine::HostFailure { journal: engine::journal_tail(n, "kube-apiserver", 15), ..engine::HostFailure::new(&n.host.name, "verify", e) }], "see the journal lines and `kbin status`"))?;
        run.printer.phase("restore", Some(&n.host.name), "kube-apiserver /healthz and /readyz ok");
    }
    let workers: Vec<&Host> = cluster.hosts_with(Role::Node).collect();
    if !workers.is_empty() {
        let ep = crate::kube::masters::endpoint(cluster, &masters[0]);
        let mut waiting = Vec::new();
        let r = engine::wait_for(run.timeout, &run.cancel, || {
            waiting = super::upgrade::not_ready_names(&client, &ep, &workers);
            if waiting.is_empty() { Ok(()) } else { Err(waiting.join("; ")) }
        });
        match r {
            Ok(()) => run.printer.phase("restore", None, &format!("every node Ready ({})", workers.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(" "))),
            Err(e) => run.printer.warn(&format!("restored, but not every node is Ready yet: {e}"), Some("kubelets re-register on their own; see `kbin status`")),
        }
    }
    Ok(report)
}
