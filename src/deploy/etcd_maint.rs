//! etcd maintenance: `kbin etcd backup` (a verified snapshot brought to the operator) and
//! `kbin etcd defrag` (one member at a time, the leader last, each healthy again before the next).

use serde::Serialize;

use super::etcd::{Ctx, Node, addr, ask, etcd_hosts, healthy_peer, member_health, peer_url};
use crate::config::Cluster;
use crate::error::Error;
use crate::host::Cmd;

#[derive(Debug, Serialize)]
pub struct Backup {
    pub from: String,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Check an `etcdctl snapshot save` file: a bbolt database with its SHA-256 appended.
pub fn verify_snapshot(data: &[u8]) -> Result<(), String> {
    if data.len() < 4096 + 32 {
        return Err(format!("only {} bytes: not an etcd snapshot", data.len()));
    }
    let magic = u32::from_le_bytes(data[16..20].try_into().unwrap());
    if magic != 0xED0C_DAED {
        return Err("no bbolt database header".into());
    }
    let (db, sum) = data.split_at(data.len() - 32);
    if ring::digest::digest(&ring::digest::SHA256, db).as_ref() != sum {
        return Err("the appended SHA-256 does not match: the snapshot is damaged".into());
    }
    Ok(())
}

/// `kbin etcd backup`: snapshot on a healthy member, brought to the operator and verified.
pub fn backup(ctx: &Ctx<'_>, nodes: &[Node<'_>], out: &std::path::Path) -> Result<Backup, Error> {
    let n = healthy_peer(ctx, nodes).ok_or_else(|| Error::Refused { what: "no healthy etcd member to take a snapshot from".into(), problems: vec![], hint: Some("run `kbin etcd status`".into()) })?;
    let l = &ctx.cluster.layout;
    let remote = format!("/var/tmp/kbin-etcd-snapshot-{}.db", std::process::id());
    let etcdctl = format!("{}/etcdctl", l.etcd_bin);
    let (cacert, cert, key) = (format!("{}/ca.crt", l.etcd_ssl), format!("{}/server.crt", l.etcd_ssl), format!("{}/server.key", l.etcd_ssl));
    let endpoint = format!("--endpoints={}", crate::config::url_for(&addr(n.host), 2379));
    ctx.printer.phase("backup", Some(&n.host.name), "taking a snapshot");
    let r = n.remote.check(&Cmd::new(["env", "ETCDCTL_API=3", &etcdctl, &endpoint, "--cacert", &cacert, "--cert", &cert, "--key", &key, "snapshot", "save", &remote]).sudo());
    let data = r.and_then(|_| n.remote.read_file(&remote));
    let _ = n.remote.run(&Cmd::new(["rm", "-f", &remote]).sudo());
    let data = data?.ok_or_else(|| Error::other(format!("{}: the snapshot file vanished", n.host.name), None))?;
    verify_snapshot(&data).map_err(|e| Error::other(format!("snapshot from {} failed verification: {e}", n.host.name), Some("take another backup")))?;
    crate::fsutil::write_atomic(out, &data, 0o600).map_err(|e| Error::other(format!("cannot write {}: {e}", out.display()), Some("check the output path")))?;
    Ok(Backup { from: n.host.name.clone(), path: out.display().to_string(), bytes: data.len() as u64, sha256: crate::host::sha256_hex(&data) })
}


/// `kbin etcd backup`: to `out`, else `backups/etcd-<cluster>-<UTC time>.db` next to the
/// cluster file.
pub fn backup_to(opts: &super::Opts<'_>, cluster: &Cluster, out: Option<&std::path::Path>) -> Result<Backup, Error> {
    let ctx = Ctx::new(opts.run(cluster))?;
    let nodes = ctx.connector(opts.accept_new_host_keys).reachable(&etcd_hosts(cluster));
    let out = match out {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = cluster.state_dir.join("backups");
            crate::fsutil::private_dir(&dir).map_err(|e| Error::other(format!("cannot create {}: {e}", dir.display()), None))?;
            dir.join(format!("etcd-{}-{}.db", cluster.name, crate::fsutil::utc_stamp()))
        }
    };
    let b = backup(&ctx, &nodes, &out)?;
    ctx.printer.phase("backup", Some(&b.from), &format!("snapshot verified: {} ({} bytes, sha256 {})", b.path, b.bytes, b.sha256));
    Ok(b)
}



/// One member's defragmentation.
#[derive(Debug, Serialize)]
pub struct Defragged {
    pub name: String,
    pub leader: bool,
    pub db_size_before: u64,
    pub db_size_after: u64,
}

