//! The heap's size classes: 16-byte steps up to 128 bytes, then eight classes per doubling up to
//! [`SMALL_MAX`] (144, 160, ... 256, 288, ... 16,384). A request takes the smallest class that
//! holds it, so above 128 bytes a block wastes less than 1/8 of its size (a 4,360-byte page plus
//! header takes a 4,608-byte block).
//!
//! Every class size is a multiple of 16 and of the largest power of two dividing it, so blocks
//! carved at multiples of their size from a span's 64 KiB-aligned start are 16-aligned, and a
//! class whose size is a multiple of `align` serves that alignment ([`class_for`]).

/// Number of classes.
pub(crate) const CLASSES: usize = 64;
/// Bytes of a span, the unit a class is carved from (and its alignment): a span of class `c`
/// holds [`BLOCKS_PER_SPAN`]`[c]` blocks at multiples of the class size, and its tail (less than
/// a block) is never handed out.
pub(crate) const SPAN: usize = 1 << 16;
/// The largest request the classes serve; larger ones go to the C library.
pub(crate) const SMALL_MAX: usize = 16 * 1024;
/// The largest alignment the classes serve (the page size: a span's blocks at multiples of a
/// class size that is a multiple of 4,096 are 4,096-aligned).
pub(crate) const SMALL_ALIGN_MAX: usize = 4096;

/// `SIZES[c]`: the bytes of every block of class `c`.
pub(crate) const SIZES: [usize; CLASSES] = {
    let mut t = [0; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        t[c] = if c < 8 { (c + 1) * 16 } else { (9 + (c - 8) % 8) << ((c - 8) / 8 + 4) };
        c += 1;
    }
    t
};

/// The class of a request of `size` bytes (`1..=SMALL_MAX`) at natural or 16-byte alignment:
/// with `k = log2(max(size - 1, 128))`, a step of `2^(k-3)` within the doubling.
#[inline(always)]
pub(crate) fn class_of(size: usize) -> usize {
    let s = size.wrapping_sub(1);
    let k = (usize::BITS - 1 - (s | 128).leading_zeros()) as usize;
    (s >> (k - 3)) + (k - 7) * 8
}

/// The class serving `size` bytes (`1..=SMALL_MAX`) at `align` (0 = natural,
/// `..=SMALL_ALIGN_MAX`): the first class from [`class_of`] on whose size `align` divides.
/// (16,384 is a multiple of every alignment served, so there always is one.)
#[inline(always)]
pub(crate) fn class_for(size: usize, align: usize) -> usize {
    let mut c = class_of(size);
    if align > 16 {
        while c < CLASSES - 1 && !SIZES[c].is_multiple_of(align) {
            c += 1;
        }
    }
    c
}

/// Whether a request of `size` bytes at natural or 16-byte alignment takes class `c`
/// ([`class_of`]`(size) == c`), from a table: the sizes class `c` serves are
/// `SIZES[c - 1] + 1 ..= SIZES[c]`.
#[inline(always)]
pub(crate) fn serves(c: usize, size: usize) -> bool {
    let (floor, width) = RANGES[c];
    size.wrapping_sub(floor) <= width
}

/// `RANGES[c]`: the smallest size class `c` serves, and how many more it serves.
static RANGES: [(usize, usize); CLASSES] = {
    let mut t = [(0, 0); CLASSES];
    let mut c = 0;
    while c < CLASSES {
        let floor = if c == 0 { 1 } else { SIZES[c - 1] + 1 };
        t[c] = (floor, SIZES[c] - floor);
        c += 1;
    }
    t
};

/// Whether the classes serve a request (`size` may be 0 for the caller's convenience: no).
#[inline(always)]
pub(crate) fn is_small(size: usize, align: usize) -> bool {
    size.wrapping_sub(1) < SMALL_MAX && align <= SMALL_ALIGN_MAX
}

