/*
 * goo-memory modern API: sized allocation through pluggable allocators.
 *
 * Every goo_memory_* call goes through one front door that applies the shared policy for any
 * allocator, including ones written in C:
 *   - a NULL allocator means the current one (the thread's allocator if set, else the default);
 *   - size 0 returns a non-NULL pointer that must not be dereferenced; freeing it is a no-op;
 *   - alignment 0 means natural alignment (the smallest power of two >= size, at most 16);
 *     other alignments must be powers of two up to 2^30 (1 GiB);
 *   - a size or alignment no allocator can serve fails cleanly: NULL, failed_allocations
 *     counted, the allocator's strategy applied (PANIC aborts; GOO_ALLOC_NOFAIL aborts). That is
 *     an alignment that is not a power of two or is above 2^30, and a size that, with its
 *     alignment, exceeds PTRDIFF_MAX (SIZE_MAX, SIZE_MAX - 15, a count * elem_size product that
 *     overflows); a size the allocator cannot round up or get from its parent fails the same way;
 *   - GOO_ALLOC_ZERO is honoured even if the allocator ignores it;
 *   - stats are counted when track_stats is set; exact when several threads share an allocator.
 * Everything works without goo_memory_init. No Rust panic ever unwinds into C.
 * Sized frees must pass the size (and alignment) the block was allocated (or last resized) with.
 *
 * Bad frees and dead allocators. Freeing NULL (or size 0) does nothing. Freeing a pointer that
 * is not a live block of the allocator (a foreign pointer, a block freed twice), and using an
 * allocator after destroying it, are undefined, except where an allocator's header says it
 * refuses them: the pool (pool.h) and the scoped allocator (scoped.h) refuse bad frees they can
 * tell cheaply (a message on stderr, no stats changed), a region (region.h) and a scope refuse
 * their own calls on a pointer that was destroyed, and the temporary arena refuses to be
 * destroyed. The system allocator, the arena, the region's frees and allocators written in C
 * cannot tell in release builds: there it is undefined (a debug allocator, debug.h, over the
 * allocator catches it).
 */
#ifndef GOO_RUNTIME_MEMORY_H
#define GOO_RUNTIME_MEMORY_H

#include "goo/core/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct GooAllocator GooAllocator;

/* Allocate size > 0 bytes at a power-of-two alignment, or return NULL. */
typedef void* (*GooAllocFn)(void* ctx, size_t size, size_t alignment, GooAllocOptions options);
/* Resize a live block; on failure return NULL and leave the block untouched. */
typedef void* (*GooReallocFn)(void* ctx, void* ptr, size_t old_size, size_t new_size, size_t alignment,
                              GooAllocOptions options);
/* Free a live block of the given size and alignment. The front door counts every call as a
 * free: an allocator written in C has no way to refuse one, so a bad free through it is
 * undefined. */
typedef void (*GooFreeFn)(void* ctx, void* ptr, size_t size, size_t alignment);
/* Destroy the allocator itself; self is the GooAllocator*. */
typedef void (*GooDestroyFn)(void* self);
/* Called by the RETRY strategy before each retry; should release memory. */
typedef void (*GooOutOfMemFn)(void);
/* Called by the GC strategy before each retry: try to free at least bytes_needed bytes. */
typedef void (*GooGcFn)(void* user_data, size_t bytes_needed);

/*
 * An allocator. C code may fill one with its own functions and pass it to goo_memory_*_with;
 * the front door calls alloc/realloc/free with `context`, only with size > 0 and a valid
 * power-of-two alignment. Any function may be NULL: no alloc fails every request, no realloc
 * means alloc + copy + free, no free leaks. For a C allocator with track_stats set, the front
 * door keeps `stats` with atomic updates (read it with goo_get_alloc_stats). For the library's
 * own allocators, `stats` is a snapshot refreshed by goo_get_alloc_stats; do not copy or move
 * them, pass the pointer. strategy, out_of_mem_fn and track_stats may be changed at any time
 * while no other thread uses the allocator.
 */
