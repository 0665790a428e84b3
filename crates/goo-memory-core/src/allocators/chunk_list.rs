//! The list of chunks an allocator takes from its parent: what the arena, the scoped allocator
//! and the pool keep their memory in.
//!
//! A chunk is one parent block with a header at its start that links it to the next older
//! chunk (the list is newest first) and records its size; the rest, from `HEADER` on, is the
//! owner's data area (the arena's bump space, the scope's small blocks, the pool's bitmap and
//! objects). The list takes chunks from the parent and gives them back (one, some, or all),
//! counts them and their bytes, walks them, and checks itself. Only the owners' slow paths call
//! into it: their fast paths work inside a chunk (the arena's in-place free reads no more than
//! whether a list is empty and where its newest chunk starts, two inlined field reads).
//!
//! Two header shapes, chosen by the `NUMBERED` parameter:
//! - a plain list ([`PlainChunks`], the scope's and the pool's): every chunk has the list's
//!   alignment; the header is the link and the size, 16 bytes;
//! - a numbered list ([`NumberedChunks`], the arena's two): each chunk also records its own
//!   alignment (a request may ask for more than the list's) and a creation number the owner
//!   gives, rising from chunk to chunk, so the owner can give back the chunks made after a mark
//!   ([`ChunkList::release_newer`]); the header is 32 bytes.
//!
//! The counters are cells and every operation takes `&self`, and no operation calls the parent
//! while the list is half changed (a release unlinks first, a take links after the parent
//! answered): a parent's callback that re-enters the owner finds a whole list.

use core::cell::Cell;
use core::mem::size_of;
use core::ptr;

use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::{front, sanitize};
use crate::raw::{AllocOptions, GooAllocator, MAX_NATURAL_ALIGN};

/// The header of a chunk of a plain list, and the start of a numbered one's.
#[repr(C)]
struct Link {
    /// The next older chunk, or null.
    next: *mut Link,
    /// Bytes of the chunk, header included, as taken from the parent.
    size: usize,
}

/// The header of a chunk of a numbered list.
#[repr(C)]
struct NumberedLink {
    link: Link,
    /// The alignment the chunk was taken with.
    align: usize,
    /// Its creation number, given by the owner.
    seq: u64,
}

const _: () = assert!(size_of::<Link>() == 16 && size_of::<NumberedLink>() == 32);

/// The equation on chunks' alignment, as [`ChunkList::check`] reports it.
const ALIGNED: &str = "c % c.align == 0, c.align >= align, a power of two";

/// A chunk list whose chunks all have the list's alignment (16-byte headers).
pub(crate) type PlainChunks = ChunkList<false>;
/// A chunk list whose chunks record their alignment and creation number (32-byte headers).
pub(crate) type NumberedChunks = ChunkList<true>;

/// A chunk of a list, as its header describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// The start of the parent block (the header).
    pub start: *mut u8,
    /// The start of the data area, right after the header.
    pub data: *mut u8,
    /// The end of the parent block.
    pub end: *mut u8,
    /// The alignment it was taken with.
    pub align: usize,
    /// The creation number (a numbered list's; 0 in a plain list).
    pub seq: u64,
}

impl Chunk {
    /// Bytes of the chunk, header included.
    pub(crate) fn size(&self) -> usize {
        self.end.addr() - self.start.addr()
    }

    /// Whether `[addr, addr + len)` lies in the data area.
    pub(crate) fn holds(&self, addr: usize, len: usize) -> bool {
        addr >= self.data.addr() && addr.checked_add(len).is_some_and(|e| e <= self.end.addr())
    }
}

/// The chunks an allocator holds from its parent, newest first.
///
/// `K` is the set of chunks reached from `head` by `next`. Every chunk in `K` is a live block
/// of `parent` that only this list holds, of `c.size` bytes at `c.align` (a plain list's
/// chunks: `c.align == align`). Between operations:
///
/// ```text
/// count        ==  |K|                     (the walk from head ends after count chunks)
/// bytes        ==  Σ c.size over c ∈ K
/// c.size       >=  HEADER,   c + c.size does not wrap
/// c % c.align  ==  0,   c.align >= align,  a power of two
/// c.next.seq   <   c.seq                   along K (a numbered list)
/// ```
///
/// [`ChunkList::check`] verifies all of it, never walking more than `count + 1` links, so a
/// cycle is reported, not walked forever.
pub(crate) struct ChunkList<const NUMBERED: bool> {
    head: Cell<*mut Link>,
    count: Cell<usize>,
    bytes: Cell<usize>,
    parent: *mut GooAllocator,
    /// A plain list's chunks' alignment; the least alignment of a numbered list's.
    align: usize,
}