/// `kbin etcd defrag`: every member (reachable, all healthy first), one at a time, the leader
/// last (a defragmenting member stalls; followers first keeps the leader serving), each healthy
/// again before the next. A member that does not come back stops the run.
pub fn defrag(ctx: &Ctx<'_>, nodes: &[Node<'_>]) -> Result<Vec<Defragged>, Error> {
    let mut members = Vec::new();
    let mut problems = Vec::new();
    for n in nodes {
        match ask(ctx, n, |c, t, a| c.status(t, a)) {
            Ok(s) if member_health(ctx, n) == Ok(true) => members.push((n, s)),
            Ok(_) => problems.push(format!("[preflight] {}: not healthy", n.host.name)),
            Err(e) => problems.push(format!("[preflight] {}: {e}", n.host.name)),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Refused { what: "every etcd member must be healthy before a defragmentation".into(), problems, hint: Some("run `kbin etcd status` and fix the member first; nothing was changed".into()) });
    }
    // followers first, the leader last
    members.sort_by_key(|(_, s)| s.leader == s.member_id);
    let mut out = Vec::new();
    for (n, before) in members {
        let leader = before.leader == before.member_id;
        let role = if leader { "leader" } else { "follower" };
        if ctx.dry_run {
            ctx.printer.phase("dry-run", Some(&n.host.name), &format!("would defragment ({role}, {} bytes)", before.db_size));
            out.push(Defragged { name: n.host.name.clone(), leader, db_size_before: before.db_size, db_size_after: before.db_size });
            continue;
        }
        ctx.printer.phase("defrag", Some(&n.host.name), &format!("defragmenting ({role}, {} bytes)", before.db_size));
        ask(ctx, n, |c, t, a| c.defragment(t, a)).map_err(|e| Error::other(format!("{}: defragmentation failed: {e}", n.host.name), Some("run `kbin etcd status`; defragmenting again is safe")))?;
        super::etcd::wait_healthy(ctx, &[n]).map_err(|bad| Error::Failed {
            what: format!("{} is not healthy after its defragmentation", n.host.name),
            problems: bad.into_iter().map(|(h, e)| format!("[verify] {h}: {e}")).collect(),
            hint: Some("the remaining members were not touched; see `journalctl -u etcd` on it".into()),
        })?;
        let after = ask(ctx, n, |c, t, a| c.status(t, a)).map(|s| s.db_size).unwrap_or(before.db_size);
        ctx.printer.phase("defrag", Some(&n.host.name), &format!("healthy again, {} -> {after} bytes", before.db_size));
        out.push(Defragged { name: n.host.name.clone(), leader, db_size_before: before.db_size, db_size_after: after });
    }
    Ok(out)
}

/// `kbin etcd defrag` over the cluster's members: the etcd hosts of the cluster file that the
/// member list names (every one must be reachable; a host of the file that is no member, such
/// as one removed with `etcd remove` and still given the role, is skipped with a warning).
pub fn defrag_all(opts: &super::Opts<'_>, cluster: &Cluster) -> Result<Vec<Defragged>, Error> {
    let ctx = Ctx::new(opts.run(cluster))?;
    let conns = ctx.connector(opts.accept_new_host_keys).connect(&etcd_hosts(cluster));
    let reachable: Vec<Node<'_>> = conns.iter().filter_map(|(_, r)| r.as_ref().ok().cloned()).collect();
    let peer = healthy_peer(&ctx, &reachable).ok_or_else(|| Error::Refused { what: "no healthy etcd member to read the member list from".into(), problems: vec![], hint: Some("run `kbin etcd status`".into()) })?;
    let list = ask(&ctx, peer, |c, t, a| c.member_list(t, a)).map_err(|e| Error::other(format!("cannot list members through {}: {e}", peer.host.name), None))?;
    let mut members = Vec::new();
    let mut problems = Vec::new();
    for (h, r) in &conns {
        if !list.iter().any(|m| m.peer_urls.contains(&peer_url(h))) {
            ctx.printer.warn(&format!("{} has the etcd role but is not a member: skipped", h.name), Some("`kbin etcd add` it, or remove \"etcd\" from its roles"));
            continue;
        }
        match r {
            Ok(n) => members.push(n.clone()),
            Err(e) => problems.push(format!("[connect] {}: {}", h.name, e.chain())),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Refused { what: "every etcd member must be reachable before a defragmentation".into(), problems, hint: Some("nothing was changed; run it again once the member answers".into()) });
    }
    defrag(&ctx, &members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_verification() {
        let mut db = vec![0u8; 8192];
        db[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        let mut snap = db.clone();
        snap.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &db).as_ref());
        assert!(verify_snapshot(&snap).is_ok());
        let mut bad = snap.clone();
        bad[5000] ^= 1;
        assert!(verify_snapshot(&bad).unwrap_err().contains("damaged"));
        assert!(verify_snapshot(&db[..100]).is_err());
    }
}
