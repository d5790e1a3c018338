//! The exec engine: one libssh2 channel per command on a non-blocking session, stdout and
//! stderr drained together, stdin streamed as the window allows, every wait bounded.

use super::*;

pub(super) fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(EAGAIN)
}

pub(super) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Poll the session's socket in the direction libssh2 waits for, one slice at most.
pub(super) fn poll_socket(sess: &Session, fd: RawFd, until: Instant) {
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
pub(super) fn locked_call<T, E>(sess: &Session, fd: RawFd, m: &Mutex<()>, limit: Duration, again: fn(&E) -> bool, f: &mut dyn FnMut() -> Result<T, E>) -> Result<T, E> {
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

pub(super) fn directions(sess: &Session) -> i16 {
    match sess.block_directions() {
        BlockDirections::Outbound => libc::POLLOUT,
        BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        _ => libc::POLLIN,
    }
}

/// When an operation gives up waiting.
#[derive(Clone, Copy)]
pub(super) enum Deadline {
    /// At this instant, whatever happens (a command's run time).
    At(Instant, Duration),
    /// After this much silence (a transfer: any progress pushes it back).
    Idle(Duration),
}

/// What to feed a command's stdin.
pub(super) enum Feed<'a> {
    None,
    Now(Box<dyn Read + Send + 'a>),
    /// Start sending only once stdout's first line is `send` (kbin's write protocol).
    OnSend(Box<dyn Read + Send + 'a>),
}

impl SshHost {
    pub(super) fn ready(target: &Target, sess: Session, fd: RawFd, opts: &ConnectOptions, bridge: Option<JoinHandle<()>>) -> SshHost {
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

    pub(super) fn is_root(&self) -> bool {
        self.user == "root"
    }

    /// Wait until the socket may make progress (at most one poll slice), sending keepalives.
    pub(super) fn wait(&self, until: Instant) {
        // a keepalive that is only partly sent must be finished under the lock like any packet
        let _ = locked_call(&self.sess, self.fd, &self.lock, self.opts.io_timeout, is_eagain, &mut || self.sess.keepalive_send());
        poll_socket(&self.sess, self.fd, until);
    }

    /// One libssh2 call on a channel, under the connection's lock (see [`locked_call`]).
    pub(super) fn io<T>(&self, mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        locked_call(&self.sess, self.fd, &self.lock, self.opts.io_timeout, would_block, &mut f)
    }

    /// Retry a libssh2 call that returned EAGAIN until it completes or `deadline` passes. With
    /// `hold`, the lock is kept for the whole operation: opening a channel keeps its progress in
    /// session-wide state that another thread's channel open would take over, and a channel request
    /// that reads the reply meant for another channel's request fails.
    pub(super) fn again<T>(&self, op: &str, deadline: Instant, hold: bool, mut f: impl FnMut() -> Result<T, ssh2::Error>) -> Result<T, HostError> {
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
    pub(super) fn exec(&self, line: &str, what: &str, mut feed: Feed<'_>, deadline: Deadline, progress: Option<&(dyn Fn(u64) + Sync)>) -> Result<(Output, u64), HostError> {
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
            // stdout (stream 0), stderr
            for (id, sink, done) in [(0, &mut stdout, &mut out_done), (ssh2::EXTENDED_DATA_STDERR, &mut stderr, &mut err_done)] {
                if *done {
                    continue;
                }
                match self.io(|| ch.stream(id).read(&mut buf)) {
                    Ok(0) => *done = self.io(|| Ok(ch.eof())).unwrap_or(true),
                    Ok(n) => {
                        sink.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
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
    pub(super) fn sudo_problem(&self, sudo: bool, out: &Output) -> Option<HostError> {
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

    pub(super) fn run_line(&self, cmd: &Cmd, feed: Feed<'_>, deadline: Deadline, progress: Option<&(dyn Fn(u64) + Sync)>) -> Result<(Output, u64), HostError> {
        self.run_as(cmd, &format!("`{}`", cmd.display()), feed, deadline, progress)
    }

    /// [`SshHost::run_line`] with `what` naming the operation in errors (`write /etc/x`).
    pub(super) fn run_as(&self, cmd: &Cmd, what: &str, feed: Feed<'_>, deadline: Deadline, progress: Option<&(dyn Fn(u64) + Sync)>) -> Result<(Output, u64), HostError> {
        let line = cmd.remote_line(self.is_root()).map_err(|m| HostError::Invalid { host: self.name.clone(), message: m })?;
        let op = self.op.lock().unwrap_or_else(|e| e.into_inner());
        let (out, sent) = self.exec(&line, what, feed, deadline, progress)?;
        drop(op);
        if let Some(e) = self.sudo_problem(cmd.sudo, &out) {
            return Err(e);
        }
        Ok((out, sent))
    }
}
