use kbin::artifacts::{Arch, ArtifactError, Catalog, ops};

use super::Global;

/// Trust a digest for one artifact: record it in kbin.lock next to the cluster file
///
/// From then on every download of COMPONENT VERSION for that architecture, from any mirror, must
/// match DIGEST, whatever kbin's built-in catalog says. Use it for a version the catalog does not
/// pin when there is no internet to fetch the upstream checksum file, or for a build you vetted
/// yourself. DIGEST is a SHA-256 (64 hex digits) or a SHA-512 (128 hex digits, as the Kubernetes
/// release notes publish for kubernetes-server). Pinning again replaces the entry.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  kbin pin etcd v3.5.1 $(sha256sum etcd-v3.5.1-linux-amd64.tar.gz | cut -d' ' -f1)\n  kbin pin kubernetes-server v1.34.3 <sha512 from CHANGELOG-1.34.md, Server Binaries>")]
pub struct Args {
    /// The component (see `kbin download --help`; e.g. etcd, kubelet, containerd)
    pub component: String,
    /// The release version, as in the cluster file (e.g. v3.5.1)
    #[arg(value_name = "VERSION")]
    pub release: String,
    /// The digest of the upstream file: SHA-256 (64 hex digits) or SHA-512 (128 hex digits);
    /// a `sha256:` or `sha512:` prefix is accepted
    pub digest: String,
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
    let (digest, replaced) = ops::pin(catalog, &lock_path, &args.component, &args.release, arch, &args.digest)?;
    let p = global.printer();
    let algo = digest.algorithm();
    if let Some(old) = replaced {
        p.warn(&format!("{} {} ({arch}): replaced {} {old} in {}", args.component, args.release, old.algorithm(), lock_path.display()), None);
    }
    if let Some((pinned, _)) = catalog.component(&args.component)?.pinned(&args.release, arch)
        && pinned != digest
    {
        let check = if pinned.algorithm() == algo {
            "make sure the digest you pinned is the right one".to_string()
        } else {
            format!("the two cannot be compared; if you pinned the upstream file, `{}sum FILE` prints the catalog's digest", pinned.algorithm())
        };
        p.warn(
            &format!("kbin's catalog pins {} {} ({arch}) as {} {pinned}; kbin.lock now overrides it for this cluster", args.component, args.release, pinned.algorithm()),
            Some(&check),
        );
    }
    p.phase("pin", None, &format!("{} {} ({arch}): {algo} {digest} recorded in {}", args.component, args.release, lock_path.display()));
    Ok(())
}
