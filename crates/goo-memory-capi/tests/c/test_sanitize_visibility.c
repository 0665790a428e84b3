/* Memory checkers see misuse inside the library's own memory (issue #20): the arena, the
 * pool and the scope's free lists tell valgrind (client requests) and AddressSanitizer (its
 * poisoning interface) which of their bytes are handed out, and the system allocator (the
 * default under a tool) gives malloc's blocks at their exact sizes and caches none. A read past
 * an arena block, after a pool free, past a scoped block or after a scoped free, after a system
 * allocator's free and past a small block of the default allocator are then reported by the
 * tool: under valgrind (GOO_VALGRIND=1, as the test harness sets it) as an invalid read, in an
 * ASan build (GOO_SANITIZE=1) as a use-after-poison, heap-use-after-free or overflow.
 * Without a tool the reads just happen. Each misuse runs in a child; correct use under the
 * tools is what every other test checks. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "goo/runtime/memory.h"
#include "goo/runtime/pool.h"
#include "child.h"

/* Valgrind writes its reports to its own copy of stderr, which a child's dup2 does not
 * redirect: the child counts them itself (valgrind's header comes with valgrind). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define ERRORS_SO_FAR() ((unsigned)VALGRIND_COUNT_ERRORS)
#endif
#endif
#ifndef ERRORS_SO_FAR
#define ERRORS_SO_FAR() 0u
#endif

static volatile char sink;

static void read_past_an_arena_block(void) {
    GooAllocator* arena = goo_arena_allocator_create(0);
    CHECK(arena != NULL);
    char* p = (char*)goo_memory_alloc_with(arena, 16);
    CHECK(p != NULL);
    memset(p, 1, 16);
    unsigned before = ERRORS_SO_FAR();
    sink = p[16]; /* the arena's unused rest */
    fprintf(stderr, "read done, %u valgrind error(s)\n", ERRORS_SO_FAR() - before);
    goo_arena_allocator_destroy(arena);
}

static void read_after_a_pool_free(void) {
    GooAllocator* pool = goo_pool_allocator_create(64, 16);
    CHECK(pool != NULL);
    char* p = (char*)goo_memory_alloc_with(pool, 64);
    CHECK(p != NULL);
    memset(p, 1, 64);
    goo_memory_free_with(pool, p, 64);
    unsigned before = ERRORS_SO_FAR();
    sink = p[32];
    fprintf(stderr, "read done, %u valgrind error(s)\n", ERRORS_SO_FAR() - before);
    goo_pool_allocator_destroy(pool);
}

static void read_after_a_scoped_free(void) {
    GooAllocator* scope = goo_scoped_allocator_create(NULL);
    CHECK(scope != NULL);
    char* p = (char*)goo_memory_alloc_with(scope, 64);
    CHECK(p != NULL);
    memset(p, 1, 64);
    goo_memory_free_with(scope, p, 64); /* onto the scope's free list */
    unsigned before = ERRORS_SO_FAR();
    sink = p[32];
    fprintf(stderr, "read done, %u valgrind error(s)\n", ERRORS_SO_FAR() - before);
    goo_allocator_destroy(scope);
}

static void read_past_a_scoped_block(void) {
    GooAllocator* scope = goo_scoped_allocator_create(NULL);
    CHECK(scope != NULL);
    char* p = (char*)goo_memory_alloc_with(scope, 40); /* a block of the 48-byte class */
    CHECK(p != NULL);
    memset(p, 1, 40);
    unsigned before = ERRORS_SO_FAR();
    sink = p[40];
    fprintf(stderr, "read done, %u valgrind error(s)\n", ERRORS_SO_FAR() - before);
    goo_allocator_destroy(scope);
}

static void read_after_a_system_free(void) {
    GooAllocator* system = goo_system_allocator_create();
    CHECK(system != NULL);
    char* p = (char*)goo_memory_alloc_with(system, 64);
    CHECK(p != NULL);
    memset(p, 1, 64);
    goo_memory_free_with(system, p, 64); /* to free() under a tool (the cache takes none) */
    unsigned before = ERRORS_SO_FAR();
    sink = p[8];
    fprintf(stderr, "read done, %u valgrind error(s)\n", ERRORS_SO_FAR() - before);
    goo_allocator_destroy(system);
}

/* A pool of 4-byte objects (an 8-byte stride, for the free list's link): the object's padding
 * is no access while it is live, after a free and a new allocation of the slot too. */
static void read_past_a_small_pool_object(void) {
    GooAllocator* pool = goo_pool_allocator_create(4, 16);
    CHECK(pool != NULL);
    char* p = (char*)goo_memory_alloc_with(pool, 4);
    CHECK(p != NULL);
    goo_memory_free_with(pool, p, 4);
    p = (char*)goo_memory_alloc_with(pool, 4); /* the same slot, its link word written */
    CHECK(p != NULL);
    memset(p, 1, 4);
    unsigned before = ERRORS_SO_FAR();
    sink = p[4];
    fprintf(stderr, "read done, %u valgrind error(s)\n", ERRORS_SO_FAR() - before);
    goo_pool_allocator_destroy(pool);
}

/* Under a tool every small block of the system allocator (the default then) is malloc's at its
 * exact size, not its 16-byte class's: a read just past it is malloc's overflow. */
static void read_past_a_small_default_block(void) {
    char* p = (char*)goo_memory_alloc(24);
    CHECK(p != NULL);
    memset(p, 1, 24);
    unsigned before = ERRORS_SO_FAR();
    sink = p[24];
    fprintf(stderr, "read done, %u valgrind error(s)\n", ERRORS_SO_FAR() - before);
    goo_memory_free(p, 24);
}

/* What the tool at hand says about a misuse run in a child. */
static void reported(void (*misuse)(void), const char* what) {
    char out[16384];
    CHECK_EQ(in_child(misuse, out, sizeof out), 0);
#if defined(__SANITIZE_ADDRESS__)
    if (!strstr(out, "AddressSanitizer: use-after-poison") && !strstr(out, "AddressSanitizer: heap-buffer-overflow") &&
        !strstr(out, "AddressSanitizer: heap-use-after-free")) {
        fprintf(stderr, "%s: no ASan report:\n%s\n", what, out);
        exit(1);
    }
    CHECK(strstr(out, "read done") == NULL); /* ASan stops at the first error */
#else
    const char* valgrind = getenv("GOO_VALGRIND");
    if (valgrind && strcmp(valgrind, "1") == 0) {
        if (!strstr(out, "read done, 1 valgrind error(s)")) {
            fprintf(stderr, "%s: no valgrind report:\n%s\n", what, out);
            exit(1);
        }
    } else {
        CHECK(strstr(out, "read done, 0 valgrind error(s)") != NULL);
    }
#endif
}

int main(void) {
    reported(read_past_an_arena_block, "a read past an arena block");
    reported(read_after_a_pool_free, "a read after a pool free");
    reported(read_past_a_small_pool_object, "a read past a 4-byte pool object");
    reported(read_after_a_scoped_free, "a read after a scoped free");
    reported(read_past_a_scoped_block, "a read past a scoped block");
    reported(read_after_a_system_free, "a read after a system allocator's free");
    /* Unless the heap is kept as the default (GOO_HEAP=heap): the heap tells the tools nothing. */
    const char* heap = getenv("GOO_HEAP");
    if (!(heap && strcmp(heap, "heap") == 0))
        reported(read_past_a_small_default_block, "a read past a 24-byte block of the default allocator");
    printf("test_sanitize_visibility: ok\n");
    return 0;
}
