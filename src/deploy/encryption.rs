//! `kbin pki rotate-encryption-key`: a new key for Secrets at rest, with no apiserver ever
//! unable to read what another wrote. Each stage reaches every apiserver (one master at a time,
//! each verified, rolled back if it does not come back) before the next begins:
//!
//! 1. the new key is added second: every apiserver can read it, none writes with it yet;
//! 2. the new key goes first: apiservers write with it;
//! 3. every Secret is rewritten (stored again under the new key), then the old key is dropped.
//!
//! The keys in `pki/encryption-config.yaml` say where a rotation stands, so a run that stops
//! anywhere (a master that did not come back, Ctrl-C, a lost connection) is resumed by running the
//! command again.

use serde::Serialize;

use super::{Ctx, master};
use crate::config::Cluster;
use crate::error::Error;
use crate::pki::encryption::{self, Stage};
use crate::render::{Component, Templates};

/// What a rotation did.
#[derive(Debug, Default, Serialize)]
pub struct RotateReport {
    pub dry_run: bool,
    /// The key Secrets are written with at the end.
    pub key: String,
    /// The stages done by this run, in order.
    pub stages: Vec<String>,
    pub secrets_rewritten: usize,
}

fn say(ctx: &Ctx<'_>, report: &mut RotateReport, what: String) {
    ctx.printer.phase("encryption", None, &what);
    report.stages.push(what);
}

pub fn rotate(opts: &super::Opts<'_>, cluster: &Cluster) -> Result<RotateReport, Error> {
    let run = opts.run(cluster);
    let pki = cluster.pki_dir();
    let keys = encryption::load(&pki)?;
    let masters = run.connector(opts.accept_new_host_keys).connect_all(&master::hosts(cluster))?;
    let client = super::api_client(cluster)?;
    let connected = masters.iter().map(|n| (n.host, Ok(n.clone()))).collect();
    let ep = crate::kube::masters::ready_master(cluster, &client, connected, &run.printer)?;
    let mut report = RotateReport { dry_run: run.dry_run, key: keys[0].name.clone(), ..Default::default() };
    if run.dry_run {
        let plan = match encryption::stage(&keys) {
            Stage::Settled => "would add a new key (readable), make it the one that encrypts, rewrite every Secret, drop the old key",
            Stage::NewKeyReadable => "a rotation is under way (new key readable): would make it the one that encrypts, rewrite every Secret, drop the old key",
            Stage::NewKeyWriting => "a rotation is under way (new key encrypts): would rewrite every Secret and drop the old key",
        };
        run.printer.phase("dry-run", None, &format!("{plan}, each stage on every master ({}) one at a time", masters.iter().map(|m| m.host.name.as_str()).collect::<Vec<_>>().join(", ")));
        return Ok(report);
    }
    let templates = Templates::load(cluster)?;
    let bins = (opts.fetch)(cluster, &[Component::Master])?;
    let ctx = Ctx { run, templates: &templates, bins: &bins };
    let mut began = false;
    loop {
        // every apiserver on the keys as they are now (nothing is sent where they already are)
        master::rollout(&ctx, &masters, &[])?;
        let keys = encryption::load(&pki)?;
        match (encryption::stage(&keys), began) {
            (Stage::Settled, true) => break,
            (Stage::Settled, false) => {
                let new = encryption::new_key(&crate::fsutil::utc_stamp());
                if new.name == keys[0].name {
                    return Err(Error::other(format!("the new key would be named {} like the current one", new.name), Some("run it again a second later")));
                }
                encryption::save(&pki, &[keys[0].clone(), new.clone()])?;
                say(&ctx, &mut report, format!("1/3: {} added for reading; rolling it out to every apiserver", new.name));
            }
            (Stage::NewKeyReadable, _) => {
                encryption::save(&pki, &[keys[1].clone(), keys[0].clone()])?;
                say(&ctx, &mut report, format!("2/3: every apiserver reads {}; making it the key that encrypts", keys[1].name));
            }
            (Stage::NewKeyWriting, _) => {
                let n = client.rewrite_secrets(&ep).map_err(|e| Error::other(format!("rewriting the Secrets failed: {}", crate::kube::chain(&e)), Some("run `kbin pki rotate-encryption-key` again: it resumes here")))?;
                report.secrets_rewritten += n;
                encryption::save(&pki, &keys[..1])?;
                say(&ctx, &mut report, format!("3/3: {n} Secrets stored again under {}; dropping {}", keys[0].name, keys[1].name));
            }
        }
        began = true;
    }
    report.key = encryption::load(&pki)?[0].name.clone();
    ctx.printer.phase("encryption", None, &format!("done: every Secret is encrypted with {}", report.key));
    Ok(report)
}
