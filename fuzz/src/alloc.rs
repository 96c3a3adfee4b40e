//! A global allocator that measures what a fuzz target allocates and refuses absurd requests.
//!
//! Linking `gla-fuzz` installs [`Bounded`] as the global allocator of the binary (the fuzz
//! engines' binaries and the corpus replay test). It forwards to the system allocator, keeps
//! per-thread counts of the live bytes and of their peak, and refuses (returns null, so Rust
//! aborts with "memory allocation of N bytes failed") any single request above
//! [`HARD_LIMIT`]: a header that declares 1e12 elements ends the run as a crash instead of
//! swapping the machine. [`measure`] reports the peak of live bytes while a closure runs, which
//! the targets compare with a budget proportional to the input's length.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Largest single allocation granted (1 GiB). Inputs of the targets are at most a few MiB.
pub const HARD_LIMIT: usize = 1 << 30;

/// The measuring, limiting allocator (see the module documentation).
pub struct Bounded;

#[global_allocator]
static GLOBAL: Bounded = Bounded;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: the counters may be gone while a thread is torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded unchanged to `System` (or refused with null, which the
// `GlobalAlloc` contract allows); the bookkeeping touches only const-initialized thread locals,
// which never allocate.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Run `f` and return its result with the peak number of bytes it held at once on this thread
/// (beyond what was live before).
///
/// Panics if [`Bounded`] is not the global allocator (the measurement would read 0).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let probe = std::hint::black_box(vec![0u8; 64]);
    assert!(
        PEAK.with(Cell::get) >= base + 64,
        "gla_fuzz::alloc::Bounded is not the global allocator"
    );
    drop(probe);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get) - base;
    (r, peak.max(0) as usize)
}
