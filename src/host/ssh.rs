//! The ssh2 implementation of [`Remote`].
//!
//! Connecting (TCP, handshake, host key check, authentication) runs in libssh2's blocking mode
//! bounded by `connect_timeout`. After that the session is non-blocking and every operation
//! drives it with `poll(2)` against a deadline, so stdout and stderr are drained together (no
//! deadlock on a full pipe), stdin is streamed as the window allows, and a host that stops
//! answering becomes a [`HostError::Timeout`] for that host instead of a hang.
//!
//! A bastion is a second session: a direct-tcpip channel from the bastion to the target is bridged
//! to a local socket pair by a pump thread, and the target's session runs over the other end.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, ErrorCode, MethodType, Session};

use super::known_hosts::{self, KnownHosts, Verdict};
use super::{Cmd, HostError, Output, Remote, Source, Tunnel, WriteOpts, WriteOutcome, quote};

const EAGAIN: i32 = -37; // LIBSSH2_ERROR_EAGAIN
const ETIMEOUT: i32 = -9; // LIBSSH2_ERROR_TIMEOUT
/// Longest single poll: other threads may drain the socket for our channel meanwhile.
const POLL_SLICE: Duration = Duration::from_millis(50);
const CHUNK: usize = 128 * 1024;

/// How to connect: timeouts, host key policy, agent.
#[derive(Clone)]
pub struct ConnectOptions {
    /// TCP connect, SSH handshake and authentication, each.
    pub connect_timeout: Duration,
    /// Default limit for a command's whole run ([`Cmd::timeout`] overrides it).
    pub command_timeout: Duration,
    /// Longest silence tolerated while a file is transferred.
    pub io_timeout: Duration,
    /// SSH keepalive interval.
    pub keepalive: Duration,
    /// Record unknown host keys instead of refusing them. A changed key is refused regardless.
    pub accept_new_host_keys: bool,
    pub known_hosts: Arc<KnownHosts>,
    /// The ssh-agent socket; `None` uses `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
}

impl ConnectOptions {
    pub fn new(known_hosts: Arc<KnownHosts>) -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(300),
            io_timeout: Duration::from_secs(60),
            keepalive: Duration::from_secs(15),
            accept_new_host_keys: false,
            known_hosts,
            agent_socket: None,
        }
    }
}

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name used in messages (the cluster file's host name).
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// A private key file; the agent (and the usual `~/.ssh/id_*` files) otherwise.
    pub key: Option<PathBuf>,
}

impl Target {
    pub fn from_host(h: &crate::config::Host) -> Target {
        Target { name: h.name.clone(), address: h.address.to_string(), port: h.ssh.port, user: h.ssh.user.clone(), key: h.ssh.key.clone() }
    }
    pub fn from_bastion(b: &crate::config::Bastion) -> Target {
        Target { name: format!("bastion {}", b.address), address: b.address.clone(), port: b.ssh.port, user: b.ssh.user.clone(), key: b.ssh.key.clone() }
    }
}

/// What the host key check found, for `kbin hosts scan`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScannedKey {
    pub host: String,
    pub address: String,
    pub port: u16,
    pub key_type: String,
    pub fingerprint: String,
    /// `known`, `new` (recorded now), `unknown` (not recorded) or `changed`.
    pub status: String,
}

/// A connected, authenticated host.
pub struct SshHost {
    name: String,
    user: String,
    sess: Session,
    fd: RawFd,
    opts: ConnectOptions,
    sent: AtomicU64,
    /// Serialises libssh2 calls between threads sharing this connection (see [`SshHost::io`]).
    lock: Arc<Mutex<()>>,
    /// One command (run, read, hash, write) at a time on this connection. Threads sharing a
    /// connection interleaving their channels' I/O lost or mixed output now and then (the test
    /// `one_connection_serves_several_threads_at_once` failed about one run in six); kbin's
    /// parallelism is across hosts, so whole operations are serialised per connection.
    /// Tunnels are not held by it.
    op: Mutex<()>,
    /// The pump thread of a bastion tunnel; it ends when `sess` (holding our end) is dropped.
    bridge: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SshHost({}@{})", self.user, self.name)
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.sess.set_blocking(true);
        self.sess.set_timeout(1000);
        let _ = self.sess.disconnect(None, "kbin done", None);
        // dropping the session closes our end of a bastion bridge; the pump then ends
        if let Some(h) = self.bridge.take() {
            let sess = std::mem::replace(&mut self.sess, Session::new().expect("libssh2 session"));
            drop(sess);
            let _ = h.join();
        }
    }
}

fn ssh_err(host: &str, op: &str, e: ssh2::Error) -> HostError {
    if e.code() == ErrorCode::Session(ETIMEOUT) {
        return HostError::Timeout { host: host.into(), what: op.into(), after: Duration::ZERO };
    }
    HostError::Ssh { host: host.into(), op: op.into(), source: e }
}

/// Connect and authenticate, through `bastion` if given. Both host keys are verified.
pub fn connect(target: &Target, bastion: Option<&Target>, opts: &ConnectOptions) -> Result<SshHost, HostError> {
    let Some(b) = bastion else {
        let tcp = tcp_connect(target, opts)?;
        let fd = tcp.as_raw_fd();
        let mut sess = Session::new().map_err(|e| ssh_err(&target.name, "session setup", e))?;
        sess.set_tcp_stream(tcp);
        establish(&mut sess, target, opts, true)?;
        return Ok(SshHost::ready(target, sess, fd, opts, None));
    };
    let wrap = |e: HostError| HostError::Bastion { host: target.name.clone(), bastion: b.address.clone(), source: Box::new(e) };
    // the bastion itself: verified and authenticated like any host
    let jump = connect(b, None, opts).map_err(wrap)?;
    let deadline = Instant::now() + opts.connect_timeout;
    let ch = jump
        .again("tunnel to the host", deadline, true, || jump.sess.channel_direct_tcpip(&target.address, target.port, None))
        .map_err(|e| {
            wrap(HostError::Connect {
                host: target.name.clone(),
                addr: format!("{}:{}", target.address, target.port),
                source: io::Error::other(e.chain()),
            })
        })?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| HostError::Connect { host: target.name.clone(), addr: "socketpair".into(), source: e })?;
    let pump = bridge(jump, ch, theirs).map_err(|e| HostError::Connect { host: target.name.clone(), addr: "bridge".into(), source: e })?;
    let fd = ours.as_raw_fd();
    let mut sess = Session::new().map_err(|e| ssh_err(&target.name, "session setup", e))?;
    sess.set_tcp_stream(ours);
    match establish(&mut sess, target, opts, true) {
        Ok(()) => Ok(SshHost::ready(target, sess, fd, opts, Some(pump))),
        Err(e) => {
            drop(sess);
            let _ = pump.join();
            Err(e)
        }
    }
}

