//! The C ABI of goo-memory (`libgoo_memory.a` / `libgoo_memory.so`). Each file mirrors a header
//! and only translates: argument conversion, the panic guard, nothing about allocation itself.
//!
//! Headers: `include/goo/core/types.h`, `include/goo/runtime/memory.h`, `include/goo_memory.h`.

pub mod arena;
mod boundary;
pub mod debug;
pub mod legacy;
pub mod memory;
pub mod pool;
pub mod region;
pub mod scoped;
pub mod stats;
mod trampoline;
