//! What both fuzz targets share: the request sizes and alignments they draw, the rules the
//! headers give for them (written here from the headers, not taken from the library under test),
//! and the shadow of every live block: its address range, to check that blocks are disjoint, and
//! the byte pattern written into it, to check that nobody else writes there and that a resize
//! keeps it.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;

pub mod model;

/// Operations a target runs for one input (nested ones included), allocators it keeps alive at
/// once besides the built-in and the temporary arena, blocks it keeps live at most.
pub const MAX_OPS: usize = 200;
pub const MAX_HEAPS: usize = 14;
pub const MAX_BLOCKS: usize = 256;

/// Live bytes the models allow at once (the sum over every allocator of what they hold); a
/// request that would go past it is skipped, except the huge ones, which must fail anyway.
pub const MEMORY_CAP: usize = 64 << 20;

/// Requests at least this large fail on this machine whatever the allocator: no C library heap
/// gives 2 TiB. (Between the libFuzzer malloc limit and this size nothing is drawn, so no
/// request reaches `malloc` only to be reported as an out-of-memory by the fuzzer.)
pub const HUGE: usize = 1 << 41;

/// The largest alignment any request may ask for (`MAX_ALIGN` in the core's `raw.rs`); larger
/// ones are refused like non-powers of two.
pub const MAX_ALIGN: usize = 1 << 30;

/// Sizes at and around the library's boundaries: the natural-alignment steps, the system
/// allocator's cache classes (16..256), the scoped allocator's classes and its small limit
/// (8192), chunk sizes (4 KiB, 64 KiB).
const CLASS_SIZES: [usize; 44] = [
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    15,
    16,
    17,
    24,
    31,
    32,
    33,
    48,
    63,
    64,
    65,
    127,
    128,
    129,
    255,
    256,
    257,
    511,
    512,
    513,
    1023,
    1024,
    1025,
    4095,
    4096,
    4097,
    8191,
    8192,
    8193,
    16383,
    16384,
    16385,
    65535,
    65536,
    65537,
    262_144,
    1 << 20,
];

/// Sizes no allocator can serve: past `isize::MAX`, and servable-looking ones no heap has room
/// for. Each must fail cleanly (null / `Err`, counted as a failure).
const HUGE_SIZES: [usize; 10] = [
    usize::MAX,
    usize::MAX - 15,
    isize::MAX as usize + 1,
    isize::MAX as usize,
    isize::MAX as usize - 15,
    isize::MAX as usize - 4096,
    1 << 62,
    1 << 48,
    1 << 44,
    HUGE,
];

/// A request size.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Size {
    Zero,
    /// 1..=16
    Tiny(u8),
    /// 1..=256
    Small(u8),
    /// One of the class boundaries.
    Class(u8),
    /// 1..=65536
    Medium(u16),
    /// 64 KiB..=4 MiB
    Large(u8),
    /// One that must fail.
    Huge(u8),
}

impl Size {
    pub fn get(self) -> usize {
        match self {
            Size::Zero => 0,
            Size::Tiny(n) => 1 + n as usize % 16,
            Size::Small(n) => 1 + n as usize,
            Size::Class(i) => CLASS_SIZES[i as usize % CLASS_SIZES.len()],
            Size::Medium(n) => 1 + n as usize,
            Size::Large(n) => (1 + n as usize % 64) << 16,
            Size::Huge(i) => HUGE_SIZES[i as usize % HUGE_SIZES.len()],
        }
    }
}

/// Alignments that are no power of two, or larger than any request may ask for.
const BAD_ALIGNS: [usize; 9] = [3, 6, 12, 24, 1000, 1 << 31, 1 << 40, 1 << 63, usize::MAX];

/// A requested alignment (0 = natural, as the C ABI takes it).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Align {
    Natural,
    /// 1..=16
    Small(u8),
    /// 32..=4096
    Page(u8),
    /// 8 KiB..=2 MiB
    Big(u8),
    /// Refused.
    Bad(u8),
}

impl Align {
    pub fn get(self) -> usize {
        match self {
            Align::Natural => 0,
            Align::Small(n) => 1 << (n % 5),
            Align::Page(n) => 1 << (5 + n % 8),
            Align::Big(n) => 1 << (13 + n % 9),
            Align::Bad(i) => BAD_ALIGNS[i as usize % BAD_ALIGNS.len()],
        }
    }

    /// A power of two for a Rust `Layout` (natural and bad ones map to valid alignments).
    pub fn layout_align(self) -> usize {
        match self {
            Align::Natural | Align::Bad(_) => 1,
            other => other.get(),
        }
    }
}

