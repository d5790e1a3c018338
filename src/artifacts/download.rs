//! Verified downloads: stream to `<digest>.partial` while hashing, resume with HTTP Range,
//! retry timeouts, dropped connections and 5xx with backoff, and rename into the cache only when
//! the digest matches. A file trusted by its SHA-512 is hashed with SHA-512 and SHA-256 in the
//! same pass: the first is checked, the second is its address in the cache.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::cache::Cache;
use super::{ArtifactError, Digest, Hasher, Result, Sha256};

/// Network knobs. Defaults suit real mirrors; tests make them short.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub connect_timeout: Duration,
    /// Longest wait for response headers or for any single read of the body.
    pub read_timeout: Duration,
    /// Attempts per file (1 = no retry).
    pub attempts: u32,
    /// First backoff delay; doubled after each failed attempt, at most 10 s.
    pub backoff: Duration,
    /// Allow checksum files over plain HTTP (loopback tests only).
    pub allow_http_checksums: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            attempts: 5,
            backoff: Duration::from_millis(500),
            allow_http_checksums: false,
        }
    }
}

impl FetchOptions {
    /// Defaults, adjusted by `KBIN_HTTP_TIMEOUT` (seconds, connect and read),
    /// `KBIN_HTTP_ATTEMPTS` and `KBIN_HTTP_BACKOFF_MS`.
    pub fn from_env() -> FetchOptions {
        let mut o = FetchOptions::default();
        if let Some(s) = std::env::var("KBIN_HTTP_TIMEOUT").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s > 0.0) {
            o.connect_timeout = Duration::from_secs_f64(s);
            o.read_timeout = Duration::from_secs_f64(s);
        }
        if let Some(n) = std::env::var("KBIN_HTTP_ATTEMPTS").ok().and_then(|v| v.parse::<u32>().ok()).filter(|n| *n > 0) {
            o.attempts = n;
        }
        if let Some(ms) = std::env::var("KBIN_HTTP_BACKOFF_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
            o.backoff = Duration::from_millis(ms);
        }
        o
    }
}

/// Receives progress of one download. Implementations must be cheap: `advance` is called per
/// block read.
pub trait Progress: Send + Sync {
    /// The body is about to stream: `total` bytes if known, `resumed_at` already on disk.
    fn begin(&self, _total: Option<u64>, _resumed_at: u64) {}
    fn advance(&self, _bytes: u64) {}
    /// A failed attempt that will be retried.
    fn retry(&self, _attempt: u32, _reason: &str) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// A verified file in the cache, as `fetch` left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    /// The file's SHA-256: its address in the cache (computed while checking a SHA-512).
    pub sha256: Sha256,
    pub outcome: Outcome,
}

/// What `fetch` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Already in the cache (and re-hashed).
    Cached,
    /// Downloaded now; `resumed` when a partial file from an earlier run was continued.
    Downloaded { bytes: u64, resumed: bool },
}

pub struct Fetcher {
    client: reqwest::blocking::Client,
    pub opts: FetchOptions,
}

/// Why one attempt failed, and whether another attempt may help.
enum AttemptError {
    Retry(ArtifactError),
    Fatal(ArtifactError),
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout) {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips the wrapped error itself: look at it directly
            if io.kind() == std::io::ErrorKind::TimedOut || io.get_ref().is_some_and(|inner| is_timeout(inner)) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    // HTTP errors name the URL: never with its credentials
    crate::output::redact_urls_in(&parts.join(": "))
}

/// A URL as errors and reports show it: without credentials.
fn shown(url: &str) -> String {
    crate::output::redact_url(url)
}

/// Hash state of the bytes already in the partial file.
struct Partial {
    file: File,
    /// The expected digest's algorithm, plus SHA-256 for the cache address.
    hasher: Hasher,
    /// An empty hasher of the same kind, for starting over.
    fresh: Hasher,
    len: u64,
}

impl Partial {
    fn open(path: &Path, expected: &Digest) -> Result<Partial> {
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(|e| ArtifactError::io("open", path, e))?;
        let fresh = Hasher::new(expected, true);
        let mut hasher = fresh.clone();
        let mut len = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| ArtifactError::io("read", path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok(Partial { file, hasher, fresh, len })
    }
    fn reset(&mut self, path: &Path) -> Result<()> {
        self.file.set_len(0).map_err(|e| ArtifactError::io("truncate", path, e))?;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| ArtifactError::io("seek", path, e))?;
        self.hasher = self.fresh.clone();
        self.len = 0;
        Ok(())
    }
}

impl Fetcher {
    pub fn new(opts: FetchOptions) -> Result<Fetcher> {
        // reqwest honours HTTP_PROXY / HTTPS_PROXY / NO_PROXY from the environment by default
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.read_timeout)
            .user_agent(concat!("kbin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ArtifactError::Network { url: String::new(), message: chain(&e), attempts: 0 })?;
        Ok(Fetcher { client, opts })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let d = self.opts.backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(8));
        d.min(Duration::from_secs(10))
    }

