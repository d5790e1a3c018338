//! Container images as verified artifacts: fetched against the cluster file's digest from a
//! loopback server the tests start (one that sends tampered bytes too), checked to hold the
//! reference the cluster file names, carried in bundles; and what the nodes are told.

#[path = "http_support/mod.rs"]
mod support;

use std::fs;
use std::time::Duration;

use kbin::artifacts::cache::Cache;
use kbin::artifacts::download::{FetchOptions, Fetcher, Outcome};
use kbin::artifacts::images::{Archive, Source, Spec, fetch};
use kbin::artifacts::progress::Reporter;
use kbin::artifacts::{Arch, ArtifactError, Catalog, Lock, Sha256, bundle};
use support::{Behavior, Server};

fn fetcher() -> Fetcher {
    Fetcher::new(FetchOptions { connect_timeout: Duration::from_secs(2), read_timeout: Duration::from_millis(400), attempts: 2, backoff: Duration::from_millis(20), allow_http_checksums: false }).unwrap()
}

/// An OCI image layout archive naming `reference` (enough of one for kbin, which reads only
/// index.json; containerd gets the real thing in the lab).
fn oci_archive(reference: &str, filler: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":1,"annotations":{{"io.containerd.image.name":"{reference}","org.opencontainers.image.ref.name":"{reference}"}}}}]}}"#, "0".repeat(64));
    for (name, text) in [("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#), ("blobs/sha256/filler", filler), ("index.json", index.as_str())] {
        let mut h = tar::Header::new_ustar();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn spec(key: &str, reference: &str, body: &[u8], source: Source) -> Spec {
    Spec { key: key.into(), reference: reference.into(), sha256: Sha256::of(body), source }
}

#[test]
fn an_image_is_fetched_verified_and_then_taken_from_the_cache_without_the_network() {
    let body = oci_archive("registry.k8s.io/pause:3.10.1", "layers");
    let srv = Server::start(vec![("/pause.tar", Behavior::Bytes(body.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let s = spec("pause", "registry.k8s.io/pause:3.10.1", &body, Source::Url(srv.url("/pause.tar")));
    let got: Vec<Archive> = fetch(std::slice::from_ref(&s), dir.path(), &fetcher(), &Reporter::plain(true)).unwrap();
    assert_eq!(got[0].reference, "registry.k8s.io/pause:3.10.1");
    assert!(matches!(got[0].outcome, Outcome::Downloaded { .. }));
    assert_eq!(fs::read(&got[0].path).unwrap(), body);
    drop(srv);
    // the server is gone: the verified cache entry serves the next run
    let again = fetch(&[s], dir.path(), &fetcher(), &Reporter::plain(true)).unwrap();
    assert_eq!(again[0].outcome, Outcome::Cached);
    assert_eq!(again[0].len, body.len() as u64);
}

#[test]
fn a_tampered_image_archive_is_refused_and_nothing_is_cached() {
    let body = oci_archive("docker.io/library/busybox:1.35.0", "good");
    let mut tampered = body.clone();
    let n = tampered.len();
    tampered[n / 2] ^= 0x01;
    let srv = Server::start(vec![("/busybox.tar", Behavior::Bytes(tampered))]);
    let dir = tempfile::tempdir().unwrap();
    let s = spec("busybox", "busybox:1.35.0", &body, Source::Url(srv.url("/busybox.tar")));
    let e = fetch(&[s], dir.path(), &fetcher(), &Reporter::plain(true)).unwrap_err();
    assert!(matches!(e, ArtifactError::Mismatch(_)), "{e}");
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    assert!(support::cached_files(dir.path()).is_empty(), "nothing enters the cache");

    // the same for an archive on the operator's disk
    let file = dir.path().join("busybox.tar");
    let mut t = body.clone();
    t[10] ^= 0x80;
    fs::write(&file, &t).unwrap();
    let s = spec("busybox", "busybox:1.35.0", &body, Source::File(file));
    assert!(matches!(fetch(&[s], dir.path(), &fetcher(), &Reporter::plain(true)), Err(ArtifactError::Mismatch(_))));
    assert!(support::cached_files(dir.path()).is_empty());
}

#[test]
fn an_archive_holding_another_image_is_refused_naming_the_key_and_what_it_holds() {
    let body = oci_archive("registry.k8s.io/pause:3.9", "x");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pause.tar");
    fs::write(&file, &body).unwrap();
    let s = spec("pause", "registry.k8s.io/pause:3.10.1", &body, Source::File(file));
    let e = fetch(&[s], dir.path(), &fetcher(), &Reporter::plain(true)).unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("images.pause:") && text.contains("holds registry.k8s.io/pause:3.9, not registry.k8s.io/pause:3.10.1"), "{text}");
    assert!(kbin::exit::Reportable::hint(&e).unwrap().contains("images.pause"));
}

#[test]
fn an_image_with_no_source_must_come_from_a_loaded_bundle() {
    let body = oci_archive("registry.k8s.io/coredns/coredns:v1.12.1", "LAYER-BYTES");
    let dir = tempfile::tempdir().unwrap();
    let s = spec("coredns", "registry.k8s.io/coredns/coredns:v1.12.1", &body, Source::Cache);
    let e = fetch(std::slice::from_ref(&s), &dir.path().join("empty"), &fetcher(), &Reporter::plain(true)).unwrap_err();
    assert!(e.to_string().contains("is not in the cache"), "{e}");

    // a bundle made where the image was fetched carries it; loading it into another cache
    // (and a cluster lock, which image entries never enter) makes the image available offline
    let file = dir.path().join("coredns.tar");
    fs::write(&file, &body).unwrap();
    let online = dir.path().join("online");
    let archives = fetch(&[spec("coredns", "registry.k8s.io/coredns/coredns:v1.12.1", &body, Source::File(file))], &online, &fetcher(), &Reporter::plain(true)).unwrap();
    let out = dir.path().join("b.tar");
    bundle::create(&out, &[], &archives, Arch::Amd64).unwrap();
    let offline = dir.path().join("offline");
    let lock = dir.path().join("kbin.lock");
    let loaded = bundle::load(&out, &Cache::open(&offline).unwrap(), Catalog::embedded(), Some(&lock)).unwrap();
    assert_eq!(loaded.entries[0].component, "image:coredns");
    assert_eq!(loaded.entries[0].version, "registry.k8s.io/coredns/coredns:v1.12.1");
    assert_eq!(loaded.added_to_lock, 0);
    assert!(Lock::load(&lock).unwrap().entries.is_empty());
    let got = fetch(&[s], &offline, &fetcher(), &Reporter::plain(true)).unwrap();
    assert_eq!(fs::read(&got[0].path).unwrap(), body);

    // a bundle whose image bytes were altered adds nothing
    let mut raw = fs::read(&out).unwrap();
    let at = raw.windows(11).position(|w| w == b"LAYER-BYTES").unwrap();
    raw[at] = b'l';
    fs::write(&out, &raw).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    assert!(matches!(bundle::load(&out, &Cache::open(&elsewhere).unwrap(), Catalog::embedded(), None), Err(ArtifactError::BundleMismatch { .. })));
    assert!(support::cached_files(&elsewhere).is_empty());
}
