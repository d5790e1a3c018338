//! A host for unit tests of phases: files live under a local root directory, commands are logged
//! and answered by a test-supplied responder (exit 0 with no output by default).
//!
//! File writes follow the same contract as the ssh implementation (unchanged content is not
//! written, mode and owner are compared, a backup keeps the replaced file), so a phase's
//! "changed" logic can be tested without a network.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Cmd, HostError, Output, Remote, Source, Tunnel, WriteOpts, WriteOutcome};

type Responder = Box<dyn Fn(&Cmd) -> Option<Output> + Send + Sync>;

/// One logged operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    Run { argv: Vec<String>, sudo: bool, stdin_len: Option<usize> },
    Read(String),
    Sha256(String),
    Write { path: String, mode: u32, owner: Option<String>, changed: bool },
    Tcp(String, u16),
    Link { path: String, target: String },
}

pub struct FakeHost {
    name: String,
    user: String,
    root: PathBuf,
    log: Mutex<Vec<Logged>>,
    owners: Mutex<HashMap<String, String>>,
    responder: Option<Responder>,
    forwards: Mutex<HashMap<(String, u16), SocketAddr>>,
}

impl FakeHost {
    /// A fake host named `name` whose filesystem is `root` (usually a temp dir).
    pub fn new(name: &str, root: &Path) -> FakeHost {
        FakeHost {
            name: name.into(),
            user: "root".into(),
            root: root.to_path_buf(),
            log: Mutex::new(Vec::new()),
            owners: Mutex::new(HashMap::new()),
            responder: None,
            forwards: Mutex::new(HashMap::new()),
        }
    }
    /// Answer commands: return `Some(output)` for commands the test cares about.
    pub fn respond(mut self, f: impl Fn(&Cmd) -> Option<Output> + Send + Sync + 'static) -> FakeHost {
        self.responder = Some(Box::new(f));
        self
    }
    /// Make `open_tcp(addr, port)` connect to a local address instead.
    pub fn forward(&self, addr: &str, port: u16, to: SocketAddr) {
        self.forwards.lock().unwrap().insert((addr.into(), port), to);
    }
    /// Everything done so far, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
    /// The argv of every command run so far.
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.log().into_iter().filter_map(|l| if let Logged::Run { argv, .. } = l { Some(argv) } else { None }).collect()
    }
    /// The local path standing for a remote path.
    pub fn path(&self, remote: &str) -> PathBuf {
        self.root.join(remote.trim_start_matches('/'))
    }
    /// The owner last set on a remote path.
    pub fn owner_of(&self, remote: &str) -> Option<String> {
        self.owners.lock().unwrap().get(remote).cloned()
    }
    fn push(&self, l: Logged) {
        self.log.lock().unwrap().push(l);
    }
}

pub fn ok(stdout: &str) -> Output {
    Output { status: 0, signal: None, stdout: stdout.as_bytes().to_vec(), stderr: Vec::new() }
}

