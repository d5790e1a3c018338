//! `kbin hosts check`: gather each host's facts in one round trip and judge them.
//!
//! One constant script prints `key=value` lines kbin defines (never a tool's human output), run as
//! root when sudo allows (reading `product_uuid` needs root) and as the login user otherwise.
//! [`evaluate`] turns the facts of all hosts into problems, including the ones only visible across
//! hosts (cloned VMs share a hostname, `product_uuid`, machine id or MAC address).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Cmd, HostError, Remote};
pub use crate::config::Severity;
use crate::config::{Cluster, Host, Role};

/// The facts script. Install paths to measure free disk under arrive as arguments.
const FACTS_SCRIPT: &str = r#"kv() { printf '%s=%s\n' "$1" "$2"; }
kv time_ns "$(date +%s%N)"
kv uid "$(id -u)"
kv hostname "$(cat /proc/sys/kernel/hostname)"
if [ -r /etc/os-release ]; then
  ( . /etc/os-release; kv os_id "${ID:-}"; kv os_version "${VERSION_ID:-}"; kv os_name "${PRETTY_NAME:-}" )
fi
kv arch "$(uname -m)"
kv kernel "$(uname -r)"
kv cgroup_fs "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
if command -v systemctl >/dev/null 2>&1; then kv systemd "$(systemctl --version | awk 'NR==1 {print $2}')"; fi
kv swap_kb "$(awk '$1 == "SwapTotal:" {print $2}' /proc/meminfo)"
kv swap_devices "$(awk 'NR > 1' /proc/swaps | wc -l)"
for m in br_netfilter overlay; do
  if [ -d "/sys/module/$m" ]; then s=loaded
  # built into the kernel: no /sys/module entry without parameters, but the feature is there
  elif [ "$m" = br_netfilter ] && [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then s=loaded
  elif [ "$m" = overlay ] && grep -qw overlay /proc/filesystems 2>/dev/null; then s=loaded
  elif command -v modprobe >/dev/null 2>&1 && modprobe -n -q "$m" 2>/dev/null; then s=loadable
  elif [ -n "$(find "/lib/modules/$(uname -r)" -name "$m.ko*" 2>/dev/null | head -n 1)" ]; then s=loadable
  else s=missing; fi
  kv "module.$m" "$s"
done
kv ip_forward "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)"
kv product_uuid "$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)"
kv machine_id "$(cat /etc/machine-id 2>/dev/null)"
# netlink sees this network namespace's interfaces; /sys/class/net is whatever sysfs is mounted
# (in a container, often the machine's own NICs)
if command -v ip >/dev/null 2>&1; then
  ip -o link show 2>/dev/null | awk '{n = $2; sub(/:$/, "", n); sub(/@.*/, "", n); for (i = 3; i < NF; i++) if ($i == "link/ether") print "mac=" $(i + 1) " " n}'
else
  for i in /sys/class/net/*; do
    n=${i##*/}
    [ "$n" = lo ] && continue
    [ -r "$i/address" ] && kv mac "$(cat "$i/address") $n"
  done
fi
for p in "$@"; do
  d=$p
  while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done
  kv disk_kb "$(df -Pk -- "$d" | awk 'NR == 2 {print $4}') $p"
done
cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" {split($2, a, ":"); print "listen_hex=" a[2]}'
# one systemctl for all units: a line each, in order
units="etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy nginx"
systemctl is-active $units 2>/dev/null | for u in $units; do read -r s || s=; [ "$s" = active ] && kv active_unit "$u"; done
kv end 1
"#;

/// Free space kbin wants under each install path.
pub const MIN_FREE_KB: u64 = 2 * 1024 * 1024;
/// Clock skew beyond this (plus the measurement's own uncertainty) is a problem.
pub const MAX_SKEW: Duration = Duration::from_secs(2);

