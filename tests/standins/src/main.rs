//! kbin's stand-ins for the upstream release binaries (kube-apiserver, kube-controller-manager,
//! kube-scheduler, kubelet, kube-proxy, flanneld, containerd, runc, crictl, kubectl, ...), for
//! end-to-end tests where the real ones cannot be had. One multi-call binary: the component is
//! taken from the trailer that build.sh appends to each copy, else from the program name, else
//! from the first argument (`kbin-standin kubelet --config ...`). See README.md.

mod agents;
mod apiserver;
mod controller_manager;
mod etcd;
mod kubeconfig;
mod kubelet;
mod misc;
mod net;
mod objects;
mod rbac;
mod util;

use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

const COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "flanneld",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "kubectl",
    "cni",
];

/// `#kbin-standin component=NAME version=VERSION` at the end of the executable (build.sh).
fn trailer() -> &'static (Option<String>, Option<String>) {
    static T: OnceLock<(Option<String>, Option<String>)> = OnceLock::new();
    T.get_or_init(|| {
        let mut buf = Vec::new();
        if let Ok(mut f) = std::fs::File::open("/proc/self/exe")
            && f.seek(SeekFrom::End(-256)).is_ok() {
                let _ = f.read_to_end(&mut buf);
            }
        let text = String::from_utf8_lossy(&buf);
        let Some(line) = text.rsplit("#kbin-standin ").next().filter(|_| text.contains("#kbin-standin ")) else { return (None, None) };
        let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
        (field("component="), field("version="))
    })
}

/// The version this copy impersonates: the trailer's, else $KBIN_STANDIN_VERSION, else v1.34.2.
pub fn version() -> String {
    trailer().1.clone().or_else(|| std::env::var("KBIN_STANDIN_VERSION").ok()).unwrap_or_else(|| "v1.34.2".into())
}

fn from_name(arg0: &str) -> Option<String> {
    let base = arg0.rsplit('/').next().unwrap_or(arg0);
    let base = base.trim_end_matches("-amd64").trim_end_matches(".amd64").trim_end_matches("-arm64").trim_end_matches(".arm64");
    if COMPONENTS.contains(&base) {
        return Some(base.to_string());
    }
    match base {
        "flannel" | "bridge" | "host-local" | "loopback" | "portmap" => Some("cni".into()),
        _ => None,
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let arg0 = argv.first().cloned().unwrap_or_default();
    let (component, args) = match trailer().0.clone().or_else(|| from_name(&arg0)) {
        Some(c) => (c, argv[1..].to_vec()),
        None => match argv.get(1).and_then(|a| from_name(a)) {
            Some(c) => (c, argv[2..].to_vec()),
            None => {
                eprintln!("kbin-standin: run as one of {} (by name or as the first argument)", COMPONENTS.join(", "));
                std::process::exit(2);
            }
        },
    };
    util::set_prog(&component);
    util::exit_cleanly_on_sigterm();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match component.as_str() {
        "kube-apiserver" => apiserver::main(&args),
        "kube-controller-manager" => controller_manager::main(&args),
        "kube-scheduler" => agents::scheduler(&args),
        "kubelet" => kubelet::main(&args),
        "kube-proxy" => agents::proxy(&args),
        "flanneld" => agents::flanneld(&args),
        "containerd" => misc::containerd(&args),
        "containerd-shim-runc-v2" => misc::shim(&args),
        "ctr" => misc::ctr(&args),
        "runc" => misc::runc(&args),
        "crictl" => misc::crictl(&args),
        "kubectl" => misc::kubectl(&args),
        _ => misc::cni(arg0.rsplit('/').next().unwrap_or("cni")),
    }
}
