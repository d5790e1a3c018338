use std::path::PathBuf;

use kbin::artifacts::download::{FetchOptions, Fetcher};
use kbin::artifacts::ops::{self, Settings};
use kbin::artifacts::progress::Reporter;
use kbin::artifacts::{ArtifactError, Catalog};

use super::Global;

/// Fetch and verify the release binaries the cluster needs
///
/// Every file is checked against a digest (SHA-256 or SHA-512) from kbin.lock (next to the
/// cluster file), else from kbin's built-in catalog, else from the upstream checksum file fetched
/// over HTTPS from the official origin (and then recorded in kbin.lock). Mirrors provide bytes
/// only: a file that does not match its digest never enters the cache. Files land in a
/// content-addressed cache ($KBIN_CACHE_DIR, else $XDG_CACHE_HOME/kbin) shared by all clusters;
/// interrupted downloads resume. kube-apiserver, kube-controller-manager, kube-scheduler and
/// kube-proxy come out of one kubernetes-server tarball when it is pinned (as the catalog pins
/// the default version). Prints one line per artifact on stdout: component, version, arch,
/// sha256, cache path.
#[derive(Debug, clap::Args)]
#[command(after_help = "Components: etcd, kubernetes-server, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,\nkubelet, kube-proxy, flanneld, flannel-cni-plugin, cni-plugins, containerd, runc, crictl\n\nExamples:\n  kbin download\n  kbin download etcd kubelet --mirror http://10.0.0.1:8080/kbin\n  kbin download --json | jq -r '.[].path'")]
pub struct Args {
    /// Only these components (default: every component some host's roles need)
    #[arg(value_name = "COMPONENT")]
    pub components: Vec<String>,
    #[command(flatten)]
    pub net: NetArgs,
    /// Also verify-and-extract each artifact's binaries into DIR/<component>/
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Download options shared by `download` and `bundle create`.
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// Fetch every artifact from this mirror (<URL>/<component>/<version>/<file>, or a template
    /// with {component} {version} {semver} {base} {arch} {file}); wins over the cluster file's mirrors
    #[arg(long, value_name = "URL", env = "KBIN_MIRROR")]
    pub mirror: Option<String>,
    /// Parallel downloads
    #[arg(short = 'j', long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
}

impl NetArgs {
    pub fn settings(&self, cluster: &kbin::config::Cluster) -> kbin::Result<Settings> {
        if let Some(m) = &self.mirror
            && !ops::is_mirror_url(m)
        {
            return Err(ArtifactError::BadArgument(format!("--mirror {:?} is not an http(s) URL", kbin::output::redact_url(m))).into());
        }
        let mut s = kbin::engine::bins::settings(cluster, self.mirror.as_deref())?;
        s.jobs = self.jobs.max(1);
        Ok(s)
    }
}

pub fn exec(global: &Global, args: &Args) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let settings = args.net.settings(&cluster)?;
    let catalog = Catalog::embedded();
    let planned = ops::plan(catalog, &settings, &args.components)?;
    let fetcher = Fetcher::new(FetchOptions::from_env())?;
    let reporter = if args.json { Reporter::plain(global.quiet) } else { Reporter::new(global.quiet) };
    let fetched = ops::download(catalog, &planned, &settings, &fetcher, &reporter, args.extract.as_deref())?;
    if args.json {
        super::print_json(&fetched);
    } else {
        for f in &fetched {
            println!("{}\t{}\t{}\t{}\t{}", f.component, f.version, f.arch, f.sha256, f.path.display());
        }
    }
    Ok(())
}