/// What one host told us.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Facts {
    pub hostname: String,
    pub os_id: String,
    pub os_version: String,
    pub os_name: String,
    pub arch: String,
    pub kernel: String,
    /// systemd's version number; `None` when there is no systemctl.
    pub systemd: Option<u32>,
    /// The cgroup hierarchy `/sys/fs/cgroup` holds; `None` when it cannot be told.
    pub cgroup: Option<Cgroup>,
    /// Remote clock minus the operator's, in milliseconds (midpoint of the round trip).
    pub clock_skew_ms: i64,
    /// Half the round trip: how exact `clock_skew_ms` is.
    pub clock_uncertainty_ms: i64,
    /// `root` (logged in as root), `ok` (sudo -n works), or why it does not.
    pub sudo: String,
    pub swap_kb: u64,
    pub swap_devices: u32,
    /// `loaded`, `loadable` or `missing`, for br_netfilter and overlay.
    pub modules: BTreeMap<String, String>,
    pub ip_forward: Option<bool>,
    pub product_uuid: String,
    pub machine_id: String,
    /// Interface name to MAC address.
    pub macs: BTreeMap<String, String>,
    /// Install path to free kilobytes on its filesystem.
    pub disk_free_kb: BTreeMap<String, u64>,
    /// TCP ports something listens on.
    pub listening: Vec<u16>,
    /// Which of the units kbin installs are running (a port they hold is not a conflict).
    pub active_units: Vec<String>,
}

/// One finding, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub host: String,
    /// Short name of the check (`swap`, `ports`, `unique-mac`, ...).
    pub check: String,
    pub severity: Severity,
    pub message: String,
    pub hint: String,
}

/// One host's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub address: String,
    pub roles: Vec<Role>,
    pub reachable: bool,
    /// Why the host could not be checked.
    pub error: Option<String>,
    pub facts: Option<Facts>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub hosts: Vec<HostReport>,
    pub errors: usize,
    pub warnings: usize,
}

/// The remote paths whose filesystems need free space.
pub fn install_paths(c: &Cluster) -> Vec<String> {
    let l = &c.layout;
    let mut v = vec![l.etcd_bin.clone(), l.etcd_data.clone(), l.k8s_bin.clone(), l.k8s_releases.clone(), l.k8s_logs.clone(), l.units.clone()];
    v.dedup();
    v
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// Run the facts script on a host: as root through sudo when possible, else as the login user
/// (and then the sudo problem is itself a fact).
pub fn gather(host: &dyn Remote, paths: &[String]) -> Result<Facts, HostError> {
    let mut argv = vec!["sh".to_string(), "-c".into(), FACTS_SCRIPT.into(), "kbin-facts".into()];
    argv.extend(paths.iter().cloned());
    let timeout = Duration::from_secs(60);
    let root = host.user() == "root";
    let (sudo, out, t0, t1) = {
        let t0 = now_ns();
        match host.check(&Cmd { argv: argv.clone(), sudo: true, stdin: None, timeout: Some(timeout) }) {
            Ok(out) => (if root { "root".to_string() } else { "ok".to_string() }, out, t0, now_ns()),
            Err(e @ (HostError::SudoPassword { .. } | HostError::Sudo { .. })) => {
                let why = match &e {
                    HostError::SudoPassword { .. } => "needs a password".to_string(),
                    HostError::Sudo { message, .. } => message.clone(),
                    _ => unreachable!(),
                };
                let t0 = now_ns();
                let out = host.check(&Cmd { argv, sudo: false, stdin: None, timeout: Some(timeout) })?;
                (why, out, t0, now_ns())
            }
            Err(e) => return Err(e),
        }
    };
    let mut f = parse_facts(&out.stdout_str()).map_err(|m| HostError::Invalid { host: host.name().into(), message: format!("facts script: {m}") })?;
    f.sudo = sudo;
    if let Some(remote) = parse_kv(&out.stdout_str()).get("time_ns").and_then(|v| v.first()).and_then(|v| v.parse::<i128>().ok()) {
        let mid = (t0 + t1) / 2;
        f.clock_skew_ms = ((remote - mid) / 1_000_000) as i64;
        f.clock_uncertainty_ms = ((t1 - t0) / 2_000_000) as i64;
    }
    Ok(f)
}

fn parse_kv(text: &str) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    m
}

