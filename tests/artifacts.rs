//! Verified downloads, cache, extraction and bundles against a loopback server the tests start.

#[path = "http_support/mod.rs"]
mod support;

use std::fs;
use std::time::{Duration, Instant};

use kbin::artifacts::cache::Cache;
use kbin::artifacts::download::{FetchOptions, Fetcher, NoProgress, Outcome, Stored};
use kbin::artifacts::extract::{Limits, verify_and_extract};
use kbin::artifacts::ops::{self, Fetched};
use kbin::artifacts::{Arch, ArtifactError, Catalog, Digest, DigestSource, Lock, Sha256, Sha512, bundle};
use support::{Behavior, Server, bytes, cached_files, partial_files};

fn quick() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(400),
        attempts: 3,
        backoff: Duration::from_millis(20),
        allow_http_checksums: false,
    }
}

fn setup() -> (tempfile::TempDir, Cache, Fetcher) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    (dir, cache, Fetcher::new(quick()).unwrap())
}

#[test]
fn good_artifact_is_cached_and_rehashed_on_hit() {
    let body = bytes(3 << 20, 1);
    let d = Sha256::of(&body);
    let srv = Server::start(vec![("/etcd.tgz", Behavior::Bytes(body.clone()))]);
    let (_dir, cache, f) = setup();
    let Stored { path, sha256, outcome } = f.fetch(&srv.url("/etcd.tgz"), d, &cache, &NoProgress).unwrap();
    assert_eq!(outcome, Outcome::Downloaded { bytes: body.len() as u64, resumed: false });
    assert_eq!(fs::read(&path).unwrap(), body);
    assert_eq!((path.clone(), sha256), (cache.blob_path(&d), d));
    let again = f.fetch(&srv.url("/etcd.tgz"), d, &cache, &NoProgress).unwrap();
    assert_eq!(again.outcome, Outcome::Cached);
    assert_eq!(srv.requests("/etcd.tgz").len(), 1, "a cache hit does not touch the network");
    // a damaged cache entry is noticed on the next use and fetched again
    fs::write(&path, b"damaged").unwrap();
    let third = f.fetch(&srv.url("/etcd.tgz"), d, &cache, &NoProgress).unwrap();
    assert!(matches!(third.outcome, Outcome::Downloaded { .. }));
    assert_eq!(fs::read(&path).unwrap(), body);
}

#[test]
fn wrong_bytes_are_refused_and_leave_the_cache_untouched() {
    let good = bytes(100_000, 2);
    let evil = bytes(100_000, 3);
    let srv = Server::start(vec![("/kubelet", Behavior::Bytes(evil.clone()))]);
    let (_dir, cache, f) = setup();
    let expected = Sha256::of(&good);
    let err = f.fetch(&srv.url("/kubelet"), expected, &cache, &NoProgress).unwrap_err();
    match &err {
        ArtifactError::Mismatch(m) => {
            assert_eq!(m.url, srv.url("/kubelet"));
            assert_eq!(m.expected, Digest::from(expected));
            assert_eq!(m.actual, Digest::from(Sha256::of(&evil)));
        }
        other => panic!("expected a mismatch, got {other}"),
    }
    let rendered = kbin::error::render(&kbin::Error::from(err));
    assert!(rendered.contains(&srv.url("/kubelet")), "{rendered}");
    assert!(rendered.contains(&expected.hex()) && rendered.contains(&Sha256::of(&evil).hex()), "{rendered}");
    assert!(rendered.contains("hint: nothing was cached"), "{rendered}");
    assert!(cached_files(&cache.root).is_empty());
    assert!(partial_files(&cache.root).is_empty(), "the bad partial file is removed");
}

#[test]
fn truncated_body_is_an_error_after_the_retries() {
    let body = bytes(200_000, 4);
    let srv = Server::start(vec![("/f", Behavior::Truncated { body: body.clone(), send: 50_000 })]);
    let (_dir, cache, f) = setup();
    let err = f.fetch(&srv.url("/f"), Sha256::of(&body), &cache, &NoProgress).unwrap_err();
    assert!(matches!(err, ArtifactError::Truncated { expected: 200_000, attempts: 3, .. }), "{err}");
    // each retry resumed where the body had stopped
    let reqs = srv.requests("/f");
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=50000-"));
    assert_eq!(partial_files(&cache.root).len(), 1, "the partial body is kept for the next run");
    assert_eq!(srv.requests("/f").len(), 3);
    assert!(cached_files(&cache.root).is_empty());
}