/// Handshake only (no login) and check the host key; record it when `record` is set and the key
/// is not known yet. A changed key is never recorded.
pub fn scan(target: &Target, bastion: Option<&Target>, opts: &ConnectOptions, record: bool) -> Result<ScannedKey, HostError> {
    let mut o = opts.clone();
    o.accept_new_host_keys = false;
    let probe = |sess: &mut Session| -> Result<ScannedKey, HostError> {
        sess.set_timeout(millis(o.connect_timeout));
        prefer_known_key_types(sess, target, &o);
        sess.handshake().map_err(|e| handshake_err(&target.name, o.connect_timeout, e))?;
        let (blob, _) = sess.host_key().ok_or_else(|| HostError::Invalid { host: target.name.clone(), message: "no host key after handshake".into() })?;
        let blob = blob.to_vec();
        let fp = known_hosts::fingerprint(&blob);
        let key_type = known_hosts::key_type_of(&blob).unwrap_or("unknown").to_string();
        let verdict = o.known_hosts.check(&target.address, target.port, &blob).map_err(|e| HostError::KnownHostsWrite {
            host: target.name.clone(),
            path: o.known_hosts.state_file().to_path_buf(),
            source: e,
        })?;
        let status = match verdict {
            Verdict::Known => "known",
            Verdict::Unknown if record => {
                o.known_hosts.record(&target.address, target.port, &blob).map_err(|e| HostError::KnownHostsWrite {
                    host: target.name.clone(),
                    path: o.known_hosts.state_file().to_path_buf(),
                    source: e,
                })?;
                "new"
            }
            Verdict::Unknown => "unknown",
            Verdict::Changed { .. } | Verdict::Revoked { .. } => "changed",
        };
        let _ = sess.disconnect(None, "kbin scan", None);
        Ok(ScannedKey { host: target.name.clone(), address: target.address.clone(), port: target.port, key_type, fingerprint: fp, status: status.into() })
    };
    match bastion {
        None => {
            let tcp = tcp_connect(target, &o)?;
            let mut sess = Session::new().map_err(|e| ssh_err(&target.name, "session setup", e))?;
            sess.set_tcp_stream(tcp);
            probe(&mut sess)
        }
        Some(b) => {
            let wrap = |e: HostError| HostError::Bastion { host: target.name.clone(), bastion: b.address.clone(), source: Box::new(e) };
            let jump = connect(b, None, opts).map_err(wrap)?;
            let deadline = Instant::now() + o.connect_timeout;
            let ch = jump.again("tunnel to the host", deadline, true, || jump.sess.channel_direct_tcpip(&target.address, target.port, None)).map_err(wrap)?;
            let (ours, theirs) = UnixStream::pair().map_err(|e| HostError::Connect { host: target.name.clone(), addr: "socketpair".into(), source: e })?;
            let pump = bridge(jump, ch, theirs).map_err(|e| HostError::Connect { host: target.name.clone(), addr: "bridge".into(), source: e })?;
            let mut sess = Session::new().map_err(|e| ssh_err(&target.name, "session setup", e))?;
            sess.set_tcp_stream(ours);
            let r = probe(&mut sess);
            drop(sess);
            let _ = pump.join();
            r
        }
    }
}

fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

fn tcp_connect(target: &Target, opts: &ConnectOptions) -> Result<TcpStream, HostError> {
    let addr_text = format!("{}:{}", target.address, target.port);
    let addrs: Vec<SocketAddr> = (target.address.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| HostError::Connect { host: target.name.clone(), addr: addr_text.clone(), source: e })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, opts.connect_timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                set_tcp_keepalive(&s, opts.keepalive);
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(HostError::Timeout { host: target.name.clone(), what: format!("connect to {addr_text}"), after: opts.connect_timeout });
            }
            Err(e) => last = e,
        }
    }
    Err(HostError::Connect { host: target.name.clone(), addr: addr_text, source: last })
}

/// TCP keepalives as a second line of defence against a peer that vanished without a FIN.
fn set_tcp_keepalive(s: &TcpStream, every: Duration) {
    let secs = every.as_secs().clamp(1, 3600) as libc::c_int;
    let fd = s.as_raw_fd();
    let one: libc::c_int = 1;
    let cnt: libc::c_int = 4;
    unsafe {
        let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &one as *const _ as *const libc::c_void, sz);
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &secs as *const _ as *const libc::c_void, sz);
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, &secs as *const _ as *const libc::c_void, sz);
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &cnt as *const _ as *const libc::c_void, sz);
    }
}

fn handshake_err(host: &str, after: Duration, e: ssh2::Error) -> HostError {
    if e.code() == ErrorCode::Session(ETIMEOUT) || e.code() == ErrorCode::Session(EAGAIN) {
        HostError::Timeout { host: host.into(), what: "handshake (the port accepted a connection but no SSH server answered)".into(), after }
    } else {
        HostError::Ssh { host: host.into(), op: "handshake".into(), source: e }
    }
}