/// The header's natural alignment: the smallest power of two at least `size`, at most 16.
pub fn natural(size: usize) -> usize {
    size.clamp(1, 16).next_power_of_two()
}

/// The alignment a request with `align` (0 = natural) asks for.
pub fn resolve(size: usize, align: usize) -> usize {
    if align == 0 {
        natural(size)
    } else {
        align
    }
}

/// Whether the headers say a request with this alignment is refused.
pub fn bad_align(align: usize) -> bool {
    align != 0 && (!align.is_power_of_two() || align > MAX_ALIGN)
}

/// What a request may do, by the headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A block (non-null, aligned).
    Succeed,
    /// A block, or a documented refusal (a limit, a parent that may refuse).
    MayFail,
    /// Null / `Err`, counted as a failure.
    Fail,
}

impl Expect {
    /// The weaker of two expectations (what a request must do when both apply).
    pub fn and(self, other: Expect) -> Expect {
        match (self, other) {
            (Expect::Fail, _) | (_, Expect::Fail) => Expect::Fail,
            (Expect::MayFail, _) | (_, Expect::MayFail) => Expect::MayFail,
            _ => Expect::Succeed,
        }
    }

    /// Panics unless `got_block` is allowed.
    pub fn check(self, got_block: bool, what: &dyn core::fmt::Debug) {
        match (self, got_block) {
            (Expect::Succeed, false) => panic!("refused, but the headers say it must succeed: {what:?}"),
            (Expect::Fail, true) => panic!("served, but the headers say it must fail: {what:?}"),
            _ => {}
        }
    }
}

/// Panics unless `p` is non-null and aligned to `align`.
pub fn check_aligned(p: *const u8, align: usize, what: &dyn core::fmt::Debug) {
    assert!(!p.is_null(), "null block: {what:?}");
    assert!((p as usize).is_multiple_of(align), "block {p:p} not aligned to {align}: {what:?}");
}

/// The pattern byte at offset `i` of the block with id `id` (after its 8-byte id word).
#[inline(always)]
fn pattern(seed: u8, i: usize) -> u8 {
    seed ^ (i as u8) ^ ((i >> 8) as u8)
}

fn seed(id: u64) -> u8 {
    (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// Block `id`'s byte at offset `i`: the bytes of its id first (so a block that holds another
/// block's contents names it), then bytes that depend on the id and the offset. Any prefix of a
/// block's pattern is the pattern of that shorter block, which is what a resize must keep.
#[inline(always)]
fn byte_at(id: u64, s: u8, i: usize) -> u8 {
    if i < 8 {
        id.to_le_bytes()[i]
    } else {
        pattern(s, i)
    }
}

/// Writes block `id`'s pattern into `[p, p + len)`.
///
/// # Safety
/// `[p, p + len)` must be writable.
pub unsafe fn fill(p: *mut u8, len: usize, id: u64) {
    if len == 0 {
        return;
    }
    // SAFETY: per the contract.
    let bytes = unsafe { core::slice::from_raw_parts_mut(p, len) };
    let s = seed(id);
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(s, i);
    }
    let head = len.min(8);
    bytes[..head].copy_from_slice(&id.to_le_bytes()[..head]);
}

/// Panics unless `[p, p + len)` holds the first `len` bytes of block `id`'s pattern.
///
/// # Safety
/// `[p, p + len)` must be readable.
pub unsafe fn verify(p: *const u8, len: usize, id: u64, what: &dyn core::fmt::Debug) {
    // SAFETY: forwarded contract.
    unsafe { verify_range(p, 0, len, id, what) }
}

/// Panics unless bytes `from..to` of the block at `p` hold block `id`'s pattern.
///
/// # Safety
/// `[p + from, p + to)` must be readable.
unsafe fn verify_range(p: *const u8, from: usize, to: usize, id: u64, what: &dyn core::fmt::Debug) {
    if from >= to {
        return;
    }
    // SAFETY: per the contract.
    let bytes = unsafe { core::slice::from_raw_parts(p.add(from), to - from) };
    let s = seed(id);
    // The id bytes, then the pattern (a loop without the branch, for large blocks).
    let head = 8usize.saturating_sub(from).min(bytes.len());
    let bad = (0..head)
        .find(|&k| bytes[k] != byte_at(id, s, from + k))
        .or_else(|| (head..bytes.len()).find(|&k| bytes[k] != pattern(s, from + k)));
    if let Some(k) = bad {
        let i = from + k;
        let owner = (to >= 8 && from == 0).then(|| {
            // SAFETY: the first 8 bytes are in range.
            u64::from_le_bytes(unsafe { core::slice::from_raw_parts(p, 8) }.try_into().expect("8 bytes"))
        });
        panic!(
            "block {p:p} of id {id} was overwritten at offset {i} (its first word names block {owner:?}): {what:?}"
        );
    }
}

/// [`verify`] of the first and last 16 bytes only: cheap enough to run over every live block
/// after every operation.
///
/// # Safety
/// As for [`verify`].
pub unsafe fn verify_edges(p: *const u8, len: usize, id: u64, what: &dyn core::fmt::Debug) {
    // SAFETY: forwarded contract (ranges inside the block).
    unsafe {
        verify_range(p, 0, len.min(16), id, what);
        verify_range(p, len.saturating_sub(16).max(16), len, id, what);
    }
}

/// Panics unless `[p, p + len)` is all zero bytes.
///
/// # Safety
/// `[p, p + len)` must be readable.
pub unsafe fn verify_zero(p: *const u8, len: usize, what: &dyn core::fmt::Debug) {
    // SAFETY: per the contract.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    if let Some(i) = bytes.iter().position(|&b| b != 0) {
        panic!("ZERO block {p:p} has a non-zero byte at offset {i}: {what:?}");
    }
}

