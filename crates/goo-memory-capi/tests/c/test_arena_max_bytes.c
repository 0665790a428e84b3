/* An arena's max_bytes caps the chunks it holds, headers included; a request that fits the room
 * left gets a chunk of that room. The arena asked for chunks of the size it grows to whatever
 * the room: goo_arena_allocator_create_ex(NULL, 0, 4096) could serve nothing (its first chunk,
 * 4096 bytes and a header, passed 4096), and an arena near its max_bytes failed requests a
 * tenth of the room left would hold. The shared arena likewise. */
#include <stdint.h>

#include "check.h"
#include "goo/runtime/memory.h"

static void fill(GooAllocator* a, size_t max_bytes) {
    void* first = goo_memory_alloc_with(a, 16);
    CHECK(first != NULL);
    size_t served = 16;
    while (goo_memory_alloc_with(a, 112) != NULL) served += 112;
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK(s.bytes_reserved <= max_bytes);
    /* What goes unused: each chunk's header and a tail too short for one more request, and
     * less than one more chunk's worth. */
    size_t chunks = goo_arena_allocator_chunk_count(a);
    CHECK(served + (chunks + 1) * (32 + 112) >= max_bytes);
    CHECK_EQ(s.bytes_allocated, served);
    CHECK(goo_memory_alloc_with(a, max_bytes) == NULL);
}

int main(void) {
    size_t sizes[] = {4096, 5000, 16384, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        GooAllocator* a = goo_arena_allocator_create_ex(NULL, 0, sizes[i]);
        CHECK(a != NULL);
        fill(a, sizes[i]);
        CHECK(goo_arena_allocator_reset(a));
        fill(a, sizes[i]);
        goo_arena_allocator_destroy(a);

        GooAllocator* shared = goo_arena_allocator_create_shared_ex(NULL, 0, sizes[i]);
        CHECK(shared != NULL);
        fill(shared, sizes[i]);
        goo_arena_allocator_destroy(shared);
    }
    /* Room for no chunk header at all: nothing. */
    GooAllocator* tiny = goo_arena_allocator_create_ex(NULL, 0, 40);
    CHECK(goo_memory_alloc_with(tiny, 1) == NULL);
    goo_arena_allocator_destroy(tiny);
    return 0;
}
