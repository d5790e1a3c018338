//! The ssh2 transport against real sshd processes on loopback (started and stopped by the tests).
//! Needs root, openssh-server, openssh-client and sudo.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kbin::error::Reportable;
use kbin::host::ssh::{self, ConnectOptions, Target};
use kbin::host::{Cmd, FileWrite, HostError, KnownHosts, Remote, Source, WriteOpts};
use support::*;

struct Env {
    dir: tempfile::TempDir,
    key: KeyPair,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "id_test");
    Env { dir, key }
}

impl Env {
    /// Options with an empty known_hosts in the test's dir (never the user's own) and short timeouts.
    fn opts(&self) -> ConnectOptions {
        let kh = KnownHosts::with_files(vec![self.dir.path().join("user_known_hosts")], self.dir.path().join("known_hosts"));
        let mut o = ConnectOptions::new(Arc::new(kh));
        o.connect_timeout = Duration::from_secs(5);
        o.command_timeout = Duration::from_secs(20);
        o.io_timeout = Duration::from_secs(10);
        // a fake agent socket, so no agent of the person running the tests is used
        o.agent_socket = Some(self.dir.path().join("no-agent"));
        o
    }
    fn trust(&self, sshd: &Sshd) {
        let f = self.dir.path().join("known_hosts");
        let mut text = std::fs::read_to_string(&f).unwrap_or_default();
        text.push_str(&sshd.known_hosts_line());
        std::fs::write(f, text).unwrap();
    }
    /// A user with this sudoers rule, an sshd that knows our key, and a connection as that user.
    fn login_as(&self, user: &str, sudoers: &str) -> (User, Sshd, kbin::host::SshHost) {
        let user = User::create(user, sudoers);
        let sshd = Sshd::start("127.0.0.1", &[&self.key]);
        self.trust(&sshd);
        let h = ssh::connect(&self.target("n1", &sshd, &user.name), None, &self.opts()).expect("login as the user");
        (user, sshd, h)
    }
    fn target(&self, name: &str, sshd: &Sshd, user: &str) -> Target {
        Target { name: name.into(), address: sshd.addr.clone(), port: sshd.port, user: user.into(), key: Some(self.key.private.clone()) }
    }
}

#[test]
fn key_auth_runs_argv_commands_with_separate_stdout_stderr_and_status() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    e.trust(&sshd);
    let h = ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).expect("key login as root");
    let cipher = h.cipher().unwrap_or_default();
    assert!(cipher.contains("gcm") || cipher.contains("chacha20"), "bulk transfers use an AEAD cipher, got {cipher}");
    let out = h.run(&Cmd::new(["sh", "-c", "echo out; echo err >&2; exit 3"])).unwrap();
    assert_eq!((out.status, out.stdout_str().as_str(), out.stderr_str().as_str()), (3, "out\n", "err\n"));
    // awkward arguments reach the remote program unchanged through sshd and the login shell
    let args = ["two words", "it's", "$HOME", "`id`", "a\nb", "", "héllo", "*", "--x=$(reboot)"];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend(args);
    let out = h.check(&Cmd::new(argv)).unwrap();
    let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    assert_eq!(got.len(), args.len() + 1);
    for (g, a) in got.iter().zip(args) {
        assert_eq!(*g, a.as_bytes());
    }
    // stdin carries data (secrets go this way, never argv)
    let out = h.check(&Cmd::new(["sha256sum"]).stdin(b"token-123".to_vec())).unwrap();
    assert!(out.stdout_str().starts_with(&kbin::host::sha256_hex(b"token-123")));
    // much more output than any pipe or window holds, on both streams at once
    let out = h.check(&Cmd::new(["sh", "-c", "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2"])).unwrap();
    assert_eq!((out.stdout.len(), out.stderr.len()), (3_000_000, 3_000_000));
    let err = h.check(&Cmd::new(["false"])).unwrap_err();
    assert!(err.to_string().starts_with("n1: `false` failed with exit status 1"), "{err}");
}

