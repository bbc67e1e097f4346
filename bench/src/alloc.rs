//! A global allocator wrapper that counts the process's live heap bytes, so
//! the embedded target can report what the engine holds in memory: the live
//! heap after a cell (load generator state dropped) minus the live heap
//! before its store was opened. RSS cannot tell the engine apart from the
//! load generator that shares its process.
//!
//! The count is striped over cache-line-sized counters chosen per thread, so
//! allocating threads do not contend on one line (the embedded target runs
//! at millions of allocations per second); a free may land on another
//! thread's stripe, which the sum does not care about.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

const STRIPES: usize = 32;

#[repr(align(128))]
struct Stripe(AtomicIsize);

static LIVE: [Stripe; STRIPES] = [const { Stripe(AtomicIsize::new(0)) }; STRIPES];
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
static ENABLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialised without a destructor: usable from inside the
    // allocator, also while the thread is being torn down.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe() -> &'static AtomicIsize {
    let i = STRIPE
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
                s.set(i);
            }
            i
        })
        .unwrap_or(0);
    &LIVE[i].0
}

fn add(delta: isize) {
    // Off until `enable`: the callgrind gate's micro-workloads run in the
    // same binary and count instructions, and should not pay for this.
    if ENABLED.load(Ordering::Relaxed) {
        stripe().fetch_add(delta, Ordering::Relaxed);
    }
}

/// Wraps an allocator and counts the bytes it has live.
pub struct CountingAlloc<A>(pub A);

// SAFETY: every call is forwarded unchanged to the wrapped allocator, which
// upholds GlobalAlloc's contract; the counting touches only atomics and a
// destructor-free thread local, and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a pointer this allocator returned with
        // this layout.
        unsafe { self.0.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for dealloc, plus the caller's valid new size.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Starts counting. Call early in `main` of a process whose global
/// allocator is a `CountingAlloc`; until then `live_heap_bytes` answers
/// `None`. Blocks freed after this that were allocated before it are
/// subtracted without having been added, so only differences between two
/// readings mean anything.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Heap bytes allocated and not yet freed through the counting allocator
/// since `enable`, less blocks from before it freed since (requested
/// sizes, not the allocator's overhead or resident pages); `None` when
/// counting is off.
pub fn live_heap_bytes() -> Option<i64> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let sum: isize = LIVE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    Some(sum as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_alloc_realloc_and_free() {
        let a = CountingAlloc(System);
        let sum = || -> isize { LIVE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum() };
        enable();
        // Other test threads allocate through the System allocator, not
        // through `a`, so only this test moves the counters.
        let before = sum();
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: a non-zero layout; the pointer is freed with the layout
        // realloc returned it under.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(sum() - before, 1000);
            let q = a.realloc(p, layout, 5000);
            assert!(!q.is_null());
            assert_eq!(sum() - before, 5000);
            a.dealloc(q, Layout::from_size_align(5000, 8).unwrap());
        }
        assert_eq!(sum(), before);
    }
}
