use std::path::PathBuf;

use super::Global;

/// Render every file kbin would push to a host (units, configs, certificates, kubeconfigs)
///
/// Without --out, lists the files (path, mode, size, source) on stdout; secrets are never printed.
/// With --out DIR, writes them under DIR as they would be on the host (DIR/opt/etcd/cfg/etcd.yml).
/// Release binaries are listed, not written.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host (name or address from the cluster file)
    #[arg(long, value_name = "HOST")]
    pub host: String,
    /// Write the files under this directory
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the list as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn exec(global: &Global, args: &Args) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let host = kbin::render::find_host(&cluster, &args.host)?;
    let templates = kbin::render::Templates::load(&cluster)?;
    let files = kbin::render::host_files(&cluster, host, &templates, &Default::default())?;
    let binaries = kbin::render::binaries(&cluster, host);
    if let Some(out) = &args.out {
        kbin::render::write_tree(out, &files)?;
        global.printer().phase("render", Some(&host.name), &format!("wrote {} files under {}", files.len(), out.display()));
    }
    if args.json {
        super::print_json(&serde_json::json!({ "host": host.name, "files": files, "binaries": binaries }));
    } else if args.out.is_none() {
        for f in &files {
            println!("{:04o}  {:>6}  {}  ({})", f.mode, f.content.len(), f.path, f.source);
        }
        for b in &binaries {
            println!("0755  {:>6}  {}  (release binary: {})", "-", b.path, b.component);
        }
    }
    Ok(())
}
