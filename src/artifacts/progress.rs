//! Download progress: a bar per artifact (size, speed, ETA) on a terminal, plain
//! `[download] component: message` lines otherwise, nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::download::Progress;

pub struct Reporter {
    quiet: bool,
    multi: Option<MultiProgress>,
}

impl Reporter {
    /// Bars when stderr is a terminal and not quiet; lines otherwise.
    pub fn new(quiet: bool) -> Reporter {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter { quiet, multi }
    }
    /// Plain lines only (tests, `--json`).
    pub fn plain(quiet: bool) -> Reporter {
        Reporter { quiet, multi: None }
    }

    /// A `[download] label: message` line (printed above the bars on a terminal).
    pub fn line(&self, label: &str, message: &str) {
        if self.quiet {
            return;
        }
        let text = format!("[download] {label}: {message}");
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    pub fn artifact<'a>(&'a self, label: &str) -> ArtifactProgress<'a> {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::no_length());
            b.set_style(
                ProgressStyle::with_template("{prefix:>24} [{bar:28}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        ArtifactProgress { reporter: self, label: label.to_string(), bar, bytes: AtomicU64::new(0), started: Instant::now() }
    }
}

pub struct ArtifactProgress<'a> {
    reporter: &'a Reporter,
    label: String,
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    started: Instant,
}

pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    if f >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", f / (1024.0 * 1024.0 * 1024.0))
    } else if f >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{n} B")
    }
}

impl ArtifactProgress<'_> {
    /// Finish with a summary line.
    pub fn finish(&self, message: &str) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.reporter.line(&self.label, message);
    }
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Progress for ArtifactProgress<'_> {
    fn begin(&self, total: Option<u64>, resumed_at: u64) {
        if let Some(b) = &self.bar {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(resumed_at);
            b.reset_eta();
        }
        if resumed_at > 0 {
            self.reporter.line(&self.label, &format!("resuming at {}", human_bytes(resumed_at)));
        }
    }
    fn advance(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
    fn retry(&self, attempt: u32, reason: &str) {
        self.reporter.line(&self.label, &format!("attempt {attempt} failed, retrying: {reason}"));
    }
}
