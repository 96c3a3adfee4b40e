//! A global allocator for judging at training shapes: large blocks come straight from `mmap`,
//! 2 MiB-aligned with transparent huge pages requested (`madvise(MADV_HUGEPAGE)`), and freed
//! large blocks are kept for reuse (up to [`cache_limit`] bytes) instead of being returned to the
//! kernel; everything else comes from the system allocator.
//!
//! Why: a forward + backward check at B=8, T=4096, H=16, K=V=128 holds about twenty f64 tensors
//! of 537 MB (inputs, candidate, truth, magnitudes, honest baselines) and allocates many more
//! along the way (file buffers, per-(sequence, head) work buffers, the honest solutions). Every
//! page the kernel hands out is zeroed on first touch; on the dev machine of BENCHMARKS.md (a
//! virtual machine that hands freed memory back to its host) memory not touched in the last
//! seconds cost 0.5 to 2 CPU seconds per gigabyte to fault in (`clear_page_erms`), memory just
//! freed about 0.1. glibc returns every large block to the kernel when it is freed, so the next
//! one faults again: 27% of a 70 s check went to zeroing the ~40 GB touched (V1). Here a freed
//! large block stays mapped and resident, and the next large allocation that fits takes it (best
//! fit; a larger block is split and the rest stays cached; adjacent free blocks merge), so a
//! block touched once is not faulted in again; the pages a run faults in are about its peak
//! resident memory (V2). `alloc_zeroed` zeroes a reused block itself (a `memset` of resident
//! memory, far faster than fresh pages); a block fresh from `mmap` is already zero.
//!
//! The cache holds at most [`cache_limit`] bytes (an eighth of physical memory, at most 4 GiB);
//! beyond it the oldest free blocks go back to the kernel, so freed memory that nothing reuses
//! costs at most that much resident memory.
//!
//! Where transparent huge pages are off (`/sys/kernel/mm/transparent_hugepage/enabled` =
//! `never`) the advice is ignored and the allocator is plain `mmap` with the cache; off Linux it
//! is the system allocator. The binaries opt in (`#[global_allocator]` in `glacheck` and the
//! Python extension); the library crates do not.
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
//!     // The freed block is reused, and zeroed when asked for zeros.
//!     let r = a.alloc_zeroed(l) as *mut f64;
//!     assert!(!r.is_null() && *r.add(12345) == 0.0);
//!     a.dealloc(r as *mut u8, l);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes (1 MiB) are mapped directly.
pub const LARGE: usize = 1 << 20;

/// The granule of large blocks: sizes are rounded up to, and mappings aligned on, 2 MiB (one
/// transparent huge page), so that a freed block serves any later request of its rounded size.
pub const GRANULE: usize = 2 << 20;

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

/// A large request's size rounded up to the granule (`None` on overflow).
fn rounded(size: usize) -> Option<usize> {
    size.checked_add(GRANULE - 1).map(|s| s & !(GRANULE - 1))
}

