//! The C boundary's panic guard, shared by the NSS and PAM modules.
//!
//! Every exported function runs its body under `guard`: a panic never unwinds
//! into C and prints nothing; it becomes the caller's own "internal error"
//! failure (`FromPanic`), which the caller then maps through its one status
//! table (NSS: UNAVAIL/EIO; PAM: its system-error code).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

/// A failure type that can stand for a panic caught at the boundary.
pub trait FromPanic {
    fn from_panic() -> Self;
}

/// Runs one entry point's body; a panic becomes `F::from_panic()`, silently.
#[inline]
pub fn guard<T, F: FromPanic>(body: impl FnOnce() -> Result<T, F>) -> Result<T, F> {
    quiet_panics();
    let was_inside = INSIDE.try_with(|c| c.replace(true)).unwrap_or(false);
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| Err(F::from_panic()));
    let _ = INSIDE.try_with(|c| c.set(was_inside));
    result
}

thread_local! {
    /// True while this thread runs an entry point's body.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

static HOOK_INSTALLED: AtomicBool = AtomicBool::new(false);

/// A panic inside a module must not write to the host process's stderr
/// (sshd, sudo, ls): install, once, a panic hook that stays silent for panics
/// raised inside an entry point and defers to the previous hook otherwise.
/// In a cdylib, std (and so the hook) is the module's private copy; when the
/// crate is linked as an rlib into a Rust program, that program's own panics
/// still reach its own hook.
#[inline]
fn quiet_panics() {
    // A plain load first: an atomic swap on every lookup would be a locked
    // write to one cache line shared by every thread of the process.
    if HOOK_INSTALLED.load(Ordering::Acquire) || HOOK_INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    install_hook();
}

#[cold]
fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !INSIDE.try_with(Cell::get).unwrap_or(true) {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Code {
        Internal,
        Other(u8),
    }

    impl FromPanic for Code {
        fn from_panic() -> Self {
            Code::Internal
        }
    }

    #[test]
    fn panic_becomes_the_callers_failure() {
        assert_eq!(guard::<(), Code>(|| panic!("boom")), Err(Code::Internal));
        assert_eq!(guard::<u8, Code>(|| Ok(7)), Ok(7));
        assert_eq!(
            guard::<(), Code>(|| Err(Code::Other(3))),
            Err(Code::Other(3))
        );
        // Nested guards restore the outer state.
        let r = guard::<(), Code>(|| {
            let inner = guard::<(), Code>(|| panic!("inner"));
            assert_eq!(inner, Err(Code::Internal));
            assert!(INSIDE.with(Cell::get));
            Ok(())
        });
        assert_eq!(r, Ok(()));
        assert!(!INSIDE.with(Cell::get));
    }
}
