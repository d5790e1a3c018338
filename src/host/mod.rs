//! Hosts: the one abstraction through which kbin changes a machine.
//!
//! [`Remote`] is what every phase works with: run a command given as an argv list (optionally via
//! `sudo -n`, with stdin bytes and a timeout), read a file, hash a file, write a file atomically
//! (skipping the upload when the remote SHA-256 already matches) and open a TCP stream as seen from
//! the host. [`ssh::SshHost`] implements it over ssh2, [`fake::FakeHost`] over a local temp dir
//! for unit tests of phases.
//!
//! - [`quote`]: the one function that turns argv into a shell command line.
//! - [`known_hosts`]: host key verification against `~/.ssh/known_hosts` and the state dir's file.
//! - [`parallel`]: bounded-concurrency fan-out over hosts with per-host structured results.
//! - [`check`]: the facts and prerequisites of `kbin hosts check`.

pub mod check;
pub mod fake;
pub mod known_hosts;
pub mod parallel;
pub mod quote;
pub mod ssh;

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exit::{Exit, Reportable};

pub use known_hosts::KnownHosts;
pub use parallel::{Cancel, HostResult, Outcome};
pub use ssh::{ConnectOptions, SshHost};

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// A command to run on a host: an argv list, never a string glued together.
#[derive(Clone, Default)]
pub struct Cmd {
    pub argv: Vec<String>,
    /// Run as root: through `sudo -n` when the login user is not root.
    pub sudo: bool,
    /// Bytes written to the command's stdin (then EOF). Secrets travel here, never in argv.
    pub stdin: Option<Vec<u8>>,
    /// Overrides the connection's default command timeout.
    pub timeout: Option<Duration>,
}

impl fmt::Debug for Cmd {
    // stdin may be a secret: show its length only
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("argv", &self.argv)
            .field("sudo", &self.sudo)
            .field("stdin", &self.stdin.as_ref().map(|s| format!("<{} bytes>", s.len())))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Cmd {
    pub fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd { argv: argv.into_iter().map(Into::into).collect(), ..Cmd::default() }
    }
    /// Run as root (via `sudo -n` for a non-root login user).
    pub fn sudo(mut self) -> Cmd {
        self.sudo = true;
        self
    }
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = Some(t);
        self
    }
    /// How the command is shown in messages: the quoted argv (argv never holds secrets), on one
    /// line: the script of `sh -c SCRIPT NAME ARGS...` is shown by its name (`sh -c kbin-write ...`).
    pub fn display(&self) -> String {
        let shown: Vec<String> = match self.argv.iter().position(|a| a == "-c") {
            Some(i) if i > 0 && self.argv[i - 1].ends_with("sh") && self.argv.len() > i + 2 && self.argv[i + 1].contains('\n') => {
                self.argv[..=i].iter().chain(&self.argv[i + 2..]).cloned().collect()
            }
            _ => self.argv.clone(),
        };
        let line = quote::join(&shown);
        if self.sudo { format!("sudo {line}") } else { line }
    }
    /// The command line sent to the remote shell for a login user (`root` or not).
    pub(crate) fn remote_line(&self, login_is_root: bool) -> Result<String, String> {
        if self.argv.is_empty() {
            return Err("empty command".into());
        }
        if let Some(a) = self.argv.iter().find(|a| a.contains('\0')) {
            return Err(format!("argument {a:?} contains a NUL byte"));
        }
        let line = quote::join(&self.argv);
        // LC_ALL=C: messages (sudo's included) in a form kbin can recognise
        Ok(if self.sudo && !login_is_root { format!("LC_ALL=C sudo -n -- {line}") } else { format!("LC_ALL=C {line}") })
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status; 255 when the command died of a signal (see `signal`).
    pub status: i32,
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// The content of a file to write: bytes in memory or a local file streamed from disk, with its
/// SHA-256 computed once up front (so pushing one file to many hosts hashes it once).
#[derive(Clone)]
pub struct Source {
    data: SourceData,
    sha256: String,
    len: u64,
}

#[derive(Clone)]
enum SourceData {
    Bytes(std::sync::Arc<[u8]>),
    File(PathBuf),
}

impl fmt::Debug for Source {
    // the bytes may be a key: never print them
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.data {
            SourceData::Bytes(_) => "bytes".to_string(),
            SourceData::File(p) => p.display().to_string(),
        };
        write!(f, "Source({what}, {} bytes, sha256 {})", self.len, self.sha256)
    }
}

