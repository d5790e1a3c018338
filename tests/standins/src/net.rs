//! TLS material, a minimal HTTP/1.1 server (one request per connection, `Connection: close`)
//! and a minimal HTTPS client, on rustls with the ring provider.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

use crate::log;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certs_from_pem(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("bad PEM: {e}"))?;
    let out: Vec<_> = blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| CertificateDer::from(b.into_contents())).collect();
    if out.is_empty() {
        return Err("no CERTIFICATE in PEM".into());
    }
    Ok(out)
}

pub fn key_from_pem(text: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    for b in pem::parse_many(text).map_err(|e| format!("bad PEM: {e}"))? {
        let der = b.contents().to_vec();
        match b.tag() {
            "PRIVATE KEY" => return Ok(PrivateKeyDer::Pkcs8(der.into())),
            "EC PRIVATE KEY" => return Ok(PrivateKeyDer::Sec1(der.into())),
            "RSA PRIVATE KEY" => return Ok(PrivateKeyDer::Pkcs1(der.into())),
            _ => {}
        }
    }
    Err("no private key in PEM".into())
}

pub fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

pub fn roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c).map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// A verifier of client certificates against `ca_pem` (chain, validity, clientAuth usage).
pub fn client_verifier(ca_pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, String> {
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider()).allow_unauthenticated().build().map_err(|e| e.to_string())
}

/// The user (CN) and groups (O + system:authenticated) of a client certificate chain that
/// `verifier` accepts.
pub fn verified_user(verifier: &dyn ClientCertVerifier, peer_certs: &[Vec<u8>]) -> Option<(String, Vec<String>)> {
    let leaf = peer_certs.first()?;
    let chain: Vec<_> = peer_certs[1..].iter().map(|c| CertificateDer::from(c.as_slice())).collect();
    verifier.verify_client_cert(&CertificateDer::from(leaf.as_slice()), &chain, UnixTime::now()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let subj = cert.subject();
    let cn = subj.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("").to_string();
    let mut groups: Vec<String> = subj.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
    groups.push("system:authenticated".into());
    Some((cn, groups))
}

/// Go's `tls.RequestClientCert`, which kube-apiserver uses with --client-ca-file: the server
/// asks for a client certificate (naming the CA in its hints) but accepts any certificate, or
/// none, in the handshake. The handshake signature is still checked, so the client holds the
/// key. Whether the certificate chains to the CA is the x509 authenticator's business (a
/// certificate from another CA gets 401, not a TLS failure).
#[derive(Debug)]
struct RequestClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Client certificates a server accepts.
pub enum ClientAuth<'a> {
    None,
    /// Ask for one; verify later (kube-apiserver, kubelet).
    Request(&'a [u8]),
}

pub fn server_config(cert_pem: &[u8], key_pem: &[u8], client_auth: ClientAuth) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let builder = match client_auth {
        ClientAuth::Request(ca) => builder.with_client_cert_verifier(Arc::new(RequestClientCert(client_verifier(ca)?))),
        ClientAuth::None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?).map_err(|e| format!("certificate and key do not match: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A self-signed serving certificate, for healthz ports that upstream also serves with a
/// generated certificate when none is configured.
pub fn self_signed_server(names: &[&str]) -> Arc<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("self-signed cert");
    let cert = ck.cert.pem();
    let key = ck.signing_key.serialize_pem();
    server_config(cert.as_bytes(), key.as_bytes(), ClientAuth::None).expect("self-signed config")
}

pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// DER of the verified client certificate chain (leaf first), if any.
    pub peer_certs: Vec<Vec<u8>>,
    pub remote: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec() }
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response { status, content_type: "application/json", body: serde_json::to_vec(v).unwrap_or_default() }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 message head and body from `r`. Returns the start line, headers, body.
/// An HTTP message: start line, headers, body.
type Message = (String, Vec<(String, String)>, Vec<u8>);

fn read_message<R: BufRead>(r: &mut R, limit: usize) -> io::Result<Message> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if headers.len() > 200 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too many headers"));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if n == 0 {
                let mut trailer = String::new();
                while r.read_line(&mut trailer)? > 2 {
                    trailer.clear();
                }
                break;
            }
            if body.len() + n > limit {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = get("content-length") {
        let n: usize = len.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        if n > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        body = vec![0; n];
        r.read_exact(&mut body)?;
    } else if start.starts_with("HTTP/") {
        r.take(limit as u64).read_to_end(&mut body)?;
    }
    Ok((start.trim_end().to_string(), headers, body))
}

fn answer<S: Read + Write>(stream: &mut S, peer_certs: Vec<Vec<u8>>, remote: String, handler: &dyn Fn(Request) -> Response) {
    let mut reader = BufReader::new(&mut *stream);
    let Ok((start, headers, body)) = read_message(&mut reader, 16 << 20) else { return };
    drop(reader);
    let mut parts = start.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (p, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q.split('&').filter(|s| !s.is_empty()).map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k), percent_decode(v))
    });
    let req = Request { method, path: percent_decode(p), query: query.collect(), headers, body, peer_certs, remote };
    let resp = handler(req);
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache, private\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&resp.body);
    let _ = stream.flush();
}