#[test]
fn agent_auth_logs_in_without_a_key_file() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    e.trust(&sshd);
    let agent = Agent::start();
    let mut t = e.target("n1", &sshd, "root");
    t.key = None;
    let mut o = e.opts();
    o.agent_socket = Some(agent.socket.clone());
    // the agent holds no key yet: refused, and the message says what was tried
    let err = ssh::connect(&t, None, &o).unwrap_err();
    assert!(matches!(err, HostError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("ssh-agent (0 keys)"), "{err}");
    assert!(err.hint().unwrap().contains("ssh-add"));
    agent.add(&e.key);
    let h = ssh::connect(&t, None, &o).expect("login with the agent's key");
    assert_eq!(h.check(&Cmd::new(["id", "-un"])).unwrap().stdout_str(), "root\n");
}

#[test]
fn wrong_key_is_refused_naming_the_user_and_key() {
    let e = env();
    let other = keygen(e.dir.path(), "other");
    let sshd = Sshd::start("127.0.0.1", &[&other]);
    e.trust(&sshd);
    let err = ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("n1: authentication as \"root\" failed") && text.contains("id_test"), "{text}");
}

#[test]
fn unknown_host_key_is_refused_then_recorded_with_accept_new() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    let t = e.target("n1", &sshd, "root");
    let err = ssh::connect(&t, None, &e.opts()).unwrap_err();
    match &err {
        HostError::UnknownHostKey { fingerprint, addr, .. } => {
            assert_eq!(fingerprint, &sshd.fingerprint(), "the fingerprint shown is the one ssh-keygen computes");
            assert_eq!(addr, &format!("[127.0.0.1]:{}", sshd.port));
        }
        other => panic!("expected an unknown host key, got {other}"),
    }
    assert_eq!(err.exit(), kbin::Exit::Refused);
    assert!(err.hint().unwrap().contains("--accept-new-host-keys"));
    assert!(!e.dir.path().join("known_hosts").exists(), "nothing recorded without --accept-new-host-keys");

    let mut o = e.opts();
    o.accept_new_host_keys = true;
    ssh::connect(&t, None, &o).expect("accepted and recorded");
    let recorded = std::fs::read_to_string(e.dir.path().join("known_hosts")).unwrap();
    assert_eq!(recorded, sshd.known_hosts_line());
    // from now on it is known, without the flag
    ssh::connect(&t, None, &e.opts()).expect("known now");
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    let impostor = keygen(e.dir.path(), "old_host_key");
    let old_pub = std::fs::read_to_string(impostor.private.with_extension("pub")).unwrap();
    let mut parts = old_pub.split_whitespace();
    let line = format!("[127.0.0.1]:{} {} {}\n", sshd.port, parts.next().unwrap(), parts.next().unwrap());
    std::fs::write(e.dir.path().join("known_hosts"), &line).unwrap();
    let mut o = e.opts();
    o.accept_new_host_keys = true;
    let err = ssh::connect(&e.target("n1", &sshd, "root"), None, &o).unwrap_err();
    match &err {
        HostError::HostKeyChanged { presented, expected, known_in, .. } => {
            assert_eq!(presented, &format!("ssh-ed25519 {}", sshd.fingerprint()));
            assert_eq!(expected, &vec![format!("ssh-ed25519 {}", fingerprint_of(&impostor.private.with_extension("pub")))]);
            assert_eq!(known_in, &vec![format!("{}:1", e.dir.path().join("known_hosts").display())]);
        }
        other => panic!("expected a changed host key, got {other}"),
    }
    assert!(err.to_string().contains("HOST KEY CHANGED"));
    assert_eq!(std::fs::read_to_string(e.dir.path().join("known_hosts")).unwrap(), line, "the known key is never replaced");
}

#[test]
fn hashed_entries_written_by_openssh_are_understood() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    let user_kh = e.dir.path().join("user_known_hosts");
    std::fs::write(&user_kh, sshd.known_hosts_line()).unwrap();
    let st = std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&user_kh).output().unwrap();
    assert!(st.status.success());
    let hashed = std::fs::read_to_string(&user_kh).unwrap();
    assert!(hashed.starts_with("|1|"), "ssh-keygen -H hashed the name: {hashed}");
    ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).expect("hashed [addr]:port entry matches");
}

