/*
 * goo-memory debug allocator: wraps any allocator and reports every misuse it can see, naming
 * the sites involved (where the block was allocated, where it was freed, where it was misused):
 *   - a double free (also one made after the block left the quarantine, below, while it is
 *     among the last 4096 blocks that left it; an older one is reported as a free of a
 *     pointer the allocator never returned);
 *   - a free (or realloc) of a pointer it never returned, or of a pointer inside a live block;
 *   - a free or realloc that names the wrong size or alignment;
 *   - writes before or after a block: every block has guard bytes on both sides (at least 16,
 *     and the back guard also covers the padding up to the next 16 bytes), checked when the
 *     block is freed or reallocated and by goo_debug_check;
 *   - writes after a free: a freed block is filled with 0xDD and held in a quarantine (1 MiB of
 *     freed bytes and 4096 blocks by default) before it goes back to the parent; it is checked
 *     when it leaves, and by goo_debug_check. A block larger than the whole quarantine goes
 *     back at once (its double free is still reported; a write after its free is not seen).
 * A fresh block holds 0xAA (unless zeroed), so reads of memory never written show that pattern.
 * A misuse is reported on stderr and counted (goo_debug_error_count); the program then goes on,
 * the misuse refused (a bad free or resize changes nothing: the block stays live, the stats do
 * not count it as freed or moved; a refused resize returns NULL and counts in
 * failed_allocations, as any request that returns NULL, but no RETRY or GC handler runs for it,
 * while PANIC aborts), or aborts after the report with GOO_DEBUG_ABORT.
 *
 * Sites: a request's site is the return address out of the library into the calling code,
 * symbolized in reports (function, file and line when the program has debug info); or
 * __FILE__:__LINE__ given with goo_memory_alloc_at / GOO_ALLOC_HERE and goo_memory_free_at /
 * GOO_FREE_HERE. The entry points that allocate, resize or free take their return address as
 * they are entered (x86-64 and AArch64; nothing is added to a request that no debug allocator
 * serves), so finding it walks no stack; goo_memory_realloc_ex, the destruction of an allocator
 * whose parent is a debug allocator, and other targets walk the stack instead (about 100 ns a
 * frame). With GOO_DEBUG_TRACES each block and free also keeps a stack trace of 8 frames from
 * the site outwards (a walk).
 *
 * Leaks: the live blocks grouped by site, count and bytes, largest first, are reported when a
 * debug allocator is destroyed (on stderr), by goo_memory_cleanup (for every live debug
 * allocator) and on demand (goo_debug_report). Blocks still live when it is destroyed stay
 * allocated in the parent (they are the program's leaks).
 *
 * Environment: GOO_MEMORY_DEBUG=1 makes goo_memory_init put a debug allocator over the default
 * allocator and make it the default, so every request through the default (goo_memory_alloc,
 * the legacy API, allocators created over the default) is checked without code changes;
 * goo_memory_cleanup reports its live blocks and destroys it, unless blocks of it or other
 * library allocators (which may have been made over it) are still live: then it stays (no
 * longer the default), so that freeing them later is still checked, and a later
 * goo_memory_cleanup destroys it once they are gone. GOO_DEBUG_TRACES=1 and GOO_DEBUG_ABORT=1 add those flags to every debug
 * allocator created while they are set; GOO_DEBUG_QUARANTINE=<bytes> sets the quarantine's
 * size (0: freed blocks go back at once, after the double-free record is kept).
 *
 * Thread safety: its bookkeeping is behind a lock; its requests to the parent are made outside
 * it, so a debug allocator may be used by several threads at once exactly when its parent may
 * (a system or heap allocator: yes; an arena, pool, region or scope: one thread at a time).
 * Cost: every request takes the lock and a table update and fills the guards (and the block);
 * every free checks the block leaving the quarantine; a freed block's memory stays held while
 * it is in the quarantine. A 64-byte pair takes about 150 ns (traces: about 3 us).
 */
#ifndef GOO_RUNTIME_DEBUG_H
#define GOO_RUNTIME_DEBUG_H

