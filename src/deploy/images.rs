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
/// imports each missing archive (pinned) and prints what it imported. Into the content store
/// only (`--no-unpack`): containerd's CRI unpacks an image when the first container of it is
/// created on the node, so a node unpacks what it runs, not every image of the cluster (ten
/// nodes unpacking five images at once took 14 s of `up` on the lab).
const SCRIPT: &str = r#"
mode=$1; shift
have=$(ctr -n k8s.io images ls 2>&1) || { echo "containerd does not answer (ctr images ls: $have)" >&2; exit 1; }
listed() { printf '%s\n' "$1" | awk -v r="$2" -v l="$3" '$1 == r && index($0, l) { found = 1 } END { exit !found }'; }
while [ $# -ge 3 ]; do
  ref=$1 sha=$2 file=$3
  shift 3
  label="io.kbin.archive=$sha"
  listed "$have" "$ref" "$label" && continue
  if [ "$mode" = check ]; then echo "$ref"; continue; fi
  out=$(ctr -n k8s.io images import --no-unpack --label io.cri-containerd.pinned=pinned --label "$label" "$file" 2>&1) ||
    { echo "importing $file ($ref) failed: $out" >&2; exit 1; }
  now=$(ctr -n k8s.io images ls 2>&1)
  listed "$now" "$ref" "$label" || { echo "$file was imported but containerd does not list $ref from it" >&2; exit 1; }
  echo "$ref"
done
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
