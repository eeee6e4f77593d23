//! A copy of a matcher for each thread that uses it.
//!
//! The regex crate keeps each regex's scratch space (its lazy DFA's cache) in a pool that hands
//! it to the first thread to use the regex without a lock, and to every other thread through a
//! mutex. A rule set is shared by every thread that scans (the runtime's workers, blocking
//! threads for large messages): without copies, one thread in two took the lock on each of the
//! hundred-odd regexes a message runs. A clone of a regex shares its compiled program and has a
//! pool of its own, so [`PerThread`] gives each thread a clone it is the first user of.

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Copies kept per matcher; threads past this many share copies (correct, and back to the lock).
const SLOTS: usize = 8;

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's copy number, given on its first scan.
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

/// A matcher, cloned for each thread on its first use there. Dereferences to this thread's copy.
pub(crate) struct PerThread<T> {
    /// Boxed: a rule holds one or two of these, and most rule sets have thousands of rules.
    copies: Box<[OnceLock<T>; SLOTS]>,
    original: T,
}

impl<T: Clone> PerThread<T> {
    pub(crate) fn new(original: T) -> PerThread<T> {
        PerThread { copies: Default::default(), original }
    }
}

impl<T: Clone> Deref for PerThread<T> {
    type Target = T;

    fn deref(&self) -> &T {
        let slot = SLOT.with(|slot| *slot);
        self.copies[slot].get_or_init(|| self.original.clone())
    }
}

impl<T: fmt::Debug> fmt::Debug for PerThread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_gets_its_own_copy_of_the_same_matcher() {
        let regex = PerThread::new(regex::bytes::Regex::new("a+b").unwrap());
        let here: *const regex::bytes::Regex = &*regex;
        assert!(std::ptr::eq(here, &*regex), "one copy per thread, kept");
        std::thread::scope(|s| {
            let there = s.spawn(|| (&*regex as *const regex::bytes::Regex as usize, regex.is_match(b"xaab"))).join();
            let (there, matched) = there.unwrap();
            assert!(matched);
            assert_ne!(there, here as usize, "another thread, another copy");
        });
    }
}