impl<const NUMBERED: bool> ChunkList<NUMBERED> {
    /// Bytes of a chunk's header: its data area starts this far into it.
    pub(crate) const HEADER: usize = if NUMBERED { size_of::<NumberedLink>() } else { size_of::<Link>() };

    /// An empty list taking chunks from `parent` at alignment `align`.
    ///
    /// # Safety
    /// `parent` must be a valid allocator that outlives the list; `align` a power of two, at
    /// least 16 (a header, and the data area after it, must be 16-aligned).
    pub(crate) unsafe fn new(parent: *mut GooAllocator, align: usize) -> Self {
        debug_check(|| {
            ensure(
                align.is_power_of_two() && align >= MAX_NATURAL_ALIGN,
                "chunk list",
                "align >= 16, a power of two",
            )
        });
        ChunkList {
            head: Cell::new(ptr::null_mut()),
            count: Cell::new(0),
            bytes: Cell::new(0),
            parent,
            align,
        }
    }

    /// Where the chunks come from.
    pub(crate) fn parent(&self) -> *mut GooAllocator {
        self.parent
    }

    /// Chunks held.
    pub(crate) fn count(&self) -> usize {
        self.count.get()
    }

    /// Bytes held: the chunks' sizes, headers included.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Whether the list holds no chunk (no header is read: for call-free paths).
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.get().is_null()
    }

    /// The start of the newest chunk, or null: no header is read (for call-free paths).
    #[inline(always)]
    pub(crate) fn newest_start(&self) -> *mut u8 {
        self.head.get().cast()
    }

    /// The newest chunk.
    pub(crate) fn newest(&self) -> Option<Chunk> {
        self.iter().next()
    }

    /// The chunks, newest first. The walk stops after `count` chunks whatever the links say.
    pub(crate) fn iter(&self) -> Iter<'_, NUMBERED> {
        Iter { list: self, next: self.head.get(), left: self.count.get() }
    }

    /// The chunk starting at `start`.
    ///
    /// # Safety
    /// `start` is the start of a live chunk of this list.
    pub(crate) unsafe fn chunk_at(&self, start: *mut u8) -> Chunk {
        // SAFETY: forwarded contract.
        unsafe { self.read(start.cast()) }.0
    }

    /// A chunk and its link to the next older one.
    ///
    /// # Safety
    /// `c` is a live chunk of this list (or, in [`ChunkList::check`], one that the list links
    /// to, non-null and aligned for the header).
    unsafe fn read(&self, c: *mut Link) -> (Chunk, *mut Link) {
        // SAFETY: per the contract the header is readable; a numbered list's is a
        // `NumberedLink`, which starts with the `Link`.
        unsafe {
            let Link { next, size } = c.read();
            let (align, seq) = if NUMBERED {
                let n = c.cast::<NumberedLink>();
                ((*n).align, (*n).seq)
            } else {
                (self.align, 0)
            };
            let start = c.cast::<u8>();
            let data = start.wrapping_add(Self::HEADER);
            (Chunk { start, data, end: start.wrapping_add(size), align, seq }, next)
        }
    }

    /// Takes a chunk of `size` bytes at `align` from the parent and links it as the newest;
    /// `None` (nothing taken) if the parent refuses or `size` cannot hold the header.
    fn take_chunk(&self, size: usize, align: usize, seq: impl FnOnce() -> u64) -> Option<Chunk> {
        // SAFETY: the parent outlives the list (`new`'s contract).
        self.link_chunk(size, align, seq, |size, align| unsafe {
            front::alloc_slow(self.parent, size, align, AllocOptions::DEFAULT)
        })
    }

    /// Links as the newest chunk a parent block of `size` bytes that `take` gets (null: `None`),
    /// numbered `seq()`, asked once the parent answered: a parent's callback may have made the
    /// owner take chunks meanwhile.
    fn link_chunk(
        &self,
        size: usize,
        align: usize,
        seq: impl FnOnce() -> u64,
        take: impl FnOnce(usize, usize) -> *mut u8,
    ) -> Option<Chunk> {
        if size < Self::HEADER {
            return None;
        }
        let mem = take(size, align);
        if mem.is_null() {
            return None;
        }
        let seq = seq();
        let c = mem.cast::<Link>();
        // SAFETY: `mem` is a fresh parent block of `size >= HEADER` bytes at `align >= 16`,
        // this list's alone: room for the header, aligned for it.
        unsafe {
            let link = Link { next: self.head.get(), size };
            if NUMBERED {
                c.cast::<NumberedLink>().write(NumberedLink { link, align, seq });
            } else {
                c.write(link);
            }
        }
        self.head.set(c);
        self.count.set(self.count.get() + 1);
        self.bytes.set(self.bytes.get() + size);
        Some(Chunk {
            start: mem,
            data: mem.wrapping_add(Self::HEADER),
            end: mem.wrapping_add(size),
            align,
            seq,
        })
    }

    /// Unlinks the chunk starting at `start`, which follows the chunk starting at `newer` along
    /// the list (`newer` null: `start` is the newest), without walking the list: the owner
    /// knows the neighbor (the arena keeps it in its index of dedicated chunks). Returns it, for
    /// the caller to give back ([`Detached::give_back`]) once its own state is whole again (the
    /// parent may call back into the owner), and the start of the chunk that followed it (null
    /// if it was the oldest); `None`, changing nothing, if `newer` does not link to `start`.
    ///
    /// # Safety
    /// `start` is a live chunk of this list; `newer` is null or a live chunk of this list.
    pub(crate) unsafe fn unlink_after(&self, newer: *mut u8, start: *mut u8) -> Option<(Detached, *mut u8)> {
        let (c, newer) = (start.cast::<Link>(), newer.cast::<Link>());
        // SAFETY: `newer` (when non-null) is a live chunk of this list (the contract): its header
        // is readable.
        let linked = if newer.is_null() { self.head.get() } else { unsafe { (*newer).next } };
        if linked != c || c.is_null() {
            return None;
        }
        // Unlink first, then give back: the list is whole when the parent runs.
        // SAFETY: `c` and `newer` (when non-null) are live chunks of this list, whose headers are
        // the list's to read and write; `newer` links to `c` (checked above).
        let (chunk, next) = unsafe {
            let (chunk, next) = self.read(c);
            if newer.is_null() {
                self.head.set(next);
            } else {
                (*newer).next = next;
            }
            (*c).next = ptr::null_mut();
            (chunk, next)
        };
        self.count.set(self.count.get() - 1);
        self.bytes.set(self.bytes.get() - chunk.size());
        Some((self.detached(c, 1), next.cast()))
    }

    /// Gives back every chunk for which `keep` is false; the others keep their order.
    pub(crate) fn retain(&self, keep: impl FnMut(&Chunk) -> bool) {
        self.detach(keep).give_back();
    }

    /// [`ChunkList::retain`]'s unlinking: the chunks for which `keep` is false leave the list,
    /// and the caller gives them back ([`Detached::give_back`]) once its own state is whole
    /// again (the parent may call back into the owner).
    pub(crate) fn detach(&self, mut keep: impl FnMut(&Chunk) -> bool) -> Detached {
        // Unlink first, onto a chain of its own, then give back: the list is whole whenever
        // the parent runs. The walk has read a chunk's link before it relinks the chunk.
        let (mut released, mut released_count): (*mut Link, usize) = (ptr::null_mut(), 0);
        let mut prev: *mut Link = ptr::null_mut();
        for chunk in self.iter() {
            let c = chunk.start.cast::<Link>();
            if keep(&chunk) {
                prev = c;
                continue;
            }
            // SAFETY: `c` and `prev` (when non-null) are live chunks of this list, whose headers
            // are the list's to write.
            unsafe {
                let next = (*c).next;
                if prev.is_null() {
                    self.head.set(next);
                } else {
                    (*prev).next = next;
                }
                (*c).next = released;
            }
            (released, released_count) = (c, released_count + 1);
            self.count.set(self.count.get() - 1);
            self.bytes.set(self.bytes.get() - chunk.size());
        }
        self.detached(released, released_count)
    }

    /// The chain of `count` chunks just unlinked from this list, to give back.
    fn detached(&self, chain: *mut Link, count: usize) -> Detached {
        Detached { chain, count, parent: self.parent, numbered: NUMBERED, align: self.align }
    }

    /// Gives back every chunk.
    pub(crate) fn release_all(&self) {
        let chain = self.head.replace(ptr::null_mut());
        let count = self.count.replace(0);
        self.bytes.set(0);
        self.detached(chain, count).give_back();
    }

    /// Verifies the equations beside [`ChunkList`], reporting a broken one as `owner`'s (the
    /// allocator holding the list). Walks at most `count + 1` links, checking that each is
    /// aligned before reading the header it points to. Reads only; allocates nothing.
    pub(crate) fn check(&self, owner: &'static str) -> Result<(), InvariantError> {
        let (mut listed, mut bytes) = (0usize, 0usize);
        let mut newer: Option<u64> = None;
        let mut c = self.head.get();
        while !c.is_null() {
            ensure(listed < self.count.get(), owner, "count == |K| (no cycle)")?;
            ensure(c.addr().is_multiple_of(self.align), owner, ALIGNED)?;
            // SAFETY: `c` is linked from this list, whose chunks are live (the first invariant,
            // which a check cannot verify: it trusts the links and verifies the equations
            // between what they point to); non-null, and aligned for the header (checked above).
            let (chunk, next) = unsafe { self.read(c) };
            let (size, align) = (chunk.end.addr().wrapping_sub(chunk.start.addr()), chunk.align);
            ensure(
                size >= Self::HEADER && c.addr().checked_add(size).is_some(),
                owner,
                "c.size >= HEADER, c + c.size does not wrap",
            )?;
            if NUMBERED {
                ensure(
                    align.is_power_of_two() && align >= self.align && c.addr().is_multiple_of(align),
                    owner,
                    ALIGNED,
                )?;
                ensure(newer.is_none_or(|n| chunk.seq < n), owner, "c.next.seq < c.seq along K")?;
                newer = Some(chunk.seq);
            }
            bytes = bytes.saturating_add(size);
            listed += 1;
            c = next;
        }
        ensure(listed == self.count.get(), owner, "count == |K| (no cycle)")?;
        ensure(bytes == self.bytes.get(), owner, "bytes == Σ c.size over c ∈ K")
    }
}

