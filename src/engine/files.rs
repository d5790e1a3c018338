//! The files of a change: what a host should hold, the plan (what differs: that is `--dry-run`),
//! and the push that applies the plan inside a [`Tx`].

use std::collections::BTreeSet;

use serde::Serialize;

use super::Tx;
use super::bins::Bins;
use crate::config::{Cluster, Host};
use super::EngineError as Error;
use crate::host::{FileWrite, HostError, Node, Source, WriteOpts};
use crate::output::Printer;
use crate::render::{self, Component, Templates};

/// Decides whether a changed text file really needs its units restarted: two texts whose
/// projections are equal restart nothing (etcd's `initial-*` keys are read only at first start).
pub type Significant = fn(&str) -> String;

/// One file to put on a host.
#[derive(Clone, Debug)]
pub struct Item {
    pub path: String,
    pub src: Source,
    pub mode: u32,
    pub secret: bool,
    /// Services to restart when this file changes.
    pub units: Vec<String>,
    /// The text, for diffs (never for secrets or binaries).
    pub text: Option<String>,
    /// See [`Significant`].
    pub significant: Option<Significant>,
    /// `user[:group]` to own the file; `None`: root.
    pub owner: Option<String>,
    /// Not hashed first: the write compares the content itself, and fixes a mode or owner that
    /// differs where the content matches (`hosts push`; a dry run still compares hashes only).
    pub always_write: bool,
    /// `path` is a symlink to this target (`src` is unused): switched atomically when it points
    /// elsewhere, which restarts `units` (a release switch).
    pub link: Option<String>,
}

impl Item {
    pub fn link(path: &str, target: &str, units: Vec<String>) -> Item {
        Item { path: path.into(), src: Source::bytes(target.as_bytes().to_vec()), mode: 0o777, secret: false, units, text: None, significant: None, owner: None, always_write: false, link: Some(target.into()) }
    }
    pub fn bytes(path: &str, text: &str, mode: u32, units: &[&str]) -> Item {
        Item { path: path.into(), src: Source::bytes(text.as_bytes().to_vec()), mode, secret: false, units: units.iter().map(|u| u.to_string()).collect(), text: Some(text.into()), significant: None, owner: None, always_write: false, link: None }
    }
}

/// The services a changed binary restarts.
fn binary_units(component: &str, name: &str) -> Vec<String> {
    let unit = match (component, name) {
        ("kube-apiserver" | "kube-controller-manager" | "kube-scheduler" | "kubelet" | "kube-proxy" | "flanneld" | "etcd", n) if n == component => n,
        ("containerd", "containerd" | "containerd-shim-runc-v2") => "containerd",
        _ => return Vec::new(),
    };
    vec![unit.to_string()]
}

/// Everything `part` needs on `host`: its binaries first, then the rendered files.
pub fn items(cluster: &Cluster, templates: &Templates, bins: &Bins, host: &Host, part: Component, opts: &render::Options) -> Result<Vec<Item>, Error> {
    let mut out = Vec::new();
    for b in render::binaries(cluster, host).into_iter().filter(|b| b.part == part) {
        let src = bins.get(b.component, &b.name)?;
        let units = binary_units(b.component, &b.name);
        match b.release {
            // the release's file first, then the switch to it
            Some(release) => {
                out.push(Item { units: units.clone(), path: release.clone(), src, mode: 0o755, secret: false, text: None, significant: None, owner: None, always_write: false, link: None });
                out.push(Item::link(&b.path, &release, units));
            }
            None => out.push(Item { units, path: b.path, src, mode: 0o755, secret: false, text: None, significant: None, owner: None, always_write: false, link: None }),
        }
    }
    if part == Component::Node && host.has(crate::config::Role::Node) {
        // image archives restart nothing: the node imports what containerd lacks
        for i in &bins.images {
            let src = Source::file_with_digest(&i.path, &i.sha256.hex(), i.len);
            out.push(Item { path: image_path(&i.key), src, mode: 0o644, secret: false, units: Vec::new(), text: None, significant: None, owner: None, always_write: false, link: None });
        }
    }
    for f in render::host_files(cluster, host, templates, opts)?.into_iter().filter(|f| f.component == part) {
        let text = (!f.secret).then(|| String::from_utf8_lossy(&f.content).into_owned());
        out.push(Item { path: f.path, mode: f.mode, secret: f.secret, units: f.restarts, src: Source::bytes(f.content), text, significant: None, owner: None, always_write: false, link: None });
    }
    Ok(out)
}

