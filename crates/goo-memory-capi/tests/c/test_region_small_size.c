/* A region_size below 48 is taken as 48 (region.h): a region of "1 byte" without large
 * allocations serves requests up to 16 bytes (48 less the 32-byte header) and refuses larger
 * ones; its children of a small size likewise. The header said the room was region_size - 32
 * bytes, which is no room at all for sizes up to 32. */
#include "check.h"
#include "goo/runtime/memory.h"

int main(void) {
    size_t sizes[] = {1, 16, 32, 47, 48};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        GooAllocator* r = goo_region_allocator_create(sizes[i], false);
        CHECK(r != NULL);
        GooAllocator* child = goo_region_create_child(r, sizes[i]);
        CHECK(child != NULL);
        GooAllocator* both[2] = {r, child};
        for (int k = 0; k < 2; k++) {
            void* p = goo_memory_alloc_with(both[k], 16);
            CHECK(p != NULL);
            goo_memory_free_with(both[k], p, 16);
            CHECK(goo_memory_alloc_with(both[k], 17) == NULL);
            GooAllocStats s = goo_region_stats(both[k]);
            CHECK_EQ(s.failed_allocations, 1);
            CHECK_EQ(s.bytes_reserved, 48);
        }
        goo_region_allocator_destroy(r);
    }
    return 0;
}
