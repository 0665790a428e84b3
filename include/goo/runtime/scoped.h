/*
 * goo-memory scoped allocator and temporary allocations.
 *
 * A scoped allocator takes memory from a parent and remembers every live block, so single frees
 * and reallocs work as usual; when the scope ends, everything still live is freed at once.
 * Small blocks (1 to 8192 bytes, alignment up to 16) are carved from chunks the scope takes from
 * its parent (1 KiB first, doubling up to 256 KiB), in 56 size classes (a block is at most 1/8
 * larger than asked, 16 bytes at most up to 128), behind a 16-byte header;
 * a freed small block serves the scope's next request of its class, and the chunks go back to
 * the parent when the scope ends (so the parent's stats show chunks, and a scope holds up to its
 * peak of small blocks until it ends; goo_get_alloc_stats(scope).bytes_reserved says how much).
 * Larger or more aligned blocks are parent blocks of their own behind a 32-byte header, given
 * back at once when freed. GOO_ALLOC_PERSIST blocks are plain blocks of the parent: they survive
 * the scope. While the scope lives, free them through the scope (which frees them in the
 * parent; its stats count them until then); after it ends, through the parent. A scope belongs
 * to the thread that made it.
 *
 * Limits (goo_allocator_set_limit, memory.h). What a scope takes from its parent (its chunks,
 * its large and PERSIST blocks) counts against the parent's limit (a scope over a child region
 * against the limits of the regions above it too: a region's covers its subtree). A scope asks
 * its parent for a chunk of the size it grows to; refused, it asks for one just for the block
 * at hand (the first refusal is no failure of the parent's: not counted, no strategy). A chunk
 * the parent refuses then fails the scope's request (NULL, counted in both, the strategy of
 * each applied). A limit on the scope itself counts the blocks it hands out.
 *
 * Bad frees. Each header carries a tag naming its scope by the scope's generation (every scope
 * ever made has its own): freeing or resizing here a block of another live scope, a small block
 * already freed, or a block of an ended scope, is reported on stderr and ignored: no stats
 * change (a resize returns NULL, counted as a failure; no RETRY or GC handler runs for it). The
 * check reads the 8 bytes in front of the pointer, so it is defined only where those bytes are
 * still readable: blocks of live scopes (small ones even after they are freed: their chunk
 * stays the scope's until it ends), blocks of an ended scope whose parent still holds the
 * memory (an arena parent, say), and memory of the program's own. A large block freed twice,
 * a block whose memory went back to the system, or any other pointer is undefined (a debug
 * allocator, debug.h, over the scope's parent catches it). A pointer equal to a live block of
 * this scope is that block, whatever it was meant to be.
 *
 * Ended scopes. Ending a scope leaves its pointer naming no scope: goo_scope_end and the other
 * goo_scope_* calls refuse it (with a message, or 0), an allocation or resize through it fails
 * (NULL, counted in its stats), a free or a destroy through it is ignored, each with a message
 * on stderr. The library keeps the ended scope's memory for that until 8 more scopes of its
 * thread have ended (then it reuses or frees it, and the pointer is undefined); no new scope
 * takes it before.
 *
 * Temporary allocations come from a per-thread arena made on first use and freed at thread
 * exit. GOO_ALLOC_TEMP on any goo_memory_*_ex / alloc_array request routes it there, whatever
 * allocator was named; such blocks are released by goo_temp_reset / goo_temp_rewind (freeing
 * them individually through another allocator is an error).
 */
#ifndef GOO_RUNTIME_SCOPED_H
#define GOO_RUNTIME_SCOPED_H

#include "goo/runtime/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Begins a scope over the current allocator and makes it this thread's allocator (scopes nest:
 * goo_memory_alloc and the legacy API now allocate in it). NULL if out of memory. Not
 * thread-safe: a scope belongs to the thread that made it. A scope its thread has not ended
 * when the thread exits stays, with its memory, for the process's life: no other thread may
 * end it. */