impl PlainChunks {
    /// Takes a chunk of `size` bytes (header included) from the parent, at the list's
    /// alignment, and links it as the newest; `None` if the parent refuses.
    pub(crate) fn take(&self, size: usize) -> Option<Chunk> {
        self.take_chunk(size, self.align, || 0)
    }

    /// [`PlainChunks::take`] for a chunk the caller can do without (it asks for a smaller one
    /// if refused): a refusal is no failure of the parent ([`front::alloc_speculative`]).
    pub(crate) fn try_take(&self, size: usize) -> Option<Chunk> {
        // SAFETY: the parent outlives the list (`new`'s contract).
        self.link_chunk(
            size,
            self.align,
            || 0,
            |size, align| unsafe {
                front::alloc_speculative(self.parent, size, align, AllocOptions::DEFAULT)
            },
        )
    }
}

impl NumberedChunks {
    /// Takes a chunk of `size` bytes (header included) from the parent at `align` (at least the
    /// list's), numbered `seq()` (above every number in the list; asked once the parent
    /// answered), and links it as the newest; `None` if the parent refuses.
    pub(crate) fn take(&self, size: usize, align: usize, seq: impl FnOnce() -> u64) -> Option<Chunk> {
        self.take_chunk(size, align.max(self.align), seq)
    }

