//! The scoped allocator: remembers every live allocation it made from its parent, so single
//! frees and reallocs work as usual, and frees everything still live when the scope ends.
//!
//! Each block carries a 32-byte header in front of it (a doubly linked list: prev, next, size,
//! and a tag that checks the pointer belongs to this scope and records the block's layout).
//! `GOO_ALLOC_PERSIST` blocks are plain blocks of the parent and survive the scope.
//! A scope belongs to the thread that made it; it is not thread-safe.

use core::cell::{Cell, UnsafeCell};
use core::ptr::{self, NonNull};

use crate::addr_set::{addr_set, AddrSet};
use crate::handle::{AllocError, AllocatorRef};
use crate::managed::{alloc_shim, drop_managed, free_shim, Backend, Managed};
use crate::policy::{default, front};
use crate::raw::{AllocFn, AllocOptions, AllocStrategy, FreeFn, GooAllocator, MAX_NATURAL_ALIGN};

#[repr(C)]
struct Hdr {
    prev: *mut Hdr,
    next: *mut Hdr,
    size: usize,
    /// Check bits (header address, scope, magic) above bit 16; log2 of the slot (bytes from the
    /// parent block's start to the user block) in bits 0..8; log2 of the parent alignment in
    /// bits 8..16.
    tag: usize,
}

/// Bytes of bookkeeping in front of every block (for alignments up to 32).
pub const HEADER_BYTES: usize = core::mem::size_of::<Hdr>();
const _: () = assert!(HEADER_BYTES == 32);
const MAGIC: usize = 0x5c09_e0a1_1c47_0000;
const META_BITS: usize = 0xffff;
/// The layout bits of a block with alignment up to 16 (see [`Hdr::tag`]).
const PLAIN_META: usize = meta(HEADER_BYTES, MAX_NATURAL_ALIGN);

/// The layout bits of a header's tag: log2 of the slot and of the parent alignment.
const fn meta(slot: usize, parent_align: usize) -> usize {
    slot.trailing_zeros() as usize | (parent_align.trailing_zeros() as usize) << 8
}
static NEXT_KEY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// Its address identifies the thread (no destructor: usable during thread exit).
    static THREAD_TOKEN: u8 = const { 0 };
}

fn thread_token() -> usize {
    THREAD_TOKEN.with(|t| t as *const u8 as usize)
}

/// What the end of a scope freed because nobody else did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScopeSummary {
    /// Blocks still live at the end, freed by the scope.
    pub implicit_frees: usize,
    /// Their bytes (as requested).
    pub implicit_bytes: usize,
}

/// Why a scope operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// The allocator is not a scope (or has ended).
    NotAScope,
    /// The scope belongs to another thread.
    WrongThread,
    /// The scope was begun on this thread and an inner scope is still active.
    OutOfOrder,
}

impl core::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ScopeError::NotAScope => "not a scoped allocator",
            ScopeError::WrongThread => "the scope belongs to another thread",
            ScopeError::OutOfOrder => "an inner scope is still active: end scopes innermost first",
        })
    }
}

impl std::error::Error for ScopeError {}

/// A live block of a scope, found by [`Scoped::plan_free`] and not yet freed.
pub(crate) struct LiveBlock(*mut Hdr);

impl LiveBlock {
    /// The scope's parent and the parent block behind this block: (parent, start, size,
    /// alignment), what freeing it must give back.
    #[inline(always)]
    pub(crate) fn parent_block(&self, scope: &Scoped) -> (*mut GooAllocator, *mut u8, usize, usize) {
        // SAFETY: `plan_free` found the header intact.
        let (base, total, parent_align) = unsafe { Scoped::parent_block_of(self.0) };
        (scope.parent, base, total, parent_align)
    }
}

struct State {
    head: *mut Hdr,
    /// PERSIST blocks handed out (they belong to the parent; frees through the scope forward).
    /// A set, so many of them cost O(1) per operation; every hot-path lookup first checks it is
    /// non-empty (no hashing while no PERSIST block is live).
    persist: AddrSet,
    /// For a scope begun with [`begin`]: the thread allocator to restore at its end.
    installed: bool,
    previous: *mut GooAllocator,
}