#[test]
fn sudo_user_runs_privileged_commands_and_writes_root_owned_files() {
    let e = env();
    let (user, _sshd, h) = e.login_as("s", "ALL=(ALL) NOPASSWD: ALL");
    assert_eq!(h.check(&Cmd::new(["id", "-u"])).unwrap().stdout_str().trim(), std::process::Command::new("id").args(["-u", &user.name]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap());
    assert_eq!(h.check(&Cmd::new(["id", "-u"]).sudo()).unwrap().stdout_str(), "0\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/kbin/secret.key");
    let p = path.to_str().unwrap();
    let w = h.write_file(p, &Source::bytes(b"KEY\n".to_vec()), &WriteOpts::mode(0o600).owner("root:root")).unwrap();
    assert!(w.changed);
    let md = std::fs::metadata(&path).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o600));
    assert_eq!(h.read_file(p).unwrap().unwrap(), b"KEY\n", "read back as root");
    assert_eq!(h.sha256(p).unwrap().unwrap(), kbin::host::sha256_hex(b"KEY\n"));
    let missing = format!("{p}.missing");
    let many = h.sha256_many(&[p, &missing, p]).unwrap();
    assert_eq!(many, vec![Some(kbin::host::sha256_hex(b"KEY\n")), None, Some(kbin::host::sha256_hex(b"KEY\n"))], "one answer per path, in order, as root");
    assert_eq!(h.read_file(&format!("{p}.missing")).unwrap(), None);
    // without sudo the user cannot read it: proves the reads above went through sudo
    let plain = h.run(&Cmd::new(["cat", p])).unwrap();
    assert_ne!(plain.status, 0);
}

#[test]
fn small_files_go_in_one_run_and_a_failure_names_the_file_after_those_written() {
    let e = env();
    let (_user, _sshd, h) = e.login_as("w", "ALL=(ALL) NOPASSWD: ALL");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("old.conf"), "v1\n").unwrap();
    let local = e.dir.path().join("tool");
    std::fs::write(&local, vec![9u8; 100_000]).unwrap();
    let (key, conf, tool, unit) = (Source::bytes(b"KEY\n".to_vec()), Source::bytes(b"v2\n".to_vec()), Source::file(&local).unwrap(), Source::bytes(b"[Unit]\n".to_vec()));
    let paths = [p("pki/a.key"), p("old.conf"), p("bin/tool"), p("u.service")];
    let files = [
        FileWrite { path: &paths[0], src: &key, opts: WriteOpts::mode(0o600).owner("root:root") },
        FileWrite { path: &paths[1], src: &conf, opts: WriteOpts::mode(0o644).backup() },
        // a local file between them is streamed on its own
        FileWrite { path: &paths[2], src: &tool, opts: WriteOpts::mode(0o755) },
        FileWrite { path: &paths[3], src: &unit, opts: WriteOpts::mode(0o644).backup() },
    ];
    let mut got = Vec::new();
    h.write_files(&files, &mut |i, w| got.push((i, w))).unwrap();
    assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(got.iter().all(|(_, w)| w.changed));
    assert_eq!(got.iter().map(|(_, w)| w.bytes_sent).collect::<Vec<_>>(), [4, 3, 100_000, 7]);
    let backup = got[1].1.backup.clone().expect("the replaced file's backup");
    assert_eq!((std::fs::read_to_string(&paths[1]).unwrap(), std::fs::read_to_string(&backup).unwrap()), ("v2\n".into(), "v1\n".into()));
    assert!(got[3].1.created && got[3].1.backup.is_none());
    let md = std::fs::metadata(&paths[0]).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777, std::fs::read(&paths[0]).unwrap()), (0, 0o600, b"KEY\n".to_vec()), "written as root through sudo");
    assert_eq!(std::fs::read(&paths[2]).unwrap(), vec![9u8; 100_000]);

    // a file that cannot be written stops the run: those before it are reported (to be undone)
    std::fs::write(p("blocked"), "a file, not a directory").unwrap();
    let paths = [p("next.conf"), p("blocked/x.conf"), p("after.conf")];
    let files: Vec<FileWrite> = paths.iter().map(|path| FileWrite { path, src: &conf, opts: WriteOpts::mode(0o644) }).collect();
    let mut written = Vec::new();
    let err = h.write_files(&files, &mut |i, _| written.push(i)).unwrap_err();
    assert_eq!(written, [0]);
    assert!(matches!(&err, HostError::Write { path, .. } if *path == paths[1]), "{err}");
    assert!(std::fs::read_to_string(&paths[0]).is_ok() && !std::path::Path::new(&paths[2]).exists());
}

