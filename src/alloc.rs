//! The allocator: a session's first allocations come from a bump arena, the rest from the C
//! library's malloc.
//!
//! Why: nearly everything a session allocates (the lookup's runtime, hickory's name-server
//! pool and its messages) is made before the relay starts and is freed soon after or never.
//! musl's malloc hands each emptied group straight back to the kernel, so one session made
//! about 45 mmap/munmap calls and spent a fifth of its CPU in the allocator (README, "Benchmark").
//! Here an allocation is an add, and the arena is one mapping whose pages the kernel
//! supplies as they are first touched.
//!
//! A freed block's space is reused only when it is the last one handed out, so the arena is a
//! fixed price: a session touches about 68 KiB of it. Neither recycling emptied pages nor
//! giving them back to the kernel paid (README, "Benchmark"). Once the arena is used up,
//! allocation falls through to malloc, which reuses what is freed: a relay that runs for days
//! does not grow.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// A session that resolved a name and is relaying has touched 68 KiB of the arena (measured
/// with hickory-resolver 0.26); it holds that more than three times over. Pages never touched
/// cost nothing.
const ARENA_SIZE: usize = 256 * 1024;

/// The arena's start is page aligned, so no alignment up to a page needs padding at its base.
const PAGE: usize = 4096;

pub struct Arena {
    base: AtomicPtr<u8>,
    /// mmap refused: malloc serves everything, without asking the kernel again each time.
    unavailable: AtomicBool,
    /// Where the unused end of the arena begins; every live block ends at or before it.
    used: AtomicUsize,
    /// Bytes from here on have never been handed out: they are still the kernel's zeros.
    untouched: AtomicUsize,
}

/// A block carved off the arena.
struct Block {
    ptr: *mut u8,
    offset: usize,
    /// Never handed out before, so all zeros.
    fresh: bool,
}

impl Arena {
    pub const fn new() -> Self {
        Arena {
            base: AtomicPtr::new(ptr::null_mut()),
            unavailable: AtomicBool::new(false),
            used: AtomicUsize::new(0),
            untouched: AtomicUsize::new(0),
        }
    }

