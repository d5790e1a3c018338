//! Real sshd processes on loopback for the integration tests, plus the helpers around them:
//! client keys, an ssh-agent, throwaway users with or without passwordless sudo, and a TCP proxy
//! that counts bytes and can cut a connection. Everything is torn down on drop; no process is left
//! behind.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

fn need(tool: &str, package: &str) {
    let found = Path::new(tool).exists()
        || std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()));
    assert!(found, "{tool} is missing: these tests need the Debian package {package} (apt-get install -y {package})");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private key and its public half, made with ssh-keygen.
pub struct KeyPair {
    pub private: PathBuf,
    pub public: String,
}

pub fn keygen(dir: &Path, name: &str) -> KeyPair {
    need("ssh-keygen", "openssh-client");
    let private = dir.join(name);
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&private));
    let public = std::fs::read_to_string(private.with_extension("pub")).unwrap().trim().to_string();
    KeyPair { private, public }
}

/// `SHA256:...` of a public key file, as ssh-keygen prints it.
pub fn fingerprint_of(pub_file: &Path) -> String {
    let out = run(Command::new("ssh-keygen").arg("-l").arg("-f").arg(pub_file));
    out.split_whitespace().nth(1).expect("ssh-keygen -l output").to_string()
}

/// A port nobody listens on right now.
pub fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0)).unwrap().local_addr().unwrap().port()
}

/// Every process below `pid`, deepest first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut children: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // the command name is in parentheses and may hold spaces
                let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|s| s.parse::<u32>().ok());
                if let Some(ppid) = ppid {
                    children.push((p, ppid));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for (c, pp) in &children {
            if *pp == p {
                out.push(*c);
                stack.push(*c);
            }
        }
    }
    out.reverse();
    out
}