    /// Gives back every chunk numbered `seq` or above: the newest ones, as numbers fall along
    /// the list.
    pub(crate) fn release_newer(&self, seq: u64) {
        self.retain(|c| c.seq < seq);
    }

    /// [`NumberedChunks::release_newer`]'s unlinking (see [`ChunkList::detach`]).
    pub(crate) fn detach_newer(&self, seq: u64) -> Detached {
        self.detach(|c| c.seq < seq)
    }
}

impl<const NUMBERED: bool> Drop for ChunkList<NUMBERED> {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// Chunks unlinked from a list, not yet given back: the owner finishes its own changes, then
/// [`Detached::give_back`] returns them to the parent, whose callbacks may call back into the
/// owner and find it whole. Dropped without a give-back, the chunks leak.
#[must_use = "the chunks leak unless given back"]
pub(crate) struct Detached {
    chain: *mut Link,
    count: usize,
    parent: *mut GooAllocator,
    numbered: bool,
    /// The list's alignment (a plain list's chunks').
    align: usize,
}

impl Detached {
    /// Returns the chunks to the parent. Stops after `count` whatever the links say: a
    /// corrupted chain leaks rather than frees twice.
    pub(crate) fn give_back(self) {
        let mut next = self.chain;
        for _ in 0..self.count {
            if next.is_null() {
                break;
            }
            let c = next;
            // SAFETY: the chain holds chunks unlinked from their list (`detached`'s callers),
            // live and used by nothing any more; each header is read before its chunk goes back.
            unsafe {
                let Link { next: after, size } = c.read();
                let align = if self.numbered { (*c.cast::<NumberedLink>()).align } else { self.align };
                next = after;
                // Whole and accessible again for the parent's next user (see `policy::sanitize`).
                sanitize::hand_out(c.cast(), size);
                // A chunk of the list's parent, with the size and alignment it was taken with.
                front::free_slow(self.parent, c.cast(), size, align);
            }
        }
    }
}

/// Verifies two numbered lists that share one numbering (an arena's normal chunks `C` and its
/// dedicated chunks `L`) and each list's own equations, reporting a broken one as `owner`'s:
///
/// ```text
/// c.seq  <   next_seq                   for c ∈ C ∪ L
/// C ∩ L  ==  ∅                          (every seq distinct)
/// ```
pub(crate) fn check_pair(
    current: &NumberedChunks,
    large: &NumberedChunks,
    next_seq: u64,
    owner: &'static str,
) -> Result<(), InvariantError> {
    current.check(owner)?;
    large.check(owner)?;
    for list in [current, large] {
        ensure(list.newest().is_none_or(|c| c.seq < next_seq), owner, "c.seq < next_seq for c ∈ C ∪ L")?;
    }
    // Both lists fall in seq: one merge walk finds a seq (a chunk) in both.
    let (mut c, mut l) = (current.iter().peekable(), large.iter().peekable());
    while let (Some(&in_c), Some(&in_l)) = (c.peek(), l.peek()) {
        ensure(in_c.seq != in_l.seq, owner, "C ∩ L == ∅ (every seq distinct)")?;
        if in_c.seq > in_l.seq {
            c.next();
        } else {
            l.next();
        }
    }
    Ok(())
}

/// The chunks of a list, newest first (see [`ChunkList::iter`]): each chunk's header is read
/// before the chunk is handed out, so the caller may then unlink or free it.
pub(crate) struct Iter<'a, const NUMBERED: bool> {
    list: &'a ChunkList<NUMBERED>,
    next: *mut Link,
    left: usize,
}