struct GooAllocator {
    GooAllocFn alloc;
    GooReallocFn realloc;
    GooFreeFn free;
    GooDestroyFn destroy;
    GooAllocStrategy strategy;
    GooOutOfMemFn out_of_mem_fn;
    void* context;
    bool track_stats;
    GooAllocStats stats;
};

/* ---- Library state ---- */

/* Marks the library initialised; idempotent and optional. Returns true. With GOO_MEMORY_DEBUG=1
 * in the environment, the first call since the last cleanup also puts a debug allocator
 * (debug.h) over the default allocator and makes it the default. */
bool goo_memory_init(void);
/* Prints to stderr every tracked allocator in the registry (library-made, the current default,
 * named C allocators; see goo/runtime/stats.h) that still has live allocations (name, count and
 * bytes), then restores the initial state: built-in default allocator, no thread allocator on
 * the calling thread, no out-of-memory or GC handler, no callbacks, built-in allocator stats
 * started again (as goo_memory_reset_stats does: its blocks still live stay counted), no limit
 * on the built-in allocator or on any allocator written in C, the calling
 * thread's cached system blocks freed. Every live debug allocator (debug.h) also reports its
 * live blocks by site; the one goo_memory_init made for GOO_MEMORY_DEBUG stops being the
 * default and is destroyed if no block of it and no other library allocator is live (else it
 * stays, so that its blocks, the legacy API's included, may still be freed through it, and
 * allocators made over it keep their parent). Allocators you created stay valid.
 * The memory the library keeps for itself (a temporary arena's chunk after goo_temp_reset, the
 * set of live regions) is not the program's and is never reported. Call it while no other
 * thread uses the library (at the end of the program, say). */
void goo_memory_cleanup(void);

/* ---- Allocation through the current allocator ---- */

/* size bytes at natural alignment; NULL on failure. */
void* goo_memory_alloc(size_t size);
/* As goo_memory_alloc, zeroed. */
void* goo_memory_alloc_zeroed(size_t size);
/* Resize a block of old_size bytes from the current allocator. ptr NULL (or old_size 0)
 * allocates; new_size 0 frees the block (if any) and returns NULL; on failure returns NULL,
 * block untouched. */
void* goo_memory_realloc(void* ptr, size_t old_size, size_t new_size);
/* Free a block of size bytes from the current allocator; NULL or size 0 is a no-op. */
void goo_memory_free(void* ptr, size_t size);
/* size bytes at `alignment` (a power of two; 0 = natural) from the current allocator. */
void* goo_memory_alloc_aligned(size_t size, size_t alignment);
/* Free a block from goo_memory_alloc_aligned with its size and alignment. */
void goo_memory_free_aligned(void* ptr, size_t size, size_t alignment);

/* ---- Allocation through a given allocator (NULL = current) ---- */

void* goo_memory_alloc_with(GooAllocator* allocator, size_t size);
void* goo_memory_realloc_with(GooAllocator* allocator, void* ptr, size_t old_size, size_t new_size);
void goo_memory_free_with(GooAllocator* allocator, void* ptr, size_t size);
/* The general forms: explicit alignment (0 = natural) and options. */
void* goo_memory_alloc_ex(GooAllocator* allocator, size_t size, size_t alignment, GooAllocOptions options);
void* goo_memory_realloc_ex(GooAllocator* allocator, void* ptr, size_t old_size, size_t new_size,
                            size_t alignment, GooAllocOptions options);
void goo_memory_free_ex(GooAllocator* allocator, void* ptr, size_t size, size_t alignment);
/* count * elem_size bytes; a product that overflows fails (NULL, counted, strategy applied).
 * Free with goo_memory_free_ex(allocator, p, count * elem_size, alignment). */
void* goo_memory_alloc_array(GooAllocator* allocator, size_t count, size_t elem_size, size_t alignment,
                             GooAllocOptions options);