impl Source {
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Source {
        let bytes: Vec<u8> = bytes.into();
        let sha256 = sha256_hex(&bytes);
        Source { len: bytes.len() as u64, data: SourceData::Bytes(bytes.into()), sha256 }
    }
    /// A local file, hashed now (one streaming pass) and streamed again on upload.
    pub fn file(path: &Path) -> io::Result<Source> {
        let mut f = std::fs::File::open(path)?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            ctx.update(&buf[..n]);
        }
        Ok(Source { data: SourceData::File(path.to_path_buf()), sha256: hex::encode(ctx.finish()), len })
    }
    /// A local file whose SHA-256 and length are already known (recorded when kbin verified
    /// and extracted it). The digest is the law: the host checks the uploaded bytes against it
    /// before it renames anything, so a local file that changed since is refused, never installed.
    pub fn file_with_digest(path: &Path, sha256: &str, len: u64) -> Source {
        Source { data: SourceData::File(path.to_path_buf()), sha256: sha256.to_ascii_lowercase(), len }
    }
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// A reader over the content. For a file, the content must still hash as it did when the
    /// source was made; the remote side verifies the digest before it renames anything.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        match &self.data {
            SourceData::Bytes(b) => Ok(Box::new(io::Cursor::new(b.clone()))),
            SourceData::File(p) => Ok(Box::new(io::BufReader::with_capacity(256 * 1024, std::fs::File::open(p)?))),
        }
    }
    pub fn local_path(&self) -> Option<&Path> {
        match &self.data {
            SourceData::File(p) => Some(p),
            SourceData::Bytes(_) => None,
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// How to write a file on a host.
#[derive(Clone)]
pub struct WriteOpts<'a> {
    /// Permission bits, such as `0o644`; a key is `0o600`. Set on the temporary file before the
    /// rename, so the final name never has other permissions.
    pub mode: u32,
    /// `user:group` (or `user`) to own the file; `None` leaves the writer (root) as owner.
    pub owner: Option<String>,
    /// Keep the replaced file (if any, and if it differs) as a backup next to it.
    pub backup: bool,
    /// Write as root (via `sudo -n` for a non-root login user). Default true.
    pub sudo: bool,
    /// Called with the number of content bytes sent so far (for a progress bar).
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Default for WriteOpts<'_> {
    fn default() -> Self {
        WriteOpts { mode: 0o644, owner: None, backup: false, sudo: true, progress: None }
    }
}

impl fmt::Debug for WriteOpts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteOpts {{ mode: {:o}, owner: {:?}, backup: {}, sudo: {} }}", self.mode, self.owner, self.backup, self.sudo)
    }
}

impl<'a> WriteOpts<'a> {
    pub fn mode(mode: u32) -> WriteOpts<'a> {
        WriteOpts { mode, ..WriteOpts::default() }
    }
    pub fn owner(mut self, owner: &str) -> Self {
        self.owner = Some(owner.to_string());
        self
    }
    pub fn backup(mut self) -> Self {
        self.backup = true;
        self
    }
    pub fn progress(mut self, f: &'a (dyn Fn(u64) + Sync)) -> Self {
        self.progress = Some(f);
        self
    }
}

/// One file of [`Remote::write_files`].
pub struct FileWrite<'a> {
    pub path: &'a str,
    pub src: &'a Source,
    pub opts: WriteOpts<'a>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteOutcome {
    /// Content, mode or owner changed (a service reading the file may need a restart).
    pub changed: bool,
    /// Content bytes sent over the connection (0 when the remote file already matched and
    /// nothing was sent).
    pub bytes_sent: u64,
    /// Where the replaced file was kept, when `backup` was asked and there was one.
    pub backup: Option<String>,
    /// There was no file at the path before (known when `backup` was asked: a file replaced
    /// leaves one; [`Tx`](crate::engine::Tx) always asks).
    pub created: bool,
}