#[test]
fn sudo_that_wants_a_password_fails_fast_with_a_hint() {
    let e = env();
    let (_user, _sshd, h) = e.login_as("p", "ALL=(ALL) ALL");
    let t = Instant::now();
    let err = h.run(&Cmd::new(["true"]).sudo()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "no hang waiting for a password");
    assert!(matches!(err, HostError::SudoPassword { .. }), "{err}");
    assert!(err.to_string().contains("sudo needs a password"));
    assert!(err.hint().unwrap().contains("NOPASSWD"));
    let err = h.write_file("/tmp/kbin-never-written", &Source::bytes(b"x".to_vec()), &WriteOpts::default()).unwrap_err();
    assert!(matches!(err, HostError::SudoPassword { .. }), "file writes hit the same clear error: {err}");
}

#[test]
fn bastion_tunnels_to_the_target_and_verifies_both_host_keys() {
    let e = env();
    let bastion = Sshd::start("127.0.0.1", &[&e.key]);
    let target = Sshd::start("127.0.0.2", &[&e.key]);
    let b = Target { name: "bastion".into(), ..e.target("bastion", &bastion, "root") };
    let t = e.target("cp1", &target, "root");
    // neither key known: the bastion's is checked first
    let err = ssh::connect(&t, Some(&b), &e.opts()).unwrap_err();
    assert!(matches!(err.root(), HostError::UnknownHostKey { fingerprint, .. } if *fingerprint == bastion.fingerprint()), "{err}");
    assert!(err.to_string().contains("via bastion 127.0.0.1"), "{err}");
    e.trust(&bastion);
    // bastion known, target not: the target's key is checked too
    let err = ssh::connect(&t, Some(&b), &e.opts()).unwrap_err();
    assert!(matches!(&err, HostError::UnknownHostKey { fingerprint, .. } if *fingerprint == target.fingerprint()), "{err}");
    e.trust(&target);
    let h = ssh::connect(&t, Some(&b), &e.opts()).expect("through the bastion");
    let conn = h.check(&Cmd::new(["sh", "-c", "echo $SSH_CONNECTION"])).unwrap().stdout_str();
    assert!(conn.trim().ends_with(&format!("127.0.0.2 {}", target.port)), "{conn}");
    let w = h.write_file(&format!("{}/f", target.dir.path().display()), &Source::bytes(vec![7u8; 300_000]), &WriteOpts::default()).unwrap();
    assert_eq!(w.bytes_sent, 300_000);
    drop(h);

    // a bastion that refuses forwarding: the connection fails there, so it really went through it
    let closed = Sshd::start_with("127.0.0.1", &[&e.key], "DisableForwarding yes");
    e.trust(&closed);
    let b2 = e.target("bastion", &closed, "root");
    let err = ssh::connect(&t, Some(&b2), &e.opts()).unwrap_err();
    assert!(matches!(err, HostError::Bastion { .. }), "{err}");
}

#[test]
fn unchanged_repush_sends_nothing_and_backups_keep_the_old_file() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    let proxy = Proxy::start((sshd.addr.clone(), sshd.port));
    let mut o = e.opts();
    o.accept_new_host_keys = true;
    let t = Target { name: "n1".into(), address: "127.0.0.1".into(), port: proxy.port, user: "root".into(), key: Some(e.key.private.clone()) };
    let h = ssh::connect(&t, None, &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin/big");
    let p = path.to_str().unwrap();
    let local = e.dir.path().join("big");
    std::fs::write(&local, (0..5_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let src = Source::file(&local).unwrap();
    let progress_seen = std::sync::atomic::AtomicU64::new(0);
    let progress = |n: u64| {
        progress_seen.store(n, std::sync::atomic::Ordering::SeqCst);
    };
    let first = h.write_file(p, &src, &WriteOpts::mode(0o755).progress(&progress)).unwrap();
    assert!(first.changed);
    assert_eq!(first.bytes_sent, 5_000_000);
    assert_eq!(progress_seen.load(std::sync::atomic::Ordering::SeqCst), 5_000_000);
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&local).unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o755);
    let inode = std::fs::metadata(&path).unwrap().ino();

    let before = proxy.sent();
    let again = h.write_file(p, &src, &WriteOpts::mode(0o755)).unwrap();
    let on_the_wire = proxy.sent() - before;
    assert_eq!((again.changed, again.bytes_sent), (false, 0));
    assert!(on_the_wire < 64 * 1024, "an unchanged file must not be sent again, yet {on_the_wire} bytes went upstream");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "the file was not replaced");

    // same content, other mode: fixed in place, nothing sent
    let meta = h.write_file(p, &src, &WriteOpts::mode(0o700)).unwrap();
    assert_eq!((meta.changed, meta.bytes_sent), (true, 0));
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o700);

    // a new version with a backup of the old one
    let v2 = h.write_file(p, &Source::bytes(b"v2\n".to_vec()), &WriteOpts::mode(0o700).backup()).unwrap();
    let backup = v2.backup.expect("backup path");
    assert!(backup.starts_with(&format!("{p}.kbin-backup-")), "{backup}");
    assert_eq!(std::fs::read(&backup).unwrap(), std::fs::read(&local).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"v2\n");
    let leftovers: Vec<String> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".kbin-") && !n.contains("backup")).collect();
    assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
}