#include <stdio.h>

#include "goo/runtime/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for goo_debug_allocator_create (OR them; other bits are ignored). */
enum {
    GOO_DEBUG_TRACES = 1, /* keep a stack trace of 8 frames per block and per free */
    GOO_DEBUG_ABORT = 2   /* abort the process after reporting the first misuse */
};

/* A new debug allocator over parent (NULL = the current allocator, fixed now; it must outlive
 * the debug allocator), with its own stats (track_stats true) and strategy NULL. Free it with
 * allocator->destroy(allocator) or goo_allocator_destroy, which first reports its live blocks
 * by site on stderr (nothing when none is live). NULL if out of memory. Each block takes its
 * size plus at least 16 guard bytes on each side from parent: over a pool, only requests that
 * fit an object with their guards succeed. A reset of parent made directly (an arena, pool or
 * region reset, not through the debug allocator) frees the debug allocator's blocks too: at
 * its next request or check it forgets them all, live and quarantined (they leave its counts,
 * none is reported or given back), so that the parent's reuse of their memory raises no false
 * report. (A stale free of such a block at the address of a new block of the same size is
 * taken for a free of the new one: the next free of that one is reported as a double free.)
 * A rewind of an arena parent is not seen this way: rewind only through blocks no debug
 * allocator over it holds. */
GooAllocator* goo_debug_allocator_create(GooAllocator* parent, unsigned flags);
/* Whether allocator (NULL = current) is a debug allocator. */
bool goo_allocator_is_debug(GooAllocator* allocator);
/* Checks the guards of every live block and every quarantined block, and that quarantined
 * blocks still hold the freed pattern. Returns the number of damaged blocks found now (0 for an
 * allocator that is not a debug allocator); each is reported on stderr, and counted as an error,
 * the first time it is found. NULL = current. */
size_t goo_debug_check(GooAllocator* allocator);
/* How many misuses the debug allocator (NULL = current) has reported; 0 for another allocator. */
size_t goo_debug_error_count(GooAllocator* allocator);
/* Writes the leak report of a debug allocator (NULL = current) to out: its live blocks grouped
 * by site, count and bytes, largest first.
 *   GOO_REPORT_TEXT: "debug allocator 0x... "name": N live block(s), B byte(s) from S site(s);
 *                    E error(s) reported", then "  B byte(s) in N block(s) allocated at SITE"
 *                    per site (and its trace, one frame a line).
 *   GOO_REPORT_JSON: {"allocator","name" ("" if none),"live_blocks","live_bytes","errors",
 *                    "sites":[{"site","address","blocks","bytes","trace":[...]}]}
 * Returns the bytes written; 0 (nothing written, a message on stderr) for an allocator that is
 * not a debug allocator or an unknown format, and 0 when out is NULL. */
size_t goo_debug_report(GooAllocator* allocator, FILE* out, GooReportFormat format);
/* The same report into buffer, NUL-terminated and truncated like snprintf; returns the full
 * length (0 when refused as above; buffer, when size > 0, then holds the empty string). */
size_t goo_debug_report_buffer(GooAllocator* allocator, char* buffer, size_t size, GooReportFormat format);

/* goo_memory_alloc_with(allocator, size), with file:line as the block's site when the request
 * reaches a debug allocator (directly, or through an allocator over one). file must be a string
 * that is never changed or freed (__FILE__); reports print it. */
void* goo_memory_alloc_at(GooAllocator* allocator, size_t size, const char* file, int line);
/* goo_memory_free_with(allocator, ptr, size), with file:line as the site of the free. */
void goo_memory_free_at(GooAllocator* allocator, void* ptr, size_t size, const char* file, int line);

/* The caller's file and line as the site. */
#define GOO_ALLOC_HERE(allocator, size) goo_memory_alloc_at((allocator), (size), __FILE__, __LINE__)
#define GOO_FREE_HERE(allocator, ptr, size) goo_memory_free_at((allocator), (ptr), (size), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif /* GOO_RUNTIME_DEBUG_H */