/// Ask the server for a key type we already know for it, so a host with several keys presents
/// the one we can verify.
fn prefer_known_key_types(sess: &Session, target: &Target, opts: &ConnectOptions) {
    let known = opts.known_hosts.known_types(&target.address, target.port);
    if known.is_empty() {
        return;
    }
    let Ok(supported) = sess.supported_algs(MethodType::HostKey) else { return };
    fn algs_for(t: &str) -> Vec<&str> {
        match t {
            "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            other => vec![other],
        }
    }
    let mut pref: Vec<&str> = Vec::new();
    for t in &known {
        for a in algs_for(t) {
            if supported.contains(&a) && !pref.contains(&a) {
                pref.push(a);
            }
        }
    }
    for a in &supported {
        if !pref.contains(a) {
            pref.push(a);
        }
    }
    let _ = sess.method_pref(MethodType::HostKey, &pref.join(","));
}

/// Prefer AES-GCM (hardware AES, no separate MAC): the cheapest cipher for bulk uploads.
fn prefer_fast_ciphers(sess: &Session) {
    for m in [MethodType::CryptCs, MethodType::CryptSc] {
        let Ok(supported) = sess.supported_algs(m) else { continue };
        let mut pref: Vec<&str> = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"]
            .into_iter()
            .filter(|a| supported.contains(a))
            .collect();
        for a in &supported {
            if !pref.contains(a) {
                pref.push(a);
            }
        }
        let _ = sess.method_pref(m, &pref.join(","));
    }
}

/// Handshake, host key verification, authentication; leaves the session non-blocking.
fn establish(sess: &mut Session, target: &Target, opts: &ConnectOptions, auth: bool) -> Result<(), HostError> {
    sess.set_blocking(true);
    sess.set_timeout(millis(opts.connect_timeout));
    prefer_known_key_types(sess, target, opts);
    prefer_fast_ciphers(sess);
    sess.handshake().map_err(|e| handshake_err(&target.name, opts.connect_timeout, e))?;
    verify_host_key(sess, target, opts)?;
    if auth {
        authenticate(sess, target, opts)?;
    }
    sess.set_keepalive(true, opts.keepalive.as_secs().clamp(2, 3600) as u32);
    sess.set_timeout(0);
    sess.set_blocking(false);
    Ok(())
}

fn verify_host_key(sess: &Session, target: &Target, opts: &ConnectOptions) -> Result<(), HostError> {
    let (blob, _) = sess.host_key().ok_or_else(|| HostError::Invalid { host: target.name.clone(), message: "the server presented no host key".into() })?;
    let blob = blob.to_vec();
    let addr = known_hosts::host_name(&target.address, target.port);
    let kh = &opts.known_hosts;
    let write_err = |e: io::Error| HostError::KnownHostsWrite { host: target.name.clone(), path: kh.state_file().to_path_buf(), source: e };
    match kh.check(&target.address, target.port, &blob).map_err(write_err)? {
        Verdict::Known => Ok(()),
        Verdict::Unknown if opts.accept_new_host_keys => kh.record(&target.address, target.port, &blob).map_err(write_err),
        Verdict::Unknown => Err(HostError::UnknownHostKey {
            host: target.name.clone(),
            addr,
            key_type: known_hosts::key_type_of(&blob).unwrap_or("unknown").into(),
            fingerprint: known_hosts::fingerprint(&blob),
        }),
        Verdict::Changed { expected, known_in } => Err(HostError::HostKeyChanged {
            host: target.name.clone(),
            addr,
            presented: format!("{} {}", known_hosts::key_type_of(&blob).unwrap_or("unknown"), known_hosts::fingerprint(&blob)),
            expected,
            known_in,
        }),
        Verdict::Revoked { file } => Err(HostError::HostKeyRevoked { host: target.name.clone(), addr, fingerprint: known_hosts::fingerprint(&blob), file }),
    }
}

fn authenticate(sess: &Session, target: &Target, opts: &ConnectOptions) -> Result<(), HostError> {
    let user = &target.user;
    let mut tried = Vec::new();
    if let Some(key) = &target.key {
        match sess.userauth_pubkey_file(user, None, key, None) {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push(format!("key {}", key.display())),
            Err(e) if e.code() == ErrorCode::Session(ETIMEOUT) => return Err(ssh_err(&target.name, "authentication", e)),
            Err(e) => tried.push(format!("key {} ({})", key.display(), e.message())),
        }
    }
    // the agent
    if let Ok(mut agent) = sess.agent() {
        let sock = opts.agent_socket.clone().or_else(|| std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from));
        if let Some(sock) = sock {
            let _ = agent.set_identity_path(&sock);
            if agent.connect().is_ok() && agent.list_identities().is_ok() {
                let ids = agent.identities().unwrap_or_default();
                for id in &ids {
                    if agent.userauth(user, id).is_ok() && sess.authenticated() {
                        let _ = agent.disconnect();
                        return Ok(());
                    }
                }
                tried.push(format!("ssh-agent ({} key{})", ids.len(), if ids.len() == 1 { "" } else { "s" }));
                let _ = agent.disconnect();
            } else {
                tried.push(format!("ssh-agent at {} (not reachable)", sock.display()));
            }
        }
    }
    if let (None, Some(home)) = (&target.key, dirs::home_dir()) {
        for f in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let p = home.join(".ssh").join(f);
            if p.exists() {
                if sess.userauth_pubkey_file(user, None, &p, None).is_ok() && sess.authenticated() {
                    return Ok(());
                }
                tried.push(format!("key {}", p.display()));
            }
        }
    }
    Err(HostError::Auth { host: target.name.clone(), user: user.clone(), tried })
}

