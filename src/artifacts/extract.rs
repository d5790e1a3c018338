//! Verify-and-extract of release tarballs in one pass.
//!
//! A reader thread streams the archive from disk and hashes it while the calling thread
//! decompresses and walks the tar entries, so the file is read once and hashing overlaps
//! decompression. Every entry is checked: absolute paths, `..`, links pointing outside the
//! target, device files and absurd sizes refuse the whole archive. Only the wanted members are
//! written, into a staging directory next to the target, and they are moved into place only after
//! the archive's digest matched: nothing is ever half-extracted.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};

use super::{ArtifactError, Digest, Hasher, Result};

/// Size limits for one archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single member (bytes).
    pub max_member: u64,
    /// Largest sum of all member sizes (bytes).
    pub max_total: u64,
    /// Most entries.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_member: 1 << 30, max_total: 4 << 30, max_entries: 100_000 }
    }
}

/// Reads the blocks the hashing thread sends.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.cur = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // sender finished: end of file
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The normalised relative path of an entry (`./a/b` -> `a/b`), or why it is unsafe.
fn safe_relative(p: &Path) -> std::result::Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for part in p.components() {
        match part {
            PathPart::Normal(s) => out.push(s),
            PathPart::CurDir => {}
            PathPart::ParentDir => return Err("contains '..'".into()),
            PathPart::RootDir | PathPart::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    Ok(out)
}

/// Whether `target`, resolved relative to `dir` (both inside the archive root), stays inside it.
fn link_stays_inside(dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = dir.components().filter_map(|c| if let PathPart::Normal(s) = c { Some(s) } else { None }).collect();
    for part in target.components() {
        match part {
            PathPart::Normal(s) => depth.push(s),
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

fn normalise_member(m: &str) -> PathBuf {
    safe_relative(Path::new(m)).unwrap_or_else(|_| PathBuf::from(m))
}

/// Check `archive` (a `.tar.gz`) against `expected` (a SHA-256 or a SHA-512) while extracting
/// `members` (all regular files when `None`) into `dest`. Members land in `dest` under their
/// base name when `flatten`, else under their path in the archive. Returns the written files.
pub fn verify_and_extract(archive: &Path, expected: impl Into<Digest>, members: Option<&[String]>, dest: &Path, flatten: bool, limits: &Limits) -> Result<Vec<PathBuf>> {
    let expected = expected.into();
    let file = File::open(archive).map_err(|e| ArtifactError::io("read", archive, e))?;
    fs::create_dir_all(dest).map_err(|e| ArtifactError::io("create", dest, e))?;
    let staging = tempfile::Builder::new().prefix(".kbin-extract-").tempdir_in(dest).map_err(|e| ArtifactError::io("create a staging directory in", dest, e))?;

    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(16);
    let mut ctx = Hasher::new(&expected, false);
    let hasher = std::thread::spawn(move || {
        let mut file = file;
        loop {
            let mut block = vec![0u8; 1 << 20];
            match file.read(&mut block) {
                Ok(0) => break,
                Ok(n) => {
                    block.truncate(n);
                    ctx.update(&block);
                    if tx.send(Ok(block)).is_err() {
                        return None; // the extractor gave up
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return None;
                }
            }
        }
        Some(ctx.finish())
    });

    let wanted: Option<BTreeSet<PathBuf>> = members.map(|m| m.iter().map(|s| normalise_member(s)).collect());
    let result = walk(archive, ChannelReader { rx, cur: Vec::new(), pos: 0 }, wanted.as_ref(), staging.path(), flatten, limits);
    // `walk` drained (or dropped) the channel, so the hashing thread ends either way
    let digest = hasher.join().unwrap_or(None);
    let written = result?;
    let actual = digest.ok_or_else(|| ArtifactError::io("read", archive, io::Error::other("read failed while hashing")))?.like(&expected);
    if actual != expected {
        return Err(ArtifactError::mismatch(archive.display().to_string(), expected, actual));
    }
    if let Some(w) = &wanted {
        let got: BTreeSet<&PathBuf> = written.iter().map(|(name, _)| name).collect();
        if let Some(missing) = w.iter().find(|m| !got.contains(m)) {
            return Err(ArtifactError::MissingMember { archive: archive.to_path_buf(), member: missing.display().to_string() });
        }
    }
    // verified: move into place
    let mut out = Vec::new();
    for (_, staged) in written {
        let rel = staged.strip_prefix(staging.path()).expect("staged inside staging").to_path_buf();
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| ArtifactError::io("create", parent, e))?;
        }
        fs::rename(&staged, &target).map_err(|e| ArtifactError::io("move into place", &target, e))?;
        out.push(target);
    }
    Ok(out)
}

fn walk(archive: &Path, reader: ChannelReader, wanted: Option<&BTreeSet<PathBuf>>, staging: &Path, flatten: bool, limits: &Limits) -> Result<Vec<(PathBuf, PathBuf)>> {
    let unsafe_entry = |member: &Path, reason: String| ArtifactError::UnsafeArchive { archive: archive.to_path_buf(), member: member.display().to_string(), reason };
    let read_err = |e: io::Error| ArtifactError::io("unpack", archive, e);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut written = Vec::new();
    let mut total = 0u64;
    let mut count = 0usize;
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        count += 1;
        let raw = entry.path().map_err(read_err)?.into_owned();
        if count > limits.max_entries {
            return Err(unsafe_entry(&raw, format!("is entry {count}: more than {} entries", limits.max_entries)));
        }
        let rel = safe_relative(&raw).map_err(|r| unsafe_entry(&raw, r))?;
        let size = entry.header().size().map_err(read_err)?;
        if size > limits.max_member {
            return Err(unsafe_entry(&raw, format!("claims {size} bytes, more than the {} allowed", limits.max_member)));
        }
        total = total.saturating_add(size);
        if total > limits.max_total {
            return Err(unsafe_entry(&raw, format!("brings the archive past {} bytes", limits.max_total)));
        }
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::Directory | T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            T::Symlink | T::Link => {
                let target = entry.link_name().map_err(read_err)?.ok_or_else(|| unsafe_entry(&raw, "is a link without a target".into()))?.into_owned();
                // a symlink resolves from its own directory, a hard link from the archive root
                let base = if kind == T::Symlink { rel.parent().unwrap_or(Path::new("")).to_path_buf() } else { PathBuf::new() };
                if !link_stays_inside(&base, &target) {
                    return Err(unsafe_entry(&raw, format!("links to {} outside the archive", target.display())));
                }
            }
            T::Char | T::Block | T::Fifo => return Err(unsafe_entry(&raw, "is a device or FIFO".into())),
            other => return Err(unsafe_entry(&raw, format!("has an unsupported entry type {other:?}"))),
        }
        let want = match wanted {
            Some(w) => w.contains(&rel),
            None => matches!(kind, T::Regular | T::Continuous),
        };
        if !want {
            continue;
        }
        if !matches!(kind, T::Regular | T::Continuous) {
            return Err(unsafe_entry(&raw, "is wanted but is not a regular file".into()));
        }
        // `.` or `./`: a file named like the archive root (it made `flatten` panic)
        let Some(name) = rel.file_name() else {
            return Err(unsafe_entry(&raw, "is a file without a name".into()));
        };
        let out_rel = if flatten { PathBuf::from(name) } else { rel.clone() };
        let out = staging.join(&out_rel);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(|e| ArtifactError::io("create", parent, e))?;
        }
        // never setuid/setgid/sticky; executables stay executable
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755 | 0o600;
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&out).map_err(|e| ArtifactError::io("create", &out, e))?;
        let copied = io::copy(&mut (&mut entry).take(size), &mut f).map_err(read_err)?;
        if copied != size {
            return Err(read_err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} ended early", raw.display()))));
        }
        written.push((rel, out));
    }
    // read the rest of the file so the whole archive is hashed
    let mut rest = tar.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::artifacts::{Sha256, Sha512};
    use std::io::Write;

    /// Build a .tar.gz from (path, kind, data or link target) rows, writing raw headers so that
    /// hostile names survive (the tar crate's builder refuses them).
    pub fn targz(rows: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in rows {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            let name_bytes = name.as_bytes();
            h.as_old_mut().name[..name_bytes.len()].copy_from_slice(name_bytes);
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                h.as_old_mut().linkname[..data.len()].copy_from_slice(data);
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn run(bytes: &[u8], members: Option<&[String]>) -> (tempfile::TempDir, Result<Vec<PathBuf>>) {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar.gz");
        fs::write(&a, bytes).unwrap();
        let r = verify_and_extract(&a, Sha256::of(bytes), members, &dir.path().join("out"), true, &Limits::default());
        (dir, r)
    }

    fn out_is_empty(dir: &tempfile::TempDir) -> bool {
        fs::read_dir(dir.path().join("out")).map(|mut d| d.next().is_none()).unwrap_or(true)
    }

    use tar::EntryType as T;

    #[test]
    fn extracts_only_wanted_members() {
        let bytes = targz(&[("./etcd-v1/etcd", T::Regular, b"server"), ("./etcd-v1/README.md", T::Regular, b"docs"), ("./etcd-v1/etcdctl", T::Regular, b"client")]);
        let (dir, r) = run(&bytes, Some(&["etcd-v1/etcd".into(), "etcd-v1/etcdctl".into()]));
        let files = r.unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(fs::read(dir.path().join("out/etcd")).unwrap(), b"server");
        assert_eq!(fs::read(dir.path().join("out/etcdctl")).unwrap(), b"client");
        assert!(!dir.path().join("out/README.md").exists());
        let names: Vec<_> = fs::read_dir(dir.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no staging directory left: {names:?}");
    }

    #[test]
    fn parent_dir_member_is_refused() {
        let bytes = targz(&[("ok", T::Regular, b"x"), ("../evil", T::Regular, b"pwned")]);
        let (dir, r) = run(&bytes, None);
        let e = r.unwrap_err();
        assert!(matches!(e, ArtifactError::UnsafeArchive { .. }), "{e}");
        assert!(e.to_string().contains("'..'"), "{e}");
        assert!(!dir.path().join("evil").exists());
        assert!(out_is_empty(&dir));
    }

    #[test]
    fn absolute_member_is_refused() {
        let (dir, r) = run(&targz(&[("/tmp/kbin-evil", T::Regular, b"x")]), None);
        assert!(r.unwrap_err().to_string().contains("absolute"));
        assert!(out_is_empty(&dir));
    }

    #[test]
    fn escaping_symlink_is_refused() {
        let (dir, r) = run(&targz(&[("bin/", T::Directory, b""), ("bin/link", T::Symlink, b"../../etc/passwd"), ("bin/x", T::Regular, b"x")]), None);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("outside the archive"), "{e}");
        assert!(out_is_empty(&dir));
        let (_d, r) = run(&targz(&[("link", T::Symlink, b"/etc/passwd")]), None);
        assert!(r.is_err());
        // a link that stays inside is fine
        let (_d, r) = run(&targz(&[("bin/x", T::Regular, b"x"), ("bin/link", T::Symlink, b"../bin/x")]), None);
        assert_eq!(r.unwrap().len(), 1);
    }

    #[test]
    fn device_file_is_refused() {
        let (_d, r) = run(&targz(&[("dev/sda", T::Block, b"")]), None);
        assert!(r.unwrap_err().to_string().contains("device"));
    }

    /// Found by the tar_extract fuzz target: a regular file named `./` panicked ("normal path
    /// has a name") when members are taken by base name.
    #[test]
    fn regular_file_named_like_the_archive_root_is_refused_not_a_panic() {
        for name in ["./", "."] {
            let bytes = targz(&[(name, tar::EntryType::Regular, b"x")]);
            let dir = tempfile::tempdir().unwrap();
            let archive = dir.path().join("a.tar.gz");
            std::fs::write(&archive, &bytes).unwrap();
            let out = dir.path().join("out");
            let err = verify_and_extract(&archive, Sha256::of(&bytes), None, &out, true, &Limits::default()).unwrap_err();
            assert!(matches!(&err, ArtifactError::UnsafeArchive { reason, .. } if reason.contains("without a name")), "{name:?}: {err}");
            assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing extracted");
        }
    }

    #[test]
    fn absurd_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = targz(&[("big", T::Regular, &[0u8; 4096])]);
        let a = dir.path().join("a.tgz");
        fs::write(&a, &bytes).unwrap();
        let limits = Limits { max_member: 1024, ..Limits::default() };
        let e = verify_and_extract(&a, Sha256::of(&bytes), None, &dir.path().join("out"), true, &limits).unwrap_err();
        assert!(e.to_string().contains("claims 4096 bytes"), "{e}");
    }

    #[test]
    fn digest_mismatch_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = targz(&[("etcd", T::Regular, b"server")]);
        let a = dir.path().join("a.tgz");
        fs::write(&a, &bytes).unwrap();
        let e = verify_and_extract(&a, Sha256([7; 32]), None, &dir.path().join("out"), true, &Limits::default()).unwrap_err();
        assert!(matches!(e, ArtifactError::Mismatch(_)), "{e}");
        assert!(out_is_empty(&dir));
    }

    #[test]
    fn sha512_is_checked_while_extracting() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = targz(&[("kubernetes/server/bin/kube-apiserver", T::Regular, b"apiserver")]);
        let a = dir.path().join("a.tgz");
        fs::write(&a, &bytes).unwrap();
        let members = ["kubernetes/server/bin/kube-apiserver".to_string()];
        let out = dir.path().join("out");
        let files = verify_and_extract(&a, Sha512::of(&bytes), Some(&members), &out, true, &Limits::default()).unwrap();
        assert_eq!(files, [out.join("kube-apiserver")]);
        let e = verify_and_extract(&a, Sha512::of(b"other"), Some(&members), &dir.path().join("out2"), true, &Limits::default()).unwrap_err();
        match e {
            ArtifactError::Mismatch(m) => {
                assert_eq!(m.expected, Digest::Sha512(Sha512::of(b"other")));
                assert_eq!(m.actual, Digest::Sha512(Sha512::of(&bytes)));
            }
            other => panic!("expected a mismatch, got {other}"),
        }
        assert!(!dir.path().join("out2/kube-apiserver").exists());
    }

    #[test]
    fn missing_member_is_an_error() {
        let (_d, r) = run(&targz(&[("etcd", T::Regular, b"server")]), Some(&["etcdctl".into()]));
        assert!(matches!(r.unwrap_err(), ArtifactError::MissingMember { .. }));
    }
}