/// Parse the facts script's `key=value` lines.
pub fn parse_facts(text: &str) -> Result<Facts, String> {
    let kv = parse_kv(text);
    if !kv.contains_key("end") {
        return Err("output ended early".into());
    }
    let one = |k: &str| kv.get(k).and_then(|v| v.first()).cloned().unwrap_or_default();
    let mut f = Facts {
        hostname: one("hostname"),
        os_id: one("os_id"),
        os_version: one("os_version"),
        os_name: one("os_name"),
        arch: one("arch"),
        kernel: one("kernel"),
        systemd: one("systemd").parse().ok(),
        cgroup: Cgroup::from_fs_type(&one("cgroup_fs")),
        swap_kb: one("swap_kb").parse().unwrap_or(0),
        swap_devices: one("swap_devices").trim().parse().unwrap_or(0),
        ip_forward: match one("ip_forward").as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
        product_uuid: one("product_uuid").to_lowercase(),
        machine_id: one("machine_id"),
        ..Facts::default()
    };
    for m in ["br_netfilter", "overlay"] {
        f.modules.insert(m.into(), kv.get(&format!("module.{m}")).and_then(|v| v.first()).cloned().unwrap_or_else(|| "missing".into()));
    }
    for v in kv.get("mac").into_iter().flatten() {
        if let Some((mac, iface)) = v.split_once(' ') {
            f.macs.insert(iface.to_string(), mac.to_lowercase());
        }
    }
    for v in kv.get("disk_kb").into_iter().flatten() {
        let (kb, path) = v.split_once(' ').ok_or_else(|| format!("bad disk line {v:?}"))?;
        f.disk_free_kb.insert(path.to_string(), kb.parse().map_err(|_| format!("bad free space {kb:?} for {path}"))?);
    }
    let mut ports: Vec<u16> = kv.get("listen_hex").into_iter().flatten().filter_map(|h| u16::from_str_radix(h, 16).ok()).collect();
    ports.sort_unstable();
    ports.dedup();
    f.listening = ports;
    f.active_units = kv.get("active_unit").into_iter().flatten().cloned().collect();
    Ok(f)
}

/// Why the cluster's binaries (`artifacts.arch`) do not run on a host whose `uname -m` is `arch`.
pub fn wrong_arch(c: &Cluster, arch: &str) -> Option<String> {
    let want = match c.artifacts.arch {
        crate::artifacts::Arch::Amd64 => "x86_64",
        crate::artifacts::Arch::Arm64 => "aarch64",
    };
    (arch != want).then(|| format!("architecture is {arch}, but the cluster installs {} binaries (artifacts.arch)", c.artifacts.arch.as_str()))
}

/// Which cgroup hierarchy a host runs, from the filesystem type of `/sys/fs/cgroup`
/// (`stat -fc %T`): `cgroup2fs` is the unified hierarchy (v2); `tmpfs` holds the v1 controllers
/// (the legacy and the hybrid layouts alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cgroup {
    V1,
    V2,
}

impl Cgroup {
    pub fn from_fs_type(t: &str) -> Option<Cgroup> {
        match t.trim() {
            "cgroup2fs" => Some(Cgroup::V2),
            "tmpfs" => Some(Cgroup::V1),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Cgroup::V1 => "v1",
            Cgroup::V2 => "v2",
        }
    }
}

/// The first Kubernetes minor release whose kubelet refuses to start on cgroup v1 unless its
/// configuration sets `failCgroupV1: false`.
pub const CGROUP_V1_REFUSED_FROM: (u32, u32) = (1, 35);

/// `(major, minor)` of a release tag (`v1.37.2` -> `(1, 37)`).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.strip_prefix('v')?.split(['.', '-', '+']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether the cluster file's `[kubelet.config]` says `failCgroupV1 = false` (the operator's
/// knowing choice to run on cgroup v1).
pub fn allows_cgroup_v1(c: &Cluster) -> bool {
    matches!(c.kubelet.config.get("failCgroupV1"), Some(toml::Value::Boolean(false)))
}

