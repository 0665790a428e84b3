/*
 * goo-memory pool allocator: fixed-size objects in O(1), zero bytes of overhead per object.
 *
 * Objects come from blocks taken from a parent allocator; free objects form an intrusive list.
 * Requests up to the object size (and alignment) are served with one object; larger ones fail
 * (NULL, counted, strategy applied). A realloc within the object size stays in place.
 *
 * Bad frees. A free the pool refuses is reported on stderr, counted in misuse_detected, and
 * changes nothing else: no stats (allocation_count, total_frees and bytes_allocated stay as
 * they were, so a leak stays visible), no object. A block is never handed out twice after a
 * refused free. A realloc is checked as a free is: one of a pointer the free would refuse
 * returns NULL (reported, counted in misuse_detected, the block stays as it was).
 *   - Checked mode (on in debug builds of the library, with GOO_POOL_CHECKED=1 in the
 *     environment at creation, or by option) keeps a bitmap of live objects per block and
 *     refuses every pointer that is not a live object: one not from the pool, one not at an
 *     object boundary, one already free.
 *   - Unchecked mode (the release default) pays one range check per free and refuses a pointer
 *     outside the pool's address range (from its lowest object to the end of its highest), one
 *     off an object boundary (when object_stride is a power of two up to 4096; for other
 *     strides, one not aligned like the objects), and the object freed last, freed again.
 *     Undefined in unchecked mode (checked mode refuses them): a pointer that passes those
 *     tests but is no live object: memory between two of the pool's blocks or in a block's
 *     header, a pointer inside an object but aligned like the objects (for a stride that is
 *     not a power of two up to 4096), an object freed twice with other frees in between. The
 *     free list is then corrupt: objects may be handed out twice.
 *     goo_pool_allocator_get_stats never loops or reads outside the pool on a corrupt list (it
 *     walks at most total_objects entries, each found in a block first): it reports the
 *     corruption on stderr and its free and live counts are then unreliable, within
 *     total_objects.
 * Writes after a free. A free object holds the pool's link to the next free object, encoded
 * with a key random per pool; a pop checks that the link it reads names an object of the pool.
 * So a write through a stale pointer into a free object cannot make the pool hand out an
 * address the writer chose: the damage is reported on stderr and counted in misuse_detected,
 * the damaged object is handed out as usual, and the rest of its free list is dropped (its
 * objects leak; a checked pool rebuilds the list from its bitmaps instead). Shared pools do the
 * same for each thread's list.
 * Memory checkers. Under valgrind, and in a program built with -fsanitize=address, the pool
 * tells the tool which objects are handed out: a read or write of an object after its free (or
 * after a reset), or past the object size into the padding between objects, is reported by the
 * tool (under valgrind, except the first pointer-sized word of a free object, which holds the
 * pool's own link). Not the shared pool: its blocks are plain parent blocks to the tool.
 * A pool is not thread-safe: one thread at a time. A shared pool (goo_pool_allocator_create_shared)
 * is: many threads allocate and free at once, each from free lists of its own.
 */
#ifndef GOO_RUNTIME_POOL_H
#define GOO_RUNTIME_POOL_H

#include "goo/runtime/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counts of a pool. */
typedef struct GooPoolStats {
    size_t object_stride;     /* bytes between objects: the object size rounded to the alignment */
    size_t objects_per_block;
    size_t blocks;
    size_t total_objects;
    size_t free_objects;
    size_t live_objects;
    size_t max_objects;       /* 0 = no limit */
    size_t bytes_reserved;    /* bytes of blocks held from the parent */
    size_t misuse_detected;   /* bad frees and reallocs refused (see above) */
    bool checked;
} GooPoolStats;

/* Checked mode at creation. */
typedef enum GooPoolCheck {
    GOO_POOL_CHECK_DEFAULT = 0, /* on in debug builds or with GOO_POOL_CHECKED=1 */
    GOO_POOL_CHECK_OFF = 1,
    GOO_POOL_CHECK_ON = 2
} GooPoolCheck;

typedef struct GooPoolOptions {
    GooAllocator* parent;     /* where blocks come from (NULL = the current allocator; must outlive the pool) */
    size_t object_size;       /* > 0 */
    size_t alignment;         /* a power of two up to 1 MiB (2^20), 0 = natural for the size */
    size_t objects_per_block; /* 0 = about 4 KiB worth */
    size_t max_objects;       /* 0 = no limit */
    GooPoolCheck check;
} GooPoolOptions;

