use std::path::PathBuf;

use clap::Subcommand;
use kbin::artifacts::cache::Cache;
use kbin::artifacts::download::{FetchOptions, Fetcher};
use kbin::artifacts::ops;
use kbin::artifacts::progress::Reporter;
use kbin::artifacts::{ArtifactError, Catalog, Lock, bundle};

use super::Global;
use super::download::NetArgs;

/// Offline bundles: every artifact a cluster needs plus their digests, in one file
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Download (or take from the cache) every artifact the cluster needs and write them, with a
    /// kbin.lock listing their digests, to one archive FILE
    #[command(after_help = "Example (on a machine with internet):\n  kbin bundle create kbin-bundle.tar\nthen copy kbin-bundle.tar and cluster.toml to the air-gapped operator machine and run\n  kbin bundle load kbin-bundle.tar")]
    Create {
        /// The bundle to write (written atomically; an existing file is replaced)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Only these components (default: every component some host's roles need)
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Verify every file in bundle FILE and add them to the cache; digests new to the cluster's
    /// kbin.lock are recorded there. Nothing enters the cache unless every digest matches
    Load {
        /// The bundle to read
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

pub fn exec(global: &Global, cmd: &BundleCommand) -> kbin::Result<()> {
    let p = global.printer();
    match cmd {
        BundleCommand::Create { file, components, net } => {
            let cluster = global.cluster()?;
            let settings = net.settings(&cluster)?;
            let catalog = Catalog::embedded();
            let planned = ops::plan(catalog, &settings, components)?;
            let fetcher = Fetcher::new(FetchOptions::from_env())?;
            let reporter = Reporter::new(global.quiet);
            let fetched = ops::download(catalog, &planned, &settings, &fetcher, &reporter, None)?;
            // named components only: no images; otherwise every image of the cluster file
            let specs: Vec<_> = if components.is_empty() { cluster.workloads.images.values().cloned().collect() } else { Vec::new() };
            let images = kbin::artifacts::images::fetch(&specs, &settings.cache_root, &fetcher, &reporter)?;
            bundle::create(file, &fetched, &images, settings.arch)?;
            p.phase("bundle", None, &format!("wrote {} artifact(s) and {} image(s) to {}", fetched.len(), images.len(), file.display()));
            println!("{}", file.display());
            Ok(())
        }
        BundleCommand::Load { file } => {
            // the cluster file is optional here: without it the bundle only fills the cache
            let (cache_root, lock_path) = if global.config.exists() {
                let cluster = global.cluster()?;
                let s = kbin::engine::bins::settings(&cluster, None)?;
                (s.cache_root, Some(Lock::path_in(&cluster.state_dir)))
            } else {
                p.warn(&format!("{} not found: loading into the cache only, no kbin.lock is updated", global.config.display()), Some("pass -c FILE to record the bundle's digests for a cluster"));
                (Cache::default_root().ok_or_else(|| ArtifactError::BadArgument("no cache directory: set KBIN_CACHE_DIR".into()))?, None)
            };
            let cache = Cache::open(&cache_root)?;
            let loaded = bundle::load(file, &cache, Catalog::embedded(), lock_path.as_deref())?;
            for e in &loaded.entries {
                // a bundle lists its files by SHA-256 (load refuses anything else)
                let Some(sha256) = e.digest.sha256() else { continue };
                p.phase("bundle", None, &format!("{} {} ({}): sha256 {sha256} verified", e.component, e.version, e.arch));
                println!("{}\t{}\t{}\t{sha256}\t{}", e.component, e.version, e.arch, cache.blob_path(&sha256).display());
            }
            if let Some(l) = &lock_path
                && loaded.added_to_lock > 0
            {
                p.phase("bundle", None, &format!("recorded {} digest(s) in {}", loaded.added_to_lock, l.display()));
            }
            Ok(())
        }
    }
}