/// Copy bytes between a bastion channel and one end of a local socket pair until either side
/// closes. Owns the bastion connection.
fn bridge(jump: SshHost, mut ch: Channel, local: UnixStream) -> io::Result<JoinHandle<()>> {
    local.set_nonblocking(true)?;
    std::thread::Builder::new().name(format!("kbin-bastion-{}", jump.name)).spawn(move || {
        let mut local = local;
        let mut down: Vec<u8> = Vec::new(); // bastion -> local
        let mut up: Vec<u8> = Vec::new(); // local -> bastion
        let mut buf = vec![0u8; 64 * 1024];
        let (mut remote_eof, mut local_eof) = (false, false);
        loop {
            let mut moved = false;
            if down.is_empty() && !remote_eof {
                match ch.read(&mut buf) {
                    Ok(0) if ch.eof() => remote_eof = true,
                    Ok(0) => {}
                    Ok(n) => {
                        down.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => remote_eof = true,
                }
            }
            if !down.is_empty() {
                match local.write(&down) {
                    Ok(n) => {
                        down.drain(..n);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            } else if remote_eof {
                break; // the target closed the connection
            }
            if up.is_empty() && !local_eof {
                match local.read(&mut buf) {
                    Ok(0) => local_eof = true,
                    Ok(n) => {
                        up.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => local_eof = true,
                }
            }
            if !up.is_empty() {
                match ch.write(&up) {
                    Ok(n) => {
                        up.drain(..n);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            } else if local_eof {
                break; // our session is gone
            }
            if !moved {
                let _ = jump.sess.keepalive_send();
                let mut fds = [
                    libc::pollfd { fd: jump.fd, events: directions(&jump.sess), revents: 0 },
                    libc::pollfd { fd: local.as_raw_fd(), events: libc::POLLIN | if down.is_empty() { 0 } else { libc::POLLOUT }, revents: 0 },
                ];
                unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_SLICE.as_millis() as i32) };
            }
        }
        let _ = ch.close();
        drop(ch);
        drop(jump);
    })
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(EAGAIN)
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Poll the session's socket in the direction libssh2 waits for, one slice at most.
fn poll_socket(sess: &Session, fd: RawFd, until: Instant) {
    let left = until.saturating_duration_since(Instant::now()).min(POLL_SLICE);
    let mut fds = [libc::pollfd { fd, events: directions(sess), revents: 0 }];
    unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis().max(1) as i32) };
}

/// Make one libssh2 call with the connection's lock held. Several threads may use one connection
/// (a command and a tunnel, say), but libssh2 keeps a packet it could only partly send in
/// session-wide state: if the call stops there (EAGAIN while blocked outbound), another channel's
/// call would finish that packet as if it were its own and lose its data. So such a call is
/// repeated, lock held, until the packet is out; waiting for the peer's data (inbound) releases
/// the lock.
fn locked_call<T, E>(sess: &Session, fd: RawFd, m: &Mutex<()>, limit: Duration, again: fn(&E) -> bool, f: &mut dyn FnMut() -> Result<T, E>) -> Result<T, E> {
    let _g = lock(m);
    let until = Instant::now() + limit;
    loop {
        let r = f();
        match &r {
            Err(e) if again(e) && sess.block_directions() == BlockDirections::Outbound && Instant::now() < until => {
                let mut fds = [libc::pollfd { fd, events: libc::POLLOUT, revents: 0 }];
                unsafe { libc::poll(fds.as_mut_ptr(), 1, POLL_SLICE.as_millis() as i32) };
            }
            _ => return r,
        }
    }
}

fn directions(sess: &Session) -> i16 {
    match sess.block_directions() {
        BlockDirections::Outbound => libc::POLLOUT,
        BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        _ => libc::POLLIN,
    }
}

/// When an operation gives up waiting.
#[derive(Clone, Copy)]
enum Deadline {
    /// At this instant, whatever happens (a command's run time).
    At(Instant, Duration),
    /// After this much silence (a transfer: any progress pushes it back).
    Idle(Duration),
}

/// What to feed a command's stdin.
enum Feed<'a> {
    None,
    Now(Box<dyn Read + Send + 'a>),
    /// Start sending only once stdout's first line is `send` (kbin's write protocol).
    OnSend(Box<dyn Read + Send + 'a>),
}

impl SshHost {
    fn ready(target: &Target, sess: Session, fd: RawFd, opts: &ConnectOptions, bridge: Option<JoinHandle<()>>) -> SshHost {
        SshHost { name: target.name.clone(), user: target.user.clone(), sess, fd, opts: opts.clone(), sent: AtomicU64::new(0), lock: Arc::default(), op: Mutex::new(()), bridge }
    }

    /// The negotiated client-to-server cipher (for diagnostics and benchmarks).
    pub fn cipher(&self) -> Option<String> {
        self.sess.methods(MethodType::CryptCs).map(str::to_string)
    }

    /// Content bytes sent over this connection so far (file uploads and stdin).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn is_root(&self) -> bool {
        self.user == "root"
    }

    /// Wait until the socket may make progress (at most one poll slice), sending keepalives.
    fn wait(&self, until: Instant) {
        // a keepalive that is only partly sent must be finished under the lock like any packet
        let _ = locked_call(&self.sess, self.fd, &self.lock, self.opts.io_timeout, is_eagain, &mut || self.sess.keepalive_send());
        poll_socket(&self.sess, self.fd, until);
    }

    /// One libssh2 call on a channel, under the connection's lock (see [`locked_call`]).
    fn io<T>(&self, mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        locked_call(&self.sess, self.fd, &self.lock, self.opts.io_timeout, would_block, &mut f)
    }

    /// Retry a libssh2 call that returned EAGAIN until it completes or `deadline` passes. With
    /// `hold`, the lock is kept for the whole operation: opening a channel keeps its progress in
    /// session-wide state that another thread's channel open would take over, and a channel request
    /// that reads the reply meant for another channel's request fails.
    fn again<T>(&self, op: &str, deadline: Instant, hold: bool, mut f: impl FnMut() -> Result<T, ssh2::Error>) -> Result<T, HostError> {
        let start = Instant::now();
        let held = if hold { Some(lock(&self.lock)) } else { None };
        loop {
            let r = if held.is_some() { f() } else { locked_call(&self.sess, self.fd, &self.lock, self.opts.io_timeout, is_eagain, &mut f) };
            match r {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == ErrorCode::Session(EAGAIN) => {
                    if Instant::now() >= deadline {
                        return Err(HostError::Timeout { host: self.name.clone(), what: op.into(), after: start.elapsed() });
                    }
                    if held.is_some() {
                        let _ = self.sess.keepalive_send();
                        poll_socket(&self.sess, self.fd, deadline);
                    } else {
                        self.wait(deadline);
                    }
                }
                Err(e) => return Err(ssh_err(&self.name, op, e)),
            }
        }
    }

    /// Run one command line: drain stdout and stderr together, feed stdin, honour the deadline.
    fn exec(&self, line: &str, what: &str, mut feed: Feed<'_>, deadline: Deadline, progress: Option<&(dyn Fn(u64) + Sync)>) -> Result<(Output, u64), HostError> {
        let started = Instant::now();
        let mut last_move = started;
        let limit = |last: Instant| match deadline {
            Deadline::At(t, _) => t,
            Deadline::Idle(d) => last + d,
        };
        let timeout_err = |what: &str| HostError::Timeout {
            host: self.name.clone(),
            what: what.to_string(),
            after: match deadline {
                Deadline::At(_, d) => d,
                Deadline::Idle(d) => d,
            },
        };
        let setup_deadline = limit(last_move);
        let mut ch = Held::new(self.again(what, setup_deadline, true, || self.sess.channel_session())?, &self.lock);
        // the exec request is held too: libssh2 fails a request that reads another channel's reply
        self.again(what, setup_deadline, true, || ch.exec(line))?;

        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (mut out_done, mut err_done) = (false, false);
        let mut pending: Vec<u8> = Vec::new();
        let mut pos = 0usize;
        let mut sent = 0u64;
        let mut input_done = matches!(feed, Feed::None);
        let mut eof_sent = input_done;
        let mut gate_open = matches!(feed, Feed::Now(_));
        let mut buf = vec![0u8; CHUNK];
        if matches!(feed, Feed::None) {
            self.again(what, setup_deadline, false, || ch.send_eof())?;
        }
        loop {
            let mut moved = false;
            // stdin
            if !input_done && gate_open {
                if pos == pending.len() {
                    pending.clear();
                    pos = 0;
                    let reader = match &mut feed {
                        Feed::Now(r) | Feed::OnSend(r) => r,
                        Feed::None => unreachable!(),
                    };
                    pending.resize(CHUNK, 0);
                    let n = reader.read(&mut pending).map_err(|e| HostError::Local { host: self.name.clone(), path: PathBuf::from("(upload source)"), source: e })?;
                    pending.truncate(n);
                    if n == 0 {
                        input_done = true;
                    }
                }
                if pos < pending.len() {
                    match self.io(|| ch.write(&pending[pos..])) {
                        Ok(n) => {
                            pos += n;
                            sent += n as u64;
                            self.sent.fetch_add(n as u64, Ordering::Relaxed);
                            if let Some(p) = progress {
                                p(sent);
                            }
                            moved = n > 0;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            if self.io(|| Ok(ch.eof())).unwrap_or(true) {
                                // the command stopped reading and exited: its status tells why
                                input_done = true;
                                eof_sent = true;
                            } else {
                                return Err(HostError::Disconnected { host: self.name.clone(), op: what.into(), source: e });
                            }
                        }
                    }
                }
            }
            if input_done && !eof_sent {
                match self.io(|| ch.send_eof().map_err(io::Error::from)) {
                    Ok(()) => eof_sent = true,
                    Err(e) if would_block(&e) => {}
                    Err(_) => eof_sent = true, // the channel is closing anyway
                }
            }
            // stdout, stderr
            if !out_done {
                match self.io(|| ch.read(&mut buf)) {
                    Ok(0) => out_done = self.io(|| Ok(ch.eof())).unwrap_or(true),
                    Ok(n) => {
                        stdout.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(HostError::Disconnected { host: self.name.clone(), op: what.into(), source: e }),
                }
            }
            if !err_done {
                match self.io(|| ch.stderr().read(&mut buf)) {
                    Ok(0) => err_done = self.io(|| Ok(ch.eof())).unwrap_or(true),
                    Ok(n) => {
                        stderr.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(HostError::Disconnected { host: self.name.clone(), op: what.into(), source: e }),
                }
            }
            if !gate_open && !input_done {
                if let Some(nl) = stdout.iter().position(|b| *b == b'\n') {
                    if &stdout[..nl] == b"send" {
                        gate_open = true;
                    } else {
                        input_done = true; // nothing to send: `same` or `meta`
                    }
                    moved = true;
                } else if out_done {
                    input_done = true;
                }
            }
            if out_done && err_done {
                break;
            }
            let now = Instant::now();
            if moved {
                last_move = now;
                continue;
            }
            if now >= limit(last_move) {
                return Err(timeout_err(what));
            }
            self.wait(limit(last_move));
        }
        let close_deadline = Instant::now() + self.opts.io_timeout;
        self.again(what, close_deadline, false, || ch.close())?;
        self.again(what, close_deadline, false, || ch.wait_close())?;
        let (status, signal) = {
            let _g = lock(&self.lock);
            (ch.exit_status().unwrap_or(255), ch.exit_signal().ok().and_then(|s| s.exit_signal))
        };
        let out = Output { status: if signal.is_some() { 255 } else { status }, signal, stdout, stderr };
        Ok((out, sent))
    }

    /// A sudo problem hidden in a finished command's output, as its own error.
    fn sudo_problem(&self, sudo: bool, out: &Output) -> Option<HostError> {
        if !sudo || self.is_root() || out.success() {
            return None;
        }
        let err = out.stderr_str();
        let first = err.lines().find(|l| l.starts_with("sudo: ") || l.contains(": sudo: ")).unwrap_or("");
        if first.contains("a password is required") {
            return Some(HostError::SudoPassword { host: self.name.clone(), user: self.user.clone() });
        }
        if first.contains("a terminal is required") || first.contains("must have a tty") {
            return Some(HostError::Sudo {
                host: self.name.clone(),
                user: self.user.clone(),
                message: format!("{} (remove `Defaults requiretty` from sudoers for this user)", first.trim()),
            });
        }
        if out.status == 127 && err.contains("sudo") && err.contains("not found") {
            return Some(HostError::Sudo { host: self.name.clone(), user: self.user.clone(), message: "sudo is not installed".into() });
        }
        if first.contains("not in the sudoers file") || first.contains("not allowed to") {
            return Some(HostError::Sudo { host: self.name.clone(), user: self.user.clone(), message: first.trim().to_string() });
        }
        None
    }

    fn run_line(&self, cmd: &Cmd, feed: Feed<'_>, deadline: Deadline, progress: Option<&(dyn Fn(u64) + Sync)>) -> Result<(Output, u64), HostError> {
        let line = cmd.remote_line(self.is_root()).map_err(|m| HostError::Invalid { host: self.name.clone(), message: m })?;
        let what = format!("`{}`", cmd.display());
        let op = self.op.lock().unwrap_or_else(|e| e.into_inner());
        let (out, sent) = self.exec(&line, &what, feed, deadline, progress)?;
        drop(op);
        if let Some(e) = self.sudo_problem(cmd.sudo, &out) {
            return Err(e);
        }
        Ok((out, sent))
    }
}

/// The remote half of [`Remote::write_file`]. A constant: arguments arrive as `$1`..`$6`, content
/// on stdin. It answers `same` (nothing to do), `meta` (mode/owner fixed in place) or `send`
/// (then reads the content into a temp file in the same directory, verifies its digest, sets
/// owner and mode, fsyncs, keeps a backup if asked and renames over the target).
pub(crate) const WRITE_SCRIPT: &str = r#"set -eu
dest=$1 mode=$2 owner=$3 want=$4 backup=$5 size=$6
sha() {
  # openssl uses the CPU's SHA instructions (several times faster than sha256sum on big files);
  # sha256sum starts faster, so small files use it
  h=
  if [ "$2" -gt 1048576 ]; then h=$(openssl dgst -sha256 -r < "$1" 2>/dev/null) || h=; fi
  h=${h%% *}
  case "$h" in
    ????????????????????????????????????????????????????????????????) ;;
    *) h=$(sha256sum < "$1") && h=${h%% *} ;;
  esac
  echo "$h"
}
if [ -f "$dest" ]; then
  cur=$(stat -c '%s %a %U:%G' -- "$dest")
  cursize=${cur%% *} cur=${cur#* }
  curmode=${cur%% *} curown=${cur#* }
  if [ "$cursize" = "$size" ] && [ "$(sha "$dest" "$size")" = "$want" ]; then
    fix=
    [ "$curmode" = "$mode" ] || fix=1
    case "$owner" in
      "") ;;
      *:*) [ "$curown" = "$owner" ] || fix=1 ;;
      *) [ "${curown%%:*}" = "$owner" ] || fix=1 ;;
    esac
    if [ -z "$fix" ]; then echo same; exit 0; fi
    [ -z "$owner" ] || chown -- "$owner" "$dest"
    chmod -- "$mode" "$dest"
    echo meta
    exit 0
  fi
fi
dir=$(dirname -- "$dest") base=$(basename -- "$dest")
mkdir -p -- "$dir"
# temp files of pushes whose shell was killed (its pid is in the name and gone); older kbins
# named them without a pid
for old in "$dir/.$base".kbin-*; do
  [ -f "$old" ] || continue
  rest=${old##*.kbin-}
  case $rest in
    *-*) pid=${rest%%-*}; case $pid in ''|*[!0-9]*) continue ;; esac; [ -d "/proc/$pid" ] && continue ;;
    ??????) ;;
    *) continue ;;
  esac
  rm -f -- "$old"