#[test]
fn not_found_fails_at_once_without_retry() {
    let srv = Server::start(vec![]);
    let (_dir, cache, f) = setup();
    let err = f.fetch(&srv.url("/missing"), Sha256([1; 32]), &cache, &NoProgress).unwrap_err();
    assert!(matches!(err, ArtifactError::Http { status: 404, .. }), "{err}");
    assert_eq!(srv.requests("/missing").len(), 1);
    assert!(partial_files(&cache.root).is_empty(), "no empty partial file left behind");
    let rendered = kbin::error::render(&kbin::Error::from(err));
    assert!(rendered.contains("404") && rendered.contains("hint:"), "{rendered}");
}

#[test]
fn stalled_server_times_out_instead_of_hanging() {
    let body = bytes(100_000, 5);
    let srv = Server::start(vec![("/stall", Behavior::Stall { body: body.clone(), send: 10_000 })]);
    let (_dir, cache, _) = setup();
    let f = Fetcher::new(FetchOptions { attempts: 2, ..quick() }).unwrap();
    let t = Instant::now();
    let err = f.fetch(&srv.url("/stall"), Sha256::of(&body), &cache, &NoProgress).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(matches!(err, ArtifactError::Timeout { attempts: 2, .. }), "{err}");
    // the second attempt resumed where the first stalled
    let reqs = srv.requests("/stall");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=10000-"));
    assert!(cached_files(&cache.root).is_empty());
}

#[test]
fn service_unavailable_then_success_is_retried() {
    let body = bytes(64_000, 6);
    let srv = Server::start(vec![("/r", Behavior::FailThen { status: 503, times: 2, then: Box::new(Behavior::Bytes(body.clone())) })]);
    let (_dir, cache, f) = setup();
    let stored = f.fetch(&srv.url("/r"), Sha256::of(&body), &cache, &NoProgress).unwrap();
    assert_eq!(fs::read(stored.path).unwrap(), body);
    assert_eq!(srv.requests("/r").len(), 3);
}

#[test]
fn dropped_connection_is_resumed_with_range() {
    let body = bytes(1 << 20, 7);
    let srv = Server::start(vec![("/big", Behavior::TruncateOnce { body: body.clone(), send: 300_000 })]);
    let (_dir, cache, f) = setup();
    let stored = f.fetch(&srv.url("/big"), Sha256::of(&body), &cache, &NoProgress).unwrap();
    assert_eq!(fs::read(stored.path).unwrap(), body);
    let reqs = srv.requests("/big");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].range, None);
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=300000-"));
}

#[test]
fn partial_file_of_an_earlier_run_is_resumed() {
    let body = bytes(500_000, 8);
    let d = Sha256::of(&body);
    let srv = Server::start(vec![("/x", Behavior::Bytes(body.clone()))]);
    let (_dir, cache, f) = setup();
    fs::write(cache.partial_path(d), &body[..123_456]).unwrap(); // as left by a killed kbin
    let stored = f.fetch(&srv.url("/x"), d, &cache, &NoProgress).unwrap();
    assert_eq!(stored.outcome, Outcome::Downloaded { bytes: body.len() as u64, resumed: true });
    assert_eq!(srv.requests("/x")[0].range.as_deref(), Some("bytes=123456-"));
    assert_eq!(fs::read(stored.path).unwrap(), body);
}

#[test]
fn server_without_range_support_restarts_cleanly() {
    let body = bytes(300_000, 9);
    let d = Sha256::of(&body);
    let srv = Server::start(vec![("/n", Behavior::NoRange(body.clone()))]);
    let (_dir, cache, f) = setup();
    fs::write(cache.partial_path(d), &body[..1000]).unwrap();
    let stored = f.fetch(&srv.url("/n"), d, &cache, &NoProgress).unwrap();
    assert_eq!(fs::read(stored.path).unwrap(), body);
}

