/* Scoped allocators and temporary allocations through the C ABI, including the cleanup macros
 * (GCC/Clang), nesting, PERSIST, misuse (refused frees change no stats; an ended scope's pointer
 * and blocks are refused), another thread, scopes ended after goo_memory_cleanup, and the
 * per-thread temporary arena. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "goo_memory.h"
#include "check.h"

static GooAllocator* parent;

static void basics(void) {
    goo_set_thread_allocator(parent);
    GooAllocStats before = goo_get_alloc_stats(parent);
    GooAllocator* scope = goo_scope_begin();
    CHECK(goo_get_thread_allocator() == scope);
    char* a = (char*)goo_memory_alloc(100);
    char* b = (char*)goo_memory_alloc(200);
    void* c = goo_alloc(50); /* legacy API inside the scope */
    strcpy(a, "scoped");
    a = (char*)goo_memory_realloc(a, 100, 5000);
    CHECK(strcmp(a, "scoped") == 0);
    goo_memory_free(b, 200);
    CHECK_EQ(goo_scope_live_count(scope), 2);
    /* what the scope holds from its parent: its chunks, the first (1 KiB: the blocks of 100,
     * 200 and 50 bytes, the freed one included) and one that fits the 5000-byte block */
    CHECK(goo_get_alloc_stats(scope).bytes_reserved >= 1024 + 5000);
    void* kept = goo_memory_alloc_ex(NULL, 64, 0, GOO_ALLOC_PERSIST);
    memset(kept, 9, 64);
    void* aligned = goo_memory_alloc_ex(NULL, 10, 256, GOO_ALLOC_ZERO);
    CHECK(((uintptr_t)aligned % 256) == 0);
    CHECK_EQ(((unsigned char*)aligned)[9], 0);
    (void)c;
    goo_scope_set_leak_report(scope, true);
    CHECK(goo_scope_end(scope));
    CHECK(goo_get_thread_allocator() == parent);
    GooAllocStats after = goo_get_alloc_stats(parent);
    /* everything but the PERSIST block went back to the parent */
    CHECK_EQ(after.allocation_count, before.allocation_count + 1);
    CHECK_EQ(after.bytes_allocated, before.bytes_allocated + 64);
    CHECK_EQ(((unsigned char*)kept)[63], 9);
    goo_memory_free_with(parent, kept, 64);
    goo_set_thread_allocator(NULL);
}

static void nesting_and_misuse(void) {
    goo_set_thread_allocator(parent);
    size_t live = goo_get_alloc_stats(parent).allocation_count;
    GooAllocator* outer = goo_scope_begin();
    goo_memory_alloc(10);
    GooAllocator* inner = goo_scope_begin();
    goo_memory_alloc(20);
    CHECK(!goo_scope_end(outer)); /* out of order: refused, nothing freed */
    /* the inner scope allocates from the outer one: its block is one of the outer's */
    CHECK_EQ(goo_scope_live_count(outer), 2);
    /* a block of another scope freed or resized here: reported and ignored, freed once by its
     * own scope at its end */
    GooAllocator* other = goo_scoped_allocator_create(parent);
    void* theirs = goo_memory_alloc_with(other, 32);
    GooAllocStats inner_before = goo_get_alloc_stats(inner);
    goo_memory_free_with(inner, theirs, 32);
    CHECK(goo_memory_realloc_with(inner, theirs, 32, 64) == NULL);
    CHECK_EQ(goo_scope_live_count(inner), 1);
    CHECK_EQ(goo_scope_live_count(other), 1);
    /* the refused free counted nothing (the refused resize is a failure) */
    CHECK_EQ(goo_get_alloc_stats(inner).allocation_count, inner_before.allocation_count);
    CHECK_EQ(goo_get_alloc_stats(inner).total_frees, inner_before.total_frees);
    CHECK_EQ(goo_get_alloc_stats(inner).failed_allocations, inner_before.failed_allocations + 1);
    /* a second free of a small block is refused: the block is handed out once again, not twice */
    void* once = goo_memory_alloc_with(other, 24);
    goo_memory_free_with(other, once, 24);
    goo_memory_free_with(other, once, 24);
    void* x = goo_memory_alloc_with(other, 24);
    void* y = goo_memory_alloc_with(other, 24);
    CHECK(x == once && y != once);
    CHECK_EQ(goo_scope_live_count(other), 3);
    CHECK_EQ(goo_get_alloc_stats(other).allocation_count, 3);
    CHECK_EQ(goo_get_alloc_stats(other).total_frees, 1);
    CHECK_EQ(goo_scope_live_bytes(other), 32 + 48);
    CHECK(goo_scope_end(other));
    CHECK(goo_scope_end(inner));
    CHECK_EQ(goo_scope_live_count(outer), 1);
    CHECK(goo_get_thread_allocator() == outer);
    CHECK(goo_scope_end(outer));
    CHECK(!goo_scope_end(parent)); /* not a scope */
    CHECK_EQ(goo_get_alloc_stats(parent).allocation_count, live);

    /* destroy through the vtable ends inner scopes first */
    outer = goo_scope_begin();
    goo_memory_alloc(10);
    inner = goo_scope_begin();
    goo_memory_alloc(10);
    outer->destroy(outer);
    CHECK(goo_get_thread_allocator() == parent);
    CHECK_EQ(goo_get_alloc_stats(parent).allocation_count, live);
    goo_set_thread_allocator(NULL);
}

