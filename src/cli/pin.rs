use kbin::artifacts::{Arch, ArtifactError, Catalog, ops};

use super::Global;

/// Trust a digest for one artifact: record it in kbin.lock next to the cluster file
///
/// From then on every download of COMPONENT VERSION for that architecture, from any mirror, must
/// match SHA256, whatever kbin's built-in catalog says. Use it for a version the catalog does not
/// pin when there is no internet to fetch the upstream checksum file, or for a build you vetted
/// yourself. Pinning again replaces the entry.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  kbin pin etcd v3.5.1 $(sha256sum etcd-v3.5.1-linux-amd64.tar.gz | cut -d' ' -f1)")]
pub struct Args {
    /// The component (see `kbin download --help`; e.g. etcd, kubelet, containerd)
    pub component: String,
    /// The release version, as in the cluster file (e.g. v3.5.1)
    #[arg(value_name = "VERSION")]
    pub release: String,
    /// The SHA-256 digest of the upstream file (64 hex digits)
    pub sha256: String,
    /// The architecture (default: artifacts.arch from the cluster file, else amd64)
    #[arg(long, value_parser = ["amd64", "arm64"])]
    pub arch: Option<String>,
}

pub fn exec(global: &Global, args: &Args) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let arch = match &args.arch {
        Some(a) => Arch::parse(a).ok_or_else(|| ArtifactError::BadArgument(format!("unknown architecture {a:?}")))?,
        None => cluster.artifacts.arch,
    };
    let catalog = Catalog::embedded();
    let lock_path = kbin::artifacts::Lock::path_in(&cluster.state_dir);
    let replaced = ops::pin(catalog, &lock_path, &args.component, &args.release, arch, &args.sha256)?;
    let p = global.printer();
    let digest = args.sha256.trim().trim_start_matches("sha256:").to_ascii_lowercase();
    if let Some(old) = replaced {
        p.warn(&format!("{} {} ({arch}): replaced sha256 {old} in {}", args.component, args.release, lock_path.display()), None);
    }
    if let Some((pinned, _)) = catalog.component(&args.component)?.pinned(&args.release, arch)
        && pinned.hex() != digest
    {
        p.warn(
            &format!("kbin's catalog pins {} {} ({arch}) as sha256 {pinned}; kbin.lock now overrides it for this cluster", args.component, args.release),
            Some("make sure the digest you pinned is the right one"),
        );
    }
    p.phase("pin", None, &format!("{} {} ({arch}): sha256 {digest} recorded in {}", args.component, args.release, lock_path.display()));
    Ok(())
}