#[test]
fn two_fetchers_of_one_digest_do_not_collide() {
    let body = bytes(2 << 20, 10);
    let d = Sha256::of(&body);
    let srv = Server::start(vec![("/c", Behavior::Bytes(body.clone()))]);
    let (_dir, cache, f) = setup();
    std::thread::scope(|s| {
        let h: Vec<_> = (0..4).map(|_| s.spawn(|| f.fetch(&srv.url("/c"), d, &cache, &NoProgress).unwrap())).collect();
        for t in h {
            assert_eq!(fs::read(t.join().unwrap().path).unwrap(), body);
        }
    });
    assert_eq!(srv.requests("/c").len(), 1, "the others waited and found it cached");
    assert!(partial_files(&cache.root).is_empty());
}

fn fetch_tarball(rows: &[(&str, tar::EntryType, &[u8])]) -> (tempfile::TempDir, Result<Vec<std::path::PathBuf>, ArtifactError>) {
    let tgz = support::targz(rows);
    let d = Sha256::of(&tgz);
    let srv = Server::start(vec![("/t.tgz", Behavior::Bytes(tgz))]);
    let (dir, cache, f) = setup();
    let stored = f.fetch(&srv.url("/t.tgz"), d, &cache, &NoProgress).unwrap();
    let r = verify_and_extract(&stored.path, d, None, &dir.path().join("out"), false, &Limits::default());
    (dir, r)
}

#[test]
fn downloaded_tarball_with_parent_dir_member_is_refused() {
    use tar::EntryType as T;
    let (dir, r) = fetch_tarball(&[("etcd-v1/etcd", T::Regular, b"ok"), ("etcd-v1/../../escape", T::Regular, b"pwned")]);
    let e = r.unwrap_err();
    assert!(matches!(e, ArtifactError::UnsafeArchive { .. }), "{e}");
    assert!(!dir.path().join("escape").exists());
    assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 0, "nothing extracted, no staging left");
}

#[test]
fn downloaded_tarball_with_escaping_symlink_is_refused() {
    use tar::EntryType as T;
    let (dir, r) = fetch_tarball(&[("bin/", T::Directory, b""), ("bin/ctr", T::Symlink, b"../../../usr/bin/evil"), ("bin/containerd", T::Regular, b"x")]);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("outside the archive"), "{e}");
    assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
}

/// Upstream checksum files: fetched only for unpinned versions, only over HTTPS, recorded in the lock.
fn test_catalog(port: u16) -> Catalog {
    Catalog::parse(&format!(
        r#"
[[component]]
name = "etcd"
version_from = "etcd"
roles = ["etcd"]
kind = "binary"
url = "http://127.0.0.1:{port}/official/{{version}}/etcd-{{arch}}"
checksum_url = "http://127.0.0.1:{port}/official/{{version}}/SHA256SUMS"
"#
    ))
    .unwrap()
}

#[test]
fn unpinned_version_is_checked_against_the_upstream_checksum_file_and_locked() {
    let body = bytes(10_000, 11);
    let sums = format!("{}  etcd-arm64\n{}  etcd-amd64\n", "0".repeat(64), support::sha256_hex(&body));
    let srv = Server::start(vec![("/official/v9.9.9/SHA256SUMS", Behavior::Bytes(sums.into_bytes())), ("/mirror/etcd/v9.9.9/etcd-amd64", Behavior::Bytes(body.clone()))]);
    let catalog = test_catalog(srv.port);
    let dir = tempfile::tempdir().unwrap();
    let a = catalog.component("etcd").unwrap().artifact("v9.9.9", Arch::Amd64);
    let mut lock = Lock::load(&Lock::path_in(dir.path())).unwrap();

    // plain-HTTP checksum origins are refused
    let strict = Fetcher::new(quick()).unwrap();
    let e = ops::resolve_digest(&catalog, &a, &mut lock, &strict).unwrap_err();
    assert!(matches!(e, ArtifactError::InsecureChecksum { .. }), "{e}");

    let f = Fetcher::new(FetchOptions { allow_http_checksums: true, ..quick() }).unwrap();
    let (d, source) = ops::resolve_digest(&catalog, &a, &mut lock, &f).unwrap();
    assert_eq!(d, Digest::from(Sha256::of(&body)));
    assert_eq!(source, DigestSource::Upstream(srv.url("/official/v9.9.9/SHA256SUMS")));
    assert_eq!(lock.get("etcd", "v9.9.9", Arch::Amd64).unwrap().digest, d);
    // once locked, the lock is the law and the checksum file is not asked again
    let (_, again) = ops::resolve_digest(&catalog, &a, &mut lock, &f).unwrap();
    assert_eq!(again, DigestSource::Lock);
    assert_eq!(srv.requests("/official/v9.9.9/SHA256SUMS").len(), 1);
}