static void* end_elsewhere(void* scope) {
    return (void*)(uintptr_t)goo_scope_end((GooAllocator*)scope);
}

static void* destroy_elsewhere(void* scope) {
    ((GooAllocator*)scope)->destroy(scope);
    return NULL;
}

/* Begins a scope, allocates in it and exits without ending it. */
static void* begin_and_exit(void* unused) {
    (void)unused;
    GooAllocator* s = goo_scope_begin();
    CHECK(s != NULL && goo_memory_alloc(10) != NULL);
    return s;
}

static void other_thread(void) {
    GooAllocator* s = goo_scoped_allocator_create(parent);
    goo_memory_alloc_with(s, 10);
    pthread_t t;
    void* ended = NULL;
    CHECK(pthread_create(&t, NULL, end_elsewhere, s) == 0);
    CHECK(pthread_join(t, &ended) == 0);
    CHECK(ended == NULL); /* refused */
    CHECK_EQ(goo_scope_live_count(s), 1);
    /* The vtable's destroy from another thread is refused the same way. */
    CHECK(pthread_create(&t, NULL, destroy_elsewhere, s) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_EQ(goo_scope_live_count(s), 1);
    CHECK(goo_scope_end(s));

    /* A scope whose thread exited stays: a later thread (which may get the exited one's thread
     * pointer and stack) can neither end it nor destroy it. */
    void* orphan = NULL;
    CHECK(pthread_create(&t, NULL, begin_and_exit, NULL) == 0);
    CHECK(pthread_join(t, &orphan) == 0);
    CHECK(pthread_create(&t, NULL, end_elsewhere, orphan) == 0);
    CHECK(pthread_join(t, &ended) == 0);
    CHECK(ended == NULL);
    CHECK(pthread_create(&t, NULL, destroy_elsewhere, orphan) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(!goo_scope_end(orphan));
    CHECK_EQ(goo_scope_live_count(orphan), 1);
}

static size_t freed_by_macro;
static void macros(void) {
    size_t live = goo_get_alloc_stats(NULL).allocation_count;
    {
        GOO_SCOPE_ALLOC(buf, 128);
        memset(buf, 1, 128);
        GOO_SCOPED void* other = goo_alloc(16);
        CHECK(other != NULL);
        CHECK_EQ(goo_get_alloc_stats(NULL).allocation_count, live + 2);
    }
    CHECK_EQ(goo_get_alloc_stats(NULL).allocation_count, live);
    goo_set_thread_allocator(parent);
    size_t parent_live = goo_get_alloc_stats(parent).allocation_count;
    {
        GOO_WITH_SCOPE(s);
        CHECK(goo_get_thread_allocator() == s);
        for (int i = 0; i < 10; i++) goo_memory_alloc(100);
        freed_by_macro = goo_scope_live_count(s);
    }
    CHECK_EQ(freed_by_macro, 10);
    CHECK(goo_get_thread_allocator() == parent);
    CHECK_EQ(goo_get_alloc_stats(parent).allocation_count, parent_live);
    goo_set_thread_allocator(NULL);
}

static void temp(void) {
    GooAllocStats sys_before = goo_get_alloc_stats(parent);
    char* t = (char*)goo_temp_alloc(100);
    CHECK(t != NULL);
    GooAllocator* ta = goo_temp_allocator();
    CHECK_EQ(goo_get_alloc_stats(ta).bytes_allocated, 100);
    GooArenaMark m = goo_temp_mark();
    /* GOO_ALLOC_TEMP on another allocator's request goes to the temporary arena */
    void* routed = goo_memory_alloc_ex(parent, 1000, 0, GOO_ALLOC_TEMP);
    CHECK(routed != NULL);
    CHECK_EQ(goo_get_alloc_stats(parent).total_allocations, sys_before.total_allocations);
    CHECK_EQ(goo_get_alloc_stats(ta).bytes_allocated, 1100);
    /* ... and so does a resize with it: the block stays the temporary arena's */
    memset(routed, 7, 1000);
    char* grown = (char*)goo_memory_realloc_ex(parent, routed, 1000, 2000, 0, GOO_ALLOC_TEMP);
    CHECK(grown != NULL);
    CHECK(grown[0] == 7 && grown[999] == 7);
    CHECK_EQ(goo_get_alloc_stats(parent).total_allocations, sys_before.total_allocations);
    CHECK_EQ(goo_get_alloc_stats(parent).failed_allocations, sys_before.failed_allocations);
    CHECK_EQ(goo_get_alloc_stats(ta).bytes_allocated, 2100);
    CHECK(goo_memory_realloc_ex(NULL, grown, 2000, 0, 0, GOO_ALLOC_TEMP) == NULL); /* a free */
    CHECK_EQ(goo_get_alloc_stats(ta).bytes_allocated, 100);
    CHECK_EQ(goo_get_alloc_stats(ta).allocation_count, 1);
    CHECK(goo_temp_rewind(m));
    CHECK_EQ(goo_get_alloc_stats(ta).bytes_allocated, 100);
    goo_temp_reset();
    CHECK_EQ(goo_get_alloc_stats(ta).bytes_allocated, 0);
    CHECK(!goo_temp_rewind(m)); /* from before the reset */
}

/* An ended scope's pointer names no scope: it is refused, and the scopes begun next never
 * alias it, until 8 more scopes of the thread have ended; later its object serves a new scope,
 * which still refuses the ended scope's blocks (their tag names the old generation). The
 * scopes take their chunks from an arena, so the ended scope's blocks stay readable. */
static void ended_scopes(void) {
    GooAllocator* arena = goo_arena_allocator_create(0);
    GooAllocator* old = goo_scoped_allocator_create(arena);
    char* stale = (char*)goo_memory_alloc_with(old, 40);
    void* spacer = goo_memory_alloc_with(arena, 16); /* the scope's chunk is no longer the last */
    CHECK(goo_scope_end(old));
    CHECK(!goo_scope_end(old));
    CHECK_EQ(goo_scope_live_count(old), 0);
    CHECK(goo_memory_alloc_with(old, 16) == NULL);
    goo_memory_free_with(old, stale, 40);
    old->destroy(old);
    goo_allocator_destroy(old);
    GooAllocator* next = goo_scoped_allocator_create(arena);
    CHECK(next != old);
    void* mine = goo_memory_alloc_with(next, 40);
    goo_memory_free_with(old, mine, 40); /* through the ended pointer: not the new scope's */
    CHECK_EQ(goo_scope_live_count(next), 1);
    CHECK(goo_scope_end(next));
    for (int i = 1; i < 8; i++) {
        GooAllocator* s = goo_scoped_allocator_create(arena);
        CHECK(s != old);
        CHECK(goo_scope_end(s));
    }
    /* later, the ended object's memory serves a new scope */
    GooAllocator* reused = NULL;
    for (int i = 0; i < 32 && reused != old; i++) {
        if (reused) CHECK(goo_scope_end(reused));
        reused = goo_scoped_allocator_create(arena);
    }
    CHECK(reused == old);
    char* fresh = (char*)goo_memory_alloc_with(reused, 40);
    strcpy(fresh, "fresh");
    goo_memory_free_with(reused, stale, 40); /* the ended scope's block: refused */
    CHECK_EQ(goo_scope_live_count(reused), 1);
    CHECK_EQ(goo_get_alloc_stats(reused).total_frees, 0);
    CHECK(strcmp(fresh, "fresh") == 0);
    CHECK(goo_scope_end(reused));
    goo_memory_free_with(arena, spacer, 16);
    goo_arena_allocator_destroy(arena);
}

/* goo_memory_cleanup clears the thread allocator; scopes begun before it still end, innermost
 * first, freeing everything (valgrind checks nothing is lost), and the thread allocator stays
 * as the cleanup left it. */
static void scopes_after_cleanup(void) {
    goo_set_thread_allocator(parent);
    GooAllocator* outer = goo_scope_begin();
    CHECK(goo_memory_alloc(10) != NULL);
    GooAllocator* inner = goo_scope_begin();
    CHECK(goo_memory_alloc(16) != NULL);
    goo_memory_cleanup();
    CHECK(goo_get_thread_allocator() == NULL);
    CHECK(!goo_scope_end(outer)); /* still out of order */
    CHECK(goo_scope_end(inner));
    CHECK(goo_get_thread_allocator() == NULL);
    CHECK(goo_scope_end(outer));
    CHECK(goo_get_thread_allocator() == NULL);
    CHECK_EQ(goo_get_alloc_stats(parent).allocation_count, 0);
}

static void* temp_in_thread(void* arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) CHECK(goo_temp_alloc(512) != NULL);
    return NULL; /* the arena is freed at thread exit (valgrind checks no leak) */
}

int main(void) {
    parent = goo_system_allocator_create();
    basics();
    nesting_and_misuse();
    other_thread();
    macros();
    temp();
    ended_scopes();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, temp_in_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_EQ(goo_get_alloc_stats(parent).allocation_count, 0);
    scopes_after_cleanup();
    parent->destroy(parent);
    goo_temp_reset();
    printf("test_scoped: ok\n");
    return 0;
}
