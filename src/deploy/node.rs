//! Nodes: host preparation, containerd, flanneld, kubelet (TLS bootstrap) and kube-proxy.

use std::io::{Read, Write};
use std::sync::Mutex;

use super::Ctx;
use crate::config::{Cluster, Host, ProxyMode, Role};
use crate::engine::{self, Facts, HostOutcome, Item, Probe, Spec, converge};
use crate::error::Error;
use crate::host::{Cmd, HostError, Node};
use crate::kube::nodes::NodeStatus;
use crate::kube::{Client, Endpoint};
use crate::render::Component;


/// Kernel modules a node needs loaded now (and at boot, through modules-load.d).
pub fn modules(cluster: &Cluster) -> Vec<&'static str> {
    let mut m = vec!["overlay", "br_netfilter"];
    if cluster.proxy_mode == ProxyMode::Ipvs {
        m.extend(["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"]);
    }
    m
}

/// Loads the modules given as arguments (built-in ones count as loaded), installs what kube-proxy
/// and flanneld run (iptables, conntrack; with `$KBIN_PROXY` ipvs also ipvsadm and ipset, with
/// nftables also nft) when missing, and applies the sysctl file `$KBIN_SYSCTL` (a value the
/// kernel does not let this host change counts only if it already has the wanted value).
const PREPARE: &str = r#"
fail=""
for m in "$@"; do
  modprobe "$m" 2>/dev/null && continue
  case $m in
    br_netfilter) [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && continue ;;
    overlay) grep -qw overlay /proc/filesystems && continue ;;
  esac
  [ -d "/sys/module/$m" ] && continue
  fail="$fail $m"
done
[ -z "$fail" ] || { echo "cannot load kernel modules:$fail" >&2; exit 1; }
need="iptables conntrack"
case $KBIN_PROXY in
  ipvs) need="$need ipvsadm ipset" ;;
  nftables) need="$need nft" ;;
esac
missing=""
for t in $need; do command -v "$t" >/dev/null 2>&1 || command -v "/usr/sbin/$t" >/dev/null 2>&1 || missing="$missing $t"; done
if [ -n "$missing" ]; then
  missing=$(echo "$missing" | sed 's/ nft/ nftables/')
  rpms=$(echo "$missing" | sed 's/conntrack/conntrack-tools/')
  if command -v apt-get >/dev/null 2>&1; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
  elif command -v dnf >/dev/null 2>&1; then dnf install -y -q $rpms >/dev/null
  elif command -v yum >/dev/null 2>&1; then yum install -y -q $rpms >/dev/null
  else echo "missing:$missing (kube-proxy and flanneld need them) and no apt-get, dnf or yum is here to install them" >&2; exit 1
  fi || { echo "installing$missing failed (kube-proxy and flanneld need them)" >&2; exit 1; }
fi
if ! sysctl -q -p "$KBIN_SYSCTL" >/dev/null 2>&1; then
  bad=""
  while IFS='=' read -r k v; do
    k=$(echo "$k" | tr -d ' '); v=$(echo "$v" | tr -d ' ')
    case $k in ''|'#'*) continue ;; esac
    [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || bad="$bad $k=$v"
  done < "$KBIN_SYSCTL"
  [ -z "$bad" ] || { echo "cannot set sysctls:$bad" >&2; exit 1; }
fi
"#;
const SYSCTL_FILE: &str = "/etc/sysctl.d/99-kubernetes.conf";

fn prepare_cmd(cluster: &Cluster) -> Cmd {
    let mut argv = vec!["env".to_string(), format!("KBIN_PROXY={}", cluster.proxy_mode.as_str()), format!("KBIN_SYSCTL={SYSCTL_FILE}"), "sh".into(), "-c".into(), PREPARE.into(), "kbin-prepare".into()];
    argv.extend(modules(cluster).iter().map(|m| m.to_string()));
    Cmd::new(argv).sudo()
}

/// `/etc/fstab` with every active swap line commented out (by kbin, so people can tell).
pub fn fstab_without_swap(text: &str) -> Option<String> {
    let mut changed = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if !l.trim_start().starts_with('#') && fields.len() >= 3 && fields[2] == "swap" {
                changed = true;
                format!("# {l}  # swap turned off by kbin: the kubelet needs it off")
            } else {
                l.to_string()
            }
        })
        .collect();
    changed.then(|| out.join("\n") + "\n")
}