#[test]
fn component_without_checksum_file_or_pin_is_refused_with_a_pin_hint() {
    let catalog = Catalog::embedded();
    let a = catalog.component("flanneld").unwrap().artifact("v0.1.0", Arch::Amd64);
    let dir = tempfile::tempdir().unwrap();
    let mut lock = Lock::load(&Lock::path_in(dir.path())).unwrap();
    let e = ops::resolve_digest(catalog, &a, &mut lock, &Fetcher::new(quick()).unwrap()).unwrap_err();
    let r = kbin::error::render(&kbin::Error::from(e));
    assert!(r.contains("kbin pin flanneld v0.1.0"), "{r}");
}

fn fetched_of(cache: &Cache, body: &[u8], version: &str) -> Fetched {
    let d = Sha256::of(body);
    let tmp = cache.root.join("tmp").join(d.hex());
    fs::write(&tmp, body).unwrap();
    let path = cache.insert(&tmp, &d).unwrap();
    Fetched {
        component: "etcd".into(),
        version: version.into(),
        arch: Arch::Amd64,
        sha256: d,
        digest: Digest::Sha256(d),
        digest_source: DigestSource::Lock,
        url: String::new(),
        path,
        outcome: Outcome::Cached,
        provides: vec!["etcd".into()],
        extracted: vec![],
    }
}

#[test]
fn bundle_round_trips_into_an_empty_cache_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let src = Cache::open(&dir.path().join("src")).unwrap();
    let body = bytes(300_000, 12);
    let f = fetched_of(&src, &body, "v3.5.1");
    let out = dir.path().join("b.tar");
    bundle::create(&out, std::slice::from_ref(&f), &[], Arch::Amd64).unwrap();
    let dst = Cache::open(&dir.path().join("dst")).unwrap();
    let lock_path = dir.path().join("kbin.lock");
    let loaded = bundle::load(&out, &dst, Catalog::embedded(), Some(&lock_path)).unwrap();
    assert_eq!(loaded.entries.len(), 1);
    assert_eq!(loaded.added_to_lock, 1);
    assert_eq!(fs::read(dst.blob_path(&f.sha256)).unwrap(), body);
    assert_eq!(Lock::load(&lock_path).unwrap().get("etcd", "v3.5.1", Arch::Amd64).unwrap().digest, Digest::Sha256(f.sha256));
}

#[test]
fn bundle_with_one_altered_member_is_refused_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = Cache::open(&dir.path().join("src")).unwrap();
    let a = fetched_of(&src, &bytes(100_000, 13), "v3.5.1");
    let b = fetched_of(&src, &bytes(100_000, 14), "v3.5.2");
    let out = dir.path().join("b.tar");
    bundle::create(&out, &[a.clone(), b.clone()], &[], Arch::Amd64).unwrap();
    // flip one byte inside the second artifact's data
    let mut raw = fs::read(&out).unwrap();
    let needle = &fs::read(&b.path).unwrap()[..64];
    let at = raw.windows(64).position(|w| w == needle).unwrap() + 5000;
    raw[at] ^= 0xff;
    fs::write(&out, raw).unwrap();
    let dst = Cache::open(&dir.path().join("dst")).unwrap();
    let lock_path = dir.path().join("kbin.lock");
    let e = bundle::load(&out, &dst, Catalog::embedded(), Some(&lock_path)).unwrap_err();
    match &e {
        ArtifactError::BundleMismatch { member, expected, .. } => {
            assert_eq!(member, &format!("artifacts/{}", b.sha256.hex()));
            assert_eq!(*expected, b.sha256);
        }
        other => panic!("expected a bundle mismatch, got {other}"),
    }
    assert!(cached_files(&dst.root).is_empty(), "not even the intact member entered the cache");
    assert!(!lock_path.exists(), "no lock written");
    assert_eq!(fs::read_dir(dst.root.join("tmp")).unwrap().count(), 0, "staging removed");
}