#[test]
fn upload_cut_midway_leaves_the_old_file_intact() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    let proxy = Proxy::start((sshd.addr.clone(), sshd.port));
    let mut o = e.opts();
    o.accept_new_host_keys = true;
    o.io_timeout = Duration::from_secs(3);
    let t = Target { name: "n1".into(), address: "127.0.0.1".into(), port: proxy.port, user: "root".into(), key: Some(e.key.private.clone()) };
    let h = ssh::connect(&t, None, &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kube-apiserver");
    let p = path.to_str().unwrap();
    h.write_file(p, &Source::bytes(b"old binary\n".to_vec()), &WriteOpts::mode(0o755)).unwrap();

    let big = vec![42u8; 40_000_000];
    let cut_once = std::sync::Once::new();
    let progress = |n: u64| {
        if n > 4_000_000 {
            cut_once.call_once(|| proxy.cut());
        }
    };
    let err = h.write_file(p, &Source::bytes(big), &WriteOpts::mode(0o755).progress(&progress)).unwrap_err();
    assert!(matches!(err, HostError::Disconnected { .. } | HostError::Timeout { .. } | HostError::Ssh { .. }), "{err}");
    assert!(err.to_string().starts_with("n1: "), "{err}");
    // regression (issue 12): the error was the whole remote write script, 55 lines, before its cause
    assert!(!err.chain().contains('\n') && err.chain().contains(&format!("write {p}")), "one line naming the file: {}", err.chain());
    assert_eq!(std::fs::read(&path).unwrap(), b"old binary\n", "the old content is intact");
    // the remote side notices the short upload, refuses to rename and removes its temp file
    let t0 = Instant::now();
    loop {
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        if names == vec!["kube-apiserver".to_string()] {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "temp file not cleaned up: {names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"old binary\n");
}

#[test]
fn a_host_that_accepts_tcp_but_never_answers_times_out() {
    let e = env();
    let silent = Silent::start();
    let mut o = e.opts();
    o.connect_timeout = Duration::from_millis(700);
    let t = Target { name: "hung".into(), address: "127.0.0.1".into(), port: silent.port, user: "root".into(), key: Some(e.key.private.clone()) };
    let t0 = Instant::now();
    let err = ssh::connect(&t, None, &o).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3), "gave up in time ({:?})", t0.elapsed());
    assert!(matches!(err, HostError::Timeout { .. }), "{err}");
    assert!(err.to_string().starts_with("hung: handshake"), "{err}");
    assert!(err.hint().unwrap().contains("sshd"));
    // nothing listening at all: an immediate connection error
    let t = Target { port: free_port("127.0.0.1"), ..t };
    let err = ssh::connect(&t, None, &o).unwrap_err();
    assert!(matches!(err, HostError::Connect { .. }), "{err}");
}

#[test]
fn a_command_that_runs_too_long_times_out() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    e.trust(&sshd);
    let h = ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).unwrap();
    let t0 = Instant::now();
    let err = h.run(&Cmd::new(["sleep", "30"]).timeout(Duration::from_millis(500))).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, HostError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("`sleep 30` timed out"), "{err}");
    // the connection is still usable for the next command
    assert_eq!(h.check(&Cmd::new(["echo", "ok"])).unwrap().stdout_str(), "ok\n");
}

