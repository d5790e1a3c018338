//! Shared by the fuzz targets: the line-by-line grammar checks of rendered files (`lint`), with
//! tests showing that each catches the injections issue 13 found (`cargo test --lib` here).

use std::collections::BTreeSet;

/// Whether `out`, rendered from the template `name` (whose text is `template`), holds only lines
/// of its own format with the keys, sections and statements the template has.
pub fn lint(name: &str, template: &str, out: &str) -> Result<(), String> {
    if name.ends_with(".service") {
        systemd(template, out)
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        yaml(template, out)
    } else if name.ends_with(".json") || name.ends_with(".conflist") {
        serde_json::from_str::<serde_json::Value>(out).map(|_| ()).map_err(|e| format!("not JSON: {e}"))
    } else if name.ends_with(".toml") {
        toml::from_str::<toml::Table>(out).map(|_| ()).map_err(|e| format!("not TOML: {e}"))
    } else if name == "keepalived.conf" || name == "nginx.conf" {
        statements(template, out, name == "nginx.conf")
    } else if name.ends_with(".sh") || name.ends_with(".conf") {
        // no cluster-file string lands there (only the port, a number): every line is the
        // template's, or a templated line of plain characters
        let fixed: BTreeSet<&str> = template.lines().filter(|l| !l.contains("{{")).collect();
        for l in out.lines().filter(|l| !fixed.contains(l)) {
            if l.chars().any(|c| !(c.is_ascii_alphanumeric() || " _-'<>/.:".contains(c))) {
                return Err(format!("unexpected line {l:?}"));
            }
        }
        Ok(())
    } else {
        Err(format!("no lint for {name}"))
    }
}

/// Keys (`Key=`) and sections a systemd unit template has.
fn systemd(template: &str, out: &str) -> Result<(), String> {
    let keys: BTreeSet<&str> = template.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).filter(|k| k.bytes().all(|b| b.is_ascii_alphanumeric())).collect();
    let sections: BTreeSet<&str> = template.lines().filter(|l| l.starts_with('[')).collect();
    let mut continued = false;
    let mut seen = BTreeSet::new();
    let mut section = "";
    for l in out.lines() {
        if continued {
            // one word per continuation line, as the templates write them: `  --flag=value \`
            let word = l.trim_start().trim_end_matches(" \\");
            if !l.starts_with("  ") || word.is_empty() || word.chars().any(|c| c.is_whitespace() || "%$\"'\\;`".contains(c)) {
                return Err(format!("continuation line {l:?} is not one plain word"));
            }
            if !word.starts_with("--") {
                return Err(format!("continuation line {l:?} is not a flag"));
            }
            continued = l.ends_with(" \\");
            continue;
        }
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            if !sections.contains(l) {
                return Err(format!("section {l:?} is not in the template"));
            }
            section = l;
            continue;
        }
        let Some((k, v)) = l.split_once('=') else { return Err(format!("line {l:?} is not Key=Value")) };
        if !keys.contains(k) {
            return Err(format!("key {k:?} is not in the template"));
        }
        if !seen.insert((section, k)) {
            return Err(format!("key {k:?} twice in {section}"));
        }
        if k.starts_with("Exec") {
            let words: Vec<&str> = v.trim_end_matches(" \\").split_whitespace().collect();
            // as many words as the template's line: a value cannot split into two
            let want = template.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).map(|t| t.trim_end_matches(" \\").split_whitespace().count());
            if want != Some(words.len()) {
                return Err(format!("{k}= has {} words, the template's line {want:?}", words.len()));
            }
            let program = words.first().copied().unwrap_or("");
            let program = program.trim_start_matches('-');
            if !program.starts_with('/') || program.chars().any(|c| "%$\"'\\;`".contains(c)) {
                return Err(format!("{k}: program {program:?} is not a plain absolute path"));
            }
        }
        if v.chars().any(|c| c.is_control()) {
            return Err(format!("{k}: control character"));
        }
        continued = l.ends_with(" \\");
    }
    if continued {
        return Err("the unit ends in a continuation".into());
    }
    Ok(())
}

/// The YAML parses, and every mapping key in it is one the template writes.
fn yaml(template: &str, out: &str) -> Result<(), String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(out).map_err(|e| format!("not YAML: {e}"))?;
    let allowed: BTreeSet<&str> = template.lines().filter_map(|l| l.trim_start().trim_start_matches("- ").split_once(':').map(|(k, _)| k)).collect();
    fn walk<'a>(v: &'a serde_yaml_ng::Value, allowed: &BTreeSet<&str>) -> Result<(), String> {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().ok_or_else(|| format!("non-string key {k:?}"))?;
                    if !allowed.contains(k) {
                        return Err(format!("key {k:?} is not in the template"));
                    }
                    walk(v, allowed)?;
                }
                Ok(())
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter().try_for_each(|v| walk(v, allowed)),
            serde_yaml_ng::Value::String(s) if s.contains('\n') => Err(format!("value {s:?} spans lines")),
            _ => Ok(()),
        }
    }
    walk(&v, &allowed)
}