/// The address ranges of every live block of every allocator, by start address.
#[derive(Default)]
pub struct Shadow {
    ranges: BTreeMap<usize, (usize, u64)>,
}

impl Shadow {
    /// Records block `id` at `[p, p + len)`; panics if it overlaps a live block. Zero-size blocks
    /// (dangling pointers) occupy nothing and are not recorded.
    pub fn insert(&mut self, p: *const u8, len: usize, id: u64) {
        if len == 0 {
            return;
        }
        let (start, end) = (p as usize, p as usize + len);
        if let Some((&s, &(l, other))) = self.ranges.range(..end).next_back() {
            assert!(
                s + l <= start,
                "block {id} at {start:#x}..{end:#x} overlaps live block {other} at {s:#x}..{:#x}",
                s + l
            );
        }
        self.ranges.insert(start, (len, id));
    }

    /// Forgets block `id` at `p` (a no-op for a zero-size block).
    pub fn remove(&mut self, p: *const u8, len: usize, id: u64) {
        if len == 0 {
            return;
        }
        let removed = self.ranges.remove(&(p as usize));
        assert_eq!(removed, Some((len, id)), "the shadow lost block {id} at {p:p}");
    }

    /// Number of recorded (non-empty) blocks.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// A live block as a model knows it: where, how big, whose (an index into the model's
/// allocators), its pattern's id, when it was allocated or last resized (`seq`), and what else
/// the model keeps (`X`).
#[derive(Clone, Debug)]
pub struct Tracked<X> {
    pub p: *mut u8,
    pub size: usize,
    pub owner: usize,
    pub id: u64,
    pub seq: u64,
    pub extra: X,
}

/// Every live block of a model, with the shadow of their address ranges.
pub struct Book<X> {
    pub blocks: Vec<Tracked<X>>,
    shadow: Shadow,
    next_id: u64,
    /// Incremented by every allocation and resize: a mark taken at `seq` precedes exactly the
    /// blocks with a larger one.
    pub seq: u64,
}

impl<X> Default for Book<X> {
    fn default() -> Self {
        Book { blocks: Vec::new(), shadow: Shadow::default(), next_id: 1, seq: 0 }
    }
}

impl<X: Clone> Book<X> {
    /// Records a fresh block: checks it is aligned to `align`, zeroed if `zero`, disjoint from
    /// every live block; then fills it with its pattern.
    ///
    /// # Safety
    /// `p` must be a fresh block of `size` bytes (non-null: checked first).
    #[allow(clippy::too_many_arguments)] // the block, what it must be, and whose
    pub unsafe fn add(
        &mut self,
        p: *mut u8,
        size: usize,
        align: usize,
        zero: bool,
        owner: usize,
        extra: X,
        what: &dyn core::fmt::Debug,
    ) -> &Tracked<X> {
        check_aligned(p, align, what);
        if size > 0 && zero {
            // SAFETY: a fresh block of `size` bytes (the contract).
            unsafe { verify_zero(p, size, what) };
        }
        let id = self.next_id;
        self.next_id += 1;
        self.shadow.insert(p, size, id);
        // SAFETY: as above.
        unsafe { fill(p, size, id) };
        self.seq += 1;
        self.blocks.push(Tracked { p, size, owner, id, seq: self.seq, extra });
        self.blocks.last().expect("just pushed")
    }

