/*
 * goo-memory core types: allocation options, out-of-memory strategies, statistics.
 * Layouts here are ABI: they match crates/goo-memory-core/src/raw.rs (checked by a test).
 */
#ifndef GOO_CORE_TYPES_H
#define GOO_CORE_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Allocation option bits; OR them together into a GooAllocOptions. Unknown bits are ignored. */
typedef uint32_t GooAllocOptions;
enum {
    GOO_ALLOC_DEFAULT  = 0,
    GOO_ALLOC_ZERO     = 1,  /* the returned memory (or a realloc's new tail) is zeroed */
    GOO_ALLOC_NOFAIL   = 2,  /* never returns NULL: when the strategy gives up, the process prints
                                what failed to stderr and aborts */
    GOO_ALLOC_GROWABLE = 4,  /* hint: likely to be reallocated larger */
    GOO_ALLOC_PERSIST  = 8,  /* from a scoped allocator: a block of its parent, survives the scope */
    GOO_ALLOC_TEMP     = 16  /* short-lived: served by the thread's temporary arena, whatever allocator
                                was named (see goo/runtime/scoped.h) */
};

/* What an allocator does when a request fails. Any other value behaves as NULL. */
typedef enum GooAllocStrategy {
    GOO_ALLOC_STRATEGY_NULL  = 0, /* return NULL */
    GOO_ALLOC_STRATEGY_PANIC = 1, /* print what failed to stderr and abort() */
    GOO_ALLOC_STRATEGY_RETRY = 2, /* call out_of_mem_fn (else the handler set with
                                     goo_set_out_of_mem_handler) and retry, up to 3 times; with
                                     neither handler the request was asked once: it fails as
                                     with NULL (nothing could have released memory) */
    GOO_ALLOC_STRATEGY_GC    = 3  /* call the hook set with goo_memory_set_gc_handler and retry,
                                     up to 3 times; with no hook set, fails as with NULL */
} GooAllocStrategy;

/*
 * Statistics of one allocator, counted by the front door (goo_memory_*_with) when the
 * allocator's track_stats is true. Failures are counted even when it is false.
 *   bytes_allocated      live bytes: sum of requested sizes of blocks not yet freed; a realloc
 *                        moves it by new_size - old_size. Legacy (unsized) blocks count their
 *                        16-byte header.
 *   bytes_reserved       bytes the allocator holds from where it gets memory (parent or OS),
 *                        handed out or not. For allocators written in C the library cannot know
 *                        it: it reports max(the field as the allocator keeps it, bytes_allocated).
 *   max_bytes_allocated  peak of bytes_allocated since creation or the last
 *                        goo_memory_reset_stats (which starts it at the live bytes). Exact when
 *                        one thread uses the allocator. When several threads use it (at once,
 *                        or one after another), the largest total seen when a thread's own count
 *                        passes its mark (a thread-safe allocator counts per thread): it may
 *                        miss a peak, and at once it may count a block one thread is freeing
 *                        beside one another thread just allocated.
 *   allocation_count     live blocks = total_allocations - total_frees
 *   total_allocations    successful allocations (a realloc is not a new allocation); since a
 *                        goo_memory_reset_stats, the blocks live then count as allocations
 *   total_frees          frees (including realloc to size 0)
 *   failed_allocations   requests that returned NULL after the strategy gave up, including
 *                        bad input (overflowing size, bad alignment, no alloc function)
 * Zero-size requests are not counted.
 */
typedef struct GooAllocStats {
    size_t bytes_allocated;
    size_t bytes_reserved;
    size_t max_bytes_allocated;
    size_t allocation_count;
    size_t total_allocations;
    size_t total_frees;
    size_t failed_allocations;
} GooAllocStats;

/* A checkpoint of an arena (goo_arena_mark, goo_temp_mark): pass it back to the matching rewind.
 * Treat the fields as opaque. */
typedef struct GooArenaMark {
    void* chunk;
    void* position;
    uint64_t chunk_seq;
    uint64_t next_seq;
    uint64_t epoch;
    size_t live_bytes;
    size_t live_count;
} GooArenaMark;

/* The form of a report (goo_memory_stats_report in stats.h, goo_debug_report in debug.h).
 *
 * goo_memory_stats_report's GOO_REPORT_JSON is one object and a newline; the Rust crate's serde
 * output (feature "serde") is the same text. Fields, in this order:
 *   {"allocators": [ one object per tracked allocator:
 *     "address":  the GooAllocator's address, a number
 *     "name":     its name ("" if none), a string escaped as JSON escapes
 *     "kind":     a library allocator's kind ("system", "heap", "arena", "pool", "region",
 *                 "scoped", "debug", "shared arena", "shared pool", "locked"; a Rust-made
 *                 backend's own name), "custom" for one written in C
 *     "parent":   a child region's parent's address, else null
 *     "stats":    {"bytes_allocated", "bytes_reserved", "max_bytes_allocated",
 *                  "allocation_count", "total_allocations", "total_frees",
 *                  "failed_allocations"}: numbers, as in GooAllocStats
 *     "histogram": for a library allocator {"class_limits": the 16 classes' largest sizes
 *                  (8, 16, ... 131072, then null: larger), "live": live blocks per class,
 *                  "total": blocks ever allocated per class}; null for one written in C
 *   ]} */
typedef enum GooReportFormat {
    GOO_REPORT_TEXT = 0, /* lines of text for people */
    GOO_REPORT_JSON = 1  /* one JSON object, then a newline */
} GooReportFormat;

#ifdef __cplusplus
}
#endif

#endif /* GOO_CORE_TYPES_H */