#[test]
fn tcp_tunnel_reaches_a_port_as_seen_from_the_host() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    e.trust(&sshd);
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf.iter().map(|b| b.to_ascii_uppercase()).collect::<Vec<u8>>()).unwrap();
    });
    let h = ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).unwrap();
    let mut tun = h.open_tcp("127.0.0.1", port).unwrap();
    tun.write_all(b"hello").unwrap();
    tun.flush().unwrap();
    let mut got = [0u8; 5];
    tun.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"HELLO");
    server.join().unwrap();
}

/// A server that speaks first (a TLS server's handshake answer, a greeting) lost its bytes now
/// and then: flushing the tunnel called `libssh2_channel_flush`, which discards what was
/// received but not read yet.
#[test]
fn flushing_a_tunnel_keeps_what_the_server_already_sent() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    e.trust(&sshd);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"greeting").unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"!").unwrap();
    });
    let h = ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).unwrap();
    let mut tun = h.open_tcp("127.0.0.1", port).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300)); // the greeting is on its way
    tun.write_all(b"hey").unwrap();
    tun.flush().unwrap();
    let mut got = [0u8; 9];
    tun.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"greeting!");
    server.join().unwrap();
}

#[test]
fn scan_shows_and_records_fingerprints() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    let t = e.target("n1", &sshd, "root");
    let k = ssh::scan(&t, None, &e.opts(), false).unwrap();
    assert_eq!((k.fingerprint.as_str(), k.status.as_str(), k.key_type.as_str()), (sshd.fingerprint().as_str(), "unknown", "ssh-ed25519"));
    let k = ssh::scan(&t, None, &e.opts(), true).unwrap();
    assert_eq!(k.status, "new");
    let k = ssh::scan(&t, None, &e.opts(), true).unwrap();
    assert_eq!(k.status, "known");
    assert_eq!(std::fs::read_to_string(e.dir.path().join("known_hosts")).unwrap(), sshd.known_hosts_line());
}

#[test]
fn a_host_with_several_keys_presents_the_type_we_know() {
    let e = env();
    let ecdsa = e.dir.path().join("ecdsa_host_key");
    let st = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ecdsa", "-N", "", "-f"]).arg(&ecdsa).status().unwrap();
    assert!(st.success());
    // the server offers ed25519 first and ecdsa second; only the ecdsa key is known
    let sshd = Sshd::start_with("127.0.0.1", &[&e.key], &format!("HostKey {}", ecdsa.display()));
    let pubkey = std::fs::read_to_string(ecdsa.with_extension("pub")).unwrap();
    let mut parts = pubkey.split_whitespace();
    std::fs::write(e.dir.path().join("known_hosts"), format!("[127.0.0.1]:{} {} {}\n", sshd.port, parts.next().unwrap(), parts.next().unwrap())).unwrap();
    let h = ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).expect("the known ecdsa key is asked for, not reported as changed");
    assert_eq!(h.check(&Cmd::new(["true"])).unwrap().status, 0);
    // and the other way round: only the ed25519 key known (whichever libssh2 prefers by default,
    // one of the two directions needs kbin's preference)
    std::fs::write(e.dir.path().join("known_hosts"), sshd.known_hosts_line()).unwrap();
    ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).expect("the known ed25519 key is asked for");
}

#[test]
fn hosts_check_facts_report_a_sudo_that_wants_a_password() {
    let e = env();
    let user = User::create("c", "ALL=(ALL) ALL");
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    e.trust(&sshd);
    let h = ssh::connect(&e.target("n1", &sshd, &user.name), None, &e.opts()).unwrap();
    let f = kbin::host::check::gather(&h, &["/opt/kbin-test/bin".into()]).expect("facts are still gathered without root");
    assert_eq!(f.sudo, "needs a password");
    assert_eq!(f.kernel, String::from_utf8(std::process::Command::new("uname").arg("-r").output().unwrap().stdout).unwrap().trim());
    assert!(f.disk_free_kb["/opt/kbin-test/bin"] > 0, "free space of the nearest existing parent");
    let cluster = kbin::config::parse(
        std::path::Path::new("/tmp/cluster.toml"),
        "[cluster]\nname = \"t\"\n[apiserver]\nport = 6443\n[[hosts]]\nname = \"n1\"\naddress = \"127.0.0.1\"\nroles = [\"master\", \"etcd\"]\n",
    )
    .unwrap();
    let problems = kbin::host::check::evaluate_host(&cluster, &cluster.hosts[0], &f);
    let sudo = problems.iter().find(|p| p.check == "sudo").expect("a sudo problem");
    assert!(sudo.hint.contains("NOPASSWD"), "{sudo:?}");
}