done
tmp=$(mktemp "$dir/.$base.kbin-$$-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
echo send
cat > "$tmp"
got=$(sha "$tmp" "$size")
if [ "$got" != "$want" ]; then
  echo "received $(wc -c < "$tmp") bytes with sha256 $got, expected $want: the upload was cut short or the source changed" >&2
  exit 3
fi
[ -z "$owner" ] || chown -- "$owner" "$tmp"
chmod -- "$mode" "$tmp"
sync -- "$tmp"
if [ -n "$backup" ] && [ -f "$dest" ]; then
  ln -f -- "$dest" "$backup" 2>/dev/null || cp -p -- "$dest" "$backup"
  echo backup
fi
mv -f -- "$tmp" "$dest"
trap - EXIT HUP INT TERM PIPE
sync -- "$dir" 2>/dev/null || true
echo done
"#;

/// `sh -c` helpers: small constant scripts, arguments as positional parameters.
const READ_SCRIPT: &str = r#"[ -e "$1" ] || exit 3; exec cat -- "$1""#;
const SHA_SCRIPT: &str = r#"[ -e "$1" ] || exit 3
h=$(openssl dgst -sha256 -r < "$1" 2>/dev/null) || h=
h=${h%% *}
case "$h" in
  ????????????????????????????????????????????????????????????????) echo "$h" ;;
  *) h=$(sha256sum < "$1") && echo "${h%% *}" ;;
