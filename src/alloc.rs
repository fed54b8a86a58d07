//! The allocator: a session's first allocations come from a bump arena, the rest from the C
//! library's malloc.
//!
//! Why: nearly everything a session allocates (the lookup's runtime, hickory's name-server
//! pool and its messages) is made before the relay starts and is freed soon after or never.
//! musl's malloc hands each emptied group straight back to the kernel, so a session made
//! dozens of mmap/munmap calls and spent a large share of its CPU in the allocator
//! (docs/bench-history.md; `strace -c -f` under `bench/session-cost` counts them again). Here an
//! allocation is an add, and the arena is one mapping whose pages the kernel supplies as they
//! are first touched.
//!
//! A freed block's space is reused only when it is the last one handed out (and the last one
//! grows and shrinks in place), so the arena is a fixed price per session. Neither recycling
//! emptied pages nor giving them back to the kernel paid (docs/bench-history.md). Once the arena
//! is used up, allocation falls through to malloc, which reuses what is freed: a relay that
//! runs for days does not grow.
//!
//! # Contract (each point has a test below; `cargo +nightly miri test --lib alloc::` runs
//! them under Miri, which also checks every pointer they use)
//! 1. Live blocks never overlap, lie inside the mapping and are aligned as asked; alignments
//!    over a page, sizes that do not fit, and everything once mmap failed go to malloc.
//! 2. A block goes back to whoever handed it out: the arena's to the arena, malloc's to free.
//! 3. Freeing the last block handed out takes its space back; freeing any other leaks its
//!    space until exit (never reused, so never handed out twice).
//! 4. `realloc` of the last block grows or shrinks it in place when the arena has the room;
//!    any other arena block moves (copied) and its old space is freed as in 3.
//! 5. A zeroed block comes from the arena only if its bytes were never handed out before.
//! 6. Any number of threads may allocate at once (compare-and-swap on one counter).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Several times what a session that resolved a name and is relaying touches
/// (docs/bench-history.md has the high-water mark); pages never touched cost nothing.
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

    /// Resizes the block at `offset` where it is, if nothing was handed out after it and the
    /// new size fits; true if it did.
    fn resize_last(&self, offset: usize, size: usize, new_size: usize) -> bool {
        let Some(end) = offset
            .checked_add(new_size)
            .filter(|&end| end <= ARENA_SIZE)
        else {
            return false;
        };
        // AcqRel: as in `bump` for the bytes a growing block takes, as in `release` for the
        // bytes a shrinking one gives back.
        let resized = self
            .used
            .compare_exchange(offset + size, end, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if resized {
            self.untouched.fetch_max(end, Ordering::Relaxed);
        }
        resized
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

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset(block) else {
            // SAFETY: realloc of a block that malloc handed out with `layout`, under the
            // caller's guarantees (a non-zero new size that does not overflow when aligned).
            return unsafe { System.realloc(block, layout, new_size) };
        };
        if self.resize_last(offset, layout.size(), new_size) {
            return block;
        }
        // SAFETY: the caller guarantees that new_size, aligned to layout.align(), does not
        // overflow isize, which is all Layout asks.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size, as the caller guarantees.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct (the old one is not freed yet) and at
            // least this long.
            unsafe { ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size)) };
            self.release(offset, layout.size());
        }
        moved
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

    /// The arena's bytes from `offset` on, as a slice of `len`.
    fn bytes(arena: &Arena, offset: usize, len: usize) -> &[u8] {
        // SAFETY: the test keeps the block at `offset` of at least `len` bytes live and
        // initialised while the slice is used.
        unsafe { std::slice::from_raw_parts(arena.base().unwrap().add(offset), len) }
    }

    #[test]
    fn the_last_block_grows_and_shrinks_in_place() {
        let arena = Arena::new();
        let small = layout(16 * 1024, 8);
        // SAFETY: non-zero layouts; each block is used within its size and freed once with
        // the layout it last had.
        unsafe {
            let block = arena.alloc(small);
            block.write_bytes(7, small.size());
            let grown = arena.realloc(block, small, 32 * 1024);
            assert_eq!(grown, block, "grown where it was");
            assert_eq!(arena.used.load(Ordering::Relaxed), 32 * 1024, "not 48 KiB");
            let shrunk = arena.realloc(grown, layout(32 * 1024, 8), 100);
            assert_eq!(shrunk, block);
            assert_eq!(arena.used.load(Ordering::Relaxed), 100);
            assert!(bytes(&arena, 0, 100).iter().all(|&b| b == 7));
            arena.dealloc(shrunk, layout(100, 8));
        }
        assert_eq!(arena.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_block_that_is_not_the_last_moves_with_its_bytes() {
        let arena = Arena::new();
        let first = layout(64, 8);
        // SAFETY: as in the test above.
        unsafe {
            let block = arena.alloc(first);
            for i in 0..64 {
                block.add(i).write(i as u8);
            }
            let after = arena.alloc(layout(8, 8));
            let moved = arena.realloc(block, first, 128);
            assert_ne!(moved, block);
            assert_eq!(arena.offset(moved), Some(72), "after the block behind it");
            let copied = bytes(&arena, 72, 64);
            assert!(copied.iter().enumerate().all(|(i, &b)| b == i as u8));
            arena.dealloc(moved, layout(128, 8));
            arena.dealloc(after, layout(8, 8));
        }
    }

    #[test]
    fn a_block_that_would_outgrow_the_arena_moves_to_malloc() {
        let arena = Arena::new();
        let small = layout(32, 8);
        // SAFETY: as in the tests above.
        unsafe {
            let block = arena.alloc(small);
            block.write_bytes(9, 32);
            let moved = arena.realloc(block, small, ARENA_SIZE + 1);
            assert!(!moved.is_null() && arena.offset(moved).is_none());
            assert!(
                std::slice::from_raw_parts(moved, 32)
                    .iter()
                    .all(|&b| b == 9)
            );
            assert_eq!(
                arena.used.load(Ordering::Relaxed),
                0,
                "its arena space freed"
            );
            let back = arena.realloc(moved, layout(ARENA_SIZE + 1, 8), 16);
            assert!(
                arena.offset(back).is_none(),
                "malloc's block stays malloc's"
            );
            arena.dealloc(back, layout(16, 8));
        }
    }

    #[test]
    fn a_grown_block_is_never_handed_out_again_as_fresh_zeros() {
        let arena = Arena::new();
        // SAFETY: as in the tests above.
        unsafe {
            let block = arena.alloc(layout(8, 8));
            let grown = arena.realloc(block, layout(8, 8), 4096);
            grown.write_bytes(1, 4096);
            let shrunk = arena.realloc(grown, layout(4096, 8), 8);
            // Bytes 8.. were handed out (by growing) and written: not the kernel's zeros.
            let zeroed = arena.alloc_zeroed(layout(1024, 8));
            let zeros = std::slice::from_raw_parts(zeroed, 1024);
            assert!(zeros.iter().all(|&b| b == 0));
            arena.dealloc(zeroed, layout(1024, 8));
            arena.dealloc(shrunk, layout(8, 8));
        }
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
