//! Connecting to many cluster hosts at once, for the commands that change them.

use std::sync::Arc;

use crate::host::parallel::{Cancel, Outcome};
use crate::host::ssh::{self, ConnectOptions};
use crate::host::{HostError, Node, Remote};
use crate::config::{Cluster, Host};
use super::HostFailure;
use super::EngineError as Error;
use crate::exit::Reportable;
use crate::output::Printer;

/// How to connect: the cluster's SSH settings plus the command line's.
#[derive(Clone)]
pub struct Connector<'c> {
    pub cluster: &'c Cluster,
    pub printer: Printer,
    pub concurrency: usize,
    pub cancel: Cancel,
    pub accept_new_host_keys: bool,
}

impl<'c> super::Run<'c> {
    /// A connector with this run's output, concurrency and Ctrl-C.
    pub fn connector(&self, accept_new_host_keys: bool) -> Connector<'c> {
        Connector { cluster: self.cluster, printer: self.printer, concurrency: self.concurrency, cancel: self.cancel.clone(), accept_new_host_keys }
    }
}

impl<'c> Connector<'c> {
    /// Connect to `hosts` in parallel; each result is the connection or why it failed.
    pub fn connect(&self, hosts: &[&'c Host]) -> Vec<(&'c Host, Result<Node<'c>, HostError>)> {
        let opts = ConnectOptions::for_cluster(self.cluster, self.accept_new_host_keys);
        let p = self.printer;
        let results = ssh::connect_hosts(self.cluster, hosts, &opts, self.concurrency, &self.cancel, &|name, r| {
            if let Err(e) = r {
                p.phase("connect", Some(name), &format!("failed: {}", e.chain()));
            }
        });
        hosts
            .iter()
            .zip(results)
            .map(|(h, r)| {
                let node = match r.outcome {
                    Outcome::Done(s) => Ok(Node { host: h, remote: Arc::new(s) as Arc<dyn Remote> }),
                    Outcome::Failed(e) => Err(e),
                    Outcome::Skipped => Err(HostError::Interrupted { host: h.name.clone() }),
                };
                (*h, node)
            })
            .collect()
    }

    /// Connections to those of `hosts` that answer (the others are reported and left out).
    pub fn reachable(&self, hosts: &[&'c Host]) -> Vec<Node<'c>> {
        self.connect(hosts).into_iter().filter_map(|(_, r)| r.ok()).collect()
    }

    /// Connect to all of `hosts` or refuse (exit 2) listing the ones that failed: nothing changed.
    pub fn connect_all(&self, hosts: &[&'c Host]) -> Result<Vec<Node<'c>>, Error> {
        let mut nodes = Vec::new();
        let mut failures = Vec::new();
        let mut hints: Vec<String> = Vec::new();
        for (_, r) in self.connect(hosts) {
            match r {
                Ok(n) => nodes.push(n),
                Err(e) => {
                    if let Some(hint) = e.hint().filter(|x| !hints.contains(x)) {
                        hints.push(hint);
                    }
                    failures.push(HostFailure { phase: "connect".into(), ..HostFailure::from(e) });
                }
            }
        }
        if !failures.is_empty() {
            hints.push("`kbin hosts check` tests every host's SSH access".into());
            return Err(Error::Hosts {
                what: format!("cannot reach {} of {} hosts; nothing was changed", failures.len(), hosts.len()),
                hosts: failures,
                hint: Some(hints.join("\n  hint: ")),
                refused: true,
            });
        }
        Ok(nodes)
    }
}