    /// Fetch `url` into the cache, checked against `expected` (a SHA-256 or a SHA-512), unless a
    /// copy that matches it is already there (re-hashed to make sure). Concurrent kbin processes
    /// fetching the same digest wait for each other.
    pub fn fetch(&self, url: &str, expected: impl Into<Digest>, cache: &Cache, progress: &dyn Progress) -> Result<Stored> {
        self.fetch_limited(url, expected, super::catalog::DEFAULT_MAX_MIB << 20, cache, progress)
    }

    /// [`Fetcher::fetch`], refusing a body larger than `max_bytes` (announced or streamed: a
    /// server that sends no Content-Length is cut off there, and the partial file removed).
    pub fn fetch_limited(&self, url: &str, expected: impl Into<Digest>, max_bytes: u64, cache: &Cache, progress: &dyn Progress) -> Result<Stored> {
        let expected = expected.into();
        let _guard = cache.lock(expected)?;
        if let Some((path, sha256)) = cache.verified(expected)? {
            return Ok(Stored { path, sha256, outcome: Outcome::Cached });
        }
        let partial_path = cache.partial_path(expected);
        let mut partial = Partial::open(&partial_path, &expected)?;
        let resumed = partial.len > 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(url, &partial_path, &mut partial, max_bytes, progress, attempt) {
                Ok(()) => break,
                Err(AttemptError::Retry(e)) if attempt < self.opts.attempts => {
                    progress.retry(attempt, &e.to_string());
                    std::thread::sleep(self.backoff(attempt));
                }
                Err(AttemptError::Retry(e)) | Err(AttemptError::Fatal(e)) => {
                    // keep a partial body for the next run to resume; an empty or oversized one
                    // is clutter
                    if partial.len == 0 || partial.len > max_bytes {
                        let _ = std::fs::remove_file(&partial_path);
                    }
                    return Err(e);
                }
            }
        }
        let hashes = partial.hasher.clone().finish();
        let actual = hashes.like(&expected);
        if actual != expected {
            drop(partial);
            let _ = std::fs::remove_file(&partial_path);
            return Err(ArtifactError::mismatch(shown(url), expected, actual));
        }
        let sha256 = hashes.sha256.expect("a partial download is always hashed with SHA-256 too");
        // no fsync: a cache entry is re-hashed every time it is used, so one torn by a crash is
        // caught and fetched again; syncing hundreds of MB would only slow every download
        let bytes = partial.len;
        drop(partial);
        let path = cache.insert(&partial_path, &sha256)?;
        if let Digest::Sha512(d) = &expected {
            cache.alias(d, &sha256)?;
        }
        Ok(Stored { path, sha256, outcome: Outcome::Downloaded { bytes, resumed } })
    }

    fn attempt(&self, url: &str, path: &Path, p: &mut Partial, max_bytes: u64, progress: &dyn Progress, attempt: u32) -> Result<(), AttemptError> {
        let started = Instant::now();
        let net = |e: reqwest::Error| {
            if is_timeout(&e) {
                AttemptError::Retry(ArtifactError::Timeout { url: shown(url), secs: started.elapsed().as_secs_f64(), attempts: attempt })
            } else if e.is_builder() {
                AttemptError::Fatal(ArtifactError::Network { url: shown(url), message: chain(&e), attempts: attempt })
            } else {
                AttemptError::Retry(ArtifactError::Network { url: shown(url), message: chain(&e), attempts: attempt })
            }
        };
        let mut req = self.client.get(url);
        if p.len > 0 {
            req = req.header(RANGE, format!("bytes={}-", p.len));
        }
        let mut resp = req.send().map_err(net)?;
        let status = resp.status();
        let io_err = |action, e| AttemptError::Fatal(ArtifactError::io(action, path, e));
        match status {
            StatusCode::PARTIAL_CONTENT if p.len > 0 => {
                // the server must continue exactly where we stopped
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(p.len) {
                    p.reset(path).map_err(AttemptError::Fatal)?;
                    return Err(AttemptError::Retry(ArtifactError::Network { url: shown(url), message: "server resumed at the wrong offset".into(), attempts: attempt }));
                }
            }
            StatusCode::OK => {
                if p.len > 0 {
                    p.reset(path).map_err(AttemptError::Fatal)?; // no Range support: start over
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                p.reset(path).map_err(AttemptError::Fatal)?;
                return Err(AttemptError::Retry(ArtifactError::Http { url: shown(url), status: status.as_u16() }));
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT => {
                return Err(AttemptError::Retry(ArtifactError::Http { url: shown(url), status: s.as_u16() }));
            }
            s => return Err(AttemptError::Fatal(ArtifactError::Http { url: shown(url), status: s.as_u16() })),
        }
        let remaining = resp.content_length();
        let expected_total = remaining.map(|r| r.saturating_add(p.len));
        let too_large = || AttemptError::Fatal(ArtifactError::TooLarge { url: shown(url), limit: max_bytes });
        if expected_total.is_some_and(|t| t > max_bytes) {
            return Err(too_large());
        }
        progress.begin(expected_total, p.len);
        p.file.seek(SeekFrom::End(0)).map_err(|e| io_err("seek", e))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    p.file.flush().ok();
                    if is_timeout(&e) {
                        return Err(AttemptError::Retry(ArtifactError::Timeout { url: shown(url), secs: self.opts.read_timeout.as_secs_f64(), attempts: attempt }));
                    }
                    if let Some(total) = expected_total {
                        return Err(AttemptError::Retry(ArtifactError::Truncated { url: shown(url), got: p.len, expected: total, attempts: attempt }));
                    }
                    return Err(AttemptError::Retry(ArtifactError::Network { url: shown(url), message: chain(&e), attempts: attempt }));
                }
            };
            if p.len + n as u64 > max_bytes {
                p.reset(path).map_err(AttemptError::Fatal)?;
                return Err(too_large());
            }
            p.file.write_all(&buf[..n]).map_err(|e| io_err("write", e))?;
            p.hasher.update(&buf[..n]);
            p.len += n as u64;
            progress.advance(n as u64);
        }
        if let Some(total) = expected_total
            && p.len != total
        {
            return Err(AttemptError::Retry(ArtifactError::Truncated { url: shown(url), got: p.len, expected: total, attempts: attempt }));
        }
        Ok(())
    }

    /// Fetch a small text file (a checksum file), with the same retries. Checksum files are
    /// trusted only from HTTPS origins.
    pub fn get_text(&self, url: &str) -> Result<String> {
        if !url.starts_with("https://") && !self.opts.allow_http_checksums {
            return Err(ArtifactError::InsecureChecksum { url: shown(url) });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = (|| -> Result<String, AttemptError> {
                let resp = self.client.get(url).send().map_err(|e| {
                    let err = ArtifactError::Network { url: shown(url), message: chain(&e), attempts: attempt };
                    AttemptError::Retry(err)
                })?;
                let s = resp.status();
                if s.is_server_error() {
                    return Err(AttemptError::Retry(ArtifactError::Http { url: shown(url), status: s.as_u16() }));
                }
                if !s.is_success() {
                    return Err(AttemptError::Fatal(ArtifactError::Http { url: shown(url), status: s.as_u16() }));
                }
                let mut body = String::new();
                resp.take(1 << 20)
                    .read_to_string(&mut body)
                    .map_err(|e| AttemptError::Retry(ArtifactError::Network { url: shown(url), message: chain(&e), attempts: attempt }))?;
                Ok(body)
            })();
            match r {
                Ok(b) => return Ok(b),
                Err(AttemptError::Retry(_)) if attempt < self.opts.attempts => std::thread::sleep(self.backoff(attempt)),
                Err(AttemptError::Retry(e)) | Err(AttemptError::Fatal(e)) => return Err(e),
            }
        }
    }
}