/// Prints `active=N` (swap areas in use) and `fstab=N` (swap lines of /etc/fstab not commented out).
const SWAP_FACTS: &str = r#"echo "active=$(tail -n +2 /proc/swaps 2>/dev/null | grep -c .)"
echo "fstab=$(awk '!/^[[:space:]]*#/ && $3 == "swap"' /etc/fstab 2>/dev/null | grep -c .)""#;

/// Swap in use now, and swap lines in /etc/fstab (one round trip).
fn swap_facts(node: &Node<'_>) -> Result<(bool, bool), HostError> {
    let out = node.remote.run(&Cmd::new(["sh", "-c", SWAP_FACTS]))?;
    let text = out.stdout_str();
    let n = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(0);
    Ok((n("active=") > 0, n("fstab=") > 0))
}

/// `/etc/fstab` without its swap lines, as a file to push (recorded in the node's transaction).
fn fstab_item(node: &Node<'_>) -> Result<Option<Item>, HostError> {
    let fstab = node.remote.read_file("/etc/fstab")?.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    Ok(fstab_without_swap(&fstab).map(|t| Item::bytes("/etc/fstab", &t, 0o644, &[])))
}

/// What preflight looks at on a node.
pub fn probe(cluster: &Cluster) -> Probe {
    Probe::default().ask("unit", &["kubelet"]).ports(cluster, Role::Node)
}

/// Why a host cannot become a node: a pure function of its facts.
pub fn refusal(cluster: &Cluster, f: &Facts) -> Vec<String> {
    let mut problems: Vec<String> = f.wrong_arch(cluster).into_iter().collect();
    if !f.active("kubelet") {
        problems.extend(f.busy_ports(cluster, Role::Node));
    }
    if !f.systemd {
        problems.push("systemd is not the init system".into());
    }
    problems.extend(f.cgroup_refusal(cluster, &cluster.kubernetes_version));
    problems
}

/// A plain-HTTP `GET path` to `127.0.0.1:port` on the node, through its SSH connection.
pub fn local_http_status(node: &Node<'_>, port: u16, path: &str) -> Result<u16, String> {
    let mut t = node.remote.open_tcp("127.0.0.1", port).map_err(|e| e.chain())?;
    t.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let _ = t.take(4096).read_to_end(&mut head);
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
    line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("127.0.0.1:{port} answered {line:?}"))
}

/// containerd serves the CRI the kubelet talks to (its `cri` plugin can fail to load while
/// containerd itself runs: the kubelet then only says "unknown service runtime.v1.RuntimeService").
fn cri_serves(ctx: &engine::Run<'_>, node: &Node<'_>) -> Result<(), String> {
    let info = Cmd::new(["crictl", "--runtime-endpoint", "unix:///run/containerd/containerd.sock", "--timeout", "5s", "info"]).sudo();
    let mut last = String::new();
    let served = engine::wait_for(ctx.timeout.min(std::time::Duration::from_secs(30)), &ctx.cancel, || match node.remote.run(&info) {
        Ok(o) if o.success() => Ok(()),
        Ok(o) => {
            last = o.stderr_str().trim().to_string();
            Err(format!("containerd does not serve the CRI: {last}"))
        }
        Err(e) => Err(e.chain()),
    });
    served.map_err(|e| {
        let plugins = node.remote.run(&Cmd::new(["ctr", "plugins", "ls"]).sudo()).map(|o| o.stdout_str().lines().filter(|l| l.contains("cri") && !l.trim_end().ends_with("ok")).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("; ")).unwrap_or_default();
        if plugins.is_empty() { e } else { format!("{e} (plugins not loaded: {plugins}; see journalctl -u containerd)") }
    })
}