/// The scope mechanism.
pub struct Scoped {
    parent: *mut GooAllocator,
    /// Mixed into every header's check bits: different for every scope ever made (a counter
    /// spread by an odd multiplier), so a block of one scope is refused by another.
    key: usize,
    owner: usize,
    report: Cell<bool>,
    state: UnsafeCell<State>,
}

impl Scoped {
    /// A scope over `parent` (null = the current allocator, fixed now).
    ///
    /// # Safety
    /// `parent` must outlive the scope.
    pub unsafe fn new(parent: *mut GooAllocator) -> Self {
        Scoped {
            parent: if parent.is_null() { default::current() } else { parent },
            key: (NEXT_KEY.fetch_add(1, core::sync::atomic::Ordering::Relaxed) as usize)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ MAGIC,
            owner: thread_token(),
            report: Cell::new(false),
            state: UnsafeCell::new(State {
                head: ptr::null_mut(),
                persist: addr_set(),
                installed: false,
                previous: ptr::null_mut(),
            }),
        }
    }

    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn st(&self) -> &mut State {
        // SAFETY: scopes are !Sync; each method takes this borrow once and calls nothing that
        // re-enters this scope while it is alive (the parent is another allocator).
        unsafe { &mut *self.state.get() }
    }

    /// The check bits a header at `h` carries in this scope.
    #[inline(always)]
    fn check_bits(&self, h: *mut Hdr) -> usize {
        ((h as usize) ^ self.key) & !META_BITS
    }

    fn tag(&self, h: *mut Hdr, slot: usize, parent_align: usize) -> usize {
        self.check_bits(h) | meta(slot, parent_align)
    }

    /// The header of `p` if it is a live block of this scope.
    #[inline(always)]
    fn header_of(&self, p: *mut u8) -> Option<*mut Hdr> {
        // Every block of a scope is at least 16-aligned and has a header in front.
        if (p as usize) < HEADER_BYTES || !(p as usize).is_multiple_of(MAX_NATURAL_ALIGN) {
            return None;
        }
        // The caller vouches `p` is a block from this allocator; reading the 32 bytes in front
        // of it is the check it can afford.
        let h = p.wrapping_sub(HEADER_BYTES).cast::<Hdr>();
        // SAFETY: per the above, `h` is readable (a header this scope wrote, if `p` is ours).
        let tag = unsafe { (*h).tag };
        (tag & !META_BITS == self.check_bits(h)).then_some(h)
    }

