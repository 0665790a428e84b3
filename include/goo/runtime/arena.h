/*
 * goo-memory arena allocator: bump allocation in chunks taken from a parent allocator, freed
 * all at once. Use it through every goo_memory_*_with call. An arena is not thread-safe: one
 * thread at a time (stats included). A shared arena (goo_arena_allocator_create_shared) is: many
 * threads allocate from it at once, each in chunks of its own.
 *
 * Freeing the most recent allocation gives its bytes back; realloc of the most recent
 * allocation grows or shrinks in place; other frees are accepted and only counted. The arena
 * keeps no record of its blocks, so freeing a pointer that is not a live block of it (a foreign
 * pointer, a block freed twice) is undefined: not detected (a debug allocator over
 * the arena, debug.h, catches it). Any power-of-two alignment up to 2^30 works (large ones cost padding or a
 * dedicated chunk).
 * Stats: bytes_reserved = bytes of chunks held; bytes_allocated = what callers asked for.
 * Under valgrind, and in a program built with -fsanitize=address, the arena tells the tool which
 * of its bytes are handed out: a read or write past a block (into the chunk's unused rest), or
 * of a block after its free, a reset or a rewind past it, is reported by the tool. (Not the
 * shared arena: its chunks are plain parent blocks to the tool.)
 */
#ifndef GOO_RUNTIME_ARENA_H
#define GOO_RUNTIME_ARENA_H

#include "goo/runtime/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An arena over the built-in default allocator whose first chunk holds initial_size bytes
 * (0 = 4096). Chunks double up to 16 MiB (or initial_size, if larger); a request too big for a
 * chunk gets its own. Stats tracked. Free with goo_arena_allocator_destroy or arena->destroy.
 * NULL if out of memory. Not thread-safe: one thread at a time (goo_locked_allocator_create
 * makes it shareable; a shared arena is the fast way). */
GooAllocator* goo_arena_allocator_create(size_t initial_size);
/* As above, taking chunks from parent (NULL = the current allocator, fixed at creation; it must
 * outlive the arena) and never holding more than max_bytes of chunks, their 32-byte headers
 * included (0 = no limit): when the chunk the arena would grow to does not fit, a request that
 * fits the room left gets a chunk of that room; a request past the limit fails like any
 * out-of-memory (NULL, counted, strategy applied). */
GooAllocator* goo_arena_allocator_create_ex(GooAllocator* parent, size_t initial_size, size_t max_bytes);
/* A shared arena over the built-in default allocator. Thread-safe: any number of threads allocate
 * from it at once, each without a lock, bumping in chunks of its own (the first of initial_size
 * bytes, 0 = 4096, then 1.75x larger each up to 16 MiB); a request too big for a thread's chunk
 * gets a chunk of its own. Stats tracked, exact under threads. Frees: freeing the most recent
 * block of the calling thread's own chunk gives its bytes back (whichever thread allocated it);
 * other frees are accepted and only counted, dedicated chunks included (they go back at reset).
 * goo_arena_allocator_reset, goo_arena_mark, goo_arena_rewind, goo_arena_allocator_chunk_count
 * and goo_arena_allocator_destroy work on it. Reset, mark and rewind need the other threads out
 * of the arena: while another thread is inside an allocation or free of it (or taking a chunk),
 * they refuse with a message on stderr (false; a mark no rewind accepts) and change nothing.
 * Called once the other threads are done with it (joined, or synchronised with), they succeed.
 * A reset keeps each thread's current chunk (the next thread to take that thread's place bumps
 * on in it) and returns the others to the parent. A mark keeps 32 bytes per thread that has a
 * chunk, until a reset or a rewind to an earlier mark; marks nest as for an arena. A thread's
 * chunk outlives the thread. An allocation that needs the arena's lock (a new chunk), made by a
 * thread already inside the arena (from a callback on the parent while the arena takes or
 * returns a chunk), is refused: NULL, counted, a message on stderr. Destroy it when no thread uses it any more. NULL if out of memory. */
GooAllocator* goo_arena_allocator_create_shared(size_t initial_size);
/* As above, taking chunks from parent (NULL = the current allocator, fixed at creation; it must
 * outlive the arena and be usable from any thread one at a time: the arena calls it under a lock
 * of its own) and never holding more than max_bytes of chunks (0 = no limit), as for
 * goo_arena_allocator_create_ex. */
GooAllocator* goo_arena_allocator_create_shared_ex(GooAllocator* parent, size_t initial_size,
                                                   size_t max_bytes);
/* Frees every allocation at once; keeps the largest chunk and returns the others to the parent
 * (a shared arena: each thread's current chunk). Marks taken before become invalid. Returns
 * false (and does nothing) if arena is not an arena, or is a shared arena another thread is
 * inside (with a message on stderr). */
bool goo_arena_allocator_reset(GooAllocator* arena);
/* Destroys the arena, returning all chunks to its parent. NULL or a non-arena: does nothing.
 * This thread's temporary arena (goo_temp_allocator) is the library's: its destroy is refused
 * with a message (arena->destroy(arena) likewise). Using an arena after its destroy, this call
 * included, is undefined. */
void goo_arena_allocator_destroy(GooAllocator* arena);
/* Number of chunks the arena holds (0 for a non-arena). */
size_t goo_arena_allocator_chunk_count(GooAllocator* arena);
/* A checkpoint of the arena's current position. For a non-arena, and for a shared arena another
 * thread is inside (with a message on stderr), a mark no rewind accepts. */
GooArenaMark goo_arena_mark(GooAllocator* arena);
/* Returns the arena to the mark: everything allocated after it is freed (a block resized after
 * it counts as allocated after it), chunks taken after it go back to the parent. Marks nest:
 * rewind inner marks before outer ones. Returns false, prints why to stderr and changes nothing
 * if the mark was taken before a reset, was invalidated by a rewind to an earlier mark, or
 * belongs to no chunk of this arena (a shared arena: to another arena), or, for a shared arena,
 * while another thread is inside it. A rewind invalidates, for good, every mark taken before it
 * at a later position than the one it returns to (with an allocation or a chunk between them):
 * however far the arena grows again, such a mark stays refused. A mark taken at the very
 * position returned to (nothing allocated between) stays valid, as does any mark taken after
 * the rewind, and a mark above blocks freed since it was taken (freeing the most recent block
 * moves the arena below the mark; the rewind takes those bytes back). Each position rewound to
 * after marks were taken above it costs the arena 32 bytes until the next reset or a rewind
 * below it. The live counts in the stats (bytes_allocated, allocation_count) become the lesser
 * of their values before the rewind and at the mark: exact, unless blocks allocated before the
 * mark were freed or resized since; then they stay too high, by at most what those blocks
 * took, until a reset. */
bool goo_arena_rewind(GooAllocator* arena, GooArenaMark mark);

#ifdef __cplusplus
}
#endif

#endif /* GOO_RUNTIME_ARENA_H */