impl<const NUMBERED: bool> Iterator for Iter<'_, NUMBERED> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.left == 0 || self.next.is_null() {
            return None;
        }
        // SAFETY: a chunk linked from the list (or from a chain just unlinked from it, in
        // `give_back`): live.
        let (chunk, next) = unsafe { self.list.read(self.next) };
        self.next = next;
        self.left -= 1;
        Some(chunk)
    }
}

#[cfg(test)]
impl<const NUMBERED: bool> ChunkList<NUMBERED> {
    /// Sets the link of the chunk at `start` (breaking an equation, for tests); returns the
    /// old link.
    ///
    /// # Safety
    /// `start` is a live chunk of this list; the link is restored before the list is used
    /// other than by `check`.
    pub(crate) unsafe fn replace_link(&self, start: *mut u8, next: *mut u8) -> *mut u8 {
        // SAFETY: per the contract.
        unsafe { ptr::replace(&raw mut (*start.cast::<Link>()).next, next.cast()).cast() }
    }

    /// Sets the byte count (breaking an equation, for tests); returns the old one.
    pub(crate) fn replace_bytes(&self, bytes: usize) -> usize {
        self.bytes.replace(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::Allocator;

    const OWNER: &str = "test";

    fn broken<const N: bool>(list: &ChunkList<N>) -> &'static str {
        list.check(OWNER).expect_err("a broken equation").broken
    }

    fn starts<const N: bool>(list: &ChunkList<N>) -> Vec<*mut u8> {
        list.iter().map(|c| c.start).collect()
    }

    #[test]
    fn take_links_newest_first_and_counts() {
        let parent = Allocator::system();
        // SAFETY: `parent` outlives the list.
        let list = unsafe { PlainChunks::new(parent.as_ptr(), 16) };
        assert!(list.is_empty() && list.newest().is_none() && list.newest_start().is_null());
        assert_eq!(list.take(PlainChunks::HEADER - 1), None, "no room for the header");
        let chunks: Vec<Chunk> = [100, 200, 300].map(|size| list.take(size).unwrap()).into();
        assert_eq!((list.count(), list.bytes()), (3, 600));
        assert_eq!(starts(&list), [chunks[2].start, chunks[1].start, chunks[0].start]);
        assert_eq!(list.newest(), Some(chunks[2]));
        assert_eq!(list.newest_start(), chunks[2].start);
        for c in &chunks {
            assert_eq!(c.start.addr() % 16, 0);
            assert_eq!(c.data, c.start.wrapping_add(16));
            // SAFETY: a live chunk of a plain list.
            assert_eq!(unsafe { list.chunk_at(c.start) }, *c);
            assert!(c.holds(c.data.addr(), c.size() - 16) && !c.holds(c.start.addr(), 1));
        }
        assert_eq!(parent.stats().allocation_count, 3);
        assert_eq!(parent.stats().bytes_allocated, 600);
        assert_eq!(list.check(OWNER), Ok(()));
        drop(list);
        assert_eq!(parent.stats().allocation_count, 0, "dropping the list gives every chunk back");
    }

    /// Unlinks and gives back at once.
    ///
    /// # Safety
    /// As for [`ChunkList::unlink_after`].
    unsafe fn release_after(list: &PlainChunks, newer: *mut u8, start: *mut u8) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        let (detached, next) = unsafe { list.unlink_after(newer, start) }?;
        detached.give_back();
        Some(next)
    }