/// Node `name` as the apiserver sees it (None: not registered) and its Lease's renewTime.
pub fn seen(client: &Client, ep: &Endpoint, name: &str) -> Result<(Option<NodeStatus>, Option<String>), String> {
    let node = client.get_opt(ep, &format!("/api/v1/nodes/{name}")).map_err(|e| crate::kube::chain(&e))?;
    let status = node.as_ref().map(crate::kube::nodes::node_status).transpose()?;
    let renew = client.lease_renew_time(ep, name).map_err(|e| crate::kube::chain(&e))?;
    Ok((status, renew))
}

/// A node's heartbeat when a wait for it began: what a heartbeat of the kubelet (re)started
/// after it must differ from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// The node was not registered: once it is, its Ready comes from a kubelet started since.
    Unregistered,
    /// Registered, its Lease renewed at this time (None: no Lease, or the apiserver did not say).
    Lease(Option<String>),
}

impl Heartbeat {
    /// What the apiserver says of node `name` now; a question it does not answer counts as a
    /// registered node without a Lease (a Lease must then appear).
    pub fn now(client: &Client, ep: &Endpoint, name: &str) -> Heartbeat {
        match seen(client, ep, name) {
            Ok((None, _)) => Heartbeat::Unregistered,
            Ok((Some(_), renew)) => Heartbeat::Lease(renew),
            Err(_) => Heartbeat::Lease(None),
        }
    }
    /// Whether a registered node whose Lease reads `renew` has posted a heartbeat since. A node
    /// that registered since needs no Lease: its kubelet creates the Lease in a loop that, when
    /// it first runs before the Node exists, tries again only at its next renewal, 10 s later.
    pub fn renewed(&self, renew: Option<&str>) -> bool {
        match self {
            Heartbeat::Unregistered => true,
            Heartbeat::Lease(before) => renew.is_some() && renew != before.as_deref(),
        }
    }
}

/// Ready, with a heartbeat since `before` (see [`Heartbeat`]): a kubelet that just (re)started
/// has posted a status of its own.
pub fn wait_ready(ctx: &engine::Run<'_>, client: &Client, ep: &Endpoint, name: &str, before: Heartbeat) -> Result<NodeStatus, String> {
    let mut last = None;
    // once a second: two requests, each a TLS handshake through the master's SSH connection
    engine::wait_every(ctx.timeout, std::time::Duration::from_secs(1), &ctx.cancel, || {
        let (node, renew) = seen(client, ep, name)?;
        let node = node.ok_or_else(|| format!("node {name} has not registered with the apiserver"))?;
        if node.ready != Some(true) {
            return Err(format!("node {name} is not Ready ({})", node.ready_reason.clone().unwrap_or_else(|| "no Ready condition yet".into())));
        }
        if !before.renewed(renew.as_deref()) {
            return Err(format!("node {name}'s Lease has not been renewed since the kubelet started"));
        }
        last = Some(node);
        Ok(())
    })?;
    Ok(last.expect("set on success"))
}

/// Wait until node `name` has registered with the apiserver (its Node object exists).
fn wait_registered(ctx: &engine::Run<'_>, client: &Client, ep: &Endpoint, name: &str) -> Result<NodeStatus, String> {
    let mut last = None;
    engine::wait_every(ctx.timeout, std::time::Duration::from_secs(1), &ctx.cancel, || {
        last = Some(seen(client, ep, name)?.0.ok_or_else(|| format!("node {name} has not registered with the apiserver"))?);
        Ok(())
    })?;
    Ok(last.expect("set on success"))
}

/// Install or update the node components on `nodes` (in parallel) and wait until each is Ready
/// with a fresh heartbeat and kube-proxy is healthy. `masters` are used to ask the apiserver; the
/// first whose apiserver answers is used.
pub fn deploy(ctx: &Ctx<'_>, nodes: &[Node<'_>], masters: &[Node<'_>]) -> Result<Vec<HostOutcome>, Error> {
    let c = ctx.cluster;
    engine::preflight(ctx, nodes, "node", &|_| probe(c), &|_, f| refusal(c, f))?;
    converge_all(ctx, nodes, masters)
}