/* ---- Allocators ----
 *
 * Thread safety. Each constructor says whether its allocator is thread-safe. One that is not
 * (an arena, a pool, a region, a scope) belongs to one thread at a time: handing it to another
 * thread needs the synchronisation any shared data needs (a lock, a join, a queue). Debug
 * builds of the library report on stderr, once per allocator, two threads found inside such an
 * allocator's slow path at the same time (every request of a checked pool, an arena's new
 * chunks, ...; the inline fast paths are not watched). To share one, wrap it with
 * goo_locked_allocator_create, or use the shared arena and the shared pool (arena.h, pool.h),
 * which threads use at once without a lock.
 *
 * fork(). The child of a program whose other threads allocate may use the library: the heap's
 * locks, the registry of allocators, every allocator's limit, every debug allocator's lock and
 * the process-wide settings' locks (callbacks, names, the live regions, the collector hook) are
 * taken before the fork and released after it (pthread_atfork), so none is left held by a
 * thread the child lacks; a thread counting against its share of a limit at the fork does not
 * make the child wait for it; the child's new threads start with no thread allocator (none
 * inherits one of the parent's threads).
 * Not so a shared arena or pool, a locked allocator or a region that another thread was using
 * at the fork: the child must not use those (a shared kind may refuse its resets for good). The
 * system allocator is malloc's, which the C library guards itself. */

/* A new system (malloc) allocator with its own stats (track_stats true) and strategy NULL.
 * Thread-safe: any thread may allocate from it and free any of its blocks.
 * Free it with allocator->destroy(allocator). NULL if out of memory. Freeing a pointer that is
 * not a live block of it (a foreign pointer, a block freed twice) is undefined: not detected in
 * release builds (a debug allocator over it, debug.h, catches it), except as below.
 * System allocators share a per-thread cache of freed small blocks (up to 256 bytes, 16-byte
 * classes, 32 blocks per class): a small request is served from it before malloc, a small free
 * files the block there by the size it names (so that size must be right; debug builds of the
 * library check it). A second free of a block the freeing thread's cache still holds is
 * refused (a message on stderr the first time; no free counted), so the cache never hands one
 * block out twice; a double free across threads, or after the block was handed out again, is
 * not found. The cache is given back to free() at thread exit and by
 * goo_memory_cleanup(); GOO_SYSTEM_CACHE=0 in the environment turns it off. Under valgrind or
 * in an ASan build (GOO_TOOL_ANNOTATIONS=0 aside), every block is malloc's at its exact size
 * and the cache takes none: the tool sees every misuse as it would of malloc's blocks. */
GooAllocator* goo_system_allocator_create(void);
/* A new heap allocator with its own stats (track_stats true) and strategy NULL: the library's
 * small-object heap, the built-in default's kind (goo_memory_alloc and the legacy API use it
 * unless GOO_HEAP=system, below). Thread-safe: any thread may allocate from it and free any of
 * its blocks. Requests up to 16 KiB (alignment up to 4096) come from size classes of 16-byte
 * steps to 128 bytes, then eight per doubling (a block wastes under 1/8 of its size), kept in
 * per-thread caches and a shared depot; larger ones are the C library's malloc blocks. Its small
 * blocks are not malloc blocks: free them only through a heap allocator. Frees must name the
 * size (and alignment) the block was allocated (or last resized) with. A free or realloc of a
 * pointer that starts no heap block, of a block already freed (and not handed out again since),
 * or naming a size of another class (one above 16 KiB too) is refused: the block is left alone,
 * the free counts nothing (a refused realloc returns NULL and counts one failed allocation, as
 * every failed resize does), one line goes to stderr (the first time), and
 * goo_heap_refused_count counts it. A large block (above 16 KiB, or
 * aligned above 4096) is its own class: its free or realloc must name its exact size, and one of
 * a pointer that is no live large block (freed already, inside one, a static, stack or malloc
 * buffer) is refused too; the heap keeps its record of them outside the blocks. (A block of
 * goo_memory_alloc_aligned freed without its alignment is taken back: its class is the one that
 * alignment gave it, so such a free is taken for any size that some alignment would place in that
 * class, and counts the size it names.) bytes_reserved in its stats is what the heap holds for
 * the whole process (spans carved into classes, kept for reuse, and large blocks; shared by every
 * heap allocator). Free it with allocator->destroy(allocator). NULL if out of memory.
 * GOO_HEAP=system in the environment (read once, before the first allocation through the default)
 * makes the built-in default the system allocator instead, as does running under valgrind or with
 * ASan linked in (so that the tool sees every block); GOO_HEAP=heap keeps the heap even then. */
