//! Local file helpers: atomic writes with a mode, private directories.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Prefix of every temporary file kbin writes next to a file's final name. A run killed before
/// it renamed one leaves it behind; [`remove_leftovers`] removes them.
pub const TEMP_PREFIX: &str = ".kbin-new";

fn temp_in(dir: &Path, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).permissions(fs::Permissions::from_mode(mode)).tempfile_in(dir)?;
    // the umask may have removed bits; set exactly what was asked
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(tmp)
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory is written with
/// `mode` from the start (a key is never readable by others, not even for a moment), fsynced and
/// renamed over `path`; then the directory is fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if path.file_name().is_none() {
        return Err(io::Error::other("path has no file name"));
    }
    let mut tmp = temp_in(dir, mode)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Remove the temporary files ([`TEMP_PREFIX`]) a killed kbin left in `dir` and its
/// subdirectories (symbolic links are not followed). The caller holds the lock that keeps
/// another kbin from writing there at the same time.
pub fn remove_leftovers(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            removed.extend(remove_leftovers(&e.path())?);
        } else if ft.is_file() && e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            fs::remove_file(e.path())?;
            removed.push(e.path());
        }
    }
    Ok(removed)
}

/// `create_dir_all` with an explicit mode for the directories it creates (whatever the umask,
/// never more than `mode`).
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
        if p.is_dir() {
            break;
        }
        missing.push(p.to_path_buf());
        d = p.parent();
    }
    for p in missing.iter().rev() {
        match fs::DirBuilder::new().mode(mode).create(p) {
            Ok(()) => fs::set_permissions(p, fs::Permissions::from_mode(mode))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write `bytes` to `path` only if it does not exist yet, atomically. Returns `false` (and leaves
/// the file alone) when it exists. Used for anything that must never be overwritten, like a CA.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = temp_in(dir, mode)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // persist_noclobber: a hard link, so a concurrent writer can never be overwritten
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// [`write_new`] for many files at once: every file is written to a temporary name, all of them
/// are fsynced together (in parallel, so the filesystem journal commits them as one group instead
/// of once per file), and only then linked into place without overwriting anything. Returns, per
/// file, whether it was written (`false`: it existed and was left alone).
pub fn write_new_many(files: &[(&Path, &[u8], u32)]) -> io::Result<Vec<bool>> {
    let mut temps: Vec<Option<tempfile::NamedTempFile>> = Vec::with_capacity(files.len());
    for (path, bytes, mode) in files {
        if path.exists() {
            temps.push(None);
            continue;
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = temp_in(dir, *mode)?;
        tmp.write_all(bytes)?;
        temps.push(Some(tmp));
    }
    let pending: Vec<&File> = temps.iter().flatten().map(|t| t.as_file()).collect();
    let workers = pending.len().clamp(1, 256);
    let chunk = pending.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = pending.chunks(chunk).map(|c| s.spawn(move || c.iter().try_for_each(|f| f.sync_all()))).collect();
        handles.into_iter().try_for_each(|h| h.join().expect("fsync thread"))
    })?;
    let mut dirs = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(files.len());
    for ((path, _, _), tmp) in files.iter().zip(temps) {
        let Some(tmp) = tmp else {
            out.push(false);
            continue;
        };
        match tmp.persist_noclobber(path) {
            Ok(_) => out.push(true),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => out.push(false),
            Err(e) => return Err(e.error),
        }
        if let Some(d) = path.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    for d in dirs {
        if let Ok(f) = File::open(&d) {
            let _ = f.sync_all();
        }
    }
    Ok(out)
}

/// Create `dir` (and parents) with mode 0700 and make sure it is 0700 if it existed.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// The UTC time now as `YYYYMMDDTHHMMSSZ`, for backup names.
pub fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", now.year(), now.month() as u8, now.day(), now.hour(), now.minute(), now.second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.key");
        write_atomic(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no temporary file left behind");
    }

    #[test]
    fn write_new_many_skips_existing_and_sets_modes() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.key"), d.path().join("b.crt"));
        write_new(&a, b"old", 0o600).unwrap();
        let written = write_new_many(&[(&a, b"new", 0o600), (&b, b"cert", 0o644)]).unwrap();
        assert_eq!(written, [false, true]);
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert_eq!(fs::metadata(&b).unwrap().mode() & 0o777, 0o644);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2, "no temporary file left behind");
    }

    #[test]
    fn write_new_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.key");
        assert!(write_new(&p, b"first", 0o600).unwrap());
        assert!(!write_new(&p, b"second", 0o600).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