    /// Verifies block `bi`'s contents (before it is freed or resized).
    pub fn verify(&self, bi: usize, what: &dyn core::fmt::Debug) {
        let b = &self.blocks[bi];
        // SAFETY: a live block.
        unsafe { verify(b.p, b.size, b.id, what) };
    }

    /// Forgets block `bi` (freed by the library).
    pub fn remove(&mut self, bi: usize) -> Tracked<X> {
        let b = self.blocks.swap_remove(bi);
        self.shadow.remove(b.p, b.size, b.id);
        b
    }

    /// Block `bi` was resized to `new` bytes at `q`: checks `q` is aligned to `align`, kept the
    /// old contents up to the smaller size and, with `zero`, zeroed what it grew by; then
    /// records it there (disjoint from every other block) with a fresh pattern. Returns the old
    /// size.
    ///
    /// # Safety
    /// `q` must be block `bi` resized to `new` bytes (non-null: checked first).
    pub unsafe fn resized(
        &mut self,
        bi: usize,
        q: *mut u8,
        new: usize,
        align: usize,
        zero: bool,
        what: &dyn core::fmt::Debug,
    ) -> usize {
        check_aligned(q, align, what);
        let b = self.blocks[bi].clone();
        // SAFETY: the resized block holds `new` bytes (the contract); the old ones, up to the
        // smaller size, moved with it.
        unsafe {
            verify(q, b.size.min(new), b.id, what);
            if zero && new > b.size {
                verify_zero(q.add(b.size), new - b.size, what);
            }
        }
        self.shadow.remove(b.p, b.size, b.id);
        let id = self.next_id;
        self.next_id += 1;
        self.shadow.insert(q, new, id);
        // SAFETY: a live block of `new` bytes.
        unsafe { fill(q, new, id) };
        self.seq += 1;
        let nb = &mut self.blocks[bi];
        (nb.p, nb.size, nb.id, nb.seq) = (q, new, id, self.seq);
        b.size
    }

    /// Verifies every block for which `doomed` holds (before the library frees them at once).
    pub fn verify_where(&self, doomed: impl Fn(&Tracked<X>) -> bool, what: &dyn core::fmt::Debug) {
        for b in self.blocks.iter().filter(|b| doomed(b)) {
            // SAFETY: a live block (the library has not freed it yet).
            unsafe { verify(b.p, b.size, b.id, what) };
        }
    }

    /// Forgets every block for which `dead` holds (the library freed them at once).
    pub fn remove_where(&mut self, dead: impl Fn(&Tracked<X>) -> bool) -> Vec<Tracked<X>> {
        let mut gone = Vec::new();
        let mut k = 0;
        while k < self.blocks.len() {
            if dead(&self.blocks[k]) {
                gone.push(self.remove(k));
            } else {
                k += 1;
            }
        }
        gone
    }

    /// The edges of every live block still hold their patterns, and the shadow knows them all.
    pub fn check(&self, what: &dyn core::fmt::Debug) {
        for b in &self.blocks {
            // SAFETY: a live block.
            unsafe { verify_edges(b.p, b.size, b.id, what) };
        }
        assert_eq!(self.shadow.len(), self.blocks.iter().filter(|b| b.size > 0).count());
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether a request of `size` bytes may be made without going past [`MAX_BLOCKS`] or the
    /// memory cap, given what the allocators hold now (`footprint`). Huge requests, which must
    /// fail, always may.
    pub fn room(&self, size: usize, footprint: impl FnOnce() -> usize) -> bool {
        self.len() < MAX_BLOCKS
            && (size >= HUGE || (size <= MEMORY_CAP && footprint() + 2 * size <= MEMORY_CAP))
    }
}

/// The marks of one arena as a model knows them, with what arena.h says a rewind does.
pub struct Marks<M> {
    marks: Vec<MarkRec<M>>,
    /// Resets so far: a mark from an earlier epoch is stale.
    epoch: u64,
}

struct MarkRec<M> {
    mark: M,
    /// The book's `seq` when it was taken: blocks with a larger one were allocated (or last
    /// resized) after it.
    seq: u64,
    epoch: u64,
    /// False once a rewind to another mark went past it.
    valid: bool,
    /// The live bytes and blocks the library's stats showed then.
    stats: (usize, usize),
}

/// A rewind as the model plans it.
pub struct Rewind<M> {
    pub mark: M,
    /// Whether the library must accept it (`Some(true)`), refuse it, or may do either.
    pub expect: Option<bool>,
    /// Blocks with a larger `seq` die if it is accepted.
    pub seq: u64,
    stats: (usize, usize),
    k: usize,
}

impl<M> Default for Marks<M> {
    fn default() -> Self {
        Marks { marks: Vec::new(), epoch: 0 }
    }
}

impl<M: Copy> Marks<M> {
    /// Keeps a mark just taken (the oldest goes beyond 16).
    pub fn taken(&mut self, mark: M, seq: u64, stats: (usize, usize)) {
        if self.marks.len() >= 16 {
            self.marks.remove(0);
        }
        let epoch = self.epoch;
        self.marks.push(MarkRec { mark, seq, epoch, valid: true, stats });
    }