/// keepalived / nginx: braces balance, quotes pair up on each line, and every statement starts
/// with a keyword the template uses (or is an address in an address block).
fn statements(template: &str, out: &str, nginx: bool) -> Result<(), String> {
    let keywords: BTreeSet<&str> = template.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| !w.contains("{{")).collect();
    let mut depth = 0i32;
    for l in out.lines() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let code = if nginx { t.split(" # ").next().unwrap_or(t) } else { t };
        if code.matches('"').count() % 2 != 0 || code.matches('\'').count() % 2 != 0 {
            return Err(format!("unbalanced quotes in {l:?}"));
        }
        let first = code.split_whitespace().next().unwrap_or("");
        let is_addr = first.parse::<std::net::IpAddr>().is_ok() || first.rsplit_once(':').is_some_and(|(a, p)| p.parse::<u16>().is_ok() && a.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok());
        if !(keywords.contains(first) || first == "}" || (is_addr && !nginx)) {
            return Err(format!("statement {first:?} is not in the template"));
        }
        if nginx && !(code.ends_with(';') || code.ends_with('{') || code == "}") {
            return Err(format!("nginx statement {l:?} is not terminated"));
        }
        if code.contains('#') && !nginx {
            return Err(format!("comment inside {l:?}"));
        }
        depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
        if depth < 0 {
            return Err("more } than {".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced braces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::lint;

    fn builtin(name: &str) -> &'static str {
        kbin::render::BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap()
    }

    /// Render `name` for a host of a valid cluster, check that it passes, then replace `from`
    /// with `to` in the output: what an unchecked value would have produced.
    fn rendered(name: &str, from: &str, to: &str) -> String {
        let text = "[cluster]\nname = \"t\"\n[apiserver]\nvip = \"10.0.0.88\"\n[[hosts]]\nname = \"m1\"\naddress = \"10.0.0.11\"\nroles = [\"master\", \"etcd\", \"node\"]\nlabels = [\"zone=a\"]\n[[hosts]]\nname = \"lb1\"\naddress = \"10.0.0.15\"\nroles = [\"lb\"]\n";
        let c = kbin::config::parse(std::path::Path::new("/x/cluster.toml"), text).unwrap();
        let t = kbin::render::Templates::load(&c).unwrap();
        let host = if name.starts_with("keepalived") || name.starts_with("nginx") { &c.hosts[1] } else { &c.hosts[0] };
        let mut ctx = kbin::render::context(&c, host, &Default::default());
        if name == "containerd-hosts.toml" {
            // rendered once per [registries."<host>"], with that registry merged in
            let r = kbin::config::workloads::Registry { host: "docker.io".into(), mirrors: vec!["https://m.example:5000".into()], ca_file: None, skip_verify: false };
            kbin::render::merge(&mut ctx, kbin::render::registry_context(&r, "/etc/containerd/certs.d/docker.io/ca.crt"));
        }
        let out = t.render(name, &host.name, &ctx).unwrap();
        assert_eq!(lint(name, builtin(name), &out), Ok(()), "the valid rendering of {name} passes");
        assert!(out.contains(from), "{from:?} not in {name}");
        out.replace(from, to)
    }

    #[track_caller]
    fn caught(name: &str, from: &str, to: &str) {
        let out = rendered(name, from, to);
        assert!(lint(name, builtin(name), &out).is_err(), "not caught:\n{out}");
    }

    #[test]
    fn every_builtin_template_rendered_from_a_valid_file_passes() {
        for (name, _) in kbin::render::BUILTIN {
            rendered(name, "", "");
        }
    }

    #[test]
    fn label_with_newline_in_kubelet_service_is_caught() {
        caught("kubelet.service", "zone=a", "zone=a\nExecStartPre=/bin/sh -c id");
    }

    #[test]
    fn interface_with_newline_in_keepalived_conf_is_caught() {
        caught("keepalived.conf", "interface eth0", "interface eth0\n    notify_master \"/bin/sh -c id\"");
    }

    #[test]
    fn path_with_a_space_in_a_unit_is_caught() {
        caught("kube-apiserver.service", "/opt/kubernetes/bin", "/opt/k8s bin");
    }

    #[test]
    fn injected_yaml_key_is_caught() {
        caught("kubelet-config.yaml", "clusterDomain: cluster.local", "clusterDomain: cluster.local\nstaticPodPath: /tmp");
    }

    #[test]
    fn injected_nginx_statement_is_caught() {
        caught("nginx.conf", "least_conn;", "least_conn;\n        include /tmp/y;");
    }
}
