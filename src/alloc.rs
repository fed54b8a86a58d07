//! The allocator: a session's first allocations come from a bump arena, the rest from the C
//! library's malloc.
//!
//! Why: nearly everything a session allocates (clap's command, tokio's runtime, hickory's
//! resolver and messages) is made before the relay starts and is freed soon after or never.
//! musl's malloc hands each emptied group straight back to the kernel, so one session made
//! about 45 mmap/munmap calls and spent a fifth of its CPU in the allocator (README,
//! "Benchmark"). Here an allocation is an add, and the arena is one mapping whose pages the
//! kernel supplies as they are first touched.
//!
//! A freed block's space is reused only when it is the last one handed out. Instead, once
//! the name is resolved, [`Arena::trim`] gives the kernel back every page that no live block
//! touches; what resolution left behind costs no memory while the relay runs. Once the arena
//! is used up, allocation falls through to malloc, which does reuse what is freed: a relay
//! that runs for days does not grow.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU16, AtomicUsize, Ordering};

/// A session that resolves a name has allocated about 100 KiB (53 KiB of it live at most)
/// when its relay starts (measured with hickory-resolver 0.26); the arena holds that twice
/// over. Pages never touched cost nothing.
const ARENA_SIZE: usize = 256 * 1024;

/// The arena's start is page aligned, so no alignment up to a page needs padding at its base.
const PAGE: usize = 4096;
const PAGES: usize = ARENA_SIZE / PAGE;

pub struct Arena {
    /// Held by whoever is changing the arena. dynproxy has one thread; the lock only makes
    /// the allocator correct if a library ever starts another.
    lock: AtomicBool,
    base: AtomicPtr<u8>,
    /// Where the unused end of the arena begins.
    used: AtomicUsize,
    /// How many live blocks touch each page: a page at zero holds nothing anyone can read.
    live: [AtomicU16; PAGES],
}

/// Proof that the arena's lock is held; releases it when dropped.
struct Locked<'a>(&'a Arena);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, Ordering::Release);
    }
}

impl Arena {
    pub const fn new() -> Self {
        Arena {
            lock: AtomicBool::new(false),
            base: AtomicPtr::new(ptr::null_mut()),
            used: AtomicUsize::new(0),
            live: [const { AtomicU16::new(0) }; PAGES],
        }
    }

