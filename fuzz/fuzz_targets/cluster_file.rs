//! The cluster file: parse + validate, then render every template for every host. No panic, and
//! either config errors (exit 3) or output whose every line parses in its own format and holds
//! only the keys, sections and statements its template has: a value from the cluster file can
//! never add a line, a key, a flag or a statement to a rendered file.
#![no_main]

use std::path::Path;

use kbin::render::{BUILTIN, Options, Templates, context, merge, registry_context};
use kbin_fuzz::lint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mut cluster) = kbin::config::parse(Path::new("/nonexistent/cluster.toml"), text) else { return };
    cluster.templates_dir = None; // the built-in templates only: overrides are the operator's own
    let templates = Templates::load(&cluster).expect("built-in templates load");
    for host in &cluster.hosts {
        for existing in [false, true] {
            let ctx = context(&cluster, host, &Options { etcd_existing: existing });
            for (name, source) in BUILTIN {
                // containerd-hosts.toml is rendered once per registry, with it merged in
                let contexts: Vec<serde_json::Value> = if *name == "containerd-hosts.toml" {
                    cluster.workloads.registries.iter().map(|r| {
                        let mut c = ctx.clone();
                        merge(&mut c, registry_context(r, if r.ca_file.is_some() { "/etc/containerd/certs.d/x/ca.crt" } else { "" }));
                        c
                    }).collect()
                } else {
                    vec![ctx.clone()]
                };
                for ctx in &contexts {
                    let out = match templates.render(name, &host.name, ctx) {
                        Ok(o) => o,
                        Err(e) => panic!("{name} for {} does not render: {e}", host.name),
                    };
                    if let Err(e) = lint(name, source, &out) {
                        panic!("{name} for {}: {e}\n--- rendered:\n{out}", host.name);
                    }
                }
            }
        }
    }
});

