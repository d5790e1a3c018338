//! Fan work out over hosts with bounded concurrency and keep each host's result as data.
//!
//! A failing host never hides the others: every host gets a [`HostResult`] (done, failed with its
//! error, or skipped because the run was cancelled before its turn). Ctrl-C cancels: no new host
//! is started, hosts already running finish their current step.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::HostError;

static SIGINT_SEEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    SIGINT_SEEN.store(true, Ordering::SeqCst);
    // a second Ctrl-C kills the process the usual way
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// A cancellation flag shared by the workers of a run.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    watch_sigint: bool,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }
    /// A flag that is also set by the first Ctrl-C (SIGINT); the second one ends the process.
    pub fn on_ctrl_c() -> Cancel {
        unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
        Cancel { flag: Arc::default(), watch_sigint: true }
    }
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || (self.watch_sigint && SIGINT_SEEN.load(Ordering::SeqCst))
    }
}

/// How one host's part of a run ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    Failed(HostError),
    /// Not started: the run was cancelled first.
    Skipped,
}

/// One host's result in one phase.
#[derive(Debug)]
pub struct HostResult<T> {
    pub host: String,
    pub phase: String,
    pub outcome: Outcome<T>,
}

impl<T> HostResult<T> {
    pub fn ok(&self) -> Option<&T> {
        match &self.outcome {
            Outcome::Done(t) => Some(t),
            _ => None,
        }
    }
    pub fn error(&self) -> Option<&HostError> {
        match &self.outcome {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// Counts over a run's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
}

pub fn tally<T>(results: &[HostResult<T>]) -> Tally {
    let mut t = Tally::default();
    for r in results {
        match r.outcome {
            Outcome::Done(_) => t.done += 1,
            Outcome::Failed(_) => t.failed += 1,
            Outcome::Skipped => t.skipped += 1,
        }
    }
    t
}

/// Run `f` for every item, at most `concurrency` at a time, and return one result per item in
/// the items' order. `name` gives the host name of an item for the results.
pub fn for_each<I, T, F>(items: &[I], name: impl Fn(&I) -> String + Sync, phase: &str, concurrency: usize, cancel: &Cancel, f: F) -> Vec<HostResult<T>>
where
    I: Sync,
    T: Send,
    F: Fn(&I) -> Result<T, HostError> + Sync,
{
    let slots: Vec<Mutex<Option<Outcome<T>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = concurrency.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= items.len() {
                        break;
                    }
                    let outcome = if cancel.is_cancelled() {
                        Outcome::Skipped
                    } else {
                        match catch_unwind(AssertUnwindSafe(|| f(&items[i]))) {
                            Ok(Ok(t)) => Outcome::Done(t),
                            Ok(Err(e)) => Outcome::Failed(e),
                            Err(p) => {
                                let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                                Outcome::Failed(HostError::Invalid { host: name(&items[i]), message: format!("kbin panicked: {msg}") })
                            }
                        }
                    };
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                }
            });
        }
    });
    items
        .iter()
        .zip(slots)
        .map(|(it, slot)| HostResult {
            host: name(it),
            phase: phase.to_string(),
            outcome: slot.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or(Outcome::Skipped),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn concurrency_is_bounded_and_results_keep_order() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..12).collect();
        let t = Instant::now();
        let r = for_each(&items, |i| format!("h{i}"), "test", 3, &Cancel::new(), |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            running.fetch_sub(1, Ordering::SeqCst);
            if *i == 5 { Err(HostError::Invalid { host: format!("h{i}"), message: "boom".into() }) } else { Ok(i * 2) }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 3, "never more than 3 at once, and 3 did run together");
        assert!(t.elapsed() >= Duration::from_millis(120), "12 jobs of 30ms with 3 workers take at least 4 rounds");
        assert_eq!(r.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(), (0..12).map(|i| format!("h{i}")).collect::<Vec<_>>());
        assert_eq!(tally(&r), Tally { done: 11, failed: 1, skipped: 0 });
        assert_eq!(r[5].error().unwrap().to_string(), "h5: boom");
        assert_eq!(r[6].ok(), Some(&12), "a failing host does not hide the ones after it");
    }

    #[test]
    fn cancel_stops_starting_new_hosts() {
        let cancel = Cancel::new();
        let items: Vec<usize> = (0..10).collect();
        let r = for_each(&items, |i| format!("h{i}"), "test", 2, &cancel, |i| {
            if *i == 1 {
                cancel.cancel();
            }
            std::thread::sleep(Duration::from_millis(10));
            Ok(())
        });
        let t = tally(&r);
        assert!(t.done >= 2 && t.done <= 3, "hosts already started finish: {t:?}");
        assert_eq!(t.done + t.skipped, 10);
        assert!(matches!(r[9].outcome, Outcome::Skipped));
    }

    #[test]
    fn a_panic_is_that_hosts_failure_only() {
        let items = vec![1, 2];
        let r = for_each(&items, |i| format!("h{i}"), "test", 2, &Cancel::new(), |i| if *i == 1 { panic!("bad") } else { Ok(()) });
        assert!(r[0].error().unwrap().to_string().contains("panicked: bad"));
        assert!(r[1].ok().is_some());
    }
}