esac"#;

/// SHA_SCRIPT for every argument: one line each, the digest or `-` for a missing file.
const SHA_MANY_SCRIPT: &str = r#"for f in "$@"; do
  if [ ! -e "$f" ]; then echo -; continue; fi
  h=$(openssl dgst -sha256 -r < "$f" 2>/dev/null) || h=
  h=${h%% *}
  case "$h" in
    ????????????????????????????????????????????????????????????????) echo "$h" ;;
    *) h=$(sha256sum < "$f") && echo "${h%% *}" || exit 4 ;;
  esac
done"#;

/// `<path>.kbin-backup-<UTC timestamp>`.
pub(crate) fn backup_name(path: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{path}.kbin-backup-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

pub(crate) fn check_path(host: &str, path: &str) -> Result<(), HostError> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains('\0') || path.split('/').any(|s| s == "..") {
        return Err(HostError::Invalid { host: host.into(), message: format!("{path:?} is not an absolute file path") });
    }
    Ok(())
}

impl Remote for SshHost {
    fn name(&self) -> &str {
        &self.name
    }
    fn user(&self) -> &str {
        &self.user
    }

    fn run(&self, cmd: &Cmd) -> Result<Output, HostError> {
        let limit = cmd.timeout.unwrap_or(self.opts.command_timeout);
        let feed = match &cmd.stdin {
            Some(b) => Feed::Now(Box::new(io::Cursor::new(b.as_slice()))),
            None => Feed::None,
        };
        Ok(self.run_line(cmd, feed, Deadline::At(Instant::now() + limit, limit), None)?.0)
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, HostError> {
        check_path(&self.name, path)?;
        let cmd = Cmd::new(["sh", "-c", READ_SCRIPT, "kbin-read", path]).sudo();
        let (out, _) = self.run_line(&cmd, Feed::None, Deadline::Idle(self.opts.io_timeout), None)?;
        match out.status {
            0 => Ok(Some(out.stdout)),
            3 => Ok(None),
            s => Err(HostError::Command { host: self.name.clone(), command: format!("cat {}", quote::quote(path)), status: s, stderr: out.stderr_str().trim().into() }),
        }
    }

    fn sha256(&self, path: &str) -> Result<Option<String>, HostError> {
        check_path(&self.name, path)?;
        let cmd = Cmd::new(["sh", "-c", SHA_SCRIPT, "kbin-sha256", path]).sudo();
        let (out, _) = self.run_line(&cmd, Feed::None, Deadline::Idle(self.opts.io_timeout), None)?;
        match out.status {
            0 => {
                let s = out.stdout_str().trim().to_string();
                if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(Some(s))
                } else {
                    Err(HostError::Invalid { host: self.name.clone(), message: format!("sha256sum printed {s:?}") })
                }
            }
            3 => Ok(None),
            s => Err(HostError::Command { host: self.name.clone(), command: format!("sha256sum {}", quote::quote(path)), status: s, stderr: out.stderr_str().trim().into() }),
        }
    }

