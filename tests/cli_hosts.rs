//! `kbin hosts scan|check|push` as a user runs them: the real binary, a cluster file in a fresh temp
//! dir, two real sshd processes on loopback (127.0.0.1 and 127.0.0.2).

mod support;

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use support::*;

struct Lab {
    dir: tempfile::TempDir,
    key: KeyPair,
    a: Sshd,
    b: Sshd,
}

fn lab(with_key_in_config: bool) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "id_test");
    let a = Sshd::start("127.0.0.1", &[&key]);
    let b = Sshd::start("127.0.0.2", &[&key]);
    let key_line = if with_key_in_config { format!("key = \"{}\"\n", key.private.display()) } else { String::new() };
    std::fs::write(
        dir.path().join("cluster.toml"),
        format!(
            r#"[cluster]
name = "lab"
[apiserver]
port = 6443
[ssh]
user = "root"
{key_line}connect_timeout_secs = 5
[[hosts]]
name = "m1"
address = "127.0.0.1"
ssh_port = {}
roles = ["master", "etcd", "node"]
[[hosts]]
name = "w1"
address = "127.0.0.2"
ssh_port = {}
roles = ["node"]
"#,
            a.port, b.port
        ),
    )
    .unwrap();
    Lab { dir, key, a, b }
}

impl Lab {
    fn kbin(&self, args: &[&str]) -> Output {
        Command::cargo_bin("kbin")
            .unwrap()
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path()) // no ~/.ssh of the person running the tests
            .env_remove("SSH_AUTH_SOCK")
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn hosts_scan_shows_then_records_fingerprints_and_check_refuses_unknown_keys_before() {
    let l = lab(true);
    // before any scan: unknown keys are refused, with the fingerprint and a hint
    let out = l.kbin(&["hosts", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.contains(&format!("unknown host key for [127.0.0.1]:{} ({})", l.a.port, l.a.fingerprint())), "{so}");
    assert!(so.contains("--accept-new-host-keys"), "{so}");

    let out = l.kbin(&["hosts", "scan", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!l.dir.path().join("known_hosts").exists());
    assert!(text(&out.stdout).contains(&l.b.fingerprint()));

    let out = l.kbin(&["hosts", "scan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.contains(&format!("m1               [127.0.0.1]:{}", l.a.port)) && so.contains("new"), "{so}");
    let kh = std::fs::read_to_string(l.dir.path().join("known_hosts")).unwrap();
    let mut lines: Vec<&str> = kh.lines().collect();
    lines.sort();
    let mut want = [l.a.known_hosts_line(), l.b.known_hosts_line()];
    want.sort();
    assert_eq!(lines, want.iter().map(|w| w.trim_end()).collect::<Vec<_>>(), "exactly the two keys, nothing else");
    assert!(kh.contains(&l.a.known_hosts_line()) && kh.contains(&l.b.known_hosts_line()), "{kh}");
    let out = l.kbin(&["hosts", "scan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().iter().filter(|k| k["status"] == "known").count(), 2);
}

#[test]
fn hosts_check_reports_facts_and_finds_the_cloned_machine() {
    let l = lab(true);
    let out = l.kbin(&["hosts", "check", "--json", "--accept-new-host-keys"]);
    let stderr = text(&out.stderr);
    // both "hosts" are this one machine: same hostname, machine id and MACs, a classic clone
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[connect] m1: connected as root"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is only JSON");
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    let uname_m = text(&std::process::Command::new("uname").arg("-m").output().unwrap().stdout).trim().to_string();
    let kernel = text(&std::process::Command::new("uname").arg("-r").output().unwrap().stdout).trim().to_string();
    for h in hosts {
        assert_eq!(h["reachable"], true);
        let f = &h["facts"];
        assert_eq!(f["arch"], uname_m.as_str());
        assert_eq!(f["kernel"], kernel.as_str());
        assert_eq!(f["sudo"], "root");
        assert!(f["clock_skew_ms"].as_i64().unwrap().abs() < 1000, "same machine, same clock");
        assert!(f["disk_free_kb"]["/opt/etcd/bin"].as_u64().unwrap() > 0);
        let checks: Vec<&str> = h["problems"].as_array().unwrap().iter().map(|p| p["check"].as_str().unwrap()).collect();
        assert!(checks.contains(&"unique-hostname"), "{checks:?}");
        assert!(h["problems"].as_array().unwrap().iter().all(|p| !p["hint"].as_str().unwrap().is_empty()));
    }
    assert!(stderr.contains("problems on 2 of 2 hosts") || stderr.contains("problem"), "{stderr}");
    // a port the master needs is taken on 127.0.0.1's machine: reported for m1 (master), not w1 (node)
    let _busy = std::net::TcpListener::bind("0.0.0.0:10259").ok();
    if _busy.is_some() {
        let out = l.kbin(&["hosts", "check", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ports = |i: usize| v["hosts"][i]["problems"].as_array().unwrap().iter().any(|p| p["check"] == "ports" && p["message"].as_str().unwrap().contains("10259 (kube-scheduler)"));
        assert!(ports(0), "{}", v["hosts"][0]["problems"]);
        assert!(!ports(1));
    }
    // the human report on stdout, hints included
    let out = l.kbin(&["hosts", "check", "--host", "w1"]);
    let so = text(&out.stdout);
    assert!(so.starts_with("w1 (127.0.0.2; node)\n"), "{so}");
    assert!(so.contains("1 host checked"), "{so}");
}

#[test]
fn hosts_push_writes_once_and_reports_unchanged_after() {
    let l = lab(true);
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = remote_dir.path().join("conf/app.conf");
    let local = l.dir.path().join("app.conf");
    std::fs::write(&local, "x = 1\n").unwrap();
    let r = remote.to_str().unwrap();
    let out = l.kbin(&["hosts", "push", local.to_str().unwrap(), r, "--mode", "600", "--accept-new-host-keys", "--host", "m1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "m1               changed (6 bytes sent)\n");
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), "x = 1\n");
    let out = l.kbin(&["hosts", "push", local.to_str().unwrap(), r, "--mode", "600", "--json", "--host", "m1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["changed"], false);
    assert_eq!(v[0]["bytes_sent"], 0);
    // a relative remote path is refused for that host, with the host named
    let out = l.kbin(&["hosts", "push", local.to_str().unwrap(), "relative/x", "--host", "m1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[push] m1: error: \"relative/x\" is not an absolute file path"), "{}", text(&out.stderr));
}

#[test]
fn agent_from_ssh_auth_sock_is_used_when_no_key_is_configured() {
    let l = lab(false);
    let agent = Agent::start();
    agent.add(&l.key);
    let out = Command::cargo_bin("kbin")
        .unwrap()
        .current_dir(l.dir.path())
        .env("HOME", l.dir.path())
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["hosts", "push", "--host", "m1", "--accept-new-host-keys", l.dir.path().join("cluster.toml").to_str().unwrap(), &format!("{}/copied.toml", Path::new(l.dir.path()).display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("m1               changed"));
    let _ = &l.b;
}

#[test]
fn ctrl_c_stops_starting_hosts_and_reports_what_was_done() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "id_test");
    let silent = Silent::start();
    let b = Sshd::start("127.0.0.2", &[&key]);
    std::fs::write(
        dir.path().join("cluster.toml"),
        format!(
            "[cluster]\nname = \"lab\"\n[apiserver]\nport = 6443\n[ssh]\nkey = \"{}\"\nconnect_timeout_secs = 2\nconcurrency = 1\n\
             [[hosts]]\nname = \"hung\"\naddress = \"127.0.0.1\"\nssh_port = {}\nroles = [\"master\", \"etcd\"]\n\
             [[hosts]]\nname = \"w1\"\naddress = \"127.0.0.2\"\nssh_port = {}\nroles = [\"node\"]\n\
             [[hosts]]\nname = \"w2\"\naddress = \"127.0.0.3\"\nssh_port = {}\nroles = [\"node\"]\n",
            key.private.display(),
            silent.port,
            b.port,
            b.port
        ),
    )
    .unwrap();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kbin"))
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .args(["hosts", "check", "--accept-new-host-keys"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted: 0 host(s) done, 1 failed, 2 not started"), "{stderr}");
    assert!(stderr.contains("[connect] hung: failed: hung: handshake"), "the host in progress finished its step: {stderr}");
    assert!(!stderr.contains("w1:"), "w1 was never started: {stderr}");
}

#[test]
fn a_bastion_from_the_cluster_file_is_scanned_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "id_test");
    let bastion = Sshd::start("127.0.0.1", &[&key]);
    let target = Sshd::start("127.0.0.2", &[&key]);
    std::fs::write(
        dir.path().join("cluster.toml"),
        format!(
            "[cluster]\nname = \"lab\"\n[apiserver]\nport = 6443\n[ssh]\nkey = \"{}\"\n[ssh.bastion]\naddress = \"127.0.0.1\"\nport = {}\n\
             [[hosts]]\nname = \"cp1\"\naddress = \"127.0.0.2\"\nssh_port = {}\nroles = [\"master\", \"etcd\"]\n",
            key.private.display(),
            bastion.port,
            target.port
        ),
    )
    .unwrap();
    let kbin = |args: &[&str]| Command::cargo_bin("kbin").unwrap().current_dir(dir.path()).env("HOME", dir.path()).env_remove("SSH_AUTH_SOCK").args(args).output().unwrap();
    let out = kbin(&["hosts", "scan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.contains(&bastion.fingerprint()) && so.contains(&target.fingerprint()), "both keys shown: {so}");
    let kh = std::fs::read_to_string(dir.path().join("known_hosts")).unwrap();
    assert!(kh.contains(&bastion.known_hosts_line()) && kh.contains(&target.known_hosts_line()), "{kh}");
    let remote = tempfile::tempdir().unwrap();
    let dest = remote.path().join("via-bastion");
    let out = kbin(&["hosts", "push", dir.path().join("cluster.toml").to_str().unwrap(), dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(dir.path().join("cluster.toml")).unwrap());
}

#[test]
fn hosts_push_dry_run_changes_nothing_and_json_reports_failures_on_stdout() {
    let l = lab(true);
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = remote_dir.path().join("app.conf");
    std::fs::write(&remote, "x = 1\n").unwrap();
    let local = l.dir.path().join("app.conf");
    std::fs::write(&local, "x = 2\n").unwrap();
    let (lo, r) = (local.to_str().unwrap(), remote.to_str().unwrap());
    let out = l.kbin(&["hosts", "push", lo, r, "--dry-run", "--accept-new-host-keys", "--host", "m1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "m1               would change\n");
    assert!(text(&out.stderr).contains("[dry-run] m1: -x = 1"), "the diff: {}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), "x = 1\n", "nothing written");
    // a host that fails is a row with its failure; a missing local file is the error document
    let out = l.kbin(&["hosts", "push", lo, "relative/x", "--json", "--host", "m1"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON on failure");
    assert_eq!((v[0]["ok"].as_bool(), v[0]["failure"]["phase"].as_str()), (Some(false), Some("push")), "{v}");
    let out = l.kbin(&["hosts", "push", "no-such-file", r, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON on failure");
    assert_eq!(v["ok"], false);
    assert!(v["error"]["message"].as_str().unwrap().contains("cannot read no-such-file"), "{v}");
}
