//! Facts: what a host is like, gathered read-only in one round trip (plus one file read when a
//! probe asks for it). Every refusal is a pure function of these facts, so `up` gathers them once
//! per host and asks every role of the host.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{Cluster, Role};
use crate::host::check::Cgroup;
use crate::host::{Cmd, HostError, Node};

/// What to look at on a host: questions `kind:value` for the facts script (`unit`, `port`,
/// `path`, `cmd`, `iface`, `bin`) and small files to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub ask: BTreeSet<String>,
    pub read: BTreeSet<String>,
}

impl Probe {
    pub fn ask(mut self, kind: &str, values: &[impl ToString]) -> Self {
        self.ask.extend(values.iter().map(|v| format!("{kind}:{}", v.to_string())));
        self
    }
    pub fn read(mut self, files: &[&str]) -> Self {
        self.read.extend(files.iter().map(|f| f.to_string()));
        self
    }
    /// Whether the ports `role` listens on are taken.
    pub fn ports(self, cluster: &Cluster, role: Role) -> Self {
        self.ask("port", &role_ports(cluster, role))
    }
    /// Both probes' questions.
    pub fn and(mut self, o: Probe) -> Self {
        self.ask.extend(o.ask);
        self.read.extend(o.read);
        self
    }
}

/// What a host is like. Read-only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    /// `uname -m`.
    pub arch: String,
    /// The cgroup hierarchy (`stat -fc %T /sys/fs/cgroup`).
    pub cgroup: Option<Cgroup>,
    pub systemd: bool,
    /// `systemctl is-active` of each probed unit.
    pub units: BTreeMap<String, String>,
    /// Probed ports something listens on.
    pub busy: BTreeSet<u16>,
    /// The `path:`, `cmd:` and `iface:` questions answered yes (a path that exists, a command
    /// installed, an interface present), as asked.
    pub found: BTreeSet<String>,
    /// First line of `--version` of each probed binary that is installed, by file name.
    pub versions: BTreeMap<String, String>,
    /// Content of the probed files that exist.
    #[serde(skip)]
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Facts {
    /// Whether the `kind:value` question was answered yes.
    pub fn has(&self, kind: &str, value: &str) -> bool {
        self.found.contains(&format!("{kind}:{value}"))
    }
    pub fn active(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(|s| s == "active")
    }
    /// The refusal every role shares: binaries for another architecture do not run here.
    pub fn wrong_arch(&self, cluster: &Cluster) -> Option<String> {
        crate::host::check::wrong_arch(cluster, &self.arch)
    }
    /// The refusal of a kubelet of release `version` to start on this host's cgroup version.
    pub fn cgroup_refusal(&self, cluster: &Cluster, version: &str) -> Option<String> {
        crate::host::check::cgroup_refusal(cluster, self.cgroup, version)
    }
    /// `port N is already in use by another program` for each port of `role` that is busy.
    pub fn busy_ports(&self, cluster: &Cluster, role: Role) -> Vec<String> {
        role_ports(cluster, role).iter().filter(|p| self.busy.contains(p)).map(|p| format!("port {p} is already in use by another program")).collect()
    }
}

fn role_ports(cluster: &Cluster, role: Role) -> Vec<u16> {
    crate::config::grammar::role_ports(cluster.apiserver.port, role).into_iter().map(|p| p.0).collect()
}

/// Answers one `key=value` line per fact; the questions arrive as `kind:value` arguments. The
/// units are asked in one `systemctl is-active` (a line per unit, in order; each call is a D-Bus
/// round trip) and the ports in one read of the kernel's listening TCP sockets (`ss` lists the
/// same), not one process per question.
const SCRIPT: &str = r#"
set -f
echo "arch=$(uname -m)"
echo "cgroup=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
command -v systemctl >/dev/null 2>&1 && echo "systemd=1"
units= ports=
for a in "$@"; do
  v=${a#*:}
  case $a in
    unit:*) units="$units $v" ;;
    port:*) ports="$ports $v" ;;
    path:*) [ -e "$v" ] && echo "found=$a" ;;
    cmd:*) { command -v "$v" || command -v "/usr/sbin/$v"; } >/dev/null 2>&1 && echo "found=$a" ;;
    iface:*) ip link show dev "$v" >/dev/null 2>&1 && echo "found=$a" ;;
    bin:*) [ -x "$v" ] && echo "version ${v##*/}=$("$v" --version 2>/dev/null | head -n 1)" ;;
  esac