    fn sha256_many(&self, paths: &[&str]) -> Result<Vec<Option<String>>, HostError> {
        for p in paths {
            check_path(&self.name, p)?;
        }
        let mut argv = vec!["sh", "-c", SHA_MANY_SCRIPT, "kbin-sha256"];
        argv.extend_from_slice(paths);
        let cmd = Cmd::new(argv).sudo();
        let (out, _) = self.run_line(&cmd, Feed::None, Deadline::Idle(self.opts.io_timeout), None)?;
        let lines: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
        if out.status != 0 || lines.len() != paths.len() {
            return Err(HostError::Command { host: self.name.clone(), command: format!("sha256sum of {} files", paths.len()), status: out.status, stderr: out.stderr_str().trim().into() });
        }
        lines
            .into_iter()
            .map(|s| match s.as_str() {
                "-" => Ok(None),
                h if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Some(h.to_string())),
                other => Err(HostError::Invalid { host: self.name.clone(), message: format!("sha256sum printed {other:?}") }),
            })
            .collect()
    }

    fn write_file(&self, path: &str, src: &Source, opts: &WriteOpts<'_>) -> Result<WriteOutcome, HostError> {
        check_path(&self.name, path)?;
        let backup = if opts.backup { backup_name(path) } else { String::new() };
        let mut cmd = Cmd::new([
            "sh".to_string(),
            "-c".into(),
            WRITE_SCRIPT.into(),
            "kbin-write".into(),
            path.into(),
            format!("{:o}", opts.mode),
            opts.owner.clone().unwrap_or_default(),
            src.sha256().into(),
            backup.clone(),
            src.len().to_string(),
        ]);
        cmd.sudo = opts.sudo;
        let reader = src.open().map_err(|e| HostError::Local {
            host: self.name.clone(),
            path: src.local_path().map(|p| p.to_path_buf()).unwrap_or_default(),
            source: e,
        })?;
        let (out, sent) = self.run_line(&cmd, Feed::OnSend(reader), Deadline::Idle(self.opts.io_timeout), opts.progress)?;
        let text = out.stdout_str();
        if !out.success() {
            return Err(HostError::Write { host: self.name.clone(), path: path.into(), message: out.stderr_str().trim().to_string() });
        }
        let first = text.lines().next().unwrap_or("");
        match first {
            "same" => Ok(WriteOutcome { changed: false, bytes_sent: 0, backup: None }),
            "meta" => Ok(WriteOutcome { changed: true, bytes_sent: 0, backup: None }),
            "send" if text.lines().any(|l| l == "done") => Ok(WriteOutcome {
                changed: true,
                bytes_sent: sent,
                backup: text.lines().any(|l| l == "backup").then_some(backup),
            }),
            _ => Err(HostError::Write { host: self.name.clone(), path: path.into(), message: format!("unexpected answer {text:?}") }),
        }
    }

    fn open_tcp(&self, addr: &str, port: u16) -> Result<Box<dyn Tunnel>, HostError> {
        let deadline = Instant::now() + self.opts.connect_timeout;
        let op = format!("open a tunnel to {addr}:{port}");
        let ch = Held::new(self.again(&op, deadline, true, || self.sess.channel_direct_tcpip(addr, port, None))?, &self.lock);
        Ok(Box::new(TunnelStream { ch, sess: self.sess.clone(), fd: self.fd, io_timeout: self.opts.io_timeout }))
    }
}

/// A channel whose every use, its end included, takes the connection's lock.
struct Held {
    ch: Option<Channel>,
    lock: Arc<Mutex<()>>,
}

impl Held {
    fn new(ch: Channel, lock: &Arc<Mutex<()>>) -> Held {
        Held { ch: Some(ch), lock: lock.clone() }
    }
}

impl std::ops::Deref for Held {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        self.ch.as_ref().expect("channel present until drop")
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Channel {
        self.ch.as_mut().expect("channel present until drop")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _g = lock(&self.lock);
        drop(self.ch.take());
    }
}

/// A direct-tcpip channel as a blocking `Read + Write` (the session itself is non-blocking).
struct TunnelStream {
    ch: Held,
    sess: Session,
    fd: RawFd,
    io_timeout: Duration,
}

impl TunnelStream {
    fn wait(&self, until: Instant) -> io::Result<()> {
        if Instant::now() >= until {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel timed out"));
        }
        let _ = locked_call(&self.sess, self.fd, &self.ch.lock, self.io_timeout, is_eagain, &mut || self.sess.keepalive_send());
        poll_socket(&self.sess, self.fd, until);
        Ok(())
    }
    fn io<T>(&mut self, mut f: impl FnMut(&mut Channel) -> io::Result<T>) -> io::Result<T> {
        let lock = self.ch.lock.clone();
        let ch = &mut *self.ch;
        locked_call(&self.sess, self.fd, &lock, self.io_timeout, would_block, &mut || f(ch))
    }
}