/// Why a kubelet of release `version` will not start on a host with `cgroup`: from 1.35 on the
/// kubelet exits on cgroup v1 unless `failCgroupV1 = false` is set. `None` when it will start (or
/// the hierarchy could not be told: the kubelet then says itself).
pub fn cgroup_refusal(c: &Cluster, cgroup: Option<Cgroup>, version: &str) -> Option<String> {
    let refused = major_minor(version).is_some_and(|v| v >= CGROUP_V1_REFUSED_FROM);
    (cgroup == Some(Cgroup::V1) && refused && !allows_cgroup_v1(c)).then(|| {
        format!(
            "the host runs cgroup v1, and the kubelet of Kubernetes {version} refuses to start on it (from v1.35 on) \
             (hint: boot the host with the unified hierarchy, systemd.unified_cgroup_hierarchy=1 on the kernel command line, \
             or set `failCgroupV1 = false` under [kubelet.config] knowingly: cgroup v1 support is deprecated upstream)"
        )
    })
}

/// The TCP ports a host's roles need free, with what uses them and the unit kbin installs for it.
pub fn required_ports(c: &Cluster, h: &Host) -> Vec<(u16, &'static str, &'static str)> {
    // a master's apiserver port comes first (sorted by name) and wins over its LB's
    let mut v: Vec<_> = h.roles.iter().flat_map(|r| crate::config::grammar::role_ports(c.apiserver.port, *r)).collect();
    v.sort_unstable();
    v.dedup_by_key(|p| p.0);
    v
}

fn problem(host: &str, check: &str, sev: Severity, message: String, hint: &str) -> Problem {
    Problem { host: host.into(), check: check.into(), severity: sev, message, hint: hint.into() }
}

/// Judge one host's facts on their own.
pub fn evaluate_host(c: &Cluster, h: &Host, f: &Facts) -> Vec<Problem> {
    use Severity::*;
    let n = h.name.as_str();
    let mut p = Vec::new();
    let node = h.has(Role::Node);
    if let Some(m) = wrong_arch(c, &f.arch) {
        p.push(problem(n, "arch", Error, m, "kbin installs amd64 (x86_64) or arm64 (aarch64) binaries: use such machines, all of one architecture, and set artifacts.arch to it"));
    }
    match f.systemd {
        None => p.push(problem(n, "systemd", Error, "systemd is missing (no systemctl)".into(), "kbin runs every component as a systemd unit; use a distribution booted with systemd")),
        Some(v) if v < 232 => p.push(problem(n, "systemd", Error, format!("systemd {v} is too old"), "kbin's units need systemd 232 or newer (Debian 10, Ubuntu 18.04, RHEL 8 or later)")),
        _ => {}
    }
    if f.clock_skew_ms.unsigned_abs() as u128 > MAX_SKEW.as_millis() + f.clock_uncertainty_ms.unsigned_abs() as u128 {
        p.push(problem(n, "clock", Error, format!("clock is {:+.1}s off the operator's", f.clock_skew_ms as f64 / 1000.0), "run time synchronisation on every host (systemd-timesyncd or chrony); certificates and etcd need agreeing clocks"));
    }
    if f.sudo != "root" && f.sudo != "ok" {
        p.push(problem(n, "sudo", Error, format!("sudo -n does not work: {}", f.sudo), "allow the SSH user passwordless sudo (`USER ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/kbin) or log in as root"));
    }
    for (path, kb) in &f.disk_free_kb {
        if *kb < MIN_FREE_KB {
            p.push(problem(n, "disk", Error, format!("only {} MiB free under {path}", kb / 1024), "free at least 2 GiB on that filesystem, or point [layout] at a larger one"));
        }
    }
    if node && (f.swap_kb > 0 || f.swap_devices > 0) {
        p.push(problem(n, "swap", Error, format!("swap is on ({} MiB)", f.swap_kb / 1024), "turn swap off (swapoff -a, and remove it from /etc/fstab); the kubelet refuses to start with swap"));
    }
    if node {
        if let Some(m) = cgroup_refusal(c, f.cgroup, &c.kubernetes_version) {
            p.push(problem(n, "cgroup", Error, m, "boot it with systemd.unified_cgroup_hierarchy=1, or set failCgroupV1 = false under [kubelet.config]"));
        } else if f.cgroup.is_none() {
            p.push(problem(n, "cgroup", Warning, "cannot tell the cgroup version (/sys/fs/cgroup is neither cgroup2fs nor tmpfs)".into(), "the kubelet needs a cgroup hierarchy mounted at /sys/fs/cgroup; cgroup v2 is what current releases want"));
        }
        for (m, s) in &f.modules {
            if s == "missing" {
                p.push(problem(n, "kernel-module", Error, format!("kernel module {m} is neither loaded nor loadable"), "install the kernel's extra modules package (e.g. linux-modules-extra-$(uname -r)) or load it on the host machine of a container"));
            }
        }
        if f.ip_forward != Some(true) {
            p.push(problem(n, "ip-forward", Warning, "net.ipv4.ip_forward is off".into(), "pod traffic needs it: put net.ipv4.ip_forward = 1 in a file under /etc/sysctl.d/ and run sysctl --system"));
        }
    }
    // a port held by the unit kbin installs for it (an earlier deploy) is not a conflict
    let busy: Vec<String> = required_ports(c, h)
        .into_iter()
        .filter(|(port, _, unit)| f.listening.contains(port) && !f.active_units.iter().any(|u| u == unit))
        .map(|(port, what, _)| format!("{port} ({what})"))
        .collect();
    if !busy.is_empty() {
        p.push(problem(n, "ports", Error, format!("ports already in use: {}", busy.join(", ")), "stop whatever listens there (ss -tlnp shows it), or remove the role from this host"));
    }
    p
}