/// Regression (found in the lab, issue 14): a cluster whose kbin.lock pins its own build of a
/// version kbin's catalog also pins (the lab's CNI plugins built from source) could not load its
/// own bundle: the bundle was checked against the catalog too, though every deploy uses the lock.
#[test]
fn bundle_follows_the_cluster_lock_where_it_pins_another_build_than_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let src = Cache::open(&dir.path().join("src")).unwrap();
    let body = bytes(2000, 16);
    assert!(Catalog::embedded().component("etcd").unwrap().pinned("v3.5.21", Arch::Amd64).is_some(), "the catalog pins this version");
    let a = fetched_of(&src, &body, "v3.5.21");
    let out = dir.path().join("b.tar");
    bundle::create(&out, std::slice::from_ref(&a), &[], Arch::Amd64).unwrap();
    // without the cluster's lock the catalog decides, and this is not the catalog's build
    let e = bundle::load(&out, &Cache::open(&dir.path().join("any")).unwrap(), Catalog::embedded(), None).unwrap_err();
    assert!(matches!(e, ArtifactError::Conflict { .. }), "{e}");
    // the cluster pinned this very build: its lock is the law
    let lock_path = dir.path().join("kbin.lock");
    ops::pin(Catalog::embedded(), &lock_path, "etcd", "v3.5.21", Arch::Amd64, &a.sha256.hex()).unwrap();
    let dst = Cache::open(&dir.path().join("dst")).unwrap();
    let loaded = bundle::load(&out, &dst, Catalog::embedded(), Some(&lock_path)).unwrap();
    assert_eq!(loaded.added_to_lock, 0);
    assert_eq!(fs::read(dst.blob_path(&a.sha256)).unwrap(), body);
}

#[test]
fn bundle_that_contradicts_the_cluster_lock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = Cache::open(&dir.path().join("src")).unwrap();
    let a = fetched_of(&src, &bytes(1000, 15), "v3.5.1");
    let out = dir.path().join("b.tar");
    bundle::create(&out, &[a], &[], Arch::Amd64).unwrap();
    let lock_path = dir.path().join("kbin.lock");
    ops::pin(Catalog::embedded(), &lock_path, "etcd", "v3.5.1", Arch::Amd64, &"ab".repeat(32)).unwrap();
    let dst = Cache::open(&dir.path().join("dst")).unwrap();
    let e = bundle::load(&out, &dst, Catalog::embedded(), Some(&lock_path)).unwrap_err();
    assert!(matches!(e, ArtifactError::Conflict { .. }), "{e}");
    assert!(cached_files(&dst.root).is_empty());
}

#[test]
fn unreachable_checksum_origin_suggests_pinning() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again at once
    let catalog = test_catalog(port);
    let a = catalog.component("etcd").unwrap().artifact("v9.9.9", Arch::Amd64);
    let dir = tempfile::tempdir().unwrap();
    let mut lock = Lock::load(&Lock::path_in(dir.path())).unwrap();
    let f = Fetcher::new(FetchOptions { allow_http_checksums: true, attempts: 1, ..quick() }).unwrap();
    let e = ops::resolve_digest(&catalog, &a, &mut lock, &f).unwrap_err();
    let r = kbin::error::render(&kbin::Error::from(e));
    assert!(r.contains("error: no trusted digest for etcd v9.9.9 (amd64)"), "{r}");
    assert!(r.contains("could not be fetched") && r.contains("kbin pin etcd v9.9.9 <sha256>"), "{r}");
    assert!(lock.entries.is_empty());
}

// ---- SHA-512 pins and the kubernetes-server tarball -----------------------------------------

