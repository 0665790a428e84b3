/*
 * goo-memory legacy API: unsized allocation, for code written before the sized API.
 *
 * Blocks carry a 16-byte header holding their size and the allocator they came from (the
 * current allocator at allocation time), so they work over any allocator, including sized
 * custom ones, and can be freed after the current allocator changed (while it stays valid).
 * Blocks are 16-byte aligned. Legacy blocks must only be freed/resized with legacy calls.
 *
 * A free or resize checks the header first (its size carries a check of the block's address and
 * allocator), since a block freed already may have had it overwritten (by the debug allocator's
 * fill, by malloc's free lists). A header that fails the check is refused, the block left
 * alone: the debug allocator that freed the block, if one did, reports it with its sites (see
 * goo_debug_error_count); otherwise it is reported once on stderr. An intact header of a freed
 * block goes to its allocator, whose own checks find the double free (the heap's, the debug
 * allocator's). A freed block's memory may also be unmapped (the C library gives large blocks
 * back to the OS at once), so the library reads a header only where memory stays mapped: a
 * block of more than 16 KiB (header included) from the heap or the system allocator (or a
 * debug or locked allocator over one) starts on a page (its pointer is 16 bytes past one), and
 * the library lists every live block that starts on a page outside the heap's own memory
 * (which stays mapped), until it is freed or its allocator is reset or destroyed; a free or
 * resize of such a block that is not listed is refused unread. Other allocators are asked for 16-byte alignment: an arena's, pool's,
 * region's or scope's blocks stay mapped until its reset, end or destroy, after which freeing
 * them is undefined, as their headers say of any use of their memory; what an allocator
 * written in C unmaps at a free is its contract's to define.
 */
#ifndef GOO_MEMORY_H
#define GOO_MEMORY_H

#include "goo/runtime/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* size bytes from the current allocator, or NULL. size 0 returns a unique freeable block. */
void* goo_runtime_alloc(size_t size);
/* ptr NULL: allocates. new_size 0: frees ptr, returns NULL. Else resizes in the block's own
 * allocator; on failure returns NULL and ptr stays valid. */
void* goo_runtime_realloc(void* ptr, size_t new_size);
/* Frees a legacy block; NULL is a no-op. */
void goo_runtime_free(void* ptr);

/* Aliases of the three above. */
void* goo_alloc(size_t size);
void* goo_realloc(void* ptr, size_t size);
void goo_free(void* ptr);

#ifdef __cplusplus
}
#endif

#endif /* GOO_MEMORY_H */
