//! Locks that survive a panic elsewhere.
//!
//! A task that panics while it holds a `std::sync::Mutex` poisons it; with `lock().expect(…)`
//! every later user would panic too, and one bad request could take the whole relay with it.
//! The maps these locks guard stay consistent between statements (no lock is held across an
//! operation that can half-finish), so a poisoned lock is taken as it is.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`] that takes a poisoned lock as it is.
pub trait LockExt<T: ?Sized> {
    /// Locks, ignoring poisoning.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_still_usable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.lock().is_err(), "poisoned");
        *m.locked() += 1;
        assert_eq!(*m.locked(), 2);
    }
}