/// The node components on `nodes`, in parallel, each waited for. Preflight has run.
pub fn converge_all(ctx: &Ctx<'_>, nodes: &[Node<'_>], masters: &[Node<'_>]) -> Result<Vec<HostOutcome>, Error> {
    let ep = endpoint(ctx, masters)?;
    converge_each(ctx, nodes, &ControlPlane::Ready(&ep), &|_| Ok(()))
}

/// The apiserver the nodes are checked through: the first of `masters` that is ready (in a dry
/// run, the first).
pub fn endpoint(ctx: &engine::Run<'_>, masters: &[Node<'_>]) -> Result<Endpoint, Error> {
    if let (true, Some(m)) = (ctx.dry_run, masters.first()) {
        return Ok(crate::kube::masters::endpoint(ctx.cluster, m));
    }
    let client = super::api_client(ctx.cluster)?;
    Ok(crate::kube::masters::ready_master(ctx.cluster, &client, masters.iter().map(|n| (n.host, Ok(n.clone()))).collect(), &ctx.printer)?)
}

/// The apiserver the nodes register with: running already (`node add`, upgrades), or the one
/// `up` is bringing up alongside the nodes. A node needs it only from flanneld on: its files,
/// containerd and its images go in before, while the control plane still starts.
pub enum ControlPlane<'a> {
    Ready(&'a Endpoint),
    /// Set once the control plane is up (or with why it did not come up).
    Later(&'a engine::Latch<Result<Endpoint, String>>),
}

impl ControlPlane<'_> {
    fn now(&self) -> Option<&Endpoint> {
        match self {
            ControlPlane::Ready(ep) => Some(ep),
            ControlPlane::Later(l) => l.get().and_then(|r| r.as_ref().ok()),
        }
    }
    /// The endpoint once the control plane is up; why not, if it did not come up.
    pub fn wait(&self, cancel: &crate::host::parallel::Cancel) -> Result<&Endpoint, String> {
        match self {
            ControlPlane::Ready(ep) => Ok(ep),
            ControlPlane::Later(l) => match l.wait(cancel) {
                Some(Ok(ep)) => Ok(ep),
                Some(Err(e)) => Err(format!("the control plane did not come up: {e}")),
                None => Err("interrupted while waiting for the control plane".into()),
            },
        }
    }
}