    #[test]
    fn unlink_after_unlinks_one_chunk_given_its_neighbor() {
        let parent = Allocator::system();
        // SAFETY: `parent` outlives the list.
        let list = unsafe { PlainChunks::new(parent.as_ptr(), 64) };
        let [a, b, c] = [64, 128, 192].map(|size| list.take(size).unwrap());
        assert!(b.start.addr().is_multiple_of(64));
        // SAFETY: live chunks of the list, here and below (until released).
        unsafe {
            assert_eq!(release_after(&list, ptr::null_mut(), b.start), None, "b is not the newest");
            assert_eq!(release_after(&list, a.start, b.start), None, "a does not link to b");
            assert_eq!(starts(&list), [c.start, b.start, a.start], "nothing changed");
            assert_eq!(release_after(&list, c.start, b.start), Some(a.start), "the middle one");
            assert_eq!(starts(&list), [c.start, a.start]);
            assert_eq!((list.count(), list.bytes()), (2, 64 + 192));
            assert_eq!(list.check(OWNER), Ok(()));
            assert_eq!(release_after(&list, ptr::null_mut(), c.start), Some(a.start), "the newest one");
            assert_eq!(starts(&list), [a.start]);
            assert_eq!(release_after(&list, ptr::null_mut(), a.start), Some(ptr::null_mut()), "the last one");
        }
        assert!(list.is_empty() && list.newest_start().is_null());
        assert_eq!((list.count(), list.bytes()), (0, 0));
        assert_eq!(parent.stats().allocation_count, 0);
        assert_eq!(list.check(OWNER), Ok(()));
    }