/// The most bytes of freed large blocks kept for reuse: an eighth of physical memory, at most
/// 4 GiB (256 MiB where physical memory is unknown).
pub fn cache_limit() -> usize {
    #[cfg(target_os = "linux")]
    {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static LIMIT: AtomicUsize = AtomicUsize::new(0);
        let l = LIMIT.load(Ordering::Relaxed);
        if l != 0 {
            return l;
        }
        // SAFETY: sysconf has no preconditions and allocates nothing.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let l = if pages > 0 && page > 0 {
            ((pages as u128 * page as u128 / 8).min(4 << 30) as usize).max(GRANULE)
        } else {
            256 << 20
        };
        LIMIT.store(l, Ordering::Relaxed);
        l
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
mod os {
    use super::GRANULE;

    /// Map `size` bytes (a multiple of the granule) aligned on the granule, huge pages advised.
    pub unsafe fn map(size: usize) -> *mut u8 {
        let Some(len) = size.checked_add(GRANULE) else {
            return std::ptr::null_mut();
        };
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        // Trim to a granule-aligned range of `size` bytes.
        let a = p as usize;
        let start = (a + GRANULE - 1) & !(GRANULE - 1);
        if start > a {
            libc::munmap(p, start - a);
        }
        let tail = a + len - (start + size);
        if tail > 0 {
            libc::munmap((start + size) as *mut libc::c_void, tail);
        }
        // Advice only: an error (THP unsupported) leaves ordinary pages.
        libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
        start as *mut u8
    }

    pub unsafe fn unmap(p: usize, size: usize) {
        libc::munmap(p as *mut libc::c_void, size);
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    pub unsafe fn map(_: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
    pub unsafe fn unmap(_: usize, _: usize) {}
}

/// How many free blocks the cache tracks (a fixed table: the allocator cannot allocate).
const SLOTS: usize = 256;

/// A free, mapped, granule-aligned range `[addr, addr + len)`, freed at `tick`.
#[derive(Clone, Copy)]
struct Free {
    addr: usize,
    len: usize,
    tick: u64,
}

/// The free large blocks kept for reuse.
struct Cache {
    blocks: [Free; SLOTS],
    n: usize,
    bytes: usize,
    tick: u64,
}

static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Cache {
    blocks: [Free {
        addr: 0,
        len: 0,
        tick: 0,
    }; SLOTS],
    n: 0,
    bytes: 0,
    tick: 0,
});

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    fn remove(&mut self, i: usize) -> Free {
        let b = self.blocks[i];
        self.n -= 1;
        self.blocks[i] = self.blocks[self.n];
        self.bytes -= b.len;
        b
    }

    /// Take `size` bytes (a granule multiple) from the smallest free block that holds them; the
    /// rest of that block stays free.
    fn take(&mut self, size: usize) -> Option<usize> {
        let i = (0..self.n)
            .filter(|&i| self.blocks[i].len >= size)
            .min_by_key(|&i| (self.blocks[i].len, u64::MAX - self.blocks[i].tick))?;
        let b = &mut self.blocks[i];
        let addr = b.addr;
        if b.len == size {
            self.remove(i);
        } else {
            b.addr += size;
            b.len -= size;
            self.bytes -= size;
        }
        Some(addr)
    }

    /// Keep a freed block (merged with free neighbours); then give the oldest blocks back to the
    /// kernel while over the limit or out of slots.
    unsafe fn put(&mut self, addr: usize, len: usize) {
        self.tick += 1;
        let mut b = Free {
            addr,
            len,
            tick: self.tick,
        };
        let mut i = 0;
        while i < self.n {
            let c = self.blocks[i];
            if c.addr + c.len == b.addr || b.addr + b.len == c.addr {
                self.remove(i);
                b.addr = b.addr.min(c.addr);
                b.len += c.len;
            } else {
                i += 1;
            }
        }
        let limit = cache_limit();
        if b.len > limit {
            os::unmap(b.addr, b.len);
            return;
        }
        while self.n == SLOTS || self.bytes + b.len > limit {
            let oldest = (0..self.n)
                .min_by_key(|&i| self.blocks[i].tick)
                .expect("a full or over-limit cache holds a block");
            let o = self.remove(oldest);
            os::unmap(o.addr, o.len);
        }
        self.blocks[self.n] = b;
        self.n += 1;
        self.bytes += b.len;
    }
}

/// A large block of `size` rounded bytes: a cached one (and whether it came from the cache) or a
/// fresh mapping.
unsafe fn alloc_large(size: usize) -> (*mut u8, bool) {
    if let Some(a) = cache().take(size) {
        return (a as *mut u8, true);
    }
    (os::map(size), false)
}
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if large(&l) {
            match rounded(l.size()) {
                Some(s) => alloc_large(s).0,
                None => std::ptr::null_mut(),
            }
        } else {
            System.alloc(l)
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if large(&l) {
            let Some(s) = rounded(l.size()) else {
                return std::ptr::null_mut();
            };
            let (p, reused) = alloc_large(s);
            if reused {
                std::ptr::write_bytes(p, 0, l.size());
            }
            p // a fresh anonymous mapping is zero
        } else {
            System.alloc_zeroed(l)
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if large(&l) {
            let s = rounded(l.size()).expect("allocated, so its rounded size fits");
            cache().put(p as usize, s);
        } else {
            System.dealloc(p, l)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, l.align());
        if !large(&l) && !large(&new) {
            return System.realloc(p, l, new_size);
        }
        if large(&l) && large(&new) && rounded(l.size()) == rounded(new_size) {
            return p; // the block already holds the new size
        }
        let q = self.alloc(new);
        if !q.is_null() {
            std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
            self.dealloc(p, l);
        }
        q
    }
}