#[test]
fn one_connection_serves_several_threads_at_once() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    e.trust(&sshd);
    let h: Arc<dyn Remote> = Arc::new(ssh::connect(&e.target("n1", &sshd, "root"), None, &e.opts()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for i in 0..6 {
            let h = h.clone();
            let path = dir.path().join(format!("f{i}"));
            s.spawn(move || {
                for round in 0..3u8 {
                    let out = h.check(&Cmd::new(["sh", "-c", &format!("head -c 1000000 /dev/zero; echo {i} >&2")])).unwrap();
                    assert_eq!((out.stdout.len(), out.stderr_str()), (1_000_000, format!("{i}\n")));
                    // each round a new content, so every round really sends 2 MB while the others run
                    let w = h.write_file(path.to_str().unwrap(), &Source::bytes(vec![i as u8 + round * 10; 2_000_000]), &WriteOpts::default()).unwrap();
                    assert_eq!(w.bytes_sent, 2_000_000);
                }
            });
        }
    });
    for i in 0..6u8 {
        assert_eq!(std::fs::read(dir.path().join(format!("f{i}"))).unwrap(), vec![i + 20; 2_000_000]);
    }
}

#[test]
fn release_links_are_read_and_swapped_atomically_keeping_what_they_replace() {
    let e = env();
    let sshd = Sshd::start("127.0.0.1", &[&e.key]);
    let mut o = e.opts();
    o.accept_new_host_keys = true;
    let t = Target { name: "n1".into(), address: "127.0.0.1".into(), port: sshd.port, user: "root".into(), key: Some(e.key.private.clone()) };
    let h = ssh::connect(&t, None, &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let at = |rel: &str| dir.path().join(rel).to_str().unwrap().to_string();
    // a regular file (a host installed before releases sat side by side), a link, nothing, a name with a space
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("bin/kubelet"), "old kubelet\n").unwrap();
    std::os::unix::fs::symlink("/opt/r/v1/kube proxy", dir.path().join("bin/kube proxy")).unwrap();
    let paths = [at("bin/kubelet"), at("bin/kube proxy"), at("bin/missing")];
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    assert_eq!(h.read_links(&refs).unwrap(), [None, Some("/opt/r/v1/kube proxy".to_string()), None]);

    // the regular file becomes a link; the file is kept (hard-linked) at the backup
    assert!(h.set_link(&at("bin/kubelet"), "/opt/r/v2/kubelet", &at("bin/kubelet.bak")).unwrap());
    assert_eq!(std::fs::read_link(dir.path().join("bin/kubelet")).unwrap().to_str(), Some("/opt/r/v2/kubelet"));
    assert_eq!(std::fs::read_to_string(dir.path().join("bin/kubelet.bak")).unwrap(), "old kubelet\n");
    // a link to a link target: the old link itself is kept, not what it points at
    assert!(h.set_link(&at("bin/kube proxy"), "/opt/r/v2/kube proxy", &at("bin/kube proxy.bak")).unwrap());
    assert_eq!(std::fs::read_link(dir.path().join("bin/kube proxy.bak")).unwrap().to_str(), Some("/opt/r/v1/kube proxy"));
    // a new link in a new directory: nothing to keep
    assert!(!h.set_link(&at("new/dir/kubectl"), "/opt/r/v2/kubectl", &at("new/dir/kubectl.bak")).unwrap());
    assert_eq!(h.read_links(&[&at("new/dir/kubectl")]).unwrap(), [Some("/opt/r/v2/kubectl".to_string())]);
    assert!(!dir.path().join("bin/kubelet.kbin-new").exists() && !dir.path().join("new/dir/kubectl.kbin-new").exists());
}