/// [`converge_all`], each node once `ready` says it may start (its files are in: `up` runs the
/// nodes alongside the relay, each as soon as its own files have arrived) and, from flanneld on,
/// once `control` is up.
pub fn converge_each(ctx: &Ctx<'_>, nodes: &[Node<'_>], control: &ControlPlane<'_>, ready: &(dyn Fn(&Node<'_>) -> Result<(), String> + Sync)) -> Result<Vec<HostOutcome>, Error> {
    let client = super::api_client(ctx.cluster)?;
    let plans = super::plans(ctx, nodes, Component::Node)?;
    let (ok, bad) = engine::on_each(ctx, ctx.concurrency, nodes, "node", |i, n| {
        ready(n).map_err(|e| engine::HostFailure::new(&n.host.name, "relay", e))?;
        let (swap, fstab_swap) = swap_facts(n)?;
        let mut items = plans[i].clone();
        items.extend(if fstab_swap { fstab_item(n)? } else { None });
        let images = &ctx.bins.images;
        let missing = super::images::missing(n, images);
        if ctx.dry_run && !missing.is_empty() {
            ctx.printer.phase("dry-run", Some(&n.host.name), &format!("would import {}", missing.join(" ")));
        }
        let units = crate::config::node_units(ctx.cluster);
        let cni = ctx.cluster.network == crate::config::NetworkPlugin::Flannel;
        if !swap && !fstab_swap && missing.is_empty() && !engine::needs_change(n, &items, &units, &ctx.known)? {
            ctx.printer.phase("node", Some(&n.host.name), "up to date, nothing sent");
            return Ok(HostOutcome { host: n.host.name.clone(), part: "node".into(), dry_run: ctx.dry_run, ..Default::default() });
        }
        match (swap, ctx.dry_run) {
            (false, _) => {}
            (true, true) => ctx.printer.phase("dry-run", Some(&n.host.name), "would turn swap off (swapoff -a)"),
            (true, false) => {
                n.remote.check(&Cmd::new(["swapoff", "-a"]).sudo())?;
                ctx.printer.phase("node", Some(&n.host.name), "swap turned off");
            }
        }
        if !ctx.dry_run {
            n.remote.check(&Cmd::new(["mkdir", "-p", ctx.cluster.layout.k8s_logs.as_str(), "/var/lib/kubelet", "/opt/cni/bin", "/etc/cni/net.d"]).sudo())?;
        }
        // the Lease's renewTime before the kubelet (re)starts: read now when the apiserver runs,
        // else once it does, right before flanneld and the kubelet start
        let before: Mutex<Option<Heartbeat>> = Mutex::new(None);
        let read_before = |ep: &Endpoint| *before.lock().unwrap() = Some(if ctx.dry_run { Heartbeat::Lease(None) } else { Heartbeat::now(&client, ep, &n.host.name) });
        if let Some(ep) = control.now() {
            read_before(ep);
        }
        let await_control = |_: &Node<'_>| -> Result<(), String> {
            let ep = control.wait(&ctx.cancel)?;
            if before.lock().unwrap().is_none() {
                read_before(ep);
            }
            Ok(())
        };
        let import = |n: &Node<'_>| -> Result<(), String> {
            let done = super::images::import(n, images)?;
            if !done.is_empty() {
                ctx.printer.phase("node", Some(&n.host.name), &format!("imported {} into containerd", done.join(" ")));
            }
            Ok(())
        };
        // the images go in as soon as containerd runs and before the kubelet starts: the node
        // registers with every image in place, so no pod scheduled on it finds one missing
        let after_start: Option<engine::converge::Hook<'_>> = if missing.is_empty() { None } else { Some(("containerd", &import)) };
        let precheck = Some(("node preparation (kernel modules, sysctls)", prepare_cmd(ctx.cluster)));
        // the first unit that needs the apiserver: flanneld, or the kubelet without kbin's CNI
        let first_api = if cni { "flanneld" } else { "kubelet" };
        let spec = Spec { items: &items, units: &units, precheck, after_start, before_start: Some((first_api, &await_control)), ..Default::default() };
        let mut o = converge(ctx, n, "node", &spec, &|n| {
            let ep = control.wait(&ctx.cancel)?;
            let before = before.lock().unwrap().clone().unwrap_or(Heartbeat::Lease(None));
            // containerd ran on already (not restarted): what it lacks goes in now
            if !missing.is_empty() {
                import(n)?;
            }
            cri_serves(ctx, n)?;
            if !cni {
                // no pod network from kbin: the node registers and stays NotReady until one is applied
                let s = wait_registered(ctx, &client, ep, &n.host.name)?;
                ctx.printer.phase("node", Some(&n.host.name), &format!("registered ({}): NotReady until a CNI is applied ([network] plugin = \"none\")", s.ready_reason.unwrap_or_else(|| "no Ready condition yet".into())));
                return Ok(());
            }
            let s = wait_ready(ctx, &client, ep, &n.host.name, before.clone())?;
            // the kubelet that posts status runs the release it is switched to (nodeInfo follows a restart)
            if let Some(kv) = super::release_of(ctx.cluster, n, "kubelet")? {
                engine::wait_for(ctx.timeout.min(std::time::Duration::from_secs(60)), &ctx.cancel, || match seen(&client, ep, &n.host.name)?.0.and_then(|s| s.kubelet_version) {
                    Some(v) if v == kv => Ok(()),
                    v => Err(format!("the kubelet reports {}, not {kv} (the release it is switched to)", v.unwrap_or_else(|| "no version".into()))),
                })?;
            }
            engine::wait_for(ctx.timeout, &ctx.cancel, || match local_http_status(n, 10256, "/healthz")? {
                200 => Ok(()),
                st => Err(format!("kube-proxy /healthz answered {st}")),
            })?;
            // flanneld has the node's pod CIDR and wrote the subnet file the CNI plugin reads
            engine::wait_for(ctx.timeout, &ctx.cancel, || match n.remote.run(&Cmd::new(["test", "-s", "/run/flannel/subnet.env"])) {
                Ok(o) if o.success() => Ok(()),
                Ok(_) => Err("flanneld has not written /run/flannel/subnet.env (no pod CIDR for the node yet?)".into()),
                Err(e) => Err(e.chain()),
            })?;
            let cidr = seen(&client, ep, &n.host.name).ok().and_then(|(s, _)| s).and_then(|s| s.pod_cidr).or(s.pod_cidr).unwrap_or_else(|| "-".into());
            ctx.printer.phase("node", Some(&n.host.name), &format!("Ready, heartbeat fresh, kube-proxy healthy, flannel subnet {cidr}"));
            Ok(())
        })?;
        if !ctx.dry_run && !missing.is_empty() && o.changed.is_empty() && o.started.is_empty() {
            // nothing else changed, so converge verified nothing: an image containerd lost
            import(n).map_err(|e| engine::HostFailure::new(&n.host.name, "images", e))?;
        }
        o.part = "node".into();
        Ok(o)
    });
    if !bad.is_empty() {
        return Err(engine::failed(format!("{} of {} nodes failed", bad.len(), nodes.len()), bad, "fix the cause (see the journal lines) and run the command again; nodes that finished are not sent anything again"));
    }
    Ok(ok)
}

