//! Test support: a small threaded HTTP/1.1 server on loopback that can misbehave on purpose,
//! and helpers to build tarballs and cluster files.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers one path.
#[derive(Clone)]
pub enum Behavior {
    /// 200 with these bytes; Range requests get 206.
    Bytes(Vec<u8>),
    /// 200 with these bytes, ignoring Range.
    NoRange(Vec<u8>),
    /// Just this status, empty body.
    Status(u16),
    /// Announce the full length, send only the first `send` bytes, close.
    Truncated { body: Vec<u8>, send: usize },
    /// Send the headers and the first `send` bytes, then stall (for at most 10 s).
    Stall { body: Vec<u8>, send: usize },
    /// Answer the first `times` requests with `status`, then behave as `then`.
    FailThen { status: u16, times: usize, then: Box<Behavior> },
    /// The first request is truncated after `send` bytes, later ones are served normally.
    TruncateOnce { body: Vec<u8>, send: usize },
    /// 200 without Content-Length, then bytes until the client hangs up (at most 256 MiB).
    Endless,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

struct State {
    routes: HashMap<String, Behavior>,
    counts: HashMap<String, usize>,
}

impl Server {
    pub fn start(routes: Vec<(&str, Behavior)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State { routes: routes.into_iter().map(|(p, b)| (p.to_string(), b)).collect(), counts: HashMap::new() }));
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (state, log, stop) = (state.clone(), log2.clone(), stop2.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &state, &log, &stop);
                });
            }
        });
        Server { port, log, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.log.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn handle(conn: TcpStream, state: &Mutex<State>, log: &Mutex<Vec<Request>>, stop: &AtomicBool) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push(Request { path: path.clone(), range: range.clone() });
    let (behavior, n) = {
        let mut s = state.lock().unwrap();
        let n = *s.counts.entry(path.clone()).and_modify(|c| *c += 1).or_insert(0);
        (s.routes.get(&path).cloned(), n)
    };
    let mut w = conn;
    let mut behavior = behavior.unwrap_or(Behavior::Status(404));
    if let Behavior::FailThen { status, times, then } = &behavior {
        behavior = if n < *times { Behavior::Status(*status) } else { (**then).clone() };
    }
    if let Behavior::TruncateOnce { body, send } = &behavior {
        behavior = if n == 0 { Behavior::Truncated { body: body.clone(), send: *send } } else { Behavior::Bytes(body.clone()) };
    }
    match behavior {
        Behavior::Status(code) => {
            write!(w, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        }
        Behavior::Bytes(body) => {
            let start = range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')).and_then(|s| s.parse::<usize>().ok());
            match start {
                Some(s) if s < body.len() => {
                    write!(w, "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{}\r\nConnection: close\r\n\r\n", body.len() - s, body.len() - 1, body.len())?;
                    w.write_all(&body[s..])?;
                }
                Some(_) => write!(w, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?,
                None => {
                    write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
                    w.write_all(&body)?;
                }
            }
        }
        Behavior::NoRange(body) => {
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            w.write_all(&body)?;
        }
        Behavior::Truncated { body, send } => {
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            w.write_all(&body[..send])?;
            w.flush()?;
        }
        Behavior::Stall { body, send } => {
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            w.write_all(&body[..send])?;
            w.flush()?;
            for _ in 0..100 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Behavior::Endless => {
            write!(w, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let block = vec![0x5a; 64 * 1024];
            for _ in 0..4096 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                w.write_all(&block)?;
            }
        }
        Behavior::FailThen { .. } | Behavior::TruncateOnce { .. } => unreachable!(),
    }
    w.flush()?;
    let _ = w.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// Deterministic pseudo-random bytes (incompressible enough for size tests).
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    kbin::artifacts::Sha256::of(b).hex()
}

/// A .tar.gz from (path, kind, data-or-link-target) rows; raw headers so hostile names survive.
pub fn targz(rows: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in rows {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o755);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.as_old_mut().linkname[..data.len()].copy_from_slice(data);
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A minimal valid cluster file with one host of every role, plus `extra` TOML.
pub fn cluster_toml(etcd_version: &str, extra: &str) -> String {
    format!(
        r#"[cluster]
name = "test"
etcd_version = "{etcd_version}"

[apiserver]
port = 6443

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master", "node"]

{extra}
"#
    )
}

/// Files in a cache's verified area.
pub fn cached_files(cache_root: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(cache_root.join("sha256")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

pub fn partial_files(cache_root: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(cache_root.join("partial")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.ends_with(".partial")).collect(),
        Err(_) => Vec::new(),
    }
}