    #[test]
    fn release_newer_and_retain_keep_the_order() {
        let parent = Allocator::system();
        // SAFETY: `parent` outlives the list.
        let list = unsafe { NumberedChunks::new(parent.as_ptr(), 16) };
        let chunks: Vec<Chunk> =
            (0..5).map(|seq| list.take(64 + seq as usize * 16, 16, || seq).unwrap()).collect();
        // A chunk at more than the list's alignment records it, and goes back with it.
        let aligned = list.take(4096, 4096, || 5).unwrap();
        assert!(aligned.start.addr().is_multiple_of(4096) && aligned.data == aligned.start.wrapping_add(32));
        assert_eq!(list.newest().map(|c| c.seq), Some(5));
        assert_eq!(list.check(OWNER), Ok(()));
        list.release_newer(3);
        assert_eq!(list.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 1, 0]);
        assert_eq!((list.count(), list.bytes()), (3, 64 + 80 + 96));
        assert_eq!(list.check(OWNER), Ok(()));
        list.retain(|c| c.seq != 1);
        assert_eq!(starts(&list), [chunks[2].start, chunks[0].start]);
        assert_eq!(list.check(OWNER), Ok(()));
        list.release_newer(0);
        assert!(list.is_empty());
        assert_eq!(parent.stats().allocation_count, 0);
        assert_eq!(list.check(OWNER), Ok(()));
    }

    /// Each corruption breaks one equation and `check` names it, without looping; undoing it
    /// makes the list whole again (so it can be dropped).
    #[test]
    fn check_reports_a_cycle_and_bad_headers() {
        let parent = Allocator::system();
        // SAFETY: `parent` outlives the lists.
        let (plain, numbered) =
            unsafe { (PlainChunks::new(parent.as_ptr(), 16), NumberedChunks::new(parent.as_ptr(), 16)) };
        for seq in 0..3 {
            plain.take(100).unwrap();
            numbered.take(100, 16, || seq).unwrap();
        }

        // A cycle: the oldest chunk links back to the newest.
        let [newest, _, oldest] = starts(&plain)[..] else { unreachable!() };
        // SAFETY: live chunks of the list; restored below.
        unsafe { plain.replace_link(oldest, newest) };
        assert_eq!(broken(&plain), "count == |K| (no cycle)");
        // SAFETY: as above.
        unsafe { plain.replace_link(oldest, ptr::null_mut()) };
        // The middle chunk links back to the newest: the numbers catch it before the count.
        let [newest, middle, oldest] = starts(&numbered)[..] else { unreachable!() };
        // SAFETY: as above.
        unsafe { numbered.replace_link(middle, newest) };
        assert_eq!(broken(&numbered), "c.next.seq < c.seq along K");
        // SAFETY: as above.
        unsafe { numbered.replace_link(middle, oldest) };

        // A link to a misaligned address (never read).
        // SAFETY: as above.
        let next = unsafe { plain.replace_link(plain.newest_start(), plain.newest_start().wrapping_add(8)) };
        assert_eq!(broken(&plain), ALIGNED);
        // SAFETY: as above.
        unsafe { plain.replace_link(plain.newest_start(), next) };

        // A header whose size, alignment or number is wrong.
        let size = plain.newest_start().cast::<usize>().wrapping_add(1);
        // SAFETY: the newest chunk's size word; restored below.
        unsafe { size.write(8) };
        assert_eq!(broken(&plain), "c.size >= HEADER, c + c.size does not wrap");
        // SAFETY: as above.
        unsafe { size.write(100) };
        let align = numbered.newest_start().cast::<usize>().wrapping_add(2);
        // SAFETY: the newest chunk's alignment word; restored below.
        unsafe { align.write(24) };
        assert_eq!(broken(&numbered), ALIGNED);
        // SAFETY: as above.
        unsafe { align.write(16) };
        let seq = numbered.newest_start().cast::<u64>().wrapping_add(3);
        // SAFETY: the newest chunk's number; restored below.
        unsafe { seq.write(0) };
        assert_eq!(broken(&numbered), "c.next.seq < c.seq along K");
        // SAFETY: as above.
        unsafe { seq.write(2) };

        // The counters.
        let bytes = plain.replace_bytes(301);
        assert_eq!(broken(&plain), "bytes == Σ c.size over c ∈ K");
        plain.replace_bytes(bytes);
        plain.count.set(4);
        assert_eq!(broken(&plain), "count == |K| (no cycle)");
        plain.count.set(3);
        assert_eq!((plain.check(OWNER), numbered.check(OWNER)), (Ok(()), Ok(())), "restored");
        let e = InvariantError::new(OWNER, "count == |K| (no cycle)");
        plain.count.set(2);
        assert_eq!(plain.check(OWNER), Err(e), "the walk stops after count chunks");
        assert_eq!(plain.iter().count(), 2, "and so does an iteration");
        plain.count.set(3);
    }
}
