//! A value one thread sets once and others wait for: `up` converges its nodes alongside the
//! control plane, and each node waits for the control plane's endpoint only where it needs it.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::host::parallel::Cancel;

/// Set once (a second value is dropped); read without waiting, or waited for.
pub struct Latch<T> {
    value: OnceLock<T>,
    lock: Mutex<()>,
    cv: Condvar,
}

impl<T> Default for Latch<T> {
    fn default() -> Self {
        Latch { value: OnceLock::new(), lock: Mutex::new(()), cv: Condvar::new() }
    }
}

impl<T> Latch<T> {
    /// Set the value (the first one stays) and wake every waiter.
    pub fn set(&self, value: T) {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.value.set(value);
        self.cv.notify_all();
    }
    /// The value, if it is set.
    pub fn get(&self) -> Option<&T> {
        self.value.get()
    }
    /// The value once it is set; `None` when `cancel` fires first.
    pub fn wait(&self, cancel: &Cancel) -> Option<&T> {
        let mut held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = self.value.get() {
                return Some(v);
            }
            if cancel.is_cancelled() {
                return None;
            }
            held = self.cv.wait_timeout(held, Duration::from_millis(250)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_gets_the_value_set_later_and_the_first_value_stays() {
        let latch: Latch<&str> = Latch::default();
        let cancel = Cancel::new();
        assert_eq!(latch.get(), None);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| latch.wait(&cancel).copied());
            std::thread::sleep(Duration::from_millis(50));
            latch.set("ready");
            assert_eq!(waiter.join().unwrap(), Some("ready"));
        });
        latch.set("again");
        assert_eq!(latch.get(), Some(&"ready"));
    }

    #[test]
    fn a_cancelled_wait_returns_none() {
        let latch: Latch<u8> = Latch::default();
        let cancel = Cancel::new();
        cancel.cancel();
        assert_eq!(latch.wait(&cancel), None);
    }
}
