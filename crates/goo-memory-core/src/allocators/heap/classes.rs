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
/// a table lookup by 16-byte granule (every class size is a multiple of 16).
#[inline(always)]
pub(crate) fn class_of(size: usize) -> usize {
    CLASS_OF_GRANULE[size.wrapping_sub(1) >> 4] as usize
}

/// `CLASS_OF_GRANULE[g]`: the class of requests of `16 g + 1 ..= 16 (g + 1)` bytes. With
/// `k = log2(max(size - 1, 128))`, a step of `2^(k-3)` within the doubling.
static CLASS_OF_GRANULE: [u8; SMALL_MAX / 16] = {
    let mut t = [0; SMALL_MAX / 16];
    let mut g = 0;
    while g < SMALL_MAX / 16 {
        let s = g * 16; // the granule's sizes minus one all give the same class
        let k = (usize::BITS - 1 - (s | 128).leading_zeros()) as usize;
        t[g] = ((s >> (k - 3)) + (k - 7) * 8) as u8;
        g += 1;
    }
    t
};

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
}