    /// The arena's memory, mapped on first use; None if it cannot be mapped.
    fn base(&self) -> Option<*mut u8> {
        let base = self.base.load(Ordering::Acquire);
        if !base.is_null() {
            return Some(base);
        }
        if self.unavailable.load(Ordering::Relaxed) {
            return None;
        }
        let Some(fresh) = crate::sys::map_anonymous(ARENA_SIZE) else {
            self.unavailable.store(true, Ordering::Relaxed);
            return None;
        };
        // Should another thread have mapped one first, ours is left as it is: its pages were
        // never touched, so it costs address space only.
        match self.base.compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Some(fresh),
            Err(winner) => Some(winner),
        }
    }

    /// Carves `layout` off the arena's unused end, if it fits.
    fn bump(&self, layout: Layout) -> Option<Block> {
        if layout.align() > PAGE {
            return None;
        }
        let base = self.base()?;
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let start = used.checked_next_multiple_of(layout.align())?;
            let end = start.checked_add(layout.size())?;
            if end > ARENA_SIZE {
                return None;
            }
            // Acquire pairs with `release`: whoever freed these bytes last is done with them
            // before we hand them out again.
            match self
                .used
                .compare_exchange_weak(used, end, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    let untouched = self.untouched.fetch_max(end, Ordering::Relaxed);
                    return Some(Block {
                        ptr: base.wrapping_add(start),
                        offset: start,
                        fresh: start >= untouched,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    /// Takes back the block at `offset` if nothing was handed out after it.
    fn release(&self, offset: usize, size: usize) {
        let _ =
            self.used
                .compare_exchange(offset + size, offset, Ordering::Release, Ordering::Relaxed);
    }

    /// Where `ptr` lies in the arena, if it does.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        let base = self.base.load(Ordering::Acquire);
        let offset = (ptr as usize).wrapping_sub(base as usize);
        (!base.is_null() && offset < ARENA_SIZE).then_some(offset)
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a block is carved from `used` onward and `used` then moves past it by
// compare-and-swap, so no two callers get the same bytes; `release` moves `used` back only
// over a block that ends exactly at `used` — the last one handed out, which its owner has
// just freed — so every live block still ends at or before `used`. Blocks lie inside the
// mapping, which is never unmapped (so no malloc block can ever lie inside it), aligned as
// `layout` asks (the base is page aligned; larger alignments go to malloc). A zeroed block
// comes from the arena only if its bytes were never handed out, and are still the kernel's
// zeros. Everything else is the system allocator's, called with our caller's contract.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(block) => block.ptr,
            // SAFETY: malloc, with the caller's guarantees (a non-zero size) unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(block) if block.fresh => return block.ptr,
            // Reused bytes would need clearing: calloc does that, and often for free.
            Some(block) => self.release(block.offset, layout.size()),
            None => {}
        }
        // SAFETY: calloc, with the caller's guarantees (a non-zero size) unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match self.offset(block) {
            Some(offset) => self.release(offset, layout.size()),
            // SAFETY: free of a block that malloc (not the arena) handed out with this layout.
            None => unsafe { System.dealloc(block, layout) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// Places a block and returns its offset in the arena.
    fn place(arena: &Arena, size: usize, align: usize) -> Option<usize> {
        arena
            .bump(layout(size, align))
            .map(|block| arena.offset(block.ptr).unwrap())
    }

    #[test]
    fn blocks_are_aligned_and_follow_one_another() {
        let arena = Arena::new();
        assert_eq!(place(&arena, 3, 1), Some(0));
        assert_eq!(place(&arena, 8, 8), Some(8));
        assert_eq!(place(&arena, 100, 64), Some(64));
        assert_eq!(place(&arena, 1, PAGE), Some(PAGE));
        assert_eq!(arena.used.load(Ordering::Relaxed), PAGE + 1);
    }

    #[test]
    fn freeing_the_last_block_gives_its_space_back_and_no_other() {
        let arena = Arena::new();
        let a = place(&arena, 100, 8).unwrap();
        let b = place(&arena, 100, 8).unwrap();
        arena.release(a, 100);
        assert_eq!(
            arena.used.load(Ordering::Relaxed),
            204,
            "a is not the last block"
        );
        arena.release(b, 100);
        assert_eq!(arena.used.load(Ordering::Relaxed), 104);
        assert_eq!(place(&arena, 50, 8), Some(104));
    }

    #[test]
    fn a_full_arena_refuses_what_does_not_fit() {
        let arena = Arena::new();
        assert!(place(&arena, ARENA_SIZE - 16, 16).is_some());
        assert!(place(&arena, 32, 16).is_none());
        assert!(place(&arena, 16, 16).is_some(), "the exact rest still fits");
        assert!(place(&arena, 1, 1).is_none());
    }

    #[test]
    fn alignments_over_a_page_are_left_to_malloc() {
        assert!(place(&Arena::new(), 64, 2 * PAGE).is_none());
    }

    #[test]
    fn blocks_the_arena_refuses_come_from_malloc_and_go_back_to_it() {
        let arena = Arena::new();
        let big = layout(ARENA_SIZE + 1, 8);
        // SAFETY: a non-zero layout, freed once with the same layout.
        let block = unsafe { arena.alloc(big) };
        assert!(!block.is_null() && arena.offset(block).is_none());
        // SAFETY: as above.
        unsafe { arena.dealloc(block, big) };
    }

    #[test]
    fn zeroed_blocks_come_from_the_arena_only_where_it_was_never_used() {
        let arena = Arena::new();
        let first = place(&arena, 100, 8).unwrap();
        arena.release(first, 100);
        let small = layout(50, 8);
        // SAFETY: non-zero layouts, each freed once with its own layout.
        let reused = unsafe { arena.alloc_zeroed(small) };
        assert!(
            arena.offset(reused).is_none(),
            "bytes 0..50 were used: calloc's"
        );
        assert_eq!(
            arena.used.load(Ordering::Relaxed),
            0,
            "and the arena took them back"
        );
        let _ = place(&arena, 100, 8);
        // SAFETY: as above.
        let fresh = unsafe { arena.alloc_zeroed(small) };
        assert_eq!(
            arena.offset(fresh),
            Some(104),
            "never used: the arena's own zeros"
        );
        // SAFETY: as above.
        unsafe { arena.dealloc(reused, small) };
    }

    #[test]
    fn threads_never_get_overlapping_blocks() {
        let arena = Arc::new(Arena::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let arena = Arc::clone(&arena);
                std::thread::spawn(move || {
                    let mut live = Vec::new();
                    for i in 0..2000 {
                        let size = 1 + (i * 7 + t * 13) % 200;
                        if i % 3 == 2 {
                            if let Some((offset, size)) = live.pop() {
                                arena.release(offset, size);
                            }
                        } else if let Some(offset) = place(&arena, size, 8) {
                            live.push((offset, size));
                        }
                    }
                    live
                })
            })
            .collect();
        let mut all: Vec<(usize, usize)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        assert!(all.len() > 100, "the arena served the threads");
        for pair in all.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlap: {pair:?}");
        }
    }

    proptest! {
        /// Any sequence of allocations and frees: live blocks never overlap, are aligned and
        /// lie in the arena.
        #[test]
        fn live_blocks_never_overlap(
            steps in proptest::collection::vec((1usize..9000, 0u32..13, any::<bool>(), any::<prop::sample::Index>()), 1..300)
        ) {
            let arena = Arena::new();
            let mut live: Vec<(usize, usize)> = Vec::new();
            for (size, align_log, free, which) in steps {
                if free && !live.is_empty() {
                    let (offset, size) = live.swap_remove(which.index(live.len()));
                    arena.release(offset, size);
                    continue;
                }
                let align = 1 << align_log;
                let Some(offset) = place(&arena, size, align) else { continue };
                prop_assert_eq!(offset % align, 0);
                prop_assert!(offset + size <= ARENA_SIZE);
                for &(o, s) in &live {
                    prop_assert!(offset + size <= o || o + s <= offset, "overlap");
                }
                live.push((offset, size));
            }
        }
    }
}
