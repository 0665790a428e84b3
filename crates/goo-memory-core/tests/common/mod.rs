//! Shared by the tests: how much proptest runs (a few cases under Miri, which is slow), and a
//! reproducible random sequence for threads. Each test file uses some of it.
#![allow(dead_code)]

use proptest::prelude::ProptestConfig;

/// The model tests' proptest settings: 256 cases natively, 3 under Miri; no failure files.
pub fn model_config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Operations per case: `native` natively, `miri` under Miri.
pub const fn ops(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// xorshift64*: a reproducible sequence per thread.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (> 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