GooAllocator* goo_scope_begin(void);
/* Ends a scope: frees what is still live, restores the previous thread allocator (for a scope
 * from goo_scope_begin, if the thread allocator is still this scope: after goo_memory_cleanup,
 * or once the program set another, it is left as it is), destroys it. Refused with a message on
 * stderr, nothing freed, when the scope belongs to another thread, when an inner scope begun
 * later on this thread is still active (end scopes innermost first), or when it is not a live
 * scope (never one, or ended). Returns whether it ended. Scopes begun before goo_memory_cleanup
 * stay live and end as usual, innermost first. */
bool goo_scope_end(GooAllocator* scope);
/* A scope over parent (NULL = the current allocator; it must outlive the scope), not installed
 * as the thread allocator. Not thread-safe: it belongs to the thread that made it. End it with
 * goo_scope_end or scope->destroy(scope) (which, for a scope from goo_scope_begin, also ends
 * inner scopes first and restores the thread allocator), on that thread: from another, both are
 * refused with a message on stderr, and the scope stays. */
GooAllocator* goo_scoped_allocator_create(GooAllocator* parent);
/* Blocks and bytes live in the scope (0 if not a scope). */
size_t goo_scope_live_count(GooAllocator* scope);
size_t goo_scope_live_bytes(GooAllocator* scope);
/* When on, ending the scope prints how many blocks (and bytes) it freed implicitly. */
void goo_scope_set_leak_report(GooAllocator* scope, bool on);
/* For __attribute__((cleanup)): ends *scope if it is not NULL. */
void goo_scope_cleanup(GooAllocator** scope);

/* size bytes (natural alignment) from this thread's temporary arena; NULL on failure. */
void* goo_temp_alloc(size_t size);
/* Frees every temporary allocation of this thread. The arena keeps one chunk, the library's
 * own memory (taken from no allocator of yours, not the built-in default either), so after a
 * reset goo_memory_cleanup reports no leak for it; temporary allocations still live then are
 * reported under the temporary arena (kind arena). The chunk is freed at thread exit. */
void goo_temp_reset(void);
/* A checkpoint of this thread's temporary arena, and a rewind to it (false, with a message,
 * if the mark is stale or invalid). goo_temp_reset and goo_temp_rewind are refused, with a
 * message, while Rust code on the thread runs inside goo_memory_core::temp::with, whose blocks
 * they would free; that call frees the temporary blocks made meanwhile when it returns. */
GooArenaMark goo_temp_mark(void);
bool goo_temp_rewind(GooArenaMark mark);
/* This thread's temporary arena as an allocator (created on first use). It is the library's:
 * a destroy of it is refused with a message (reset it with goo_temp_reset). */
GooAllocator* goo_temp_allocator(void);

/* The legacy allocation GOO_SCOPE_ALLOC makes (the legacy API, goo_memory.h, declares it too):
 * size bytes from the current allocator, freed by goo_runtime_free / goo_memory_cleanup_ptr. */
void* goo_runtime_alloc(size_t size);

#if defined(__GNUC__) || defined(__clang__)
/* A void* variable freed (goo_memory_cleanup_ptr) when it goes out of scope:
 *     GOO_SCOPED void* buf = goo_alloc(256);                                         */
#define GOO_SCOPED __attribute__((cleanup(goo_memory_cleanup_ptr)))
/* Declares void* name = goo_runtime_alloc(size), freed when name goes out of scope. */
#define GOO_SCOPE_ALLOC(name, size) GOO_SCOPED void* name = goo_runtime_alloc(size)
/* Begins a scope that ends when name goes out of scope (every allocation made on this thread
 * meanwhile, through the current allocator, is freed then):
 *     { GOO_WITH_SCOPE(s); char* tmp = goo_memory_alloc(100); ... }                   */
#define GOO_WITH_SCOPE(name) __attribute__((cleanup(goo_scope_cleanup))) GooAllocator* name = goo_scope_begin()
#endif

#ifdef __cplusplus
}
#endif

#endif /* GOO_RUNTIME_SCOPED_H */
