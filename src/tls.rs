//! A minimal HTTPS client over any byte stream, with mutual TLS.
//!
//! kbin checks etcd and the apiservers from the operator, through the SSH connection to a host
//! (a direct-tcpip channel), so the transport is a generic `Read + Write` stream rather than a
//! socket. Requests are HTTP/1.1 with `Connection: close`; responses may be sized or chunked.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("bad TLS material: {0}")]
    Material(String),
    #[error("TLS with {server} failed: {source}")]
    Io {
        server: String,
        #[source]
        source: io::Error,
    },
    #[error("malformed HTTP response from {server}: {message}")]
    Http { server: String, message: String },
}

/// Who we are and whom we trust: PEM texts.
#[derive(Clone)]
pub struct Identity {
    pub ca_pem: String,
    /// Client certificate and key for mutual TLS; `None` for server-only TLS.
    pub client: Option<(String, String)>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity {{ client cert: {} }}", self.client.is_some())
    }
}

fn certs(pem_text: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| TlsError::Material(e.to_string()))?;
    let out: Vec<_> = blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| CertificateDer::from(b.into_contents())).collect();
    if out.is_empty() {
        return Err(TlsError::Material("no certificate in PEM".into()));
    }
    Ok(out)
}

fn key(pem_text: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let block = pem::parse(pem_text).map_err(|e| TlsError::Material(e.to_string()))?;
    let der = block.into_contents();
    PrivateKeyDer::try_from(der).map_err(|e| TlsError::Material(e.to_string()))
}

/// A rustls client configuration for `id` (ring provider).
pub fn client_config(id: &Identity) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&id.ca_pem)? {
        roots.add(c).map_err(|e| TlsError::Material(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Material(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &id.client {
        Some((cert, k)) => builder.with_client_auth_cert(certs(cert)?, key(k)?).map_err(|e| TlsError::Material(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one HTTPS request over `stream`, verifying the server as `server_name` (an IP address
/// or DNS name that must be in its certificate) against the identity's CA. The body, if any, is
/// of `content_type` (`application/json`; `application/apply-patch+yaml` for a Kubernetes
/// server-side apply).
pub fn request<S: Read + Write>(
    stream: S,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&[u8]>,
) -> Result<Response, TlsError> {
    if content_type.contains(['\r', '\n']) {
        return Err(TlsError::Material(format!("bad Content-Type {content_type:?}")));
    }
    let io_err = |source| TlsError::Io { server: server_name.to_string(), source };
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| TlsError::Material(format!("{server_name}: {e}")))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| TlsError::Material(e.to_string()))?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server_name}\r\nUser-Agent: kbin/{}\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    tls.write_all(head.as_bytes()).map_err(io_err)?;
    tls.write_all(body).map_err(io_err)?;
    tls.flush().map_err(io_err)?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // servers that close without close_notify: keep what arrived
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(io_err(e)),
    }
    parse_response(&raw).map_err(|message| TlsError::Http { server: server_name.to_string(), message })
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or("body shorter than Content-Length")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk header")?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("truncated chunk")?);
        b = b.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sized_and_chunked_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello extra").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = parse_response(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
