/* What the pool constructors refuse, as pool.h says: an object size of 0, an alignment that is
 * not a power of two or is above 1 MiB, a block size that overflows, and for a shared pool a
 * block (rounded up to a power of two) past 1 GiB. The header said only "object_size 0 or the
 * block size overflows", for both kinds. */
#include <stdint.h>

#include "check.h"
#include "goo/runtime/memory.h"

static void both_refuse(size_t object_size, size_t alignment, size_t per_block) {
    CHECK(goo_pool_allocator_create_ex(NULL, object_size, alignment, per_block, 0) == NULL);
    CHECK(goo_pool_allocator_create_shared_ex(NULL, object_size, alignment, per_block, 0) == NULL);
    GooPoolOptions o = {NULL, object_size, alignment, per_block, 0, GOO_POOL_CHECK_ON};
    CHECK(goo_pool_allocator_create_opts(&o) == NULL);
}

static void both_serve(size_t object_size, size_t alignment, size_t per_block) {
    GooAllocator* pools[2] = {goo_pool_allocator_create_ex(NULL, object_size, alignment, per_block, 0),
                              goo_pool_allocator_create_shared_ex(NULL, object_size, alignment, per_block, 0)};
    for (int i = 0; i < 2; i++) {
        CHECK(pools[i] != NULL);
        void* p = goo_memory_alloc_ex(pools[i], object_size, alignment, GOO_ALLOC_DEFAULT);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & (alignment - 1)) == 0);
        goo_memory_free_ex(pools[i], p, object_size, alignment);
        goo_pool_allocator_destroy(pools[i]);
    }
}

int main(void) {
    both_refuse(0, 0, 0);
    both_refuse(8, 3, 0);
    both_refuse(8, (size_t)1 << 21, 1);
    both_refuse(8, (size_t)1 << 30, 1);
    both_refuse(SIZE_MAX, 0, 0);
    both_refuse(1, 0, SIZE_MAX);
    both_serve(8, (size_t)1 << 20, 1);
    both_serve(24, 64, 3);

    /* A block past 1 GiB: a shared pool refuses it, a pool takes it (and fails its requests
     * only if the parent cannot give the block). */
    CHECK(goo_pool_allocator_create_shared_ex(NULL, (size_t)1 << 30, 0, 1, 0) == NULL);
    CHECK(goo_pool_allocator_create_shared(4096, ((size_t)1 << 18) + 1) == NULL);
    GooAllocator* shared = goo_pool_allocator_create_shared(4096, (size_t)1 << 17);
    CHECK(shared != NULL);
    goo_pool_allocator_destroy(shared);
    GooAllocator* pool = goo_pool_allocator_create_ex(NULL, (size_t)1 << 40, 0, 1, 0);
    CHECK(pool != NULL);
    goo_pool_allocator_destroy(pool);
    return 0;
}