/* A pool of object_size-byte objects, objects_per_block per block, over the built-in default
 * allocator. Stats tracked. Free with goo_pool_allocator_destroy or pool->destroy(pool).
 * NULL if object_size is 0 or the block size overflows (a block past PTRDIFF_MAX / 2 bytes).
 * Not thread-safe: one thread at a time
 * (goo_locked_allocator_create makes it shareable; a shared pool is the fast way). */
GooAllocator* goo_pool_allocator_create(size_t object_size, size_t objects_per_block);
/* As above with a parent, an alignment (a power of two up to 1 MiB, 0 = natural for the size;
 * NULL for any other) and a cap on the number of objects (0 = none). */
GooAllocator* goo_pool_allocator_create_ex(GooAllocator* parent, size_t object_size, size_t alignment,
                                           size_t objects_per_block, size_t max_objects);
/* Every option, including checked mode. NULL if options is NULL or invalid (as for
 * goo_pool_allocator_create_ex). Not thread-safe. */
GooAllocator* goo_pool_allocator_create_opts(const GooPoolOptions* options);
/* A shared pool over the built-in default allocator. Thread-safe: any number of threads allocate
 * and free at once. Each thread pops and pushes free lists of its own without a lock; an object
 * is freed back to the thread whose block holds it (onto that thread's own list, or with a
 * compare-and-swap onto its list of objects other threads freed, which it takes whole when its
 * own list is empty), so objects flow back to where they are allocated. Blocks hold at least
 * objects_per_block objects (0 = about 4 KiB worth): a block's size is rounded up to a power of
 * two (its alignment too) and filled. Stats tracked, exact under threads. Bad frees: always the
 * cheap checks, no checked mode: a pointer outside the pool's address range, off an object
 * boundary of its block, or past the block's objects is refused as above (misuse_detected);
 * anything else that is no live object (a double free, memory between blocks) is undefined.
 * goo_pool_allocator_reset, goo_pool_allocator_get_stats and goo_pool_allocator_destroy work on
 * it (checked is false in its counts). Reset and the counts need the other threads out of the
 * pool: while another thread is inside an allocation or free of it, they refuse with a message
 * on stderr (false) and change nothing. With a cap (max_objects), a thread that finds no free
 * object of its own at the cap takes those other threads freed to lists they do not own, else
 * half of another thread's own list, which needs every other thread out of the pool for a
 * moment: an allocation at the cap fails only when every object is live, or when other threads
 * stayed inside the pool through a few tries (then NULL, counted, the strategy applied: a retry
 * may succeed). A thread's lists outlive the thread (the next thread to take its place uses
 * them). An
 * allocation that needs the pool's lock (no free object at hand), made by a thread already
 * inside the pool (from a callback on the parent while the pool takes a block from it), is
 * refused: NULL, counted, a message on stderr. NULL as for
 * goo_pool_allocator_create, and if a block (objects_per_block objects and a header, rounded
 * up to a power of two) would pass 1 GiB. */
GooAllocator* goo_pool_allocator_create_shared(size_t object_size, size_t objects_per_block);
/* As above with a parent (NULL = the current allocator; it must outlive the pool and be usable
 * from any thread one at a time: the pool calls it under a lock of its own), an alignment (as
 * for goo_pool_allocator_create_ex) and a cap on the number of objects (0 = none). */
GooAllocator* goo_pool_allocator_create_shared_ex(GooAllocator* parent, size_t object_size, size_t alignment,
                                                  size_t objects_per_block, size_t max_objects);
/* Every object back to the pool, blocks kept. False (nothing done) if pool is not a pool, or (a
 * shared pool) while another thread is inside it. */
bool goo_pool_allocator_reset(GooAllocator* pool);
/* Destroys the pool, returning its blocks to the parent. NULL or a non-pool: does nothing.
 * Using a pool after its destroy, this call included, is undefined. */
void goo_pool_allocator_destroy(GooAllocator* pool);
/* Fills *stats; false (nothing written) if pool is not a pool or stats is NULL, or (a shared
 * pool) while another thread is inside it. */
bool goo_pool_allocator_get_stats(GooAllocator* pool, GooPoolStats* stats);

#ifdef __cplusplus
}
#endif

#endif /* GOO_RUNTIME_POOL_H */
