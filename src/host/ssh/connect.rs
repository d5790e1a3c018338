//! Connecting: TCP, handshake, host key verification against known_hosts, authentication (agent,
//! key files), through a bastion when the cluster has one; and `kbin hosts scan`'s handshake.

use super::*;

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

/// A session, its socket, and the pump thread of a bastion tunnel.
type Opened = (Session, RawFd, Option<JoinHandle<()>>);

/// A session to `target` (not yet handshaken), over TCP or through `bastion`, whose own
/// connection is verified and authenticated like any host's: a pump thread then bridges the
/// bastion's channel to a socket pair, and the session runs over the other end. Returns the
/// session, its socket and the pump.
fn session_to(target: &Target, bastion: Option<&Target>, opts: &ConnectOptions) -> Result<Opened, HostError> {
    let mut sess = Session::new().map_err(|e| ssh_err(&target.name, "session setup", e))?;
    let Some(b) = bastion else {
        let tcp = tcp_connect(target, opts)?;
        let fd = tcp.as_raw_fd();
        sess.set_tcp_stream(tcp);
        return Ok((sess, fd, None));
    };
    let wrap = |e: HostError| HostError::Bastion { host: target.name.clone(), bastion: b.address.clone(), source: Box::new(e) };
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
    sess.set_tcp_stream(ours);
    Ok((sess, fd, Some(pump)))
}

/// Run `f` on a new session to `target`; when it fails, the session is closed (and a bastion's
/// pump ended) before the error is returned.
fn with_session<T>(target: &Target, bastion: Option<&Target>, opts: &ConnectOptions, f: impl FnOnce(&mut Session) -> Result<T, HostError>) -> Result<(Opened, T), HostError> {
    let (mut sess, fd, pump) = session_to(target, bastion, opts)?;
    match f(&mut sess) {
        Ok(t) => Ok(((sess, fd, pump), t)),
        Err(e) => {
            drop(sess);
            pump.map(JoinHandle::join);
            Err(e)
        }
    }
}

/// Connect and authenticate, through `bastion` if given. Both host keys are verified.
pub fn connect(target: &Target, bastion: Option<&Target>, opts: &ConnectOptions) -> Result<SshHost, HostError> {
    let ((sess, fd, pump), ()) = with_session(target, bastion, opts, |sess| establish(sess, target, opts, true))?;
    Ok(SshHost::ready(target, sess, fd, opts, pump))
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
        let write_err = |e: io::Error| HostError::KnownHostsWrite { host: target.name.clone(), path: o.known_hosts.state_file().to_path_buf(), source: e };
        let status = match o.known_hosts.check(&target.address, target.port, &blob).map_err(write_err)? {
            Verdict::Known => "known",
            Verdict::Unknown if record => {
                o.known_hosts.record(&target.address, target.port, &blob).map_err(write_err)?;
                "new"
            }
            Verdict::Unknown => "unknown",
            Verdict::Changed { .. } | Verdict::Revoked { .. } => "changed",
        };
        let _ = sess.disconnect(None, "kbin scan", None);
        Ok(ScannedKey { host: target.name.clone(), address: target.address.clone(), port: target.port, key_type, fingerprint: fp, status: status.into() })
    };
    let ((sess, _, pump), key) = with_session(target, bastion, &o, probe)?;
    drop(sess);
    pump.map(JoinHandle::join);
    Ok(key)
}

pub(super) fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

pub(super) fn tcp_connect(target: &Target, opts: &ConnectOptions) -> Result<TcpStream, HostError> {
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
pub(super) fn set_tcp_keepalive(s: &TcpStream, every: Duration) {
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

pub(super) fn handshake_err(host: &str, after: Duration, e: ssh2::Error) -> HostError {
    if e.code() == ErrorCode::Session(ETIMEOUT) || e.code() == ErrorCode::Session(EAGAIN) {
        HostError::Timeout { host: host.into(), what: "handshake (the port accepted a connection but no SSH server answered)".into(), after }
    } else {
        HostError::Ssh { host: host.into(), op: "handshake".into(), source: e }
    }
}

/// Ask the server for a key type we already know for it, so a host with several keys presents
/// the one we can verify.
pub(super) fn prefer_known_key_types(sess: &Session, target: &Target, opts: &ConnectOptions) {
    let known = opts.known_hosts.known_types(&target.address, target.port);
    if known.is_empty() {
        return;
    }
    let Ok(supported) = sess.supported_algs(MethodType::HostKey) else { return };
    pub(super) fn algs_for(t: &str) -> Vec<&str> {
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
pub(super) fn prefer_fast_ciphers(sess: &Session) {
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
pub(super) fn establish(sess: &mut Session, target: &Target, opts: &ConnectOptions, auth: bool) -> Result<(), HostError> {
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

pub(super) fn verify_host_key(sess: &Session, target: &Target, opts: &ConnectOptions) -> Result<(), HostError> {
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

pub(super) fn authenticate(sess: &Session, target: &Target, opts: &ConnectOptions) -> Result<(), HostError> {
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
                tried.push(format!("ssh-agent ({} key{})", ids.len(), crate::output::plural(ids.len())));
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
    cancel: &crate::host::Cancel,
    report: &(dyn Fn(&str, &Result<SshHost, HostError>) + Sync),
) -> Vec<crate::host::HostResult<SshHost>> {
    let bastion = c.bastion.as_ref().map(Target::from_bastion);
    crate::host::parallel::for_each(hosts, |h| h.name.clone(), "connect", concurrency, cancel, |h| {
        let r = connect(&Target::from_host(h), bastion.as_ref(), opts);
        report(&h.name, &r);
        r
    })
}
