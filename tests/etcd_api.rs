//! kbin's etcd client against a real etcd (v3.5.1, the upstream build the lab repacks from PyPI)
//! on loopback, with certificates from `kbin pki init` and mutual TLS enforced.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kbin::etcd::api::Client;
use kbin::tls::Identity;

/// The etcd binary: $KBIN_ETCD_BIN, or taken out of the lab's default etcd release tarball.
fn etcd_bin(dir: &std::path::Path) -> PathBuf {
    if let Some(p) = std::env::var_os("KBIN_ETCD_BIN") {
        return PathBuf::from(p);
    }
    // the lab's default etcd release, built once from etcd's Go modules (tests/run.sh does this)
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("tests/lab/lab")).arg("etcd-tarball").output().unwrap();
    assert!(out.status.success(), "`tests/lab/lab etcd-tarball` failed (set KBIN_ETCD_BIN to an etcd binary instead): {}", String::from_utf8_lossy(&out.stderr));
    let tarball = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let st = Command::new("tar").args(["-xzf", &tarball, "--strip-components=1", "-C", dir.to_str().unwrap()]).status().unwrap();
    assert!(st.success());
    dir.join("etcd")
}

/// Two distinct free ports: both listeners are held until both are known (a port given back
/// by the first bind may be handed out again by the second, and etcd then fails to listen).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

struct Etcd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Etcd {
    /// Why etcd is not answering: whether it exited, and the end of its log.
    fn why(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(st)) => format!("etcd exited ({st})"),
            _ => "etcd is running but not healthy".to_string(),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        format!("{state}; the end of {}:\n{}", self.log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_etcd(d: &Dir) -> Etcd {
    let bin = etcd_bin(d.path());
    let (client, peer) = free_ports();
    let log = d.path().join("etcd.log");
    let pki = d.pki();
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    let child = Command::new(bin)
        .args([
            "--name=m1",
            &format!("--data-dir={}", d.path().join("data").display()),
            &format!("--listen-client-urls=https://127.0.0.1:{client}"),
            &format!("--advertise-client-urls=https://127.0.0.1:{client}"),
            &format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
            &format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
            &format!("--initial-cluster=m1=https://127.0.0.1:{peer}"),
            &format!("--cert-file={}", p("hosts/m1/etcd-server.crt")),
            &format!("--key-file={}", p("hosts/m1/etcd-server.key")),
            &format!("--trusted-ca-file={}", p("etcd/ca.crt")),
            "--client-cert-auth",
            &format!("--peer-cert-file={}", p("hosts/m1/etcd-peer.crt")),
            &format!("--peer-key-file={}", p("hosts/m1/etcd-peer.key")),
            &format!("--peer-trusted-ca-file={}", p("etcd/ca.crt")),
            "--peer-client-cert-auth",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Etcd { child, port: client, log }
}

fn identity(d: &Dir, client: &str) -> Identity {
    let r = |f: &str| std::fs::read_to_string(d.pki().join(f)).unwrap();
    Identity { ca_pem: r("etcd/ca.crt"), client: Some((r(&format!("{client}.crt")), r(&format!("{client}.key")))) }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn health_status_and_members_over_mutual_tls() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    let mut etcd = start_etcd(&d);
    let client = Client::new(&identity(&d, "etcd/healthcheck-client")).unwrap();
    // a cold machine may take a while to create the first WAL file
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = TcpStream::connect(("127.0.0.1", etcd.port)).ok().and_then(|s| client.health(s, "127.0.0.1").ok()) == Some(true);
        if ok {
            break;
        }
        if Instant::now() >= deadline || matches!(etcd.child.try_wait(), Ok(Some(_))) {
            panic!("etcd did not become healthy: {}", etcd.why());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = client.status(connect(etcd.port), "127.0.0.1").unwrap();
    // the release the binary itself says it is (`etcd Version: 3.6.17`)
    let out = Command::new(etcd_bin(d.path())).arg("--version").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_string)).expect("etcd --version names its release");
    assert_eq!(st.version, said);
    assert_eq!(st.leader, st.member_id, "a one-member cluster leads itself");
    assert!(st.db_size > 0);
    let members = client.member_list(connect(etcd.port), "127.0.0.1").unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "m1");
    assert_eq!(members[0].id, st.member_id);

    // the apiserver's etcd client cert works too; a cert from another CA is refused by etcd
    let api = Client::new(&identity(&d, "apiserver-etcd-client")).unwrap();
    assert!(api.health(connect(etcd.port), "127.0.0.1").unwrap());
    let other = Dir::with_cluster(SMALL);
    other.kbin(&["pki", "init"]).ok();
    let mut foreign = identity(&other, "etcd/healthcheck-client");
    foreign.ca_pem = identity(&d, "etcd/healthcheck-client").ca_pem;
    let stranger = Client::new(&foreign).unwrap();
    assert!(stranger.health(connect(etcd.port), "127.0.0.1").is_err(), "etcd must refuse a client cert from another CA");
    // and kbin refuses a server whose cert is not from the expected CA
    let wrong_ca = Client::new(&identity(&other, "etcd/healthcheck-client")).unwrap();
    let err = wrong_ca.health(connect(etcd.port), "127.0.0.1").unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");

    // defragmentation answers on a live member
    client.defragment(connect(etcd.port), "127.0.0.1").unwrap();
    assert!(client.health(connect(etcd.port), "127.0.0.1").unwrap());

    // a learner that never starts: etcd refuses to promote it (it has not caught up), and the
    // cluster keeps its quorum; removing it leaves the one member it had
    let learner = client.member_add(connect(etcd.port), "127.0.0.1", "https://127.0.0.8:2380", true).unwrap();
    let members = client.member_list(connect(etcd.port), "127.0.0.1").unwrap();
    assert!(members.iter().any(|m| m.id == learner.id && m.is_learner), "{members:?}");
    let refused = client.member_promote(connect(etcd.port), "127.0.0.1", learner.id).unwrap_err();
    assert!(refused.to_string().contains("in sync") || refused.to_string().contains("learner"), "{refused}");
    assert!(client.health(connect(etcd.port), "127.0.0.1").unwrap(), "a learner does not count for the quorum");
    client.member_remove(connect(etcd.port), "127.0.0.1", learner.id).unwrap();
    assert_eq!(client.member_list(connect(etcd.port), "127.0.0.1").unwrap().len(), 1);

    // announce a second, voting member (last: the cluster then waits for it and loses quorum)
    let added = client.member_add(connect(etcd.port), "127.0.0.1", "https://127.0.0.9:2380", false).unwrap();
    assert_eq!((added.name.as_str(), added.peer_urls.as_slice()), ("", &["https://127.0.0.9:2380".to_string()][..]));
    let members = client.member_list(connect(etcd.port), "127.0.0.1").unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m.id == added.id && m.name.is_empty()), "{members:?}");
}