fn kill_tree(child: &mut Child) {
    for p in descendants(child.id()) {
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One sshd on a loopback address and a random port, with its own host key and config.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub port: u16,
    pub host_key_pub: PathBuf,
    child: Child,
}

impl Sshd {
    /// Start an sshd accepting `client` keys (for every user) on `addr`.
    pub fn start(addr: &str, authorized: &[&KeyPair]) -> Sshd {
        Sshd::start_with(addr, authorized, "")
    }

    pub fn start_with(addr: &str, authorized: &[&KeyPair], extra_config: &str) -> Sshd {
        need(SSHD, "openssh-server");
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (sshd's privilege separation dir)");
        let dir = tempfile::tempdir().unwrap();
        // users other than root read authorized_keys with their own rights
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let hk = keygen(dir.path(), "ssh_host_ed25519_key");
        let auth = dir.path().join("authorized_keys");
        let lines: Vec<String> = authorized.iter().map(|k| k.public.clone()).collect();
        std::fs::write(&auth, lines.join("\n") + "\n").unwrap();
        std::fs::set_permissions(&auth, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        for attempt in 0..5 {
            let port = free_port(addr);
            let cfg = dir.path().join("sshd_config");
            std::fs::write(
                &cfg,
                format!(
                    "Port {port}\nListenAddress {addr}\nHostKey {hk}\nPidFile none\nAuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\n\
                     PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     AllowTcpForwarding yes\nSubsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\nMaxStartups 100\n{extra_config}\n",
                    hk = hk.private.display(),
                    auth = auth.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
            let mut child = Command::new(SSHD).arg("-D").arg("-e").arg("-f").arg(&cfg).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("start sshd");
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Ok(mut s) = TcpStream::connect((addr, port)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut b = [0u8; 4];
                    if s.read_exact(&mut b).is_ok() && &b == b"SSH-" {
                        return Sshd { addr: addr.into(), port, host_key_pub: hk.private.with_extension("pub"), dir, child };
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_tree(&mut child);
            if attempt == 4 {
                panic!("sshd did not start: {}", std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default());
            }
        }
        unreachable!()
    }

    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.host_key_pub)
    }
    /// The host key as a known_hosts line for this address and port.
    pub fn known_hosts_line(&self) -> String {
        let key = std::fs::read_to_string(&self.host_key_pub).unwrap();
        let mut parts = key.split_whitespace();
        format!("[{}]:{} {} {}\n", self.addr, self.port, parts.next().unwrap(), parts.next().unwrap())
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_tree(&mut self.child);
    }
}

/// An `ssh-agent` in the foreground on its own socket.
pub struct Agent {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Agent {
    pub fn start() -> Agent {
        need("ssh-agent", "openssh-client");
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start ssh-agent");
        let t = Instant::now();
        while !socket.exists() {
            assert!(t.elapsed() < Duration::from_secs(5), "ssh-agent did not create its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { socket, _dir: dir, child }
    }
    pub fn add(&self, key: &KeyPair) {
        run(Command::new("ssh-add").arg("-q").arg(&key.private).env("SSH_AUTH_SOCK", &self.socket));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill_tree(&mut self.child);
    }
}

/// A throwaway local user (removed with its home and sudoers file on drop).
pub struct User {
    pub name: String,
    sudoers: PathBuf,
}

impl User {
    /// `sudo_rule` is the sudoers line's right-hand side, e.g. `ALL=(ALL) NOPASSWD: ALL`.
    pub fn create(tag: &str, sudo_rule: &str) -> User {
        need("sudo", "sudo");
        need("useradd", "passwd");
        let name = format!("kbt{}{tag}", std::process::id() % 100000);
        let _ = Command::new("userdel").arg("-r").arg(&name).stderr(Stdio::null()).status();
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh"]).arg(&name));
        // '*': no password, but not a locked account (sshd refuses locked ones)
        run(Command::new("usermod").args(["-p", "*"]).arg(&name));
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/{name}"));
        std::fs::write(&sudoers, format!("{name} {sudo_rule}\n")).unwrap();
        std::fs::set_permissions(&sudoers, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
        User { name, sudoers }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = Command::new("pkill").arg("-KILL").arg("-u").arg(&self.name).status();
        let _ = Command::new("userdel").arg("-r").arg(&self.name).stderr(Stdio::null()).status();
    }
}

/// A loopback TCP proxy in front of one address: counts the bytes going upstream and can cut every
/// connection at once (a network dropping mid-transfer).
pub struct Proxy {
    pub port: u16,
    pub upstream_bytes: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(to: (String, u16)) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let upstream_bytes = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (ub, cu, st, cs) = (upstream_bytes.clone(), cut.clone(), stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((down, _)) => {
                        down.set_nonblocking(false).unwrap();
                        let Ok(up) = TcpStream::connect((to.0.as_str(), to.1)) else { continue };
                        cs.lock().unwrap().extend([down.try_clone().unwrap(), up.try_clone().unwrap()]);
                        let pump = |mut a: TcpStream, mut b: TcpStream, counter: Option<Arc<AtomicU64>>, cut: Arc<AtomicBool>| {
                            std::thread::spawn(move || {
                                let mut buf = vec![0u8; 32 * 1024];
                                loop {
                                    let n = match a.read(&mut buf) {
                                        Ok(0) | Err(_) => break,
                                        Ok(n) => n,
                                    };
                                    if cut.load(Ordering::SeqCst) || b.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                    if let Some(c) = &counter {
                                        c.fetch_add(n as u64, Ordering::SeqCst);
                                    }
                                }
                                let _ = a.shutdown(Shutdown::Both);
                                let _ = b.shutdown(Shutdown::Both);
                            });
                        };
                        pump(down.try_clone().unwrap(), up.try_clone().unwrap(), Some(ub.clone()), cu.clone());
                        pump(up, down, None, cu.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, upstream_bytes, cut, conns, stop, thread: Some(thread) }
    }
    /// Drop every connection now, as a failing network would.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
    pub fn sent(&self) -> u64 {
        self.upstream_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server that accepts connections and never says a word (a hung sshd).
pub struct Silent {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    pub fn start() -> Silent {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::SeqCst) {
                if let Ok((s, _)) = l.accept() {
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Silent { port, stop, thread: Some(thread) }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