impl Read for TunnelStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let until = Instant::now() + self.io_timeout;
        loop {
            match self.io(|ch| ch.read(buf)) {
                Ok(0) if !self.io(|ch| Ok(ch.eof()))? && !buf.is_empty() => self.wait(until)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(until)?,
                r => return r,
            }
        }
    }
}

impl Write for TunnelStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let until = Instant::now() + self.io_timeout;
        loop {
            match self.io(|ch| ch.write(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(until)?,
                r => return r,
            }
        }
    }
    /// Nothing to do: `write` hands every byte to libssh2, which sends it. Never call the
    /// channel's own `flush`: `libssh2_channel_flush` *discards* the data received but not yet
    /// read, so a TLS client flushing its request lost the start of the answer now and then
    /// ("cannot decrypt peer's message").
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        let m = self.ch.lock.clone();
        let _g = lock(&m);
        let _ = self.ch.send_eof();
        let _ = self.ch.close();
    }
}

impl ConnectOptions {
    /// Options for a cluster: its known_hosts files and its `[ssh]` timeouts.
    pub fn for_cluster(c: &crate::config::Cluster, accept_new_host_keys: bool) -> ConnectOptions {
        let mut o = ConnectOptions::new(Arc::new(KnownHosts::for_state_dir(&c.state_dir)));
        o.connect_timeout = Duration::from_secs(c.ssh.connect_timeout_secs);
        o.command_timeout = Duration::from_secs(c.ssh.command_timeout_secs);
        o.accept_new_host_keys = accept_new_host_keys;
        o
    }
}

/// Connect to `hosts` of a cluster (through its bastion, if any) in parallel. `report` is called
/// as each host finishes connecting.
pub fn connect_hosts(
    c: &crate::config::Cluster,
    hosts: &[&crate::config::Host],
    opts: &ConnectOptions,
    concurrency: usize,
    cancel: &super::Cancel,
    report: &(dyn Fn(&str, &Result<SshHost, HostError>) + Sync),
) -> Vec<super::HostResult<SshHost>> {
    let bastion = c.bastion.as_ref().map(Target::from_bastion);
    super::parallel::for_each(hosts, |h| h.name.clone(), "connect", concurrency, cancel, |h| {
        let r = connect(&Target::from_host(h), bastion.as_ref(), opts);
        report(&h.name, &r);
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(ssh: &str) -> Result<crate::config::Cluster, crate::config::ConfigError> {
        let text = format!(
            "[cluster]\nname = \"t\"\n[apiserver]\nport = 6443\n[ssh]\n{ssh}\n[[hosts]]\nname = \"n1\"\naddress = \"10.0.0.1\"\nroles = [\"master\", \"etcd\"]\nssh_port = 2222\nssh_user = \"ops\"\n"
        );
        crate::config::parse(std::path::Path::new("/srv/c/cluster.toml"), &text)
    }

    #[test]
    fn options_come_from_the_ssh_table_and_known_hosts_from_the_state_dir() {
        let c = cluster("concurrency = 3\nconnect_timeout_secs = 4\ncommand_timeout_secs = 50\nkey = \"/keys/id\"").unwrap();
        assert_eq!(c.ssh.concurrency, 3);
        let o = ConnectOptions::for_cluster(&c, true);
        assert_eq!((o.connect_timeout, o.command_timeout, o.accept_new_host_keys), (Duration::from_secs(4), Duration::from_secs(50), true));
        assert_eq!(o.known_hosts.state_file(), std::path::Path::new("/srv/c/known_hosts"));
        let t = Target::from_host(&c.hosts[0]);
        assert_eq!((t.address.as_str(), t.port, t.user.as_str(), t.key.as_deref()), ("10.0.0.1", 2222, "ops", Some(std::path::Path::new("/keys/id"))));
        let d = cluster("").unwrap();
        assert_eq!((d.ssh.concurrency, d.ssh.connect_timeout_secs, d.ssh.command_timeout_secs), (10, 10, 300));
    }

    #[test]
    fn zero_concurrency_or_timeouts_are_config_errors() {
        let e = cluster("concurrency = 0\nconnect_timeout_secs = 0").unwrap_err();
        let text = e.details().join("\n");
        assert!(text.contains("ssh.concurrency") && text.contains("ssh.connect_timeout_secs"), "{text}");
    }

    #[test]
    fn remote_paths_must_be_absolute_files() {
        for bad in ["etc/x", "/etc/", "/etc/../x", "/a\0b", ""] {
            assert!(check_path("n1", bad).is_err(), "{bad:?}");
        }
        check_path("n1", "/etc/kubernetes/admin.conf").unwrap();
    }

    /// An upload cut by `kill -9` of the remote shell left its temp file for ever; the next
    /// push of that file removes the temp files of dead pushes (and of older kbins), not those
    /// of a push still running, nor other files'.
    #[test]
    fn upload_temp_file_of_a_killed_push_is_removed_by_the_next_push() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("kubelet");
        let mine = format!(".kubelet.kbin-{}-Ab3xYz", std::process::id());
        for (name, body) in [(".kubelet.kbin-Ab3xYz", "older kbin"), (".kubelet.kbin-999999999-Ab3xYz", "dead push"), (mine.as_str(), "running push"), (".kube-proxy.kbin-Ab3xYz", "another file's")] {
            std::fs::write(d.path().join(name), body).unwrap();
        }
        let body = b"new kubelet";
        let out = std::process::Command::new("sh")
            .args(["-c", WRITE_SCRIPT, "kbin-write", dest.to_str().unwrap(), "755", "", &super::super::sha256_hex(body), "", &body.len().to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(body)?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "send\ndone\n");
        let mut left: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [".kube-proxy.kbin-Ab3xYz".to_string(), mine, "kubelet".into()]);
        assert_eq!(std::fs::read(&dest).unwrap(), body);
    }
}