/// Problems visible only across hosts: duplicated identities of cloned machines.
pub fn evaluate_fleet(facts: &[(&Host, &Facts)]) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut dup = |check: &str, what: &str, key: &dyn Fn(&Facts) -> Vec<String>, hint: &str| {
        let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (h, f) in facts {
            for k in key(f) {
                if !k.is_empty() {
                    seen.entry(k).or_default().push(&h.name);
                }
            }
        }
        for (value, hosts) in seen.into_iter().filter(|(_, v)| v.len() > 1) {
            for h in &hosts {
                let others: Vec<&str> = hosts.iter().filter(|o| *o != h).copied().collect();
                p.push(problem(h, check, Severity::Error, format!("{what} {value} is also on {}", others.join(", ")), hint));
            }
        }
    };
    dup("unique-hostname", "hostname", &|f| vec![f.hostname.clone()], "give every host its own hostname (hostnamectl set-hostname NAME)");
    dup("unique-product-uuid", "product_uuid", &|f| vec![f.product_uuid.clone()], "cloned VMs share a product_uuid: give each VM its own (a fresh clone, or the hypervisor's UUID setting)");
    dup("unique-machine-id", "machine id", &|f| vec![f.machine_id.clone()], "cloned machines share /etc/machine-id: run `rm /etc/machine-id && systemd-machine-id-setup` on the clone");
    dup(
        "unique-mac",
        "MAC address",
        &|f| f.macs.values().filter(|m| m.as_str() != "00:00:00:00:00:00").cloned().collect(),
        "cloned VMs share MAC addresses: let the hypervisor generate a new MAC for each NIC",
    );
    p
}

