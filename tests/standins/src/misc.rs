//! containerd, runc, crictl, kubectl, ctr, containerd-shim-runc-v2 and CNI plugin stand-ins:
//! just enough for a systemd unit to start and for version probes to answer.

use std::os::unix::net::{UnixDatagram, UnixListener};

use crate::util::{self, Flags};
use crate::{log, version};

/// `systemd-notify READY=1` over $NOTIFY_SOCKET (a path, or `@abstract`).
fn sd_notify(msg: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else { return };
    let sock = match UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => return log!("sd_notify: {e}"),
    };
    let r = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = r {
        log!("sd_notify to {path}: {e}");
    }
}

/// The `address` under `[grpc]` in containerd's TOML config (default /run/containerd/containerd.sock).
fn grpc_address(config: &str) -> Option<String> {
    let mut in_grpc = false;
    for line in config.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_grpc = l == "[grpc]";
            continue;
        }
        if in_grpc
            && let Some((k, v)) = l.split_once('=')
                && k.trim() == "address" {
                    return Some(v.trim().trim_matches(['"', '\'']).to_string());
                }
    }
    None
}

pub fn containerd(args: &[String]) {
    let f = Flags::parse(args, &["config", "c", "address", "a"]);
    if f.bool("version") || f.bool("v") || f.positional.first().map(String::as_str) == Some("--version") {
        println!("containerd github.com/containerd/containerd/v2 {} kbin-standin", version());
        return;
    }
    let config_path = f.get("config").or(f.get("c")).unwrap_or("/etc/containerd/config.toml").to_string();
    let config = std::fs::read_to_string(&config_path).unwrap_or_else(|e| util::fatal(&format!("cannot read --config {config_path}: {e}")));
    if !config.lines().any(|l| l.trim_start().starts_with("version")) {
        log!("{config_path} has no version line; containerd 2.x reads it as config version 1");
    }
    let addr = f.get("address").or(f.get("a")).map(str::to_string).or_else(|| grpc_address(&config)).unwrap_or_else(|| "/run/containerd/containerd.sock".into());
    if let Some(dir) = std::path::Path::new(&addr).parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| util::fatal(&format!("{}: {e}", dir.display())));
    }
    let _ = std::fs::remove_file(&addr);
    let listener = UnixListener::bind(&addr).unwrap_or_else(|e| util::fatal(&format!("cannot listen on {addr}: {e}")));
    log!("serving on {addr} (config {config_path}); no CRI, the socket only accepts connections");
    sd_notify("READY=1\nSTATUS=serving (kbin stand-in)");
    for conn in listener.incoming() {
        drop(conn);
    }
}

pub fn runc(args: &[String]) {
    match args.first().map(String::as_str) {
        Some("--version" | "-v" | "version") => println!("runc version {}\ncommit: kbin-standin\nspec: 1.2.1\ngo: none", version().trim_start_matches('v')),
        _ => {
            eprintln!("runc (kbin stand-in): only --version is supported");
            std::process::exit(1);
        }
    }
}

pub fn crictl(args: &[String]) {
    let f = Flags::parse(args, &["runtime-endpoint", "r", "output", "o"]);
    match f.positional.first().map(String::as_str) {
        _ if f.bool("version") || f.bool("v") => println!("crictl version {}", version()),
        Some("version") => println!("Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  v2.1.5-kbin-standin\nRuntimeApiVersion:  v1"),
        Some("info") => println!("{{\"status\": {{\"conditions\": []}}, \"kbinStandin\": true}}"),
        Some("ps" | "pods" | "images") => println!("[]"),
        other => {
            eprintln!("crictl (kbin stand-in): {other:?} is not supported");
            std::process::exit(1);
        }
    }
}

pub fn kubectl(args: &[String]) {
    let f = Flags::parse(args, &["output", "o", "kubeconfig"]);
    let json = matches!(f.get("output").or(f.get("o")), Some("json"));
    let v = version();
    let mut parts = v.trim_start_matches('v').split('.');
    let (major, minor) = (parts.next().unwrap_or("1").to_string(), parts.next().unwrap_or("0").to_string());
    match f.positional.first().map(String::as_str) {
        Some("version") if f.bool("client") => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"clientVersion": {"major": major, "minor": minor, "gitVersion": v, "gitCommit": "kbin-standin", "platform": "linux/amd64"}, "kustomizeVersion": "v5.7.1"})).unwrap_or_default()
                );
            } else {
                println!("Client Version: {v}\nKustomize Version: v5.7.1");
            }
        }
        _ => {
            eprintln!("kubectl (kbin stand-in): only `kubectl version --client [-o json]` is supported");
            std::process::exit(1);
        }
    }
}

pub fn ctr(args: &[String]) {
    match args.first().map(String::as_str) {
        Some("--version" | "-v") => println!("ctr github.com/containerd/containerd/v2 {}", version()),
        _ => {
            eprintln!("ctr (kbin stand-in): only --version is supported");
            std::process::exit(1);
        }
    }
}

pub fn shim(args: &[String]) {
    if args.first().map(String::as_str) == Some("-v") {
        println!("containerd-shim-runc-v2:\n  Version:  {}\n  Revision: kbin-standin", version());
        return;
    }
    eprintln!("containerd-shim-runc-v2 (kbin stand-in): only -v is supported");
    std::process::exit(1);
}

/// A CNI plugin: answers CNI_COMMAND=VERSION, refuses everything else with a CNI error.
pub fn cni(name: &str) {
    match std::env::var("CNI_COMMAND").as_deref() {
        Ok("VERSION") => println!("{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}}"),
        _ => {
            println!("{{\"cniVersion\":\"1.0.0\",\"code\":4,\"msg\":\"{name}: the kbin stand-in CNI plugin sets up no networks\"}}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grpc() {
        assert_eq!(super::grpc_address("version = 3\n[grpc]\n  address = '/tmp/x.sock'\n"), Some("/tmp/x.sock".into()));
        assert_eq!(super::grpc_address("version = 3\n[plugins.x]\n  address = 'no'\n"), None);
    }
}
