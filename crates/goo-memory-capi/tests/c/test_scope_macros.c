/* The scope macros with only <goo/runtime/scoped.h> included: every function they expand to is
 * declared (an undeclared goo_runtime_alloc would be implicitly int and cut the pointer to 32
 * bits), the block is usable, and both variables are cleaned up when they go out of scope. */
#include <stdint.h>
#include <string.h>

#include "goo/runtime/scoped.h"
#include "check.h"

static uintptr_t seen;

static void use_scope_alloc(void) {
    GOO_SCOPE_ALLOC(buf, 4096);
    CHECK(buf != NULL);
    memset(buf, 0x5a, 4096);
    CHECK(((unsigned char*)buf)[4095] == 0x5a);
    seen = (uintptr_t)buf;
}

int main(void) {
    size_t before = goo_get_alloc_stats(NULL).allocation_count;
    use_scope_alloc();
    CHECK(seen != 0);
    CHECK_EQ(goo_get_alloc_stats(NULL).allocation_count, before); /* freed at the scope's end */
    {
        GOO_WITH_SCOPE(s);
        CHECK(s != NULL);
        void* p = goo_memory_alloc(100);
        CHECK(p != NULL);
        memset(p, 1, 100);
    }
    CHECK_EQ(goo_get_alloc_stats(NULL).allocation_count, before); /* the scope freed it */
    goo_memory_cleanup();
    return 0;
}