#[test]
fn good_sha512_pinned_artifact_is_cached_and_reverified_on_hit() {
    let body = bytes(2 << 20, 20);
    let d512 = Sha512::of(&body);
    let srv = Server::start(vec![("/server.tgz", Behavior::Bytes(body.clone()))]);
    let (_dir, cache, f) = setup();
    let stored = f.fetch(&srv.url("/server.tgz"), d512, &cache, &NoProgress).unwrap();
    assert!(matches!(stored.outcome, Outcome::Downloaded { .. }));
    // the SHA-256 was computed in the same pass: it is the file's address in the cache
    assert_eq!(stored.sha256, Sha256::of(&body));
    assert_eq!(stored.path, cache.blob_path(&stored.sha256));
    assert_eq!(fs::read(&stored.path).unwrap(), body);
    assert_eq!(fs::read_to_string(cache.alias_path(&d512)).unwrap().trim(), stored.sha256.hex());
    // a hit is re-hashed, not downloaded; a SHA-256 pin of the same file finds it too
    assert_eq!(f.fetch(&srv.url("/server.tgz"), d512, &cache, &NoProgress).unwrap().outcome, Outcome::Cached);
    assert_eq!(f.fetch(&srv.url("/server.tgz"), stored.sha256, &cache, &NoProgress).unwrap().outcome, Outcome::Cached);
    assert_eq!(srv.requests("/server.tgz").len(), 1);
    // a damaged cache entry fails its SHA-512 check on the next use and is fetched again
    fs::write(&stored.path, b"damaged").unwrap();
    let again = f.fetch(&srv.url("/server.tgz"), d512, &cache, &NoProgress).unwrap();
    assert!(matches!(again.outcome, Outcome::Downloaded { .. }));
    assert_eq!(fs::read(&again.path).unwrap(), body);
    assert_eq!(srv.requests("/server.tgz").len(), 2);
}

#[test]
fn wrong_bytes_against_a_sha512_pin_name_both_digests_and_leave_the_cache_untouched() {
    let good = bytes(300_000, 25);
    let evil = bytes(300_000, 26);
    let srv = Server::start(vec![("/server.tgz", Behavior::Bytes(evil.clone()))]);
    let (_dir, cache, f) = setup();
    let expected = Sha512::of(&good);
    let err = f.fetch(&srv.url("/server.tgz"), expected, &cache, &NoProgress).unwrap_err();
    match &err {
        ArtifactError::Mismatch(m) => {
            assert_eq!(m.url, srv.url("/server.tgz"));
            assert_eq!(m.expected, Digest::Sha512(expected));
            assert_eq!(m.actual, Digest::Sha512(Sha512::of(&evil)));
        }
        other => panic!("expected a mismatch, got {other}"),
    }
    let rendered = kbin::error::render(&kbin::Error::from(err));
    let want = format!("error: digest mismatch for {}: expected sha512 {}, got {}", srv.url("/server.tgz"), expected.hex(), Sha512::of(&evil).hex());
    assert!(rendered.contains(&want), "{rendered}");
    assert!(rendered.contains("hint: nothing was cached"), "{rendered}");
    assert!(cached_files(&cache.root).is_empty());
    assert!(partial_files(&cache.root).is_empty());
    assert_eq!(fs::read_dir(cache.root.join("sha512")).unwrap().count(), 0, "no alias either");
}

/// A kubernetes-server tarball laid out like upstream's: the four server binaries and files kbin
/// leaves alone.
fn server_tarball() -> Vec<u8> {
    use tar::EntryType as T;
    support::targz(&[
        ("kubernetes/", T::Directory, b""),
        ("kubernetes/server/bin/kube-apiserver", T::Regular, &bytes(300_000, 21)),
        ("kubernetes/server/bin/kube-controller-manager", T::Regular, &bytes(200_000, 22)),
        ("kubernetes/server/bin/kube-scheduler", T::Regular, &bytes(150_000, 23)),
        ("kubernetes/server/bin/kube-proxy", T::Regular, &bytes(100_000, 24)),
        ("kubernetes/server/bin/kubeadm", T::Regular, b"not wanted"),
        ("kubernetes/LICENSES", T::Regular, b"licenses"),
    ])
}

const SERVER: [(&str, u64, usize); 4] =
    [("kube-apiserver", 21, 300_000), ("kube-controller-manager", 22, 200_000), ("kube-scheduler", 23, 150_000), ("kube-proxy", 24, 100_000)];