    #[cold]
    fn misuse(&self, what: &str, p: *mut u8) {
        eprintln!(
            "goo-memory: scoped allocator: {what} of {p:p}, which is not a live block of this scope (ignored)"
        );
    }

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        let st = self.st();
        if options.contains(AllocOptions::PERSIST) {
            // SAFETY: the parent outlives the scope.
            let p = unsafe { front::alloc(self.parent, size, align, options.without(AllocOptions::PERSIST)) };
            if !p.is_null() {
                st.persist.insert(p as usize);
            }
            return p;
        }
        let slot = align.max(HEADER_BYTES);
        let parent_align = align.max(MAX_NATURAL_ALIGN);
        let Some(total) = size.checked_add(slot) else { return ptr::null_mut() };
        // SAFETY: the parent outlives the scope.
        let base = unsafe { front::alloc(self.parent, total, parent_align, options) };
        if base.is_null() {
            return base;
        }
        // SAFETY: `base` holds `slot + size` bytes at `parent_align`.
        unsafe {
            let p = self.link(base, slot, parent_align, size);
            self.claim_address(p);
            p
        }
    }

    /// [`Scoped::alloc`] for the front door's call-free path, first half: the parent block a
    /// plain request (no options) needs, as (parent, size, alignment, slot), or `None` when the
    /// full path must serve it. The caller gets that block and passes it to [`Scoped::link`].
    #[inline(always)]
    pub(crate) fn plan_alloc(
        &self,
        size: usize,
        align: usize,
    ) -> Option<(*mut GooAllocator, usize, usize, usize)> {
        // Live PERSIST blocks: the full path (it keeps their set in order).
        if !self.st().persist.is_empty() || size >= isize::MAX as usize / 2 {
            return None;
        }
        // Alignment 0 (natural, at most 16) is covered by the 32-byte slot in a 16-aligned block.
        let slot = align.max(HEADER_BYTES);
        let parent_align = align.max(MAX_NATURAL_ALIGN);
        Some((self.parent, size + slot, parent_align, slot))
    }

    /// Writes the header of a fresh parent block and links it; returns the user block.
    ///
    /// # Safety
    /// `base` is a live parent block of `slot + size` bytes at `parent_align` from this scope's
    /// parent, `slot` at least [`HEADER_BYTES`] and a power of two (as [`Scoped::plan_alloc`]
    /// gives), and nothing else holds it.
    #[inline(always)]
    pub(crate) unsafe fn link(
        &self,
        base: *mut u8,
        slot: usize,
        parent_align: usize,
        size: usize,
    ) -> *mut u8 {
        let st = self.st();
        // SAFETY: per the contract the header fits right before the user block.
        unsafe {
            let p = base.add(slot);
            let h = p.sub(HEADER_BYTES).cast::<Hdr>();
            h.write(Hdr { prev: ptr::null_mut(), next: st.head, size, tag: self.tag(h, slot, parent_align) });
            if !st.head.is_null() {
                (*st.head).prev = h;
            }
            st.head = h;
            p
        }
    }

    /// For the front door's call-free free: `p` as a live block of this scope, if it is one and
    /// no PERSIST block is live (else the full path decides). Changes nothing.
    #[inline(always)]
    pub(crate) fn plan_free(&self, p: *mut u8) -> Option<LiveBlock> {
        if !self.st().persist.is_empty() {
            return None;
        }
        self.header_of(p).map(LiveBlock)
    }

    /// Takes a planned block out of the live list (its parent block is then the caller's to
    /// free, see [`LiveBlock::parent_block`]).
    #[inline(always)]
    pub(crate) fn forget(&self, block: LiveBlock) {
        // SAFETY: `plan_free` found the header live and linked.
        unsafe { Self::unlink(self.st(), block.0) }
    }

    /// `p` is now a block of this scope: drop it from the PERSIST set, where a PERSIST block
    /// freed through the parent (which the scope cannot see) may have left the same address.
    /// Without this, freeing `p` would be forwarded to the parent as a PERSIST block.
    fn claim_address(&self, p: *mut u8) {
        let st = self.st();
        if !st.persist.is_empty() {
            st.persist.remove(&(p as usize));
        }
    }

    /// Unlinks `h` from the live list.
    ///
    /// # Safety
    /// `h` is a linked header of this scope.
    unsafe fn unlink(st: &mut State, h: *mut Hdr) {
        // SAFETY: linked headers and their neighbours are live.
        unsafe {
            let (prev, next) = ((*h).prev, (*h).next);
            if prev.is_null() {
                st.head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }

    /// The parent block behind header `h`: (its start, its size, its alignment).
    ///
    /// # Safety
    /// `h` is the intact header of a block of this scope.
    #[inline(always)]
    unsafe fn parent_block_of(h: *mut Hdr) -> (*mut u8, usize, usize) {
        // SAFETY: per the contract, the header is intact and describes its parent block.
        unsafe {
            let Hdr { size, tag, .. } = h.read();
            if tag & META_BITS == PLAIN_META {
                // The common block (alignment up to 16): a header-sized slot in a 16-aligned
                // parent block, which starts at the header.
                return (h.cast::<u8>(), size + HEADER_BYTES, MAX_NATURAL_ALIGN);
            }
            let slot = 1usize << (tag & 0xff);
            let parent_align = 1usize << ((tag >> 8) & 0xff);
            (h.cast::<u8>().add(HEADER_BYTES).sub(slot), size + slot, parent_align)
        }
    }

    /// Gives a tracked block back to the parent (already unlinked).
    ///
    /// # Safety
    /// `h` is the header of a block of this scope, unlinked.
    unsafe fn release(&self, h: *mut Hdr) {
        // SAFETY: per the contract, the header is intact and describes its parent block.
        unsafe {
            let (base, total, parent_align) = Self::parent_block_of(h);
            front::free(self.parent, base, total, parent_align);
        }
    }

    fn free(&self, p: *mut u8, size: usize, align: usize) {
        let st = self.st();
        if !st.persist.is_empty() && st.persist.remove(&(p as usize)) {
            // SAFETY: a PERSIST block is a block of the parent.
            unsafe { front::free(self.parent, p, size, align) };
            return;
        }
        let Some(h) = self.header_of(p) else { return self.misuse("free", p) };
        // SAFETY: a live header of this scope.
        unsafe {
            Self::unlink(st, h);
            self.release(h);
        }
    }

    fn realloc(&self, p: *mut u8, new_size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        let st = self.st();
        if !st.persist.is_empty() && st.persist.contains(&(p as usize)) {
            return ptr::null_mut(); // handled by the caller through the parent
        }
        let Some(h) = self.header_of(p) else {
            self.misuse("realloc", p);
            return ptr::null_mut();
        };
        // SAFETY: a live header of this scope; the parent keeps the block on failure, and on
        // success the neighbours are re-pointed to the moved header.
        unsafe {
            let Hdr { prev, next, size: old, tag } = h.read();
            let slot = 1usize << (tag & 0xff);
            let parent_align = 1usize << ((tag >> 8) & 0xff);
            if align > slot.max(parent_align) {
                return ptr::null_mut();
            }
            let Some(total) = new_size.checked_add(slot) else { return ptr::null_mut() };
            let base = h.cast::<u8>().add(HEADER_BYTES).sub(slot);
            let new_base = front::realloc(self.parent, base, old + slot, total, parent_align, options);
            if new_base.is_null() {
                return new_base;
            }
            let np = new_base.add(slot);
            let nh = np.sub(HEADER_BYTES).cast::<Hdr>();
            nh.write(Hdr { prev, next, size: new_size, tag: self.tag(nh, slot, parent_align) });
            if prev.is_null() {
                st.head = nh;
            } else {
                (*prev).next = nh;
            }
            if !next.is_null() {
                (*next).prev = nh;
            }
            self.claim_address(np);
            np
        }
    }

    /// Frees every block still live (PERSIST blocks are left to the parent).
    pub fn end(&self) -> ScopeSummary {
        let st = self.st();
        let mut summary = ScopeSummary::default();
        let mut h = st.head;
        st.head = ptr::null_mut();
        st.persist.clear();
        while !h.is_null() {
            // SAFETY: walking the live list; each header is read before its block is freed.
            unsafe {
                let next = (*h).next;
                summary.implicit_frees += 1;
                summary.implicit_bytes += (*h).size;
                self.release(h);
                h = next;
            }
        }
        if self.report.get() && summary.implicit_frees > 0 {
            eprintln!(
                "goo-memory: scope {:p} ended with {} live block(s), {} byte(s): freed implicitly",
                self as *const Self, summary.implicit_frees, summary.implicit_bytes
            );
        }
        summary
    }

    /// Blocks and bytes live in the scope now (a walk of the list: the hot path keeps no
    /// counters of its own).
    pub fn live(&self) -> (usize, usize) {
        let (mut count, mut bytes) = (0, 0);
        let mut h = self.st().head;
        while !h.is_null() {
            // SAFETY: headers in the live list are live.
            unsafe {
                count += 1;
                bytes += (*h).size;
                h = (*h).next;
            }
        }
        (count, bytes)
    }

    /// Print what the end of the scope frees implicitly (for leak hunting).
    pub fn set_report(&self, on: bool) {
        self.report.set(on);
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        self.end();
    }
}

// SAFETY: every block is a fresh parent block (valid, aligned to `align` since the slot is a
// multiple of it and the parent block is aligned to max(align, 16)), disjoint, and returned to
// the parent exactly once: by a single free, or by the end of the scope.
unsafe impl Backend for Scoped {
    const KIND: &'static str = "scoped";
    const THREAD_SAFE: bool = false;
    const ZEROES: bool = false;

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        Scoped::alloc(self, size, align, options.without(AllocOptions::ZERO))
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        Scoped::free(self, ptr, size, align);
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let persist = &self.st().persist;
        if !persist.is_empty() && persist.contains(&(ptr as usize)) {
            // SAFETY: a PERSIST block is a parent block of `old_size` bytes.
            let q = unsafe { front::realloc(self.parent, ptr, old_size, new_size, align, options) };
            if !q.is_null() {
                let st = self.st();
                st.persist.remove(&(ptr as usize));
                st.persist.insert(q as usize);
            }
            return q;
        }
        Scoped::realloc(self, ptr, new_size, align, options.without(AllocOptions::ZERO))
    }

    fn bytes_reserved(&self, bytes_allocated: usize) -> usize {
        let (count, _) = self.live();
        bytes_allocated + count * HEADER_BYTES
    }

    unsafe fn before_destroy(allocator: *mut GooAllocator) {
        // Destroying a scope begun on this thread ends its inner scopes first and restores the
        // thread allocator. On another thread, that thread's allocator cannot be touched: the
        // blocks are still freed (once), and the owner thread must not use the scope again.
        // SAFETY: a live scope being destroyed.
        let s = unsafe { Managed::<Scoped>::backend(allocator) };
        if s.owner != thread_token() {
            if s.st().installed {
                eprintln!(
                    "goo-memory: a scope begun on one thread was destroyed on another; its thread allocator was not restored"
                );
            }
            return;
        }
        if s.st().installed {
            end_inner_scopes(allocator);
            let prev = s.st().previous;
            if default::thread_allocator() == allocator {
                // SAFETY: the previous thread allocator was valid when the scope began and
                // outlives it (nesting).
                unsafe { default::set_thread_allocator(prev) };
            }
        }
    }
}

