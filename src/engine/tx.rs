//! A transaction over one host: every change is recorded as it is made, and undone in reverse
//! order unless the transaction is committed — also when it is dropped on an early return or a
//! panic, so no caller has to remember to clean up.

use std::sync::Arc;

use serde::Serialize;

use crate::host::{Cmd, FileWrite, HostError, Remote, Source, WriteOpts, WriteOutcome};

/// One change made on a host, with what undoing it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// A file replaced; the previous content waits at `backup`.
    FileReplaced { path: String, backup: String },
    /// A file that did not exist before.
    FileCreated { path: String },
    /// A unit that was not running and now is (enabled and started).
    UnitStarted { unit: String },
    /// A running unit restarted or reloaded (`verb`) on changed files.
    UnitRestarted { unit: String, verb: String },
    /// An object applied to the apiserver (not undone: recorded for the report).
    ObjectApplied { object: String },
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Rollback {
    /// Nothing had changed, or the failure came before any change.
    NotNeeded,
    /// Every change was undone.
    Done { what: String },
    /// Undoing stopped or did not bring the host back.
    Incomplete { what: String, error: String },
}

impl Rollback {
    /// The text after `[rollback] host: `, if a rollback ran.
    pub fn line(&self) -> Option<String> {
        match self {
            Rollback::NotNeeded => None,
            Rollback::Done { what } => Some(what.clone()),
            Rollback::Incomplete { what, error } if what.is_empty() => Some(format!("failed: {error}")),
            Rollback::Incomplete { what, error } => Some(format!("{what}, but {error}")),
        }
    }
    pub fn is_done(&self) -> bool {
        matches!(self, Rollback::Done { .. })
    }
}

/// The changes made on one host, undone on drop unless committed.
pub struct Tx {
    remote: Arc<dyn Remote>,
    /// Unit files live here: restoring one needs a `daemon-reload`.
    units_dir: String,
    changes: Vec<Change>,
    done: bool,
    /// Commit keeps the backups of replaced files (`hosts push --backup`).
    keep_backups: bool,
    /// Told the bytes sent so far of each file written (a progress bar).
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("host", &self.remote.name()).field("changes", &self.changes).field("done", &self.done).finish()
    }
}

