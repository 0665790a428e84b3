/*
 * goo-memory region allocator: memory regions with nested lifetimes and cleanup callbacks
 * (as in talloc, APR pools, PostgreSQL memory contexts). Use a region through every
 * goo_memory_*_with call. Not thread-safe: a region tree belongs to one thread at a time.
 *
 * Memory is carved from contiguous regions of region_size bytes (at least 48: a smaller size is
 * taken as 48), each starting with a 32-byte header; a request larger than a region's room
 * (region_size - 32 bytes, less any padding its alignment needs) gets a dedicated region when
 * allow_large_allocations is true (freeing it returns its memory at once) and fails (NULL,
 * counted, strategy applied) when false. Freeing the most recent block gives its bytes back;
 * other small frees are counted and their bytes come back at reset/destroy.
 * As in an arena, freeing a pointer that is not a live block of the region (a foreign pointer,
 * a block freed twice) is undefined: not detected (a debug allocator over it, debug.h, catches it).
 *
 * Resetting or destroying a region first resets or destroys its children, depth first, then
 * runs its cleanups in reverse order of registration (each exactly once), then frees its memory.
 * The goo_region_* functions check that the region is live: a destroyed or unknown pointer is
 * refused (false / 0 / NULL and a message on stderr), never dereferenced.
 *
 * Cleanups inside a reset or destroy. While a reset or destroy of a region R runs (from its
 * start until it returns, so in every cleanup it runs and in every callback it fires):
 *   - R, every region under R and every region above R can be neither reset nor destroyed:
 *     goo_region_allocator_reset returns false, goo_region_allocator_destroy and
 *     region->destroy(region) do nothing; each prints a message on stderr. So a cleanup that
 *     destroys or resets its own region, its parent, or (during the parent's reset or destroy)
 *     a sibling is refused, and the running reset or destroy finishes whole: every region of
 *     the subtree is reset or destroyed and every cleanup runs exactly once.
 *   - no child can be created under R or under a region of R's subtree when the operation is
 *     a destroy (goo_region_create_child returns NULL): the child would outlive its parent.
 *     During a reset a child may be created; it is new, so the running reset leaves it alone.
 *   Regions elsewhere (another tree, or another branch of R's tree) may be reset, destroyed and
 *   given children as usual; cleanups may register cleanups (they run in the same pass),
 *   allocate, name regions and read stats and reports.
 * Every refused goo_region_* request and refused region destroy is counted
 * (goo_region_refused_count).
 *
 * Limits (goo_allocator_set_limit, memory.h). A region's limit covers its whole subtree: an
 * allocation in the region or in any region under it (a resize's growth too) fails when it
 * would take the live bytes of the subtree of a limited region (summed over its regions,
 * itself included) past that region's limit, for every limited region above it; the region
 * asked fails as past its own limit: NULL, counted in its failed_allocations (not in the
 * limited one's), its strategy applied (a GC handler that frees memory anywhere in the tree
 * lets the retry fit), callbacks told. Limits on several levels all hold; a child created
 * under a limited region is covered at once. Each region's own live count is what it counted
 * (goo_region_stats; goo_region_subtree_stats sums them); a region under a limit counts even
 * with track_stats false. Freeing, resetting or destroying a region anywhere in the subtree
 * makes room. A limit set below what the subtree holds refuses every allocation in it until
 * frees bring it back under. The check costs the fast path nothing: each region under a limit
 * is granted a share it may fill without asking, and only a request past it asks the regions
 * above. When the shares granted hold the room left, such a request first takes back the slack
 * of the shares granted lately (up to 256 of them); only when that leaves too little does it
 * take every share back, a walk of the subtree of the topmost limited region, as do a refused
 * request and setting a limit in a limited tree (thousands of regions: milliseconds each).
 */
#ifndef GOO_RUNTIME_REGION_H
#define GOO_RUNTIME_REGION_H

#include "goo/runtime/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A cleanup: called with its argument when its region is reset or destroyed. */
typedef void (*GooCleanupFn)(void* arg);

/* A root region over the built-in default allocator (region_size 0 = 4096). Stats tracked.
 * Free with goo_region_allocator_destroy or region->destroy(region). Not thread-safe: its tree
 * belongs to one thread at a time (goo_locked_allocator_create shares one region). */
GooAllocator* goo_region_allocator_create(size_t region_size, bool allow_large_allocations);
/* As above, taking memory from parent (NULL = the current allocator; it must outlive the
 * region tree). */
GooAllocator* goo_region_allocator_create_ex(GooAllocator* parent, size_t region_size,
                                             bool allow_large_allocations);
/* A child of a live region (region_size 0 = the parent's), taking memory from where the parent
 * does; destroyed with its parent at the latest. NULL (with a message) if parent is not a live
 * region, or is being destroyed (from a cleanup: see above). Not thread-safe: it belongs to its
 * tree's thread. */
GooAllocator* goo_region_create_child(GooAllocator* parent, size_t region_size);
/* Resets the subtree (children stay alive, empty), running cleanups. False (with a message,
 * nothing reset) if region is not live, or from a cleanup or callback while a reset or destroy
 * of region, of a region above it or of one under it runs (see above). */
bool goo_region_allocator_reset(GooAllocator* region);
/* Destroys the region and its subtree and detaches it from its parent. Refused with a message
 * (nothing happens) for a pointer that is not a live region (for example a child destroyed
 * twice), and from a cleanup or callback while a reset or destroy of region, of a region above
 * it or of one under it runs (see above). region->destroy(region) on a live region follows the
 * same rule; on a destroyed one it cannot: the call itself reads region->destroy from freed
 * memory. Where a region may be gone already, call this function, which checks first. */
void goo_region_allocator_destroy(GooAllocator* region);
/* Registers fn(arg) to run at the region's reset or destroy. Returns an id (never 0, unique in
 * the process: no two cleanups of any regions share one), or 0 if the region is not live or fn
 * is NULL. */
uint64_t goo_region_add_cleanup(GooAllocator* region, GooCleanupFn fn, void* arg);
/* Cancels a cleanup of this region that has not run. Returns whether it was registered on it:
 * false, nothing cancelled, for an id of another region's cleanup (a parent's, a child's). */
bool goo_region_remove_cleanup(GooAllocator* region, uint64_t id);
/* Names the region (copied; NULL clears). It is the allocator's one name: the same as
 * goo_allocator_set_name sets, shown by goo_region_report and the stats.h reports alike.
 * False if not live. */
bool goo_region_set_name(GooAllocator* region, const char* name);
/* Stats of the region alone (all zero if not live, refused as above). */
GooAllocStats goo_region_stats(GooAllocator* region);
/* Stats summed over the region and its descendants, field by field (all zero if not live,
 * refused as above). */
GooAllocStats goo_region_subtree_stats(GooAllocator* region);
/* Writes a text report of the subtree (one line per region: name, live blocks and bytes,
 * reserved bytes, chunks, cleanups, subtree totals; children indented) into buffer, NUL
 * terminated and truncated to size, like snprintf. Returns the full length (0 if not live:
 * refused as above, with buffer left an empty string). buffer may be NULL when size is 0. Names are escaped as in the stats.h text report (a control
 * character, backslash or double quote is written as \n, \t, \u{1b}, \\, \"), so each region
 * is one line. */
size_t goo_region_report(GooAllocator* region, char* buffer, size_t size);
/* How many goo_region_* requests and region destroys were refused since the process started
 * (a pointer that is not a live region, and the cleanup rule above). */
uint64_t goo_region_refused_count(void);

#ifdef __cplusplus
}
#endif

#endif /* GOO_RUNTIME_REGION_H */