    /// A rewind to the `which`-th mark (cyclically): a mark no rewind has passed since it was
    /// taken is accepted, a stale one (taken before a reset) refused. Of the marks a rewind
    /// passed, arena.h refuses for good those taken before it at a later position than the one
    /// it returned to, and keeps those at or below it; positions move down as well as up (a free
    /// of the newest block lowers it), so the model, which does not follow positions, accepts
    /// either answer for them. If accepted, such a mark frees only blocks allocated after it.
    pub fn plan(&self, which: u8) -> Option<Rewind<M>> {
        if self.marks.is_empty() {
            return None;
        }
        let k = which as usize % self.marks.len();
        let m = &self.marks[k];
        let expect = match (m.epoch == self.epoch, m.valid) {
            (false, _) => Some(false),
            (true, true) => Some(true),
            (true, false) => None,
        };
        Some(Rewind { mark: m.mark, expect, seq: m.seq, stats: m.stats, k })
    }

    /// The library accepted `r`, its live counts being `before`: every other mark may now be
    /// refused. Returns the live counts the stats now show: the lesser of those before and at
    /// the mark, field by field (arena.h).
    pub fn rewound(&mut self, r: &Rewind<M>, before: (usize, usize)) -> (usize, usize) {
        for (i, m) in self.marks.iter_mut().enumerate() {
            if i != r.k {
                m.valid = false;
            }
        }
        (before.0.min(r.stats.0), before.1.min(r.stats.1))
    }

    /// A reset: every mark is stale.
    pub fn reset(&mut self) {
        self.marks.clear();
        self.epoch += 1;
    }
}

/// What a request to a region may do, by region.h: a request larger than a region (its header
/// included) needs a dedicated region, refused without `allow_large`; `chain` is what the
/// memory behind the region may do.
pub fn region_expect(
    size: usize,
    align: usize,
    region_size: usize,
    allow_large: bool,
    chain: Expect,
) -> Expect {
    let chunk = if region_size == 0 { 4096 } else { region_size }.max(REGION_HEADER + 16);
    if allow_large {
        chain
    } else if size > chunk - REGION_HEADER {
        Expect::Fail
    } else if size + resolve(size, align).saturating_sub(16) + REGION_HEADER > chunk {
        // Too big for a region with its worst padding: refused, unless the bump pointer happens
        // to sit aligned.
        Expect::MayFail
    } else {
        chain
    }
}

/// Bytes of a region chunk's header.
const REGION_HEADER: usize = 32;

/// What a request to a pool may do, by pool.h: up to the object size and the pool's alignment
/// (`pool_align`: the one it was made with, at least the natural one of the object size), an
/// object until the cap; larger or more aligned, refused. (A pool may have more alignment than
/// that, for the link a free object holds: up to 8, a request may be served.)
pub fn pool_expect(
    size: usize,
    align: usize,
    object_size: usize,
    pool_align: usize,
    at_cap: bool,
    chain: Expect,
) -> Expect {
    let a = resolve(size, align);
    if size > object_size || a > pool_align.max(8) {
        Expect::Fail
    } else if a > pool_align || object_size >= HUGE {
        Expect::MayFail
    } else if at_cap {
        Expect::Fail
    } else {
        chain
    }
}

/// Makes AddressSanitizer return null for a request it cannot serve, as `malloc` does, instead
/// of reporting it: the huge requests are meant to fail cleanly, and that is what they test.
/// (Read by ASan at startup; without ASan it is an unused symbol.)
#[unsafe(no_mangle)]
pub extern "C" fn __asan_default_options() -> *const core::ffi::c_char {
    c"allocator_may_return_null=1".as_ptr()
}
