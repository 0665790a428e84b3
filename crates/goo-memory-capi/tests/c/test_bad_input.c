/* Bad input never crashes or corrupts: NULL, counted in failed_allocations, allocator usable. */
#include <stdint.h>
#include <string.h>

#include "goo/runtime/memory.h"
#include "check.h"

int main(void) {
    GooAllocator* a = goo_system_allocator_create();
    size_t failed = 0;
#define EXPECT_FAIL(call)                                                  \
    do {                                                                   \
        CHECK((call) == NULL);                                             \
        CHECK_EQ(goo_get_alloc_stats(a).failed_allocations, ++failed);     \
    } while (0)
    EXPECT_FAIL(goo_memory_alloc_with(a, SIZE_MAX));
    EXPECT_FAIL(goo_memory_alloc_with(a, SIZE_MAX / 2 + 1));
    EXPECT_FAIL(goo_memory_alloc_ex(a, 16, 3, 0));          /* not a power of two */
    EXPECT_FAIL(goo_memory_alloc_ex(a, 16, 48, 0));
    EXPECT_FAIL(goo_memory_alloc_ex(a, 16, (size_t)1 << 63, 0));
    EXPECT_FAIL(goo_memory_alloc_array(a, SIZE_MAX / 2, 3, 0, 0)); /* count * size overflows */
    EXPECT_FAIL(goo_memory_alloc_array(a, (size_t)1 << 40, (size_t)1 << 40, 0, 0));
    EXPECT_FAIL(goo_memory_alloc_ex(a, (size_t)1 << 60, 0, 0)); /* the OS refuses */
    void* p = goo_memory_alloc_with(a, 32);
    CHECK(p != NULL);
    memset(p, 7, 32);
    EXPECT_FAIL(goo_memory_realloc_with(a, p, 32, SIZE_MAX));
    EXPECT_FAIL(goo_memory_realloc_ex(a, p, 32, 64, 5, 0));
    CHECK(((unsigned char*)p)[31] == 7); /* untouched */
    goo_memory_free_with(a, p, 32);
    goo_memory_free_with(a, NULL, 32);
    goo_memory_free_ex(a, NULL, SIZE_MAX, 3);
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK_EQ(s.total_allocations, 1);
    /* The vtable functions of a library allocator check their input even when called directly. */
    CHECK(a->alloc(a->context, SIZE_MAX, 0, 0) == NULL);
    CHECK(a->alloc(a->context, 8, 3, 0) == NULL);
    CHECK(a->alloc(a->context, 0, 8, 0) == NULL);
    a->free(a->context, NULL, 8, 8);
    a->destroy(a);
    printf("test_bad_input: ok\n");
    return 0;
}