/// `kbin node add [HOST...]`: adopt new addresses into the cluster file, issue their
/// certificates, apply the manifests (bootstrap token, RBAC), then [`deploy`] the nodes.
pub fn add(opts: &super::Opts<'_>, mut cluster: Cluster, specs: &[String], name: Option<&str>) -> Result<Vec<HostOutcome>, Error> {
    let mut names: Vec<String> = if specs.is_empty() { hosts(&cluster).iter().map(|h| h.name.clone()).collect() } else { Vec::new() };
    for spec in specs {
        let (c, n) = super::adopt::resolve_or_add(&opts.run(&cluster), cluster.clone(), spec, name.filter(|_| specs.len() == 1), Role::Node, opts.accept_new_host_keys)?;
        cluster = c;
        names.push(n);
    }
    let run = opts.run(&cluster);
    super::adopt::ensure_pki_for_add(&run, &cluster)?;
    let templates = crate::render::Templates::load(&cluster)?;
    let c = run.connector(opts.accept_new_host_keys);
    let nodes = c.connect_all(&names.iter().map(|n| cluster.host(n).expect("resolved")).collect::<Vec<_>>())?;
    let masters = c.reachable(&super::master::hosts(&cluster));
    let bins = (opts.fetch)(&cluster, &[Component::Node])?;
    super::manifests::apply_through(&cluster, &masters, &run.printer, run.dry_run)?;
    deploy(&Ctx { run, templates: &templates, bins: &bins }, &nodes, &masters)
}

pub fn hosts(cluster: &Cluster) -> Vec<&Host> {
    cluster.hosts_with(Role::Node).collect()
}

#[cfg(test)]
mod tests {
    use super::Heartbeat;

    #[test]
    fn a_heartbeat_is_fresh_once_the_lease_moves_or_the_node_registered_since() {
        // a kubelet restarted on a registered node: its own renewal, not the one seen before
        let seen = Heartbeat::Lease(Some("2026-12-07T05:02:40.123456Z".into()));
        assert!(!seen.renewed(Some("2026-12-07T05:02:40.123456Z")));
        assert!(!seen.renewed(None));
        assert!(seen.renewed(Some("2026-12-07T05:02:50.200000Z")));
        // registered without a Lease (or the apiserver did not answer): a Lease must appear
        let none = Heartbeat::Lease(None);
        assert!(!none.renewed(None));
        assert!(none.renewed(Some("2026-12-07T05:02:50.200000Z")));
        // not registered when the wait began: its Ready is the new kubelet's, with or without a Lease yet
        assert!(Heartbeat::Unregistered.renewed(None));
        assert!(Heartbeat::Unregistered.renewed(Some("2026-12-07T05:02:50.200000Z")));
    }
}