/// Find the digest of `file_name` in a checksum file: either a lone digest (dl.k8s.io's
/// `<binary>.sha256`) or `sha256sum` lines `<hex>  [*]<name>`.
pub fn parse_checksum_file(text: &str, file_name: &str) -> Option<Sha256> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if lines.len() == 1 {
        let mut parts = lines[0].split_whitespace();
        let d = Sha256::parse(parts.next()?)?;
        match parts.next() {
            None => return Some(d),
            Some(name) if base(name) == file_name => return Some(d),
            Some(_) => return None,
        }
    }
    lines.iter().find_map(|l| {
        let mut parts = l.split_whitespace();
        let d = parts.next()?;
        let name = parts.next()?;
        (base(name) == file_name).then(|| Sha256::parse(d)).flatten()
    })
}

fn base(name: &str) -> &str {
    let n = name.trim_start_matches('*');
    n.rsplit('/').next().unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_file_formats() {
        let d = "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c";
        assert_eq!(parse_checksum_file(&format!("{d}\n"), "kubelet").unwrap().hex(), d);
        let sums = format!("{}  etcd-v3.5.21-darwin-amd64.zip\n{d}  etcd-v3.5.21-linux-amd64.tar.gz\n", "1".repeat(64));
        assert_eq!(parse_checksum_file(&sums, "etcd-v3.5.21-linux-amd64.tar.gz").unwrap().hex(), d);
        assert_eq!(parse_checksum_file(&format!("{d} *./runc.amd64\n{} runc.arm64\n", "2".repeat(64)), "runc.amd64").unwrap().hex(), d);
        assert!(parse_checksum_file(&sums, "etcd-v3.5.21-linux-arm64.tar.gz").is_none());
        assert!(parse_checksum_file("<html>not found</html>", "kubelet").is_none());
        assert!(parse_checksum_file(&format!("{d}  other-file\n"), "kubelet").is_none());
    }
}
