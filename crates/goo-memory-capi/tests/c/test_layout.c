/* The C view of the ABI structs equals Rust's: the harness passes Rust's sizes and offsets as
 * -D definitions and this file fails to compile if any differs. */
#include <stddef.h>

#include "goo/runtime/memory.h"

#define SAME(expr, rust) _Static_assert((expr) == (rust), #expr " differs from Rust")

SAME(sizeof(GooAllocator), RUST_SIZEOF_ALLOCATOR);
SAME(_Alignof(GooAllocator), RUST_ALIGNOF_ALLOCATOR);
SAME(offsetof(GooAllocator, alloc), RUST_OFF_ALLOC);
SAME(offsetof(GooAllocator, realloc), RUST_OFF_REALLOC);
SAME(offsetof(GooAllocator, free), RUST_OFF_FREE);
SAME(offsetof(GooAllocator, destroy), RUST_OFF_DESTROY);
SAME(offsetof(GooAllocator, strategy), RUST_OFF_STRATEGY);
SAME(offsetof(GooAllocator, out_of_mem_fn), RUST_OFF_OUT_OF_MEM_FN);
SAME(offsetof(GooAllocator, context), RUST_OFF_CONTEXT);
SAME(offsetof(GooAllocator, track_stats), RUST_OFF_TRACK_STATS);
SAME(offsetof(GooAllocator, stats), RUST_OFF_STATS);
SAME(sizeof(GooAllocStrategy), RUST_SIZEOF_STRATEGY);
SAME(sizeof(GooAllocOptions), RUST_SIZEOF_OPTIONS);
SAME(sizeof(GooAllocStats), RUST_SIZEOF_STATS);
SAME(offsetof(GooAllocStats, bytes_allocated), RUST_OFF_BYTES_ALLOCATED);
SAME(offsetof(GooAllocStats, bytes_reserved), RUST_OFF_BYTES_RESERVED);
SAME(offsetof(GooAllocStats, max_bytes_allocated), RUST_OFF_MAX_BYTES_ALLOCATED);
SAME(offsetof(GooAllocStats, allocation_count), RUST_OFF_ALLOCATION_COUNT);
SAME(offsetof(GooAllocStats, total_allocations), RUST_OFF_TOTAL_ALLOCATIONS);
SAME(offsetof(GooAllocStats, total_frees), RUST_OFF_TOTAL_FREES);
SAME(offsetof(GooAllocStats, failed_allocations), RUST_OFF_FAILED_ALLOCATIONS);
SAME(GOO_ALLOC_ZERO, 1);
SAME(GOO_ALLOC_NOFAIL, 2);
SAME(GOO_ALLOC_GROWABLE, 4);
SAME(GOO_ALLOC_PERSIST, 8);
SAME(GOO_ALLOC_TEMP, 16);
SAME(GOO_ALLOC_STRATEGY_GC, 3);

int main(void) { return 0; }