/// A byte stream to `addr:port` as seen from a host (an SSH direct-tcpip channel): usable as the
/// transport of a TLS client to check etcd or an apiserver through the SSH connection.
/// A cluster host and the connection to it.
#[derive(Clone)]
pub struct Node<'c> {
    pub host: &'c crate::config::Host,
    pub remote: std::sync::Arc<dyn Remote>,
}

pub trait Tunnel: Read + Write + Send {}
impl<T: Read + Write + Send> Tunnel for T {}

// ---------------------------------------------------------------------------------------------
// The abstraction
// ---------------------------------------------------------------------------------------------

/// One machine kbin works on. Object safe; shared between threads as `Arc<dyn Remote>`.
///
/// File operations run as root (via `sudo -n` for a non-root login user) unless their options say
/// otherwise. Paths are absolute remote paths.
/// Prints the target of each argument that is a symlink (empty for anything else), NUL-terminated.
const READ_LINKS: &str = r#"for p; do if [ -L "$p" ]; then readlink -n -- "$p"; fi; printf '\0'; done"#;
/// `$1` becomes a symlink to `$2`; what was at `$1` is hard-linked to `$3` first ("backup").
const SET_LINK: &str = r#"set -e
mkdir -p -- "$(dirname -- "$1")"
if [ -e "$1" ] || [ -L "$1" ]; then ln -P -f -- "$1" "$3"; echo backup; fi
ln -s -f -n -- "$2" "$1.kbin-new"
mv -T -f -- "$1.kbin-new" "$1""#;