/// Serves HTTPS on `addr` until the process ends; one thread per connection.
pub fn serve_tls<F>(addr: &str, cfg: Arc<rustls::ServerConfig>, handler: F) -> io::Result<()>
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr)?;
    let handler = Arc::new(handler);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let cfg = cfg.clone();
        let handler = handler.clone();
        std::thread::spawn(move || {
            let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
            let Ok(conn) = rustls::ServerConnection::new(cfg) else { return };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            // Finish the handshake first so a refused client certificate is reported as such.
            while tls.conn.is_handshaking() {
                if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                    log!("TLS handshake with {remote} failed: {e}");
                    return;
                }
            }
            let peer_certs = tls.conn.peer_certificates().map(|c| c.iter().map(|d| d.to_vec()).collect()).unwrap_or_default();
            answer(&mut tls, peer_certs, remote, &*handler);
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        });
    }
    Ok(())
}

/// Serves plain HTTP (the kubelet's and kube-proxy's healthz ports are plain HTTP upstream).
pub fn serve_plain<F>(addr: &str, handler: F) -> io::Result<()>
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr)?;
    let handler = Arc::new(handler);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let handler = handler.clone();
        std::thread::spawn(move || {
            let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            answer(&mut stream, Vec::new(), remote, &*handler);
        });
    }
    Ok(())
}

pub fn spawn_plain<F>(addr: String, handler: F)
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    std::thread::spawn(move || {
        if let Err(e) = serve_plain(&addr, handler) {
            crate::util::fatal(&format!("cannot listen on {addr}: {e}"));
        }
    });
}

/// Runs `serve_tls` on a thread; a port that cannot be bound ends the process.
pub fn spawn_server<F>(addr: String, cfg: Arc<rustls::ServerConfig>, handler: F)
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    std::thread::spawn(move || {
        if let Err(e) = serve_tls(&addr, cfg, handler) {
            crate::util::fatal(&format!("cannot listen on {addr}: {e}"));
        }
    });
}

/// Credentials a client presents.
#[derive(Clone)]
pub enum Auth {
    None,
    Cert { cert_pem: Vec<u8>, key_pem: Vec<u8> },
    Token(String),
}

/// An HTTPS client for one server (an apiserver or an etcd member).
#[derive(Clone)]
pub struct Client {
    pub server: String,
    host: String,
    port: u16,
    config: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.server)
    }
}

pub fn split_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("{url}: only https:// servers are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h.trim_matches(['[', ']']).to_string(), p.parse().map_err(|_| format!("{url}: bad port"))?),
        _ => (hostport.to_string(), 443),
    };
    Ok((host, port))
}

impl Client {
    pub fn new(server: &str, ca_pem: &[u8], auth: Auth) -> Result<Client, String> {
        let (host, port) = split_url(server)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca_pem)?);
        let (config, token) = match auth {
            Auth::Cert { cert_pem, key_pem } => (builder.with_client_auth_cert(certs_from_pem(&cert_pem)?, key_from_pem(&key_pem)?).map_err(|e| e.to_string())?, None),
            Auth::Token(t) => (builder.with_no_client_auth(), Some(t)),
            Auth::None => (builder.with_no_client_auth(), None),
        };
        Ok(Client { server: server.trim_end_matches('/').to_string(), host, port, config: Arc::new(config), token })
    }

    /// One request; returns the status and body. Errors are transport errors only.
    pub fn request(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.server))?
            .next()
            .ok_or_else(|| format!("{}: no address", self.server))?;
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("{}: {e}", self.server))?;
        sock.set_read_timeout(Some(Duration::from_secs(15))).ok();
        sock.set_write_timeout(Some(Duration::from_secs(15))).ok();
        let name = ServerName::try_from(self.host.clone()).map_err(|e| format!("{}: {e}", self.server))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| format!("{}: {e}", self.server))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: {}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n", self.host, self.port, crate::util::prog(), body.len());
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        let io_err = |e: io::Error| format!("{}: {e}", self.server);
        tls.write_all(head.as_bytes()).map_err(io_err)?;
        tls.write_all(body).map_err(io_err)?;
        tls.flush().map_err(io_err)?;
        let mut reader = BufReader::new(tls);
        let (start, _headers, body) = match read_message(&mut reader, 64 << 20) {
            Ok(m) => m,
            // Servers that close without close_notify still delivered the whole answer.
            Err(e) => return Err(io_err(e)),
        };
        let status: u16 = start.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("{}: malformed status line", self.server))?;
        Ok((status, body))
    }

    pub fn get_json(&self, path: &str) -> Result<(u16, serde_json::Value), String> {
        let (s, b) = self.request("GET", path, None, b"")?;
        Ok((s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)))
    }

    pub fn send_json(&self, method: &str, path: &str, content_type: &str, v: &serde_json::Value) -> Result<(u16, serde_json::Value), String> {
        let (s, b) = self.request(method, path, Some(content_type), &serde_json::to_vec(v).unwrap_or_default())?;
        Ok((s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)))
    }
}
