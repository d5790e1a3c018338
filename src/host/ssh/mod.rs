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
//!
//! By concern: [`connect`] (TCP, host keys, authentication, scan), `bastion` (the pump), `exec`
//! (the channel engine), `files` (the write/read/hash protocol), `tunnel` (TCP through SSH); this
//! file holds the connection itself and its [`Remote`] implementation.

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
use super::{Cmd, FileWrite, HostError, Output, Remote, Source, Tunnel, WriteOpts, WriteOutcome, quote};

mod bastion;
mod connect;
mod exec;
mod files;
mod tunnel;

use bastion::*;
use exec::*;
use tunnel::*;
pub use connect::{ConnectOptions, ScannedKey, Target, connect, connect_hosts, scan};
pub(crate) use files::{WRITE_SCRIPT, backup_name, check_path};
use files::*;

const EAGAIN: i32 = -37; // LIBSSH2_ERROR_EAGAIN
const ETIMEOUT: i32 = -9; // LIBSSH2_ERROR_TIMEOUT
/// Longest single poll: other threads may drain the socket for our channel meanwhile.
const POLL_SLICE: Duration = Duration::from_millis(50);
const CHUNK: usize = 128 * 1024;

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
        Ok(self.sha256_many(&[path])?.pop().flatten())
    }

    fn sha256_many(&self, paths: &[&str]) -> Result<Vec<Option<String>>, HostError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        for p in paths {
            check_path(&self.name, p)?;
        }
        let mut argv = vec!["sh", "-c", SHA_MANY_SCRIPT, "kbin-sha256", files::DIGEST_CACHE];
        argv.extend_from_slice(paths);
        let cmd = Cmd::new(argv).sudo();
        let (out, _) = self.run_line(&cmd, Feed::None, Deadline::Idle(self.opts.io_timeout), None)?;
        let lines: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
        if out.status != 0 || lines.len() != paths.len() {
            let command = if let [p] = paths { format!("sha256sum {}", quote::quote(p)) } else { format!("sha256sum of {} files", paths.len()) };
            return Err(HostError::Command { host: self.name.clone(), command, status: out.status, stderr: out.stderr_str().trim().into() });
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
        let (out, sent) = self.run_as(&cmd, &format!("write {path}"), Feed::OnSend(reader), Deadline::Idle(self.opts.io_timeout), opts.progress)?;
        let text = out.stdout_str();
        if !out.success() {
            return Err(HostError::Write { host: self.name.clone(), path: path.into(), message: out.stderr_str().trim().to_string() });
        }
        let first = text.lines().next().unwrap_or("");
        match first {
            "same" => Ok(WriteOutcome { changed: false, bytes_sent: 0, backup: None, created: false }),
            "meta" => Ok(WriteOutcome { changed: true, bytes_sent: 0, backup: None, created: false }),
            "send" | "local" if text.lines().any(|l| l == "done") => Ok(WriteOutcome {
                changed: true,
                bytes_sent: sent,
                backup: text.lines().any(|l| l == "backup").then_some(backup),
                created: opts.backup && !text.lines().any(|l| l == "backup"),
            }),
            _ => Err(HostError::Write { host: self.name.clone(), path: path.into(), message: format!("unexpected answer {text:?}") }),
        }
    }

    fn write_files(&self, files: &[FileWrite<'_>], done: &mut dyn FnMut(usize, WriteOutcome)) -> Result<(), HostError> {
        let mut i = 0;
        while i < files.len() {
            let n = files::small_run(&files[i..]);
            if n == 0 {
                done(i, self.write_file(files[i].path, files[i].src, &files[i].opts)?);
                i += 1;
            } else {
                self.write_small(&files[i..i + n], &mut |k, w| done(i + k, w))?;
                i += n;
            }
        }
        Ok(())
    }

    fn open_tcp(&self, addr: &str, port: u16) -> Result<Box<dyn Tunnel>, HostError> {
        let deadline = Instant::now() + self.opts.connect_timeout;
        let op = format!("open a tunnel to {addr}:{port}");
        let ch = Held::new(self.again(&op, deadline, true, || self.sess.channel_direct_tcpip(addr, port, None))?, &self.lock);
        Ok(Box::new(TunnelStream { ch, sess: self.sess.clone(), fd: self.fd, io_timeout: self.opts.io_timeout }))
    }
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
            .args(["-c", WRITE_SCRIPT, "kbin-write", dest.to_str().unwrap(), "755", "", &crate::host::sha256_hex(body), "", &body.len().to_string()])
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