/// Build the whole report from each host's gather result (in cluster order).
pub fn evaluate(c: &Cluster, gathered: Vec<(&Host, Result<Facts, HostError>)>) -> Report {
    let ok: Vec<(&Host, &Facts)> = gathered.iter().filter_map(|(h, r)| r.as_ref().ok().map(|f| (*h, f))).collect();
    let fleet = evaluate_fleet(&ok);
    let mut hosts = Vec::new();
    for (h, r) in &gathered {
        let mut hr = HostReport { host: h.name.clone(), address: h.address.to_string(), roles: h.roles.clone(), reachable: false, error: None, facts: None, problems: Vec::new() };
        match r {
            Ok(f) => {
                hr.reachable = true;
                hr.problems = evaluate_host(c, h, f);
                hr.problems.extend(fleet.iter().filter(|p| p.host == h.name).cloned());
                hr.facts = Some(f.clone());
            }
            Err(e) => {
                use crate::exit::Reportable;
                hr.reachable = matches!(e.root(), HostError::Command { .. } | HostError::Invalid { .. } | HostError::Sudo { .. } | HostError::SudoPassword { .. });
                hr.error = Some(e.chain());
                hr.problems.push(problem(&h.name, "reachable", Severity::Error, e.chain(), &e.hint().unwrap_or_default()));
            }
        }
        hosts.push(hr);
    }
    let errors = hosts.iter().flat_map(|h| &h.problems).filter(|p| p.severity == Severity::Error).count();
    let warnings = hosts.iter().flat_map(|h| &h.problems).filter(|p| p.severity == Severity::Warning).count();
    Report { hosts, errors, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::{FakeHost, ok};

    const SAMPLE: &str = "time_ns=1700000000000000000\nuid=0\nhostname=n1\nos_id=debian\nos_version=12\nos_name=Debian GNU/Linux 12 (bookworm)\narch=x86_64\nkernel=6.1.0-13-amd64\ncgroup_fs=cgroup2fs\nsystemd=252\nswap_kb=0\nswap_devices=0\nmodule.br_netfilter=loadable\nmodule.overlay=loaded\nip_forward=1\nproduct_uuid=ABCD-1\nmachine_id=m1\nmac=52:54:00:aa:bb:cc eth0\ndisk_kb=10485760 /opt/etcd/bin\nlisten_hex=0016\nlisten_hex=0016\nlisten_hex=2382\nend=1\n";

    fn cluster() -> Cluster {
        let text = r#"
[cluster]
name = "t"
[apiserver]
port = 6443
[[hosts]]
name = "n1"
address = "10.0.0.1"
roles = ["master", "etcd", "node"]
[[hosts]]
name = "n2"
address = "10.0.0.2"
roles = ["node"]
"#;
        crate::config::parse(std::path::Path::new("/tmp/cluster.toml"), text).unwrap()
    }

    #[test]
    fn facts_are_parsed_from_key_value_lines() {
        let f = parse_facts(SAMPLE).unwrap();
        assert_eq!(f.os_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(f.systemd, Some(252));
        assert_eq!(f.product_uuid, "abcd-1");
        assert_eq!(f.macs.get("eth0").map(String::as_str), Some("52:54:00:aa:bb:cc"));
        assert_eq!(f.disk_free_kb.get("/opt/etcd/bin"), Some(&10485760));
        assert_eq!(f.listening, vec![22, 9090]);
        assert_eq!(f.modules.get("br_netfilter").map(String::as_str), Some("loadable"));
        assert!(parse_facts("hostname=x\n").is_err(), "cut-off output is an error, not empty facts");
    }

    #[test]
    fn gather_runs_one_script_through_sudo() {
        let d = tempfile::tempdir().unwrap();
        let h = FakeHost::new("n1", d.path()).respond(|c| (c.argv[0] == "sh").then(|| ok(SAMPLE)));
        let f = gather(&h, &["/opt/etcd/bin".into()]).unwrap();
        assert_eq!(f.sudo, "root");
        let cmds = h.commands();
        assert_eq!(cmds.len(), 1, "one round trip");
        assert_eq!(cmds[0].last().map(String::as_str), Some("/opt/etcd/bin"));
    }

    #[test]
    fn a_cgroup_v1_node_is_refused_from_kubernetes_1_35_unless_fail_cgroup_v1_is_off() {
        let c = cluster();
        let node = c.hosts.iter().find(|h| h.has(Role::Node)).expect("a node");
        let mut f = parse_facts(SAMPLE).unwrap();
        f.sudo = "root".into();
        assert_eq!(f.cgroup, Some(Cgroup::V2));
        assert!(!evaluate_host(&c, node, &f).iter().any(|p| p.check == "cgroup"));
        let v1 = parse_facts(&SAMPLE.replace("cgroup_fs=cgroup2fs", "cgroup_fs=tmpfs")).unwrap();
        assert_eq!(v1.cgroup, Some(Cgroup::V1));
        let p: Vec<Problem> = evaluate_host(&c, node, &v1).into_iter().filter(|p| p.check == "cgroup").collect();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].severity == Severity::Error && p[0].message.contains("cgroup v1") && p[0].hint.contains("systemd.unified_cgroup_hierarchy=1") && p[0].hint.contains("failCgroupV1"), "{p:?}");
        // the releases before 1.35 still start on v1; a knowing `failCgroupV1 = false` too
        assert_eq!(cgroup_refusal(&c, Some(Cgroup::V1), "v1.34.2"), None);
        assert!(cgroup_refusal(&c, Some(Cgroup::V1), "v1.35.0").is_some());
        assert!(cgroup_refusal(&c, Some(Cgroup::V2), "v1.37.2").is_none());
        assert!(cgroup_refusal(&c, None, "v1.37.2").is_none(), "unknown: the kubelet says itself");
        let mut allowed = c.clone();
        allowed.kubelet.config.insert("failCgroupV1".into(), toml::Value::Boolean(false));
        assert!(cgroup_refusal(&allowed, Some(Cgroup::V1), "v1.37.2").is_none());
        allowed.kubelet.config.insert("failCgroupV1".into(), toml::Value::Boolean(true));
        assert!(cgroup_refusal(&allowed, Some(Cgroup::V1), "v1.37.2").is_some(), "true is the default: refused");
        assert_eq!(Cgroup::from_fs_type("ext4"), None);
    }

    #[test]
    fn problems_name_the_host_and_the_fix() {
        let c = cluster();
        let mut f = parse_facts(SAMPLE).unwrap();
        f.sudo = "root".into();
        assert!(evaluate_host(&c, &c.hosts[0], &f).is_empty(), "{:?}", evaluate_host(&c, &c.hosts[0], &f));
        f.swap_kb = 1024 * 1024;
        f.listening = vec![2379, 10250];
        f.modules.insert("overlay".into(), "missing".into());
        f.clock_skew_ms = 5000;
        f.disk_free_kb.insert("/var/lib/etcd".into(), 1024);
        let p = evaluate_host(&c, &c.hosts[0], &f);
        let checks: Vec<&str> = p.iter().map(|p| p.check.as_str()).collect();
        assert_eq!(checks, vec!["clock", "disk", "swap", "kernel-module", "ports"]);
        assert!(p.iter().all(|p| p.host == "n1" && !p.hint.is_empty()));
        assert!(p[4].message.contains("2379 (etcd client)") && p[4].message.contains("10250 (kubelet)"));
    }

    /// `hosts check` after `etcd deploy` called the ports of kbin's own running etcd "in use".
    #[test]
    fn ports_held_by_kbins_own_running_units_are_not_conflicts() {
        let c = cluster();
        let mut f = parse_facts(&SAMPLE.replace("end=1", "listen_hex=0953\nlisten_hex=0954\nlisten_hex=280A\nactive_unit=etcd\nend=1")).unwrap();
        f.sudo = "root".into();
        assert_eq!(f.active_units, ["etcd"]);
        let p = evaluate_host(&c, &c.hosts[0], &f);
        let ports: Vec<&str> = p.iter().filter(|p| p.check == "ports").map(|p| p.message.as_str()).collect();
        assert_eq!(ports, ["ports already in use: 10250 (kubelet)"], "2379/2380 belong to the running etcd");
    }

    #[test]
    fn cloned_machines_are_found() {
        let c = cluster();
        let a = parse_facts(SAMPLE).unwrap();
        let mut b = a.clone();
        b.hostname = "n2".into();
        b.machine_id = "m2".into();
        let p = evaluate_fleet(&[(&c.hosts[0], &a), (&c.hosts[1], &b)]);
        let checks: Vec<(&str, &str)> = p.iter().map(|p| (p.host.as_str(), p.check.as_str())).collect();
        assert_eq!(checks, vec![("n1", "unique-product-uuid"), ("n2", "unique-product-uuid"), ("n1", "unique-mac"), ("n2", "unique-mac")]);
        assert!(p[0].message.contains("also on n2"));
    }
}