/// Ends (destroys) every scope begun on this thread after `scope` that is still active.
fn end_inner_scopes(scope: *mut GooAllocator) {
    // Only if `scope` is on this thread's chain of begun scopes.
    let mut chain = Vec::new();
    let mut cur = default::thread_allocator();
    while cur != scope {
        // SAFETY: the chain consists of live allocators (each scope's previous one).
        match unsafe { Managed::<Scoped>::try_backend(cur) } {
            Some(s) if s.st().installed => {
                chain.push(cur);
                cur = s.st().previous;
            }
            _ => return,
        }
    }
    for inner in chain {
        // SAFETY: an active inner scope of this thread.
        unsafe { crate::managed::managed_destroy(inner) };
    }
}

/// Creates a scope over `parent` (null = the current allocator), stats tracked.
///
/// # Safety
/// `parent` must outlive the scope.
pub unsafe fn create(parent: *mut GooAllocator) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract.
    let scope = unsafe { Scoped::new(parent) };
    let managed = Managed::unplaced(scope, drop_managed::<Scoped>, ptr::null_mut())
        .with_alloc_free(SCOPED_ALLOC, SCOPED_FREE);
    Managed::place(managed, AllocStrategy::Null, true)
}

/// The scope's vtable functions, taken once: the front door recognises them and calls the
/// scope directly (a speculative devirtualisation; a miss only costs the ordinary path).
pub(crate) static SCOPED_ALLOC: AllocFn = alloc_shim::<Scoped>;
pub(crate) static SCOPED_FREE: FreeFn = free_shim::<Scoped>;