const SERVER_PATH: &str = "/kubernetes-server/v9.9.9/kubernetes-server-linux-amd64.tar.gz";

fn server_settings(dir: &std::path::Path, mirror: String) -> ops::Settings {
    ops::Settings {
        arch: Arch::Amd64,
        cli_mirror: Some(mirror),
        mirror: None,
        mirrors: Default::default(),
        versions: Default::default(),
        kubernetes_version: "v9.9.9".into(),
        etcd_version: "v3.5.1".into(),
        flannel_version: "v0.27.4".into(),
        cache_root: dir.join("cache"),
        lock_path: dir.join("kbin.lock"),
        jobs: 4,
        roles: vec!["master".into(), "node".into()],
    }
}

#[test]
fn four_server_components_come_out_of_one_tarball_download() {
    let tgz = server_tarball();
    let srv = Server::start(vec![(SERVER_PATH, Behavior::Bytes(tgz.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let s = server_settings(dir.path(), srv.url(""));
    let catalog = Catalog::embedded();
    // pinned by its SHA-512, as the release notes publish it
    ops::pin(catalog, &s.lock_path, "kubernetes-server", "v9.9.9", Arch::Amd64, &Sha512::of(&tgz).hex()).unwrap();
    let f = Fetcher::new(quick()).unwrap();
    let quiet = kbin::artifacts::progress::Reporter::plain(true);

    let names: Vec<String> = SERVER.iter().map(|(n, ..)| n.to_string()).collect();
    let planned = ops::plan(catalog, &s, &names).unwrap();
    assert_eq!(planned.len(), 1, "one artifact for the four components");
    let out = dir.path().join("x");
    let fetched = ops::download(catalog, &planned, &s, &f, &quiet, Some(&out)).unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].component, "kubernetes-server");
    assert_eq!(fetched[0].digest, Digest::Sha512(Sha512::of(&tgz)));
    assert_eq!(fetched[0].sha256, Sha256::of(&tgz));
    assert_eq!(fetched[0].provides, names);
    for (name, seed, len) in SERVER {
        assert_eq!(fs::read(out.join(name).join(name)).unwrap(), bytes(len, seed), "{name}");
    }
    assert_eq!(fetched[0].extracted.len(), 4);
    assert!(!out.join("kubernetes-server").exists() && !out.join("kube-apiserver/kubeadm").exists());
    assert_eq!(srv.requests(SERVER_PATH).len(), 1);

    // deploy code asks per component: each gets exactly its own file, named after it, from one
    // extraction of the cached tarball (no more requests)
    for (name, seed, len) in SERVER {
        let files = ops::extracted(catalog, &s, name, &f, &quiet).unwrap();
        assert_eq!(files.len(), 1, "{name}: {files:?}");
        assert_eq!(files[0].name, name);
        assert_eq!(fs::read(&files[0].path).unwrap(), bytes(len, seed));
        assert_eq!(files[0].sha256, Sha256::of(&bytes(len, seed)).hex());
    }
    assert_eq!(srv.requests(SERVER_PATH).len(), 1);
    let extracted: Vec<_> = fs::read_dir(s.cache_root.join("extracted")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(extracted, [format!("sha512-{}", Sha512::of(&tgz).hex())], "extracted once for all four");
}

#[test]
fn components_of_one_tarball_asked_for_at_once_share_one_download_and_extraction() {
    let tgz = server_tarball();
    let srv = Server::start(vec![(SERVER_PATH, Behavior::Bytes(tgz.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let s = server_settings(dir.path(), srv.url(""));
    let catalog = Catalog::embedded();
    ops::pin(catalog, &s.lock_path, "kubernetes-server", "v9.9.9", Arch::Amd64, &Sha512::of(&tgz).hex()).unwrap();
    let f = Fetcher::new(quick()).unwrap();
    let reporter = kbin::artifacts::progress::Reporter::plain(true);
    // as the deploy code asks: one thread per component
    std::thread::scope(|scope| {
        let handles: Vec<_> = SERVER.iter().map(|(name, ..)| scope.spawn(|| ops::extracted(catalog, &s, name, &f, &reporter))).collect();
        for ((name, seed, len), h) in SERVER.iter().zip(handles) {
            let files = h.join().unwrap().unwrap();
            assert_eq!(files.len(), 1, "{name}");
            assert_eq!(fs::read(&files[0].path).unwrap(), bytes(*len, *seed), "{name}");
        }
    });
    assert_eq!(srv.requests(SERVER_PATH).len(), 1);
    assert_eq!(fs::read_dir(s.cache_root.join("tmp")).unwrap().count(), 0, "no staging left behind");
}

#[test]
fn tarball_with_wrong_bytes_is_refused_for_a_component_taken_out_of_it() {
    let tgz = server_tarball();
    let srv = Server::start(vec![(SERVER_PATH, Behavior::Bytes(b"not the server tarball".to_vec()))]);
    let dir = tempfile::tempdir().unwrap();
    let s = server_settings(dir.path(), srv.url(""));
    let catalog = Catalog::embedded();
    ops::pin(catalog, &s.lock_path, "kubernetes-server", "v9.9.9", Arch::Amd64, &Sha512::of(&tgz).hex()).unwrap();
    let f = Fetcher::new(quick()).unwrap();
    let e = ops::extracted(catalog, &s, "kube-scheduler", &f, &kbin::artifacts::progress::Reporter::plain(true)).unwrap_err();
    let r = kbin::error::render(&kbin::Error::from(e));
    assert!(r.contains(&format!("expected sha512 {}", Sha512::of(&tgz).hex())), "{r}");
    assert!(cached_files(&s.cache_root).is_empty());
    assert!(!s.cache_root.join("extracted").exists() || fs::read_dir(s.cache_root.join("extracted")).unwrap().count() == 0);
}

#[test]
fn bundle_of_a_sha512_trusted_tarball_loads_into_an_air_gapped_cluster() {
    let tgz = server_tarball();
    let srv = Server::start(vec![(SERVER_PATH, Behavior::Bytes(tgz.clone()))]);
    let online = tempfile::tempdir().unwrap();
    let s = server_settings(online.path(), srv.url(""));
    let catalog = Catalog::embedded();
    let d512 = Sha512::of(&tgz).hex();
    ops::pin(catalog, &s.lock_path, "kubernetes-server", "v9.9.9", Arch::Amd64, &d512).unwrap();
    let f = Fetcher::new(quick()).unwrap();
    let quiet = kbin::artifacts::progress::Reporter::plain(true);
    let fetched = ops::download(catalog, &ops::plan(catalog, &s, &["kube-apiserver".into()]).unwrap(), &s, &f, &quiet, None).unwrap();
    let out = online.path().join("b.tar");
    bundle::create(&out, &fetched, &[], Arch::Amd64).unwrap();
    drop(srv);

    // the air-gapped cluster trusts the tarball by its SHA-512 too: the bundled file is checked
    // against it, and then found in the cache by it
    let offline = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // nothing listens
    let s2 = server_settings(offline.path(), format!("http://127.0.0.1:{port}"));
    ops::pin(catalog, &s2.lock_path, "kubernetes-server", "v9.9.9", Arch::Amd64, &d512).unwrap();
    let dst = Cache::open(&s2.cache_root).unwrap();
    let loaded = bundle::load(&out, &dst, catalog, Some(&s2.lock_path)).unwrap();
    assert_eq!(loaded.added_to_lock, 0, "the cluster already trusted it");
    let files = ops::extracted(catalog, &s2, "kube-proxy", &f, &quiet).unwrap();
    assert_eq!(fs::read(&files[0].path).unwrap(), bytes(100_000, 24));

    // a cluster that trusts another SHA-512 refuses the bundle, naming both
    let other = tempfile::tempdir().unwrap();
    let lock3 = other.path().join("kbin.lock");
    ops::pin(catalog, &lock3, "kubernetes-server", "v9.9.9", Arch::Amd64, &"e".repeat(128)).unwrap();
    let dst3 = Cache::open(&other.path().join("cache")).unwrap();
    let e = bundle::load(&out, &dst3, catalog, Some(&lock3)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("says sha512 {d512}")) && msg.contains(&format!("says sha512 {}", "e".repeat(128))), "{msg}");
    assert!(cached_files(&dst3.root).is_empty());
}