GooAllocator* goo_heap_allocator_create(void);

/* How many frees and reallocs the heap refused since the process started (double frees, frees
 * of pointers it never handed out, sizes of another class; see goo_heap_allocator_create), over
 * every heap allocator, the built-in default included: only the first refusal is reported on
 * stderr, so a test or a runtime's health check reads this. */
size_t goo_heap_refused_count(void);
/* Gives back what the heap holds free, as malloc_trim and mi_collect do: the calling thread's
 * cached free blocks go to the heap's shared depot, and every span (64 KiB) that holds no live
 * block goes back to the OS at once, without the short delay (10 ms) the heap otherwise waits
 * before it gives spans back: those whose blocks are all free in the depot, and those the
 * calling thread is carving blocks from whose blocks handed out so far are all free. For a
 * runtime after a garbage collection or a phase that freed much, or a thread about to sleep.
 * Other threads' cached blocks, and the spans they are carving, stay theirs (a thread's go to
 * the depot, and its free carving spans to the OS, when it exits). The heap is the process's, shared by every heap
 * allocator and the built-in default (unless GOO_HEAP=system). Returns the bytes given back.
 * Thread-safe. */
size_t goo_heap_collect(void);
/* A locked allocator: inner (any allocator: an arena, a pool, a region, one written in C) behind
 * a mutex, so that several threads may share it. Thread-safe; every request takes the lock (the
 * slow, general answer: the shared arena and pool take none on their fast paths) and goes to
 * inner through the front door: inner counts it in its own stats and applies its own strategy
 * and limit, and the wrapper counts it too (its own stats tracked, its own strategy NULL; a
 * free a library inner allocator refuses, a block it does not hold, counts in neither). A
 * callback, handler or parent that calls back into the wrapper from inside one of its requests
 * on the same thread is refused with a message on stderr (an allocation fails, a free is
 * ignored) instead of deadlocking. inner must outlive the wrapper, be usable from any thread (not
 * a scope, nor the temporary arena, which belong to their thread) and be used by nothing else
 * while the wrapper is in use. Free the wrapper with allocator->destroy(allocator) or
 * goo_allocator_destroy: that does not destroy inner. NULL if inner is NULL or out of memory. */
GooAllocator* goo_locked_allocator_create(GooAllocator* inner);
/* Resets the inner allocator under the lock when it has a reset (an arena or a pool, shared or
 * not, or a region), freeing every block allocated through the wrapper and counting them freed
 * in its stats. False (nothing done) if locked is not a locked allocator, or inner has no reset
 * or refused it (a message on stderr then says why). */
bool goo_locked_allocator_reset(GooAllocator* locked);
/* Calls allocator->destroy(allocator) if both are non-NULL. Destroying the built-in default
 * allocator does nothing. Destroying an allocator twice, or using it after its destroy, is
 * undefined (its memory is gone), except for an ended
 * scope (scoped.h) and this thread's temporary arena, which refuse with a message. */
void goo_allocator_destroy(GooAllocator* allocator);

/* ---- Limits ---- */

/* Limits the allocator's live bytes (the bytes of its blocks not yet freed, as the front door
 * counts them) to max_live_bytes; 0 removes the limit. Every allocator kind takes one, C-made
 * ones included. A request that would pass it fails like any other: NULL, counted in
 * failed_allocations, the allocator's strategy applied (a GC or RETRY handler may free memory,
 * and the retry succeeds), callbacks told (GOO_EVENT_FAILURE). The count starts from the live
 * bytes the stats know when the limit is set (all of them if the allocator was tracked until
 * then); a limited allocator keeps counting even with track_stats false. Exact under threads
 * for a thread-safe allocator: requests that start after the call returns are held to it.
 * Every kind keeps its fast path under a limit: a thread-safe allocator (system, heap) gives
 * each thread a share of the room left, which it allocates from without a lock, and takes the
 * shares back before it refuses a request (so a request fails only when the live bytes leave
 * no room for it); a single-owner one (arena, pool, region, scope) checks the limit on its way
 * to a new high-water mark. A region's
 * limit covers its whole subtree, and what a scope takes from its parent counts against the
 * parent's limit (region.h, scoped.h). For an
 * allocator written in C, set the limit back to 0 before freeing its GooAllocator (the library
 * keeps it, by address, in a table of 64). Returns false if allocator is NULL or that table is
 * full. Not a limit on the memory an allocator reserves: an arena's max_bytes and a pool's
 * max_objects cap that. */