fn link_paths(items: &[Item]) -> Vec<&str> {
    items.iter().filter(|i| i.link.is_some()).map(|i| i.path.as_str()).collect()
}

/// Where a node keeps the archive of image `key` (what containerd imports it from).
pub fn image_path(key: &str) -> String {
    format!("{IMAGES_DIR}/{key}.tar")
}
pub const IMAGES_DIR: &str = "/var/lib/kbin/images";

/// What one host's push changed (or, in a dry run, would change).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pushed {
    pub host: String,
    pub changed: Vec<String>,
    pub bytes_sent: u64,
    /// Services whose files changed.
    pub restart: BTreeSet<String>,
    /// A systemd unit file changed (daemon-reload needed).
    pub unit_files: bool,
}

impl Pushed {
    /// `it` changed (or would): its units restart; a unit file needs a daemon-reload.
    fn note(&mut self, it: &Item, units: Vec<String>, units_dir: &str) {
        self.changed.push(it.path.clone());
        self.restart.extend(units);
        self.unit_files |= it.path.starts_with(units_dir) && it.path.ends_with(".service");
    }
    pub fn extend(&mut self, o: Pushed) {
        self.changed.extend(o.changed);
        self.bytes_sent += o.bytes_sent;
        self.restart.extend(o.restart);
        self.unit_files |= o.unit_files;
    }
}

/// A unified diff of two texts, for `--dry-run`.
pub fn diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(2).header(&format!("{path} (on host)"), &format!("{path} (kbin)")).to_string()
}

/// Push `items` to a node, each changed file recorded in `tx` (or, with `dry_run`, only say what
/// would change, with diffs of text files; secrets are named, never shown). Plan and apply are
/// the same path: the dry run stops where the write would be.
pub fn push(printer: &Printer, node: &Node<'_>, units_dir: &str, items: &[Item], tx: &mut Tx, dry_run: bool) -> Result<Pushed, HostError> {
    push_known(printer, node, units_dir, items, tx, dry_run, &super::Known::default())
}