impl Remote for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }
    fn user(&self) -> &str {
        &self.user
    }
    fn run(&self, cmd: &Cmd) -> Result<Output, HostError> {
        cmd.remote_line(true).map_err(|m| HostError::Invalid { host: self.name.clone(), message: m })?;
        self.push(Logged::Run { argv: cmd.argv.clone(), sudo: cmd.sudo, stdin_len: cmd.stdin.as_ref().map(Vec::len) });
        Ok(self.responder.as_ref().and_then(|r| r(cmd)).unwrap_or_else(|| ok("")))
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, HostError> {
        super::ssh::check_path(&self.name, path)?;
        self.push(Logged::Read(path.into()));
        match std::fs::read(self.path(path)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::Write { host: self.name.clone(), path: path.into(), message: e.to_string() }),
        }
    }
    fn sha256(&self, path: &str) -> Result<Option<String>, HostError> {
        super::ssh::check_path(&self.name, path)?;
        self.push(Logged::Sha256(path.into()));
        Ok(std::fs::read(self.path(path)).ok().map(|b| super::sha256_hex(&b)))
    }
    fn write_file(&self, path: &str, src: &Source, opts: &WriteOpts<'_>) -> Result<WriteOutcome, HostError> {
        super::ssh::check_path(&self.name, path)?;
        let local = self.path(path);
        let werr = |e: std::io::Error| HostError::Write { host: self.name.clone(), path: path.into(), message: e.to_string() };
        let same = std::fs::read(&local).ok().map(|b| super::sha256_hex(&b)).as_deref() == Some(src.sha256());
        let owner_same = opts.owner.is_none() || self.owner_of(path) == opts.owner;
        let mode_same = std::fs::metadata(&local).map(|m| m.permissions().mode() & 0o7777 == opts.mode).unwrap_or(false);
        let mut out = WriteOutcome { changed: false, bytes_sent: 0, backup: None, created: opts.backup && !local.exists() };
        if same {
            out.created = false;
            if !mode_same || !owner_same {
                std::fs::set_permissions(&local, std::fs::Permissions::from_mode(opts.mode)).map_err(werr)?;
                out.changed = true;
            }
        } else {
            let mut bytes = Vec::with_capacity(src.len() as usize);
            src.open().and_then(|mut r| r.read_to_end(&mut bytes)).map_err(werr)?;
            if opts.backup && local.exists() {
                let b = super::ssh::backup_name(path);
                std::fs::copy(&local, self.path(&b)).map_err(werr)?;
                out.backup = Some(b);
            }
            if let Some(dir) = local.parent() {
                std::fs::create_dir_all(dir).map_err(werr)?;
            }
            crate::fsutil::write_atomic(&local, &bytes, opts.mode).map_err(werr)?;
            if let Some(p) = opts.progress {
                p(bytes.len() as u64);
            }
            out.changed = true;
            out.bytes_sent = bytes.len() as u64;
        }
        if let Some(o) = &opts.owner {
            self.owners.lock().unwrap().insert(path.into(), o.clone());
        }
        self.push(Logged::Write { path: path.into(), mode: opts.mode, owner: opts.owner.clone(), changed: out.changed });
        Ok(out)
    }
    fn read_links(&self, paths: &[&str]) -> Result<Vec<Option<String>>, HostError> {
        paths.iter().map(|p| super::ssh::check_path(&self.name, p).map(|_| std::fs::read_link(self.path(p)).ok().map(|t| t.to_string_lossy().into_owned()))).collect()
    }
    fn set_link(&self, path: &str, target: &str, backup: &str) -> Result<bool, HostError> {
        super::ssh::check_path(&self.name, path)?;
        let werr = |e: std::io::Error| HostError::Write { host: self.name.clone(), path: path.into(), message: e.to_string() };
        let local = self.path(path);
        let existed = std::fs::symlink_metadata(&local).is_ok();
        if existed {
            let _ = std::fs::remove_file(self.path(backup));
            std::fs::hard_link(&local, self.path(backup)).map_err(werr)?;
        }
        if let Some(dir) = local.parent() {
            std::fs::create_dir_all(dir).map_err(werr)?;
        }
        let tmp = self.path(&format!("{path}.kbin-new"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(werr)?;
        std::fs::rename(&tmp, &local).map_err(werr)?;
        self.push(Logged::Link { path: path.into(), target: target.into() });
        Ok(existed)
    }
    fn open_tcp(&self, addr: &str, port: u16) -> Result<Box<dyn Tunnel>, HostError> {
        self.push(Logged::Tcp(addr.into(), port));
        let to = self.forwards.lock().unwrap().get(&(addr.to_string(), port)).copied();
        let to = to.ok_or_else(|| HostError::Connect {
            host: self.name.clone(),
            addr: format!("{addr}:{port}"),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "no forward set on the fake host"),
        })?;
        let s = TcpStream::connect(to).map_err(|e| HostError::Connect { host: self.name.clone(), addr: to.to_string(), source: e })?;
        Ok(Box::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn fake_writes_report_changes_like_the_real_thing() {
        let d = tempfile::tempdir().unwrap();
        let h = FakeHost::new("n1", d.path());
        let src = Source::bytes(b"a=1\n".to_vec());
        let w = h.write_file("/etc/kbin/a.conf", &src, &WriteOpts::mode(0o600)).unwrap();
        assert!(w.changed);
        assert_eq!(w.bytes_sent, 4);
        assert_eq!(std::fs::read(h.path("/etc/kbin/a.conf")).unwrap(), b"a=1\n");
        assert_eq!(std::fs::metadata(h.path("/etc/kbin/a.conf")).unwrap().mode() & 0o777, 0o600);
        let again = h.write_file("/etc/kbin/a.conf", &src, &WriteOpts::mode(0o600)).unwrap();
        assert_eq!(again, WriteOutcome { changed: false, bytes_sent: 0, backup: None, created: false });
        let meta = h.write_file("/etc/kbin/a.conf", &src, &WriteOpts::mode(0o644)).unwrap();
        assert!(meta.changed && meta.bytes_sent == 0);
        let b = h.write_file("/etc/kbin/a.conf", &Source::bytes(b"a=2\n".to_vec()), &WriteOpts::mode(0o644).backup()).unwrap();
        let backup = b.backup.expect("a backup of the replaced file");
        assert_eq!(std::fs::read(h.path(&backup)).unwrap(), b"a=1\n");
    }

    #[test]
    fn fake_logs_commands_and_uses_the_responder() {
        let d = tempfile::tempdir().unwrap();
        let h = FakeHost::new("n1", d.path()).respond(|c| (c.argv[0] == "uname").then(|| ok("x86_64\n")));
        let out = h.run(&Cmd::new(["uname", "-m"])).unwrap();
        assert_eq!(out.stdout_str(), "x86_64\n");
        h.run(&Cmd::new(["systemctl", "daemon-reload"]).sudo()).unwrap();
        assert_eq!(h.commands(), vec![vec!["uname".to_string(), "-m".into()], vec!["systemctl".into(), "daemon-reload".into()]]);
        assert!(h.write_file("relative/path", &Source::bytes(b"x".to_vec()), &WriteOpts::default()).is_err());
    }
}

#[cfg(test)]
mod tunnel_tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn fake_tunnels_go_to_the_forwarded_local_address() {
        let d = tempfile::tempdir().unwrap();
        let h = FakeHost::new("n1", d.path());
        assert!(h.open_tcp("127.0.0.1", 2379).is_err(), "no forward, no connection");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        h.forward("127.0.0.1", 2379, l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"etcd").unwrap();
        });
        let mut tun = h.open_tcp("127.0.0.1", 2379).unwrap();
        let mut buf = [0u8; 4];
        tun.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"etcd");
        t.join().unwrap();
        assert_eq!(h.log().iter().filter(|l| matches!(l, Logged::Tcp(_, 2379))).count(), 2);
    }
}