pub trait Remote: Send + Sync {
    /// The host's name from the cluster file (used in every message).
    fn name(&self) -> &str;
    /// The login user.
    fn user(&self) -> &str;
    /// Run a command to completion. A non-zero exit is not an error here (see [`Remote::check`]);
    /// a connection problem, a timeout or a sudo that wants a password is.
    fn run(&self, cmd: &Cmd) -> Result<Output, HostError>;
    /// Read a whole file as root; `None` when it does not exist.
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// SHA-256 (lowercase hex) of a file, as root; `None` when it does not exist.
    fn sha256(&self, path: &str) -> Result<Option<String>, HostError>;
    /// [`Remote::sha256`] of many files at once (one round trip where the transport allows).
    fn sha256_many(&self, paths: &[&str]) -> Result<Vec<Option<String>>, HostError> {
        paths.iter().map(|p| self.sha256(p)).collect()
    }
    /// Replace `path` atomically with `src` (temp file in the same directory, fsync, mode, owner,
    /// rename). Nothing is sent when the remote content already matches; a mode or owner that
    /// differs is still fixed. Parent directories are created.
    fn write_file(&self, path: &str, src: &Source, opts: &WriteOpts<'_>) -> Result<WriteOutcome, HostError>;
    /// [`Remote::write_file`] of several files, in order, in as few round trips as the transport
    /// allows (the ssh implementation writes small in-memory files in one run). `done` is told each
    /// file's outcome as it is known, also the files written before one that failed, so that a
    /// caller can record and undo them.
    fn write_files(&self, files: &[FileWrite<'_>], done: &mut dyn FnMut(usize, WriteOutcome)) -> Result<(), HostError> {
        for (i, f) in files.iter().enumerate() {
            done(i, self.write_file(f.path, f.src, &f.opts)?);
        }
        Ok(())
    }
    /// Open a TCP connection to `addr:port` from the host's side.
    fn open_tcp(&self, addr: &str, port: u16) -> Result<Box<dyn Tunnel>, HostError>;

    /// The target of each symlink in `paths` (`None`: not a symlink, or missing), one round trip.
    fn read_links(&self, paths: &[&str]) -> Result<Vec<Option<String>>, HostError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut argv = vec!["sh", "-c", READ_LINKS, "kbin-links"];
        argv.extend(paths);
        let out = self.check(&Cmd::new(argv).sudo())?;
        let text = out.stdout_str();
        let mut lines = text.split('\0');
        Ok(paths.iter().map(|_| lines.next().filter(|l| !l.is_empty()).map(str::to_string)).collect())
    }
    /// Point the symlink `path` at `target` atomically (a new link renamed over the old one, the
    /// parent directory created). What was at `path` (a link or a file) is kept at `backup`
    /// (a hard link, nothing copied); returns whether something was there.
    fn set_link(&self, path: &str, target: &str, backup: &str) -> Result<bool, HostError> {
        let out = self.check(&Cmd::new(["sh", "-c", SET_LINK, "kbin-link", path, target, backup]).sudo())?;
        Ok(out.stdout_str().trim() == "backup")
    }

    /// Run a command and fail (with its stderr) unless it exits 0.
    fn check(&self, cmd: &Cmd) -> Result<Output, HostError> {
        let out = self.run(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(HostError::Command {
                host: self.name().to_string(),
                command: cmd.display(),
                status: out.status,
                stderr: out.stderr_str().trim().to_string(),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Everything that can go wrong talking to a host. Every variant names the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{host}: cannot connect to {addr}")]
    Connect {
        host: String,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{host}: {what} timed out after {}s", after.as_secs_f32())]
    Timeout { host: String, what: String, after: Duration },
    #[error("{host}: SSH {op} failed")]
    Ssh {
        host: String,
        op: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("{host}: the connection was lost during {op}")]
    Disconnected {
        host: String,
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{host}: unknown host key for {addr} ({fingerprint})")]
    UnknownHostKey { host: String, addr: String, key_type: String, fingerprint: String },
    #[error("{host}: HOST KEY CHANGED for {addr}: presented {presented}, expected {}", expected.join(" or "))]
    HostKeyChanged { host: String, addr: String, presented: String, expected: Vec<String>, known_in: Vec<String> },
    #[error("{host}: host key {fingerprint} for {addr} is marked @revoked in {file}")]
    HostKeyRevoked { host: String, addr: String, fingerprint: String, file: String },
    #[error("{host}: cannot record the host key in {}", path.display())]
    KnownHostsWrite {
        host: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{host}: authentication as {user:?} failed (tried {})", if tried.is_empty() { "nothing".to_string() } else { tried.join(", ") })]
    Auth { host: String, user: String, tried: Vec<String> },
    #[error("{host}: sudo needs a password for {user:?} (kbin runs `sudo -n`)")]
    SudoPassword { host: String, user: String },
    #[error("{host}: sudo is not usable for {user:?}: {message}")]
    Sudo { host: String, user: String, message: String },
    #[error("{host}: `{command}` failed with exit status {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Command { host: String, command: String, status: i32, stderr: String },
    #[error("{host}: cannot write {path}: {message}")]
    Write { host: String, path: String, message: String },
    #[error("{host}: cannot read local file {}", path.display())]
    Local {
        host: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{host}: {message}")]
    Invalid { host: String, message: String },
    #[error("{host}: via bastion {bastion}")]
    Bastion {
        host: String,
        bastion: String,
        #[source]
        source: Box<HostError>,
    },
    #[error("{host}: interrupted")]
    Interrupted { host: String },
}

impl HostError {
    /// The host the error is about.
    pub fn host(&self) -> &str {
        use HostError::*;
        match self {
            Connect { host, .. }
            | Timeout { host, .. }
            | Ssh { host, .. }
            | Disconnected { host, .. }
            | UnknownHostKey { host, .. }
            | HostKeyChanged { host, .. }
            | HostKeyRevoked { host, .. }
            | KnownHostsWrite { host, .. }
            | Auth { host, .. }
            | SudoPassword { host, .. }
            | Sudo { host, .. }
            | Command { host, .. }
            | Write { host, .. }
            | Local { host, .. }
            | Invalid { host, .. }
            | Bastion { host, .. }
            | Interrupted { host } => host,
        }
    }
    /// The innermost error (through bastion wrappers): what actually went wrong.
    pub fn root(&self) -> &HostError {
        match self {
            HostError::Bastion { source, .. } => source.root(),
            e => e,
        }
    }
    /// The whole chain on one line, for per-host reports.
    pub fn chain(&self) -> String {
        crate::exit::chain(self)
    }
}

impl Reportable for HostError {
    fn hint(&self) -> Option<String> {
        use HostError::*;
        Some(match self {
            Connect { .. } => "check the host's address and ssh port in the cluster file, that it is up, and that no firewall blocks the port".into(),
            Timeout { what, .. } if what.starts_with("connect") || what.starts_with("handshake") => {
                "the host accepted no SSH conversation in time: check that sshd runs on that port, or raise ssh.connect_timeout_secs".into()
            }
            Timeout { .. } => "the command did not finish in time: look at the host, or raise ssh.command_timeout_secs".into(),
            Ssh { .. } | Disconnected { .. } => "check the host's sshd logs (journalctl -u ssh) and the network; then run the command again".into(),
            UnknownHostKey { addr, .. } => format!(
                "compare the fingerprint with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on {addr}); then run `kbin hosts scan` or pass --accept-new-host-keys to record it"
            ),
            HostKeyChanged { known_in, .. } => format!(
                "someone may be intercepting the connection, or the host was reinstalled; if you are sure it was reinstalled, delete the old entry ({}) and run `kbin hosts scan`",
                known_in.join(", ")
            ),
            HostKeyRevoked { .. } => "this key was revoked on purpose; the host needs a new host key".into(),
            KnownHostsWrite { path, .. } => format!("make sure {} is writable", path.display()),
            Auth { user, .. } => format!(
                "load the right key into ssh-agent (ssh-add) or set ssh.key / hosts.ssh_key; check that its public key is in ~{user}/.ssh/authorized_keys on the host"
            ),
            SudoPassword { user, .. } => format!(
                "allow passwordless sudo for {user:?} (a line `{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/kbin, mode 0440) or connect as root (ssh.user = \"root\")"
            ),
            Sudo { .. } => "install sudo and allow the user passwordless sudo, or connect as root (ssh.user = \"root\")".into(),
            Command { .. } => "the command's own message is shown above; fix the cause on the host and run kbin again".into(),
            Write { .. } => "check free disk space and that the directory is writable; the old file was left in place".into(),
            Local { .. } => "check that the local file exists and is readable".into(),
            Invalid { .. } => "this is a bug in kbin; please report it".into(),
            Bastion { source, .. } => return source.hint(),
            Interrupted { .. } => "run the command again to finish; finished steps are not repeated".into(),
        })
    }
    fn exit(&self) -> Exit {
        match self.root() {
            HostError::Interrupted { .. } => Exit::Interrupted,
            HostError::UnknownHostKey { .. } | HostError::HostKeyChanged { .. } | HostError::HostKeyRevoked { .. } => Exit::Refused,
            _ => Exit::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_line_quotes_and_wraps_sudo() {
        let c = Cmd::new(["cat", "/etc/my file"]).sudo();
        assert_eq!(c.remote_line(false).unwrap(), "LC_ALL=C sudo -n -- cat '/etc/my file'");
        assert_eq!(c.remote_line(true).unwrap(), "LC_ALL=C cat '/etc/my file'");
        assert!(Cmd::new(["echo", "a\0b"]).remote_line(true).is_err());
        assert!(Cmd::new(Vec::<String>::new()).remote_line(true).is_err());
    }

    #[test]
    fn a_script_is_shown_by_its_name_on_one_line() {
        let c = Cmd::new(["sh", "-c", "set -eu\nfor a in \"$@\"; do\n  echo $a\ndone\n", "kbin-write", "/etc/x"]).sudo();
        assert_eq!(c.display(), "sudo sh -c kbin-write /etc/x");
        assert_eq!(Cmd::new(["sh", "-c", "true", "x"]).display(), "sh -c true x");
    }

    #[test]
    fn debug_output_never_shows_stdin_or_content() {
        let c = Cmd::new(["tee", "/x"]).stdin(b"TOPSECRET".to_vec());
        assert!(!format!("{c:?}").contains("TOPSECRET"));
        let s = Source::bytes(b"TOPSECRET".to_vec());
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }

    #[test]
    fn source_hashes_bytes_and_files_alike() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        let a = Source::bytes(b"hello\n".to_vec());
        let b = Source::file(&p).unwrap();
        assert_eq!(a.sha256(), "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(b.len(), 6);
    }
}
