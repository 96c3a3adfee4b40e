//! A global allocator for judging at training shapes: large blocks come straight from `mmap`
//! with transparent huge pages requested (`madvise(MADV_HUGEPAGE)`), everything else from the
//! system allocator.
//!
//! Why: a forward + backward check at B=8, T=4096, H=16, K=V=128 holds about twenty f64 tensors
//! of 537 MB (inputs, candidate, truth, magnitudes, honest baselines). With 4 KiB pages the
//! kernel takes one page fault per 4 KiB the first time each block is touched, and glibc returns
//! every large block to the kernel when it is freed, so the next one faults again: measured on
//! the 2-core machine (BENCHMARKS.md), 56 of the 123 CPU seconds of that check were spent in the
//! kernel. With 2 MiB pages the faults drop 512-fold. Blocks from `mmap` are already zero, so
//! `alloc_zeroed` (ndarray's `zeros`) costs no extra pass either.
//!
//! Where transparent huge pages are off (`/sys/kernel/mm/transparent_hugepage/enabled` =
//! `never`) the advice is ignored and the allocator is plain `mmap`; off Linux it is the system
//! allocator. The binaries opt in (`#[global_allocator]` in `glacheck` and the Python
//! extension); the library crates do not.
//!
//! ```
//! use gla_judge::alloc::HugePages;
//! use std::alloc::{GlobalAlloc, Layout};
//! let a = HugePages;
//! let l = Layout::array::<f64>(8 << 20).unwrap(); // 64 MiB: mapped directly
//! unsafe {
//!     let p = a.alloc_zeroed(l) as *mut f64;
//!     assert!(!p.is_null() && *p.add(12345) == 0.0);
//!     *p.add(12345) = 1.5;
//!     let q = a.realloc(p as *mut u8, l, l.size() * 2) as *mut f64;
//!     assert_eq!(*q.add(12345), 1.5);
//!     a.dealloc(q as *mut u8, Layout::array::<f64>(16 << 20).unwrap());
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes (1 MiB) are mapped directly.
pub const LARGE: usize = 1 << 20;

/// The allocator (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

#[cfg(target_os = "linux")]
fn large(l: &Layout) -> bool {
    l.size() >= LARGE && l.align() <= 4096
}

#[cfg(not(target_os = "linux"))]
fn large(_: &Layout) -> bool {
    false
}

#[cfg(target_os = "linux")]
unsafe fn map(size: usize) -> *mut u8 {
    let p = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    // Advice only: an error (THP unsupported) leaves ordinary pages.
    libc::madvise(p, size, libc::MADV_HUGEPAGE);
    p as *mut u8
}

#[cfg(not(target_os = "linux"))]
unsafe fn map(_: usize) -> *mut u8 {
    std::ptr::null_mut()
}

#[cfg(target_os = "linux")]
unsafe fn unmap(p: *mut u8, size: usize) {
    libc::munmap(p as *mut libc::c_void, size);
}

#[cfg(not(target_os = "linux"))]
unsafe fn unmap(_: *mut u8, _: usize) {}

unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if large(&l) {
            map(l.size())
        } else {
            System.alloc(l)
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if large(&l) {
            map(l.size()) // anonymous mappings are zero
        } else {
            System.alloc_zeroed(l)
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if large(&l) {
            unmap(p, l.size())
        } else {
            System.dealloc(p, l)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, l.align());
        if !large(&l) && !large(&new) {
            return System.realloc(p, l, new_size);
        }
        let q = self.alloc(new);
        if !q.is_null() {
            std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
            self.dealloc(p, l);
        }
        q
    }
}