bool goo_allocator_set_limit(GooAllocator* allocator, size_t max_live_bytes);
/* The allocator's limit on live bytes; 0 if none or allocator is NULL. */
size_t goo_allocator_get_limit(GooAllocator* allocator);

/* The process-wide default allocator: NULL restores the built-in default (the heap allocator,
 * or the system allocator under GOO_HEAP=system; see goo_heap_allocator_create). It must stay
 * valid while it is the default and while legacy blocks allocated from it are live; and, if
 * goo_memory_init runs while it is the default with GOO_MEMORY_DEBUG set, until the next
 * goo_memory_cleanup (the debug allocator made then is over it until the cleanup). */
void goo_set_default_allocator(GooAllocator* allocator);
/* The process-wide default allocator (never NULL). */
GooAllocator* goo_get_default_allocator(void);
/* The calling thread's allocator, used before the default by goo_memory_alloc and the legacy
 * API on this thread; NULL clears it. Same validity rule as the default. A thread starts with
 * none; one exception: a thread whose first call into the library comes from the last round of
 * its pthread key destructors (PTHREAD_DESTRUCTOR_ITERATIONS, where the C library runs no more)
 * keeps its place in the library, and a thread the C library later starts on the same cached
 * stack inherits that thread allocator until it sets its own or the allocator is destroyed. */
void goo_set_thread_allocator(GooAllocator* allocator);
/* The calling thread's allocator, or NULL if none is set. */
GooAllocator* goo_get_thread_allocator(void);

/* ---- Out of memory ---- */

/* Process-wide handler for the RETRY strategy, used when an allocator's out_of_mem_fn is NULL.
 * NULL clears it. */
void goo_set_out_of_mem_handler(GooOutOfMemFn handler);
/* Collector hook for the GC strategy; NULL clears it. A failure inside a hook does not retry. */
void goo_memory_set_gc_handler(GooGcFn handler, void* user_data);

/* ---- Stats ---- */

/* The allocator's stats (NULL = current). Also refreshes allocator->stats. */
GooAllocStats goo_get_alloc_stats(GooAllocator* allocator);
/* Starts the allocator's counters again (NULL = current): total_allocations, total_frees and
 * failed_allocations restart from the blocks live now (total_allocations = allocation_count,
 * no frees, no failures; the histogram's totals likewise), max_bytes_allocated from the live
 * bytes. bytes_allocated, allocation_count and bytes_reserved describe blocks and memory that
 * still exist and are kept: those blocks' frees count as usual, and a limit still counts them.
 * No other thread may use the allocator meanwhile. */
void goo_memory_reset_stats(GooAllocator* allocator);

/* ---- Utilities ---- */

/* memmove: regions may overlap. No-op when size is 0; NULL with size > 0 is ignored. */
void goo_memory_copy(void* dest, const void* src, size_t size);
/* memset. No-op when size is 0 or dest is NULL. */
void goo_memory_set(void* dest, uint8_t value, size_t size);
/* For __attribute__((cleanup)): frees *ptr (a block from goo_runtime_alloc / goo_alloc, or NULL)
 * and sets *ptr to NULL. ptr itself may be NULL. */
void goo_memory_cleanup_ptr(void** ptr);

#ifdef __cplusplus
}
#endif

/* The library's allocators, one header each (each also includes this header). */
/* [allocator headers: one #include line per allocator, keep sorted] */
#include "goo/runtime/arena.h"
#include "goo/runtime/debug.h"
#include "goo/runtime/pool.h"
#include "goo/runtime/region.h"
#include "goo/runtime/scoped.h"
#include "goo/runtime/stats.h"

#endif /* GOO_RUNTIME_MEMORY_H */
