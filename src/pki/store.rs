//! The pki directory on disk: every file kbin reads or writes there is a regular file reached
//! without following a symbolic link, written by one kbin at a time (a lock file), never
//! overwritten by `init`, and read back after writing.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;

use super::{PkiError, keys};

/// Files under the pki directory. Every file kbin reads or writes there must be a regular file
/// reached without following a symbolic link: a link (even a dangling one) is refused, so a key
/// can never be written somewhere else, or not at all, while kbin believes it stored it.
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    /// Whether `rel` exists as a regular file; a symbolic link, directory or other kind of file
    /// at that place (or at a directory on the way to it) is an error.
    pub fn present(&self, rel: &str) -> Result<bool, PkiError> {
        let path = self.path(rel);
        let mut at = self.dir.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            at.push(part);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&at) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(source) => return Err(PkiError::Read { path: at, source }),
                Ok(m) if m.file_type().is_symlink() => return Err(PkiError::NotRegular { path: at, what: "a symbolic link" }),
                Ok(m) if last && !m.is_file() => return Err(PkiError::NotRegular { path, what: if m.is_dir() { "a directory" } else { "not a regular file" } }),
                Ok(m) if !last && !m.is_dir() => return Err(PkiError::NotRegular { path: at, what: "not a directory" }),
                Ok(_) => {}
            }
        }
        Ok(true)
    }
    /// Kept for callers that only ask; a link or other odd file counts as present (reading it
    /// then refuses with the reason).
    pub fn exists(&self, rel: &str) -> bool {
        !matches!(self.present(rel), Ok(false))
    }
    pub fn read(&self, rel: &str) -> Result<Option<String>, PkiError> {
        if !self.present(rel)? {
            return Ok(None);
        }
        let path = self.path(rel);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| PkiError::Read { path: path.clone(), source })?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).map_err(|source| PkiError::Read { path, source })?;
        Ok(Some(s))
    }
    pub(super) fn key(&self, rel: &str) -> Result<Option<KeyPair>, PkiError> {
        match self.read(rel)? {
            None => Ok(None),
            Some(text) => keys::load_pem(&text).map(Some).map_err(|source| PkiError::Key { path: self.path(rel), source }),
        }
    }
    /// Refuse, before anything is written, if any of `rels` is a link or not a regular file.
    pub(super) fn preflight<'a>(&self, rels: impl IntoIterator<Item = &'a str>) -> Result<(), PkiError> {
        for rel in rels {
            self.present(rel)?;
        }
        Ok(())
    }
    /// Take the pki directory's lock (released on drop) and remove the temporary files a killed
    /// run left (they may hold private keys): one kbin at a time writes here.
    pub(super) fn lock(&self) -> Result<PkiLock, PkiError> {
        crate::fsutil::private_dir(&self.dir).map_err(|source| PkiError::Write { path: self.dir.clone(), source })?;
        let path = self.dir.join(".kbin-lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| PkiError::Write { path: path.clone(), source })?;
        f.lock().map_err(|source| PkiError::Write { path: path.clone(), source })?;
        crate::fsutil::remove_leftovers(&self.dir).map_err(|source| PkiError::Write { path: self.dir.clone(), source })?;
        Ok(PkiLock { _file: f })
    }
    /// Write files that must not exist yet (the caller holds [`Store::lock`]), creating private
    /// directories, then read every file back: one not written as asked is an error, never
    /// ignored.
    pub(super) fn write_new_files(&self, files: &[Pending]) -> Result<Vec<String>, PkiError> {
        self.preflight(files.iter().map(|f| f.rel.as_str()))?;
        for f in files {
            self.make_dirs(&self.path(&f.rel))?;
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| self.path(&f.rel)).collect();
        let items: Vec<(&Path, &[u8], u32)> = files.iter().zip(&paths).map(|(f, p)| (p.as_path(), f.bytes.as_bytes(), f.mode)).collect();
        let done = crate::fsutil::write_new_many(&items).map_err(|source| PkiError::Write { path: self.dir.clone(), source })?;
        for (f, written) in files.iter().zip(&done) {
            if !written {
                return Err(PkiError::NotWritten { path: self.path(&f.rel), why: "another file appeared there while kbin was writing".into() });
            }
            self.read_back(f)?;
        }
        Ok(files.iter().map(|f| f.rel.clone()).collect())
    }
    /// The file on disk holds exactly what was written (a key is also parsed).
    pub(super) fn read_back(&self, f: &Pending) -> Result<(), PkiError> {
        let path = self.path(&f.rel);
        match self.read(&f.rel)? {
            Some(text) if text == f.bytes => {}
            _ => return Err(PkiError::NotWritten { path, why: "reading it back gave other bytes".into() }),
        }
        if f.rel.ends_with(".key") {
            keys::load_pem(&f.bytes).map_err(|source| PkiError::Key { path, source })?;
        }
        Ok(())
    }
    /// Replace files on purpose (renew), atomically.
    pub(super) fn replace_files(&self, files: &[Pending]) -> Result<Vec<String>, PkiError> {
        self.preflight(files.iter().map(|f| f.rel.as_str()))?;
        for f in files {
            let path = self.path(&f.rel);
            self.make_dirs(&path)?;
            crate::fsutil::write_atomic(&path, f.bytes.as_bytes(), f.mode).map_err(|source| PkiError::Write { path, source })?;
            self.read_back(f)?;
        }
        Ok(files.iter().map(|f| f.rel.clone()).collect())
    }
    pub(super) fn make_dirs(&self, path: &Path) -> Result<(), PkiError> {
        let mut dirs = Vec::new();
        let mut d = path.parent();
        while let Some(p) = d {
            if p == self.dir.parent().unwrap_or(Path::new("")) || p.as_os_str().is_empty() {
                break;
            }
            dirs.push(p.to_path_buf());
            if p == self.dir {
                break;
            }
            d = p.parent();
        }
        for p in dirs.iter().rev() {
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() && p != &self.dir => return Err(PkiError::NotRegular { path: p.clone(), what: "a symbolic link" }),
                _ if p.is_dir() => {}
                _ => crate::fsutil::private_dir(p).map_err(|source| PkiError::Write { path: p.clone(), source })?,
            }
        }
        Ok(())
    }
}

/// The pki directory's lock, held while kbin writes there.
pub(super) struct PkiLock {
    _file: std::fs::File,
}

/// A file to be written.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) rel: String,
    pub(super) bytes: String,
    pub(super) mode: u32,
}

impl Pending {
    pub(super) fn key(rel: String, pem: String) -> Pending {
        Pending { rel, bytes: pem, mode: 0o600 }
    }
    pub(super) fn public(rel: String, text: String) -> Pending {
        Pending { rel, bytes: text, mode: 0o644 }
    }
}

