//! The cluster's image archives in each node's containerd (`k8s.io` namespace, where the kubelet
//! looks): imported from the archives the node's push placed, only when containerd lacks the
//! image of that very archive, pinned so the kubelet's image garbage collection keeps it.

use crate::artifacts::images::Archive;
use crate::engine::files::image_path;
use crate::host::{Cmd, Node};

/// The label naming the archive an image was imported from (its SHA-256).
pub const ARCHIVE_LABEL: &str = "io.kbin.archive";

/// `kbin-images MODE [REF SHA256 FILE]...`: for each image, whether containerd lists REF
/// imported from the archive SHA256; MODE `check` prints the missing references, `import`
/// imports each missing archive (pinned), then asks containerd once whether it lists them all,
/// and prints what it imported. Into the content store only (`--no-unpack`): containerd's CRI
/// unpacks an image when the first container of it is created on the node, so a node unpacks
/// what it runs, not every image of the cluster (ten nodes unpacking five images at once took
/// 14 s of `up` on the lab). References and digests hold no blank (the cluster file's grammar).
const SCRIPT: &str = r#"
set -f
mode=$1; shift
have=$(ctr -n k8s.io images ls 2>&1) || { echo "containerd does not answer (ctr images ls: $have)" >&2; exit 1; }
listed() { printf '%s\n' "$1" | awk -v r="$2" -v l="$3" '$1 == r && index($0, l) { found = 1 } END { exit !found }'; }
done=
while [ $# -ge 3 ]; do
  ref=$1 sha=$2 file=$3
  shift 3
  label="io.kbin.archive=$sha"
  listed "$have" "$ref" "$label" && continue
  if [ "$mode" = check ]; then echo "$ref"; continue; fi
  out=$(ctr -n k8s.io images import --no-unpack --label io.cri-containerd.pinned=pinned --label "$label" "$file" 2>&1) ||
    { echo "importing $file ($ref) failed: $out" >&2; exit 1; }
  done="$done $ref=$file=$label"
done
[ -n "$done" ] || exit 0
now=$(ctr -n k8s.io images ls 2>&1) || { echo "containerd does not answer after the imports (ctr images ls: $now)" >&2; exit 1; }
for d in $done; do
  ref=${d%%=*} rest=${d#*=}
  file=${rest%%=*} label=${rest#*=}
  listed "$now" "$ref" "$label" || { echo "$file was imported but containerd does not list $ref from it" >&2; exit 1; }
done
for d in $done; do echo "${d%%=*}"; done
"#;

fn cmd(mode: &str, images: &[Archive]) -> Cmd {
    let mut argv = vec!["sh".to_string(), "-c".into(), SCRIPT.into(), "kbin-images".into(), mode.into()];
    for i in images {
        argv.extend([i.reference.clone(), i.sha256.hex(), image_path(&i.key)]);
    }
    Cmd::new(argv).sudo()
}

fn run(node: &Node<'_>, mode: &str, images: &[Archive]) -> Result<Vec<String>, String> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let o = node.remote.run(&cmd(mode, images)).map_err(|e| e.chain())?;
    if !o.success() {
        return Err(o.stderr_str().trim().to_string());
    }
    Ok(o.stdout_str().lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
}

/// The references of `images` containerd on `node` does not hold from their archives (all of
/// them when containerd does not answer: a node not installed yet).
pub fn missing(node: &Node<'_>, images: &[Archive]) -> Vec<String> {
    run(node, "check", images).unwrap_or_else(|_| images.iter().map(|i| i.reference.clone()).collect())
}

/// Import what containerd on `node` lacks of `images`; the references imported.
pub fn import(node: &Node<'_>, images: &[Archive]) -> Result<Vec<String>, String> {
    run(node, "import", images).map_err(|e| format!("image import: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A `ctr` that keeps its images in a file: `images ls` prints them (the labels last, as
    /// ctr does), `images import` adds the archive's one line (`REF` inside the file) with the
    /// labels given; every call is logged.
    const FAKE_CTR: &str = r#"#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/calls"
case "$3 $4" in
  "images ls") echo "REF TYPE DIGEST SIZE PLATFORMS LABELS"; cat "$d/store" 2>/dev/null || true ;;
  "images import")
    eval "file=\${$#}"
    [ -s "$file" ] || { echo "ctr: $file: no such archive" >&2; exit 1; }
    [ -e "$d/lose" ] && exit 0
    echo "$(cat "$file") application/vnd.oci.image.index.v1+json sha256:0 1.0MiB linux/amd64 io.cri-containerd.pinned=pinned,${9}" >> "$d/store" ;;
esac
"#;

    fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
        let ctr = dir.join("ctr");
        std::fs::write(&ctr, FAKE_CTR).unwrap();
        std::fs::set_permissions(&ctr, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
        let o = std::process::Command::new("sh").arg("-c").arg(SCRIPT).arg("kbin-images").args(args).env("PATH", path).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    }

    #[test]
    fn the_missing_archives_are_imported_then_listed_once_and_a_rerun_imports_nothing() {
        let d = tempfile::tempdir().unwrap();
        let archive = |name: &str, reference: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, reference).unwrap();
            p.display().to_string()
        };
        let (pause, dns) = (archive("pause.tar", "registry.k8s.io/pause:3.10.1"), archive("coredns.tar", "registry.k8s.io/coredns/coredns:v1.12.1"));
        let args = ["registry.k8s.io/pause:3.10.1", "aaa1", pause.as_str(), "registry.k8s.io/coredns/coredns:v1.12.1", "bbb2", dns.as_str()];
        let with = |mode: &'static str| [&[mode][..], &args[..]].concat();

        let (ok, out, err) = run(d.path(), &with("check"));
        assert!(ok, "{err}");
        assert_eq!(out, "registry.k8s.io/pause:3.10.1\nregistry.k8s.io/coredns/coredns:v1.12.1\n");
        let (ok, out, err) = run(d.path(), &with("import"));
        assert!(ok, "{err}");
        assert_eq!(out, "registry.k8s.io/pause:3.10.1\nregistry.k8s.io/coredns/coredns:v1.12.1\n");
        let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
        // the check's listing; then the import's: one listing, two imports, one listing
        assert_eq!(calls.lines().filter(|l| l.contains("images ls")).count(), 3, "{calls}");
        assert_eq!(calls.lines().filter(|l| l.contains("images import")).count(), 2, "{calls}");
        assert!(calls.contains(&format!("--label {ARCHIVE_LABEL}=aaa1")), "{calls}");

        // in place, from these very archives: nothing to do
        let (ok, out, _) = run(d.path(), &with("check"));
        assert!(ok && out.is_empty(), "{out}");
        let (ok, out, _) = run(d.path(), &with("import"));
        assert!(ok && out.is_empty(), "{out}");
        // the same reference from another archive is imported again
        let (ok, out, _) = run(d.path(), &["check", "registry.k8s.io/pause:3.10.1", "ccc3", pause.as_str()]);
        assert!(ok && out == "registry.k8s.io/pause:3.10.1\n", "{out}");
    }

    #[test]
    fn an_import_containerd_does_not_list_afterwards_or_a_bad_archive_fails_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("busybox.tar");
        std::fs::write(&p, "docker.io/library/busybox:1.35.0").unwrap();
        let file = p.display().to_string();
        std::fs::write(d.path().join("lose"), "").unwrap();
        let (ok, out, err) = run(d.path(), &["import", "docker.io/library/busybox:1.35.0", "ddd4", file.as_str()]);
        assert!(!ok && out.is_empty(), "{out}");
        assert!(err.contains(&format!("{file} was imported but containerd does not list docker.io/library/busybox:1.35.0")), "{err}");
        std::fs::remove_file(d.path().join("lose")).unwrap();
        let (ok, _, err) = run(d.path(), &["import", "docker.io/library/busybox:1.35.0", "ddd4", "/nonexistent/x.tar"]);
        assert!(!ok && err.contains("importing /nonexistent/x.tar (docker.io/library/busybox:1.35.0) failed"), "{err}");
    }
}
