//! Shared by the model tests: how much proptest runs (a few cases under Miri, which is slow).

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