impl Tx {
    pub fn new(remote: Arc<dyn Remote>, units_dir: &str) -> Tx {
        Tx { remote, units_dir: units_dir.to_string(), changes: Vec::new(), done: false, keep_backups: false, progress: None }
    }
    pub fn keep_backups(mut self, keep: bool) -> Tx {
        self.keep_backups = keep;
        self
    }
    pub fn progress(mut self, f: Option<Arc<dyn Fn(u64) + Send + Sync>>) -> Tx {
        self.progress = f;
        self
    }
    pub fn host(&self) -> &str {
        self.remote.name()
    }
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }
    pub fn record(&mut self, c: Change) {
        self.changes.push(c);
    }
    /// Write `path` atomically with a backup of what it replaces, and record the change (a file
    /// created is removed on rollback).
    pub fn write(&mut self, path: &str, src: &Source, opts: WriteOpts<'_>) -> Result<WriteOutcome, HostError> {
        let progress = self.progress.clone();
        let opts = WriteOpts { backup: true, progress: opts.progress.or(progress.as_deref().map(|f| f as &(dyn Fn(u64) + Sync))), ..opts };
        let w = self.remote.write_file(path, src, &opts)?;
        self.recorded(path, &w);
        Ok(w)
    }
    /// [`Tx::write`] of several files in as few round trips as the host allows
    /// ([`Remote::write_files`]): the outcomes in order. Every file written is recorded, also
    /// those written before one that failed.
    pub fn write_files(&mut self, mut files: Vec<FileWrite<'_>>) -> Result<Vec<WriteOutcome>, HostError> {
        for f in &mut files {
            f.opts.backup = true;
        }
        let remote = self.remote.clone();
        let mut outcomes = Vec::with_capacity(files.len());
        let r = remote.write_files(&files, &mut |i, w| {
            self.recorded(files[i].path, &w);
            outcomes.push(w);
        });
        r.map(|()| outcomes)
    }
    fn recorded(&mut self, path: &str, w: &WriteOutcome) {
        match &w.backup {
            Some(b) => self.record(Change::FileReplaced { path: path.into(), backup: b.clone() }),
            None if w.created => self.record(Change::FileCreated { path: path.into() }),
            None => {} // same content, or only mode/owner fixed in place
        }
    }
    /// Point the symlink `path` at `target` (atomically), recording what it replaced.
    pub fn link(&mut self, path: &str, target: &str) -> Result<(), HostError> {
        let backup = crate::host::ssh::backup_name(path);
        if self.remote.set_link(path, target, &backup)? {
            self.record(Change::FileReplaced { path: path.into(), backup });
        } else {
            self.record(Change::FileCreated { path: path.into() });
        }
        Ok(())
    }
    pub fn started(&mut self, unit: &str) {
        self.record(Change::UnitStarted { unit: unit.into() });
    }
    pub fn restarted(&mut self, unit: &str, verb: &str) {
        self.record(Change::UnitRestarted { unit: unit.into(), verb: verb.into() });
    }

    /// Keep every change: the backups are deleted (unless kept on purpose).
    pub fn commit(mut self) -> Vec<Change> {
        self.done = true;
        if self.keep_backups {
            return std::mem::take(&mut self.changes);
        }
        let backups: Vec<&str> = self.changes.iter().filter_map(|c| if let Change::FileReplaced { backup, .. } = c { Some(backup.as_str()) } else { None }).collect();
        if !backups.is_empty() {
            let mut argv = vec!["rm", "-f", "--"];
            argv.extend(backups);
            let _ = self.remote.run(&Cmd::new(argv).sudo());
        }
        std::mem::take(&mut self.changes)
    }

    /// Undo every change in reverse order: units this transaction started are stopped and
    /// disabled, files are put back (created ones removed), systemd re-reads its units, and the
    /// units it restarted are restarted (or reloaded) again, on the previous files.
    pub fn rollback(mut self) -> Rollback {
        self.undo()
    }

    fn undo(&mut self) -> Rollback {
        self.done = true;
        if self.changes.iter().all(|c| matches!(c, Change::ObjectApplied { .. })) {
            return Rollback::NotNeeded;
        }
        let mut said: Vec<String> = Vec::new();
        let r = (|| -> Result<(), HostError> {
            let sys = |args: &[&str]| -> Result<(), HostError> {
                let mut argv = vec!["systemctl"];
                argv.extend_from_slice(args);
                self.remote.check(&Cmd::new(argv).sudo()).map(|_| ())
            };
            let started: Vec<&str> = self.changes.iter().rev().filter_map(|c| if let Change::UnitStarted { unit } = c { Some(unit.as_str()) } else { None }).collect();
            if !started.is_empty() {
                let mut a = vec!["disable", "--now", "--quiet"];
                a.extend(started.iter().rev());
                sys(&a)?;
            }
            let mut files = 0;
            for c in self.changes.iter().rev() {
                match c {
                    Change::FileReplaced { path, backup } => self.remote.check(&Cmd::new(["mv", "-f", backup.as_str(), path.as_str()]).sudo())?,
                    Change::FileCreated { path } => self.remote.check(&Cmd::new(["rm", "-f", path.as_str()]).sudo())?,
                    _ => continue,
                };
                files += 1;
            }
            if files > 0 {
                said.push("previous files restored".into());
            }
            let unit_files = self.changes.iter().any(|c| matches!(c, Change::FileReplaced { path, .. } | Change::FileCreated { path } if path.starts_with(&self.units_dir)));
            if unit_files || !started.is_empty() || self.changes.iter().any(|c| matches!(c, Change::UnitRestarted { .. })) {
                sys(&["daemon-reload"])?;
            }
            if !started.is_empty() {
                said.push(format!("stopped {}", started.iter().rev().copied().collect::<Vec<_>>().join(" ")));
            }
            let mut again = Vec::new();
            for c in &self.changes {
                if let Change::UnitRestarted { unit, verb } = c {
                    let mut a: Vec<&str> = verb.split(' ').collect();
                    a.push(unit);
                    sys(&a)?;
                    again.push(unit.as_str());
                }
            }
            if !again.is_empty() {
                said.push(format!("restarted {} on them", again.join(" ")));
            }
            Ok(())
        })();
        self.changes.clear();
        match r {
            Ok(()) => Rollback::Done { what: said.join(", ") },
            Err(e) => Rollback::Incomplete { what: said.join(", "), error: e.chain() },
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.done && !self.changes.is_empty() {
            let _ = self.undo();
        }
    }
}