/// Begins a scope over the current allocator and makes it this thread's allocator.
pub fn begin() -> NonNull<GooAllocator> {
    let previous = default::thread_allocator();
    // SAFETY: the current allocator outlives the scope (it is restored when the scope ends).
    let scope = unsafe { create(default::current()) };
    // SAFETY: just made.
    let s = unsafe { Managed::<Scoped>::backend(scope.as_ptr()) };
    let st = s.st();
    st.installed = true;
    st.previous = previous;
    // SAFETY: the scope lives until `end`, which restores `previous`.
    unsafe { default::set_thread_allocator(scope.as_ptr()) };
    scope
}

/// Ends a scope: frees what is still live, restores the thread allocator if it was begun with
/// [`begin`], and destroys it. Refused (nothing freed) on another thread or out of order.
///
/// # Safety
/// `scope` must be null or a valid allocator (a live library allocator if it is one).
pub unsafe fn end(scope: *mut GooAllocator) -> Result<ScopeSummary, ScopeError> {
    // SAFETY: forwarded contract.
    let s = unsafe { Managed::<Scoped>::try_backend(scope) }.ok_or(ScopeError::NotAScope)?;
    if s.owner != thread_token() {
        return Err(ScopeError::WrongThread);
    }
    if s.st().installed && default::thread_allocator() != scope {
        return Err(ScopeError::OutOfOrder);
    }
    let summary = s.end();
    // SAFETY: a live scope of this thread; `before_destroy` restores the thread allocator.
    unsafe { crate::managed::managed_destroy(scope) };
    Ok(summary)
}