/// `BLOCKS_PER_SPAN[c]`: the blocks a span of class `c` is carved into.
pub(crate) const BLOCKS_PER_SPAN: [usize; CLASSES] = {
    let mut t = [0; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        t[c] = SPAN / SIZES[c];
        c += 1;
    }
    t
};

/// The index of the block of class `c` that starts `offset < SPAN` bytes into its span, or a
/// number above any span's block count when no block of the class starts there; without a
/// division. With `SIZES[c] = m << t` (`m` odd): when the low `t` bits of `offset` are zero,
/// `q = (offset >> t) * m⁻¹ mod 2^64` is the quotient for a multiple of `m` and exceeds
/// `(2^64 - 1) / m` (far above 4,096) for any other value (Granlund and Montgomery's
/// divisibility test).
#[inline(always)]
pub(crate) fn block_index(c: usize, offset: usize) -> u64 {
    let d = &DIVISORS[c];
    let q = ((offset >> d.shift) as u64).wrapping_mul(d.inverse);
    if offset & d.low_mask == 0 {
        q
    } else {
        u64::MAX
    }
}

/// Whether a whole block of class `c` starts `offset < SPAN` bytes into its span.
#[cfg(test)]
fn starts_block(c: usize, offset: usize) -> bool {
    block_index(c, offset) < BLOCKS_PER_SPAN[c] as u64
}

/// [`block_index`]'s constants for one class.
pub(crate) struct Divisor {
    low_mask: usize,
    shift: u32,
    inverse: u64,
}

static DIVISORS: [Divisor; CLASSES] = {
    let mut t = [const { Divisor { low_mask: 0, shift: 0, inverse: 0 } }; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        let shift = SIZES[c].trailing_zeros();
        let m = (SIZES[c] >> shift) as u64;
        // Newton's iteration doubles the correct low bits of an odd number's inverse each step,
        // from the 3 that `m` itself has (m * m == 1 mod 8).
        let mut inverse = m;
        let mut i = 0;
        while i < 5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inverse)));
            i += 1;
        }
        t[c] = Divisor { low_mask: (1 << shift) - 1, shift, inverse };
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size natively; a spread of them under Miri, which runs each step a thousand times
    /// slower.
    const STEP: usize = if cfg!(miri) { 61 } else { 1 };

    #[test]
    fn every_size_takes_the_smallest_class_that_holds_it() {
        for size in (1..=SMALL_MAX).step_by(STEP).chain([128, 129, 256, 257, SMALL_MAX]) {
            let c = class_of(size);
            assert!(c < CLASSES && SIZES[c] >= size, "size {size} class {c}");
            assert!(c == 0 || SIZES[c - 1] < size, "size {size} class {c}");
            assert!((0..CLASSES).all(|k| serves(k, size) == (k == c)), "size {size} class {c}");
            if size > 128 {
                assert!((SIZES[c] - size) * 8 < SIZES[c], "size {size} wastes 1/8 or more");
            }
        }
        assert_eq!(SIZES[class_of(4096 + 264)], 4608);
        assert!(SIZES.windows(2).all(|w| w[0] < w[1] && w[0] % 16 == 0));
        assert_eq!(SIZES[CLASSES - 1], SMALL_MAX);
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        for size in (1..=SMALL_MAX).step_by(7 * STEP) {
            for align in [32, 64, 128, 512, 4096] {
                let c = class_for(size, align);
                assert!(SIZES[c] >= size && SIZES[c].is_multiple_of(align), "{size} at {align}");
            }
        }
    }

    #[test]
    fn block_starts_are_the_multiples_of_the_class_size() {
        for (c, &size) in SIZES.iter().enumerate() {
            // The tail of a span whose size the class does not divide is no block (a pointer
            // one past a span's last block, say).
            let tail = BLOCKS_PER_SPAN[c] * size;
            for offset in (0..SPAN).step_by(16 * STEP).chain([tail, SPAN - 16]) {
                let whole = offset % size == 0 && offset + size <= SPAN;
                assert_eq!(starts_block(c, offset), whole, "class {c} offset {offset}");
            }
        }
    }
}