    fn lock(&self) -> Locked<'_> {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            hint::spin_loop();
        }
        Locked(self)
    }

    /// The arena's memory, mapped on first use; None if it cannot be mapped.
    fn base(&self, _: &Locked) -> Option<*mut u8> {
        let base = self.base.load(Ordering::Relaxed);
        if !base.is_null() {
            return Some(base);
        }
        let base = crate::sys::map_anonymous(ARENA_SIZE)?;
        self.base.store(base, Ordering::Release);
        Some(base)
    }

    /// Carves `layout` off the arena's unused end, if it fits.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if layout.align() > PAGE {
            return None;
        }
        let locked = self.lock();
        let base = self.base(&locked)?;
        let start = self
            .used
            .load(Ordering::Relaxed)
            .checked_next_multiple_of(layout.align())?;
        let end = start.checked_add(layout.size())?;
        if end > ARENA_SIZE {
            return None;
        }
        self.used.store(end, Ordering::Relaxed);
        self.count(start, layout.size(), 1, &locked);
        Some(base.wrapping_add(start))
    }

    /// Forgets the block at `offset`; its space is reused only if it was the last one.
    fn release(&self, offset: usize, size: usize) {
        let locked = self.lock();
        self.count(offset, size, -1, &locked);
        if self.used.load(Ordering::Relaxed) == offset + size {
            self.used.store(offset, Ordering::Relaxed);
        }
    }

    /// Adds `change` to the live count of every page that bytes `offset..offset + size` touch.
    fn count(&self, offset: usize, size: usize, change: i16, _: &Locked) {
        for page in offset / PAGE..=(offset + size.max(1) - 1) / PAGE {
            let live = &self.live[page];
            let now = live.load(Ordering::Relaxed).wrapping_add_signed(change);
            live.store(now, Ordering::Relaxed);
        }
    }

    /// Where `ptr` lies in the arena, if it does.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        let base = self.base.load(Ordering::Acquire);
        let offset = (ptr as usize).wrapping_sub(base as usize);
        (!base.is_null() && offset < ARENA_SIZE).then_some(offset)
    }

    /// Gives back to the kernel every page of the arena that no live block touches (it reads
    /// as zeros if it is used again). Returns how many pages were given back.
    pub fn trim(&self) -> usize {
        let locked = self.lock();
        let base = self.base.load(Ordering::Relaxed);
        if base.is_null() {
            return 0;
        }
        let touched = self.used.load(Ordering::Relaxed).div_ceil(PAGE);
        let mut given = 0;
        let mut page = 0;
        while page < touched {
            let free = |p: usize| self.live[p].load(Ordering::Relaxed) == 0;
            if !free(page) {
                page += 1;
                continue;
            }
            let first = page;
            while page < touched && free(page) {
                page += 1;
            }
            if crate::sys::discard(base.wrapping_add(first * PAGE), (page - first) * PAGE) {
                given += page - first;
            }
        }
        drop(locked);
        given
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: under the lock, `bump` hands out each byte range of the arena to one caller only,
// inside the mapping and aligned as `layout` asks; `release` only moves the end back over the
// block being freed, which its owner no longer uses; `trim` discards only pages that no live
// block touches. Everything else is the system allocator's, called with our caller's contract.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(block) => block,
            // SAFETY: malloc, with the caller's guarantees (a non-zero size) unchanged.
            None => unsafe { System.alloc(layout) },
        }
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

    /// The arena's pages that a block at `offset` of `size` bytes touches.
    fn pages(offset: usize, size: usize) -> std::ops::RangeInclusive<usize> {
        offset / PAGE..=(offset + size - 1) / PAGE
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_and_follow_one_another() {
        let arena = Arena::new();
        let a = arena.bump(layout(3, 1)).unwrap();
        let b = arena.bump(layout(8, 8)).unwrap();
        let c = arena.bump(layout(100, 64)).unwrap();
        assert_eq!(arena.offset(a), Some(0));
        assert_eq!(arena.offset(b), Some(8));
        assert_eq!(arena.offset(c), Some(64));
        assert_eq!(arena.used.load(Ordering::Relaxed), 164);
    }

    #[test]
    fn freeing_the_last_block_gives_its_space_back_and_no_other() {
        let arena = Arena::new();
        let a = arena.bump(layout(100, 8)).unwrap();
        let b = arena.bump(layout(100, 8)).unwrap();
        arena.release(arena.offset(a).unwrap(), 100);
        assert_eq!(arena.used.load(Ordering::Relaxed), 204, "a is not last");
        arena.release(arena.offset(b).unwrap(), 100);
        assert_eq!(arena.used.load(Ordering::Relaxed), 104);
        assert_eq!(arena.offset(arena.bump(layout(50, 8)).unwrap()), Some(104));
    }

    #[test]
    fn a_full_arena_refuses_and_malloc_takes_over() {
        let arena = Arena::new();
        assert!(arena.bump(layout(ARENA_SIZE - 16, 16)).is_some());
        assert!(arena.bump(layout(32, 16)).is_none());
        assert!(
            arena.bump(layout(16, 16)).is_some(),
            "the exact rest still fits"
        );
        assert!(arena.bump(layout(1, 1)).is_none());
        assert!(
            Arena::new().bump(layout(64, 2 * PAGE)).is_none(),
            "over-page alignment"
        );
        // Through GlobalAlloc: a block the arena refused is malloc's, and goes back to it.
        let big = layout(ARENA_SIZE + 1, 8);
        // SAFETY: a non-zero layout, freed once with the same layout.
        let block = unsafe { arena.alloc(big) };
        assert!(!block.is_null() && arena.offset(block).is_none());
        // SAFETY: as above.
        unsafe { arena.dealloc(block, big) };
    }

    #[test]
    fn trim_gives_back_only_pages_no_live_block_touches() {
        let arena = Arena::new();
        let first = arena.bump(layout(PAGE, PAGE)).unwrap(); // page 0
        let spanning = arena.bump(layout(2 * PAGE, 8)).unwrap(); // pages 1-2
        let small = arena.bump(layout(16, 8)).unwrap(); // page 3
        let _kept = arena.bump(layout(16, 8)).unwrap(); // page 3
        arena.release(arena.offset(first).unwrap(), PAGE);
        arena.release(arena.offset(spanning).unwrap(), 2 * PAGE);
        arena.release(arena.offset(small).unwrap(), 16);
        assert_eq!(
            arena.trim(),
            3,
            "pages 0-2 are free, page 3 still holds a block"
        );
        assert_eq!(
            Arena::new().trim(),
            0,
            "an arena never used has nothing mapped"
        );
    }

    proptest! {
        /// Any sequence of allocations and frees: blocks never overlap, are aligned, and trim
        /// gives back exactly the touched pages that no live block touches.
        #[test]
        fn blocks_never_overlap_and_trim_spares_every_live_block(
            steps in proptest::collection::vec((1usize..9000, 0u32..7, any::<bool>(), any::<prop::sample::Index>()), 1..200)
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
                let Some(block) = arena.bump(layout(size, align)) else { continue };
                let offset = arena.offset(block).unwrap();
                prop_assert_eq!(offset % align, 0);
                prop_assert!(offset + size <= ARENA_SIZE);
                for &(o, s) in &live {
                    prop_assert!(offset + size <= o || o + s <= offset, "overlap");
                }
                live.push((offset, size));
            }
            let touched = arena.used.load(Ordering::Relaxed).div_ceil(PAGE);
            let busy: std::collections::BTreeSet<usize> =
                live.iter().flat_map(|&(o, s)| pages(o, s)).collect();
            let free_pages = (0..touched).filter(|p| !busy.contains(p)).count();
            prop_assert_eq!(arena.trim(), free_pages);
        }
    }
}