/// The scope behind a `GooAllocator*`, if it is one.
///
/// # Safety
/// As for [`end`].
pub unsafe fn from_raw<'a>(scope: *mut GooAllocator) -> Option<&'a Scoped> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Scoped>::try_backend(scope) }
}

/// A scope for Rust: allocations borrow it, so none can be used after it ends.
///
/// ```
/// use goo_memory_core::scoped::Scope;
/// let summary = Scope::run(|scope| {
///     let a = scope.alloc([1u8; 64]);
///     let b = scope.alloc(7u32);
///     *b += a[0] as u32;
///     assert_eq!(*b, 8);
/// });
/// assert_eq!(summary.implicit_frees, 2);
/// ```
pub struct Scope {
    raw: NonNull<GooAllocator>,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl Scope {
    /// A scope over the current allocator (not installed as the thread allocator).
    pub fn new() -> Self {
        // SAFETY: the current allocator outlives a scope used within its lifetime.
        Scope { raw: unsafe { create(default::current()) }, _not_send: core::marker::PhantomData }
    }

    /// Runs `f` with a fresh scope that is also this thread's allocator (so `goo_memory_alloc`
    /// and the legacy API inside `f` allocate in it), then ends it.
    pub fn run(f: impl FnOnce(&Scope)) -> ScopeSummary {
        let scope = Scope { raw: begin(), _not_send: core::marker::PhantomData };
        f(&scope);
        scope.end()
    }

    /// Ends the scope, freeing what is still live.
    pub fn end(self) -> ScopeSummary {
        let raw = self.raw.as_ptr();
        core::mem::forget(self);
        // SAFETY: a live scope owned by `self`, on its thread (`Scope` is !Send).
        unsafe { end(raw) }.unwrap_or_else(|e| panic!("ending a scope: {e}"))
    }

    /// Moves `value` into the scope (its destructor does not run).
    #[allow(clippy::mut_from_ref)]
    pub fn alloc<T>(&self, value: T) -> &mut T {
        let layout = core::alloc::Layout::new::<T>();
        let p = self.handle().allocate(layout, AllocOptions::DEFAULT);
        let p = p.unwrap_or_else(|_| std::alloc::handle_alloc_error(layout)).cast::<T>().as_ptr();
        // SAFETY: a fresh block for one `T`, valid while the scope is (borrowed from `self`).
        unsafe {
            p.write(value);
            &mut *p
        }
    }

    /// Allocates a block for `layout`.
    pub fn try_alloc_layout(&self, layout: core::alloc::Layout) -> Result<NonNull<u8>, AllocError> {
        self.handle().allocate(layout, AllocOptions::DEFAULT)
    }

    /// Blocks and bytes live now.
    pub fn live(&self) -> (usize, usize) {
        // SAFETY: live scope.
        unsafe { from_raw(self.raw.as_ptr()) }.expect("a Scope is a scope").live()
    }

    /// A front-door handle (also an `allocator-api2` allocator).
    pub fn handle(&self) -> AllocatorRef<'_> {
        // SAFETY: live while `self` is.
        unsafe { AllocatorRef::from_raw(self.raw) }
    }

    /// The scope as a `GooAllocator*` (still owned by `self`).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.raw.as_ptr()
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // SAFETY: a live scope owned by `self`.
        let _ = unsafe { end(self.raw.as_ptr()) };
    }
}