done
if [ -n "$units" ]; then
  systemctl is-active $units 2>/dev/null | { for u in $units; do read -r s || s=; echo "unit $u=$s"; done; cat >/dev/null; }
fi
if [ -n "$ports" ]; then
  listen=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" { split($2, a, ":"); print a[2] }')
  for p in $ports; do
    printf '%s\n' "$listen" | grep -qx "$(printf '%04X' "$p")" && echo "busy=$p"
  done
fi
true
"#;

/// Gather what `probe` asks on `node`.
pub fn gather(node: &Node<'_>, probe: &Probe) -> Result<Facts, HostError> {
    let mut argv = vec!["sh".to_string(), "-c".into(), SCRIPT.into(), "kbin-facts".into()];
    argv.extend(probe.ask.iter().cloned());
    let out = node.remote.check(&Cmd::new(argv).sudo())?;
    let mut f = parse(&out.stdout_str());
    for path in &probe.read {
        if let Some(bytes) = node.remote.read_file(path)? {
            f.files.insert(path.clone(), bytes);
        }
    }
    Ok(f)
}

/// The facts in the script's answer.
fn parse(answer: &str) -> Facts {
    let mut f = Facts::default();
    for line in answer.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().to_string();
        match k {
            "arch" => f.arch = v,
            "cgroup" => f.cgroup = Cgroup::from_fs_type(&v),
            "systemd" => f.systemd = true,
            "busy" => f.busy.extend(v.parse::<u16>().ok()),
            "found" => drop(f.found.insert(v)),
            k => match k.split_once(' ') {
                Some(("unit", u)) => drop(f.units.insert(u.to_string(), v)),
                Some(("version", b)) if !v.is_empty() => drop(f.versions.insert(b.to_string(), v)),
                _ => {}
            },
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script as a host runs it, here with the local `sh`.
    fn run(ask: &[String]) -> Facts {
        let out = std::process::Command::new("sh").arg("-c").arg(SCRIPT).arg("kbin-facts").args(ask).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        parse(&String::from_utf8_lossy(&out.stdout))
    }

    #[test]
    fn the_script_finds_a_listening_port_and_not_a_closed_one_and_answers_every_unit() {
        let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = l4.local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let l6 = std::net::TcpListener::bind("[::1]:0").ok();
        let mut ask = vec![format!("port:{taken}"), format!("port:{closed}"), "unit:kbin-no-such-unit".into(), "unit:kbin-other-unit".into(), "path:/".into()];
        let taken6 = l6.as_ref().map(|l| l.local_addr().unwrap().port());
        ask.extend(taken6.map(|p| format!("port:{p}")));
        let f = run(&ask);
        assert!(!f.arch.is_empty());
        let here = std::process::Command::new("stat").args(["-fc", "%T", "/sys/fs/cgroup"]).output().unwrap();
        assert_eq!(f.cgroup, Cgroup::from_fs_type(&String::from_utf8_lossy(&here.stdout)), "the cgroup version, as stat tells it");
        assert!(f.cgroup.is_some(), "this machine has a cgroup hierarchy: {f:?}");
        assert!(f.busy.contains(&taken), "{f:?}");
        assert!(!f.busy.contains(&closed), "{f:?}");
        if let Some(p) = taken6 {
            assert!(f.busy.contains(&p), "an IPv6 listener: {f:?}");
        }
        assert_eq!(f.units.keys().collect::<Vec<_>>(), ["kbin-no-such-unit", "kbin-other-unit"], "a line per unit asked");
        assert!(!f.active("kbin-no-such-unit"));
        assert!(f.has("path", "/"));
    }
}