/// [`push`], taking `known`'s word for the files this run already found as wanted on the host.
pub fn push_known(printer: &Printer, node: &Node<'_>, units_dir: &str, items: &[Item], tx: &mut Tx, dry_run: bool, known: &super::Known) -> Result<Pushed, HostError> {
    let mut p = Pushed { host: node.host.name.clone(), ..Default::default() };
    let up_to_date: Vec<bool> = items.iter().map(|i| i.link.is_none() && !i.always_write && known.take(&node.host.name, &i.path, i.src.sha256())).collect();
    // an item written anyway (to fix its mode and owner too) is compared by the write itself
    let hashed: Vec<bool> = items.iter().zip(&up_to_date).map(|(i, known)| i.link.is_none() && !known && (dry_run || !i.always_write)).collect();
    let paths: Vec<&str> = items.iter().zip(&hashed).filter(|(_, h)| **h).map(|(i, _)| i.path.as_str()).collect();
    let mut sums = node.remote.sha256_many(&paths)?.into_iter();
    let mut links = node.remote.read_links(&link_paths(items))?.into_iter();
    let mut small: Vec<(&Item, Vec<String>)> = Vec::new();
    for ((it, hashed), up_to_date) in items.iter().zip(hashed).zip(up_to_date) {
        if up_to_date {
            continue;
        }
        if let Some(target) = &it.link {
            let now = links.next().flatten();
            if now.as_deref() == Some(target.as_str()) {
                continue;
            }
            if dry_run {
                let why = if it.units.is_empty() { String::new() } else { format!(", restarts {}", it.units.join(" ")) };
                let was = now.map(|n| format!(" (now {n})")).unwrap_or_default();
                printer.phase("dry-run", Some(&node.host.name), &format!("would switch {} to {target}{was}{why}", it.path));
            } else {
                tx.link(&it.path, target)?;
            }
            p.note(it, it.units.clone(), units_dir);
            continue;
        }
        let remote_sum = if hashed { sums.next().flatten() } else { None };
        if remote_sum.as_deref() == Some(it.src.sha256()) {
            continue;
        }
        let existed = remote_sum.is_some();
        let wants_old = existed && it.text.is_some() && (dry_run || it.significant.is_some());
        let old = if wants_old { node.remote.read_file(&it.path)?.map(|b| String::from_utf8_lossy(&b).into_owned()) } else { None };
        let mut units = it.units.clone();
        if let (Some(f), Some(old), Some(new)) = (it.significant, &old, &it.text)
            && f(old) == f(new)
        {
            units.clear();
        }
        if dry_run {
            let what = if existed { "would replace" } else { "would create" };
            let why = if units.is_empty() { String::new() } else { format!(", restarts {}", units.join(" ")) };
            let secret = if it.secret { ", secret: not shown" } else { "" };
            printer.phase("dry-run", Some(&node.host.name), &format!("{what} {} ({:o}{why}{secret})", it.path, it.mode));
            if let (Some(old), Some(new)) = (&old, &it.text) {
                for line in diff(old, new, &it.path).lines() {
                    printer.phase("dry-run", Some(&node.host.name), line);
                }
            }
        } else if it.src.local_path().is_none() {
            // rendered files, certificates, keys: written together once the loop is done
            small.push((it, units));
            continue;
        } else {
            let w = tx.write(&it.path, &it.src, write_opts(it))?;
            if !w.changed {
                continue;
            }
            p.bytes_sent += w.bytes_sent;
        }
        p.note(it, units, units_dir);
    }
    if !small.is_empty() {
        let files = small.iter().map(|(it, _)| FileWrite { path: &it.path, src: &it.src, opts: write_opts(it) }).collect();
        let outcomes = tx.write_files(files)?;
        for ((it, units), w) in small.into_iter().zip(outcomes) {
            if w.changed {
                p.bytes_sent += w.bytes_sent;
                p.note(it, units, units_dir);
            }
        }
    }
    Ok(p)
}

fn write_opts(it: &Item) -> WriteOpts<'static> {
    WriteOpts { owner: it.owner.clone(), ..WriteOpts::mode(it.mode) }
}

/// Whether converging `items` and `units` on `node` would do anything: a file that differs or a
/// service that is not running (read-only, two round trips). Files `known` found in place this
/// run are not read again (and stay known for the push that may follow).
pub fn needs_change(node: &Node<'_>, items: &[Item], units: &[&str], known: &super::Known) -> Result<bool, HostError> {
    let files: Vec<&Item> = items.iter().filter(|i| i.link.is_none() && !known.holds(&node.host.name, &i.path, i.src.sha256())).collect();
    let paths: Vec<&str> = files.iter().map(|i| i.path.as_str()).collect();
    let sums = node.remote.sha256_many(&paths)?;
    if files.iter().zip(&sums).any(|(i, s)| s.as_deref() != Some(i.src.sha256())) {
        return Ok(true);
    }
    let targets = node.remote.read_links(&link_paths(items))?;
    if items.iter().filter_map(|i| i.link.as_deref()).zip(&targets).any(|(want, now)| now.as_deref() != Some(want)) {
        return Ok(true);
    }
    Ok(super::systemd::active_units(node.remote.as_ref(), units)?.values().any(|up| !up))
}
