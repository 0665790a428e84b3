/* The bad-input table: every row run against every allocator kind through the C ABI (system,
 * heap, arena, pool checked and unchecked, region, scoped, the temporary arena, an allocator
 * written in C). Each row says what it does and what the headers promise for it; a row a header makes
 * undefined for a kind is skipped for that kind, naming the header's words. After every row
 * the allocator must still serve a request. A failing check prints the row and the kind, and
 * the program goes on to the next pair; it exits 1 if any check failed. */
#define _POSIX_C_SOURCE 200809L
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "goo/runtime/memory.h"
#include "check.h"

/* ---- The kinds ---- */

enum { K_SYSTEM, K_HEAP, K_ARENA, K_POOL_CHECKED, K_POOL_UNCHECKED, K_REGION, K_SCOPED, K_TEMP, K_C_MADE, K_COUNT };

/* An allocator written in C: posix_memalign and free, with a destroy that frees it. */
static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx;
    (void)options;
    void* p = NULL;
    return posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) == 0 ? p : NULL;
}
static void* c_realloc(void* ctx, void* ptr, size_t old_size, size_t new_size, size_t alignment,
                       GooAllocOptions options) {
    void* n = c_alloc(ctx, new_size, alignment, options);
    if (n) {
        memcpy(n, ptr, old_size < new_size ? old_size : new_size);
        free(ptr);
    }
    return n;
}
static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx;
    (void)size;
    (void)alignment;
    free(ptr);
}
static void c_destroy(void* self) { free(self); }

static GooAllocator* make_system(void) { return goo_system_allocator_create(); }
static GooAllocator* make_heap(void) { return goo_heap_allocator_create(); }
static GooAllocator* make_arena(void) { return goo_arena_allocator_create(0); }
static GooAllocator* make_pool(GooPoolCheck check) {
    GooPoolOptions o;
    memset(&o, 0, sizeof o);
    o.object_size = 64;
    o.objects_per_block = 8;
    o.check = check;
    return goo_pool_allocator_create_opts(&o);
}
static GooAllocator* make_pool_checked(void) { return make_pool(GOO_POOL_CHECK_ON); }
static GooAllocator* make_pool_unchecked(void) { return make_pool(GOO_POOL_CHECK_OFF); }
static GooAllocator* make_region(void) { return goo_region_allocator_create(0, true); }
static GooAllocator* make_scoped(void) { return goo_scoped_allocator_create(NULL); }
static GooAllocator* make_temp(void) { return goo_temp_allocator(); }
static GooAllocator* make_c_made(void) {
    GooAllocator* a = (GooAllocator*)calloc(1, sizeof *a);
    a->alloc = c_alloc;
    a->realloc = c_realloc;
    a->free = c_free;
    a->destroy = c_destroy;
    a->track_stats = true;
    a->context = a;
    return a;
}

static void end_scope(GooAllocator* a) { (void)goo_scope_end(a); }
/* The temporary arena is the library's: a destroy is refused; the table frees its blocks. */
static void destroy_temp(GooAllocator* a) { goo_allocator_destroy(a); }
static void end_temp(GooAllocator* a) {
    (void)a;
    goo_temp_reset();
}

/* What each kind's header offers for a pointer after its destroy: the calls refuse it. */
static void noop_cleanup(void* arg) { (void)arg; }
static int region_refuses_after_destroy(GooAllocator* r) {
    return !goo_region_allocator_reset(r) && goo_region_add_cleanup(r, noop_cleanup, NULL) == 0 &&
           goo_region_create_child(r, 0) == NULL && goo_region_stats(r).allocation_count == 0;
}
static int scope_refuses_after_end(GooAllocator* s) {
    return goo_memory_alloc_with(s, 16) == NULL && goo_memory_realloc_with(s, NULL, 0, 16) == NULL &&
           goo_scope_live_count(s) == 0 && !goo_scope_end(s);
}
static int temp_survives_destroy(GooAllocator* t) {
    void* p = goo_memory_alloc_with(t, 16);
    goo_memory_free_with(t, p, 16);
    return p != NULL && goo_temp_allocator() == t;
}

typedef struct Kind {
    const char* name;
    GooAllocator* (*make)(void);
    void (*destroy)(GooAllocator*);  /* the destroy a program calls */
    void (*end)(GooAllocator*);      /* what the table calls after a row (NULL: destroy) */
    int (*after_destroy)(GooAllocator*); /* the header's promise for a destroyed pointer */
} Kind;

static const Kind kinds[K_COUNT] = {
    [K_SYSTEM] = {"system", make_system, goo_allocator_destroy, NULL, NULL},
    [K_HEAP] = {"heap", make_heap, goo_allocator_destroy, NULL, NULL},
    [K_ARENA] = {"arena", make_arena, goo_arena_allocator_destroy, NULL, NULL},
    [K_POOL_CHECKED] = {"pool (checked)", make_pool_checked, goo_pool_allocator_destroy, NULL, NULL},
    [K_POOL_UNCHECKED] = {"pool (unchecked)", make_pool_unchecked, goo_pool_allocator_destroy, NULL, NULL},
    [K_REGION] = {"region", make_region, goo_region_allocator_destroy, NULL, region_refuses_after_destroy},
    [K_SCOPED] = {"scoped", make_scoped, end_scope, NULL, scope_refuses_after_end},
    [K_TEMP] = {"temporary arena", make_temp, destroy_temp, end_temp, temp_survives_destroy},
    [K_C_MADE] = {"written in C", make_c_made, goo_allocator_destroy, NULL, NULL},
};

/* ---- The rows ---- */

typedef enum {
    OP_ALLOC,          /* goo_memory_alloc_ex(a, size, align, 0) */
    OP_ALLOC_ARRAY,    /* goo_memory_alloc_array(a, size (the count), elem, align, 0) */
    OP_REALLOC,        /* a block of 16 bytes, then goo_memory_realloc_ex(a, p, 16, size, align, 0) */
    OP_REALLOC_NULL,   /* goo_memory_realloc_with(a, NULL, 0, size) */
    OP_FREE_NULL,      /* goo_memory_free_ex(a, NULL, size, align) */
    OP_FREE_FOREIGN,   /* a free of a pointer into the program's own buffer */
    OP_FREE_TWICE,     /* a block of 16 bytes freed twice */
    OP_VTABLE_ALLOC,   /* a->alloc(a->context, size, align, 0), the vtable called directly */
    OP_DESTROY_TWICE,  /* the kind's destroy, twice */
    OP_AFTER_DESTROY   /* the kind's destroy, then what its header promises of the pointer */
} Op;

typedef enum {
    X_BLOCK,   /* a usable block, aligned, counted once allocated and once freed */
    X_EMPTY,   /* a non-NULL pointer for size 0: nothing counted, freeing it does nothing */
    X_FAIL,    /* NULL, failed_allocations + 1, nothing else counted; a realloc's block intact */
    X_FREED,   /* a realloc to 0: NULL, the block freed (counted) */
    X_NOTHING, /* nothing happens, nothing counted */
    X_REFUSED, /* refused with a message on stderr (the heap: the first time, and counted in
                * goo_heap_refused_count); nothing counted in the allocator's stats */
    X_DEAD     /* the kind's after_destroy promise holds */
} Expect;

typedef struct Row {
    const char* name;
    Op op;
    size_t size, elem, align;
    Expect expect;
    /* Kinds the row is not run for: the row is undefined there, as the quoted header says. */
    const char* skip[K_COUNT];
} Row;

#define PTRDIFF_LIMIT ((size_t)PTRDIFF_MAX)

/* The undefined cases, in the headers' words. */
#define SYSTEM_BAD_FREE "memory.h, goo_system_allocator_create: freeing a pointer that is not a live block of it (a foreign pointer, a block freed twice) is undefined"
#define ARENA_BAD_FREE "arena.h: freeing a pointer that is not a live block of it (a foreign pointer, a block freed twice) is undefined"
#define REGION_BAD_FREE "region.h: freeing a pointer that is not a live block of the region (a foreign pointer, a block freed twice) is undefined"
#define C_MADE_BAD_FREE "memory.h, GooFreeFn: an allocator written in C has no way to refuse one, so a bad free through it is undefined"
#define BAD_FREE_SKIPS                                                                           \
    [K_SYSTEM] = SYSTEM_BAD_FREE, [K_ARENA] = ARENA_BAD_FREE, [K_REGION] = REGION_BAD_FREE,     \
    [K_TEMP] = ARENA_BAD_FREE, [K_C_MADE] = C_MADE_BAD_FREE
#define DESTROY_SKIPS                                                                            \
    [K_SYSTEM] = "memory.h, goo_allocator_destroy: destroying an allocator twice, or using it after its destroy, is undefined", \
    [K_HEAP] = "memory.h, goo_allocator_destroy: destroying an allocator twice, or using it after its destroy, is undefined", \
    [K_ARENA] = "arena.h, goo_arena_allocator_destroy: using an arena after its destroy, this call included, is undefined", \
    [K_POOL_CHECKED] = "pool.h, goo_pool_allocator_destroy: using a pool after its destroy, this call included, is undefined", \
    [K_POOL_UNCHECKED] = "pool.h, goo_pool_allocator_destroy: using a pool after its destroy, this call included, is undefined", \
    [K_C_MADE] = "memory.h, goo_allocator_destroy: destroying an allocator twice, or using it after its destroy, is undefined"
#define C_MADE_VTABLE "memory.h, GooAllocator: the front door calls alloc only with a valid request; called directly, an allocator written in C does what its author wrote"

static const Row rows[] = {
    /* sizes */
    {"alloc 0", OP_ALLOC, 0, 0, 0, X_EMPTY, {0}},
    {"alloc 1", OP_ALLOC, 1, 0, 0, X_BLOCK, {0}},
    {"alloc SIZE_MAX", OP_ALLOC, SIZE_MAX, 0, 0, X_FAIL, {0}},
    {"alloc SIZE_MAX - 15", OP_ALLOC, SIZE_MAX - 15, 0, 0, X_FAIL, {0}},
    {"alloc PTRDIFF_MAX + 1", OP_ALLOC, PTRDIFF_LIMIT + 1, 0, 0, X_FAIL, {0}},
    /* the largest size the front door passes: it overflows when an allocator adds its header */
    {"alloc PTRDIFF_MAX - 16", OP_ALLOC, PTRDIFF_LIMIT - 16, 0, 0, X_FAIL, {0}},
    {"alloc PTRDIFF_MAX - 4095 at 4096", OP_ALLOC, PTRDIFF_LIMIT - 4095, 0, 4096, X_FAIL, {0}},
    {"alloc 1 << 50 (no memory)", OP_ALLOC, (size_t)1 << 50, 0, 0, X_FAIL, {0}},
    {"alloc 0 at alignment 3", OP_ALLOC, 0, 0, 3, X_FAIL, {0}},
    /* count * elem_size */
    {"alloc_array 4 x 8", OP_ALLOC_ARRAY, 4, 8, 0, X_BLOCK, {0}},
    {"alloc_array 0 x 16", OP_ALLOC_ARRAY, 0, 16, 0, X_EMPTY, {0}},
    {"alloc_array SIZE_MAX/2 x 3", OP_ALLOC_ARRAY, SIZE_MAX / 2, 3, 0, X_FAIL, {0}},
    {"alloc_array 2^40 x 2^40", OP_ALLOC_ARRAY, (size_t)1 << 40, (size_t)1 << 40, 0, X_FAIL, {0}},
    {"alloc_array SIZE_MAX x 1", OP_ALLOC_ARRAY, SIZE_MAX, 1, 0, X_FAIL, {0}},
    {"alloc_array 2^32 x 2^31 at 16", OP_ALLOC_ARRAY, (size_t)1 << 32, (size_t)1 << 31, 16, X_FAIL, {0}},
    /* alignments */
    {"align 0", OP_ALLOC, 16, 0, 0, X_BLOCK, {0}},
    {"align 3", OP_ALLOC, 16, 0, 3, X_FAIL, {0}},
    {"align 48", OP_ALLOC, 16, 0, 48, X_FAIL, {0}},
    {"align 2^31", OP_ALLOC, 16, 0, (size_t)1 << 31, X_FAIL, {0}},
    {"align 2^40", OP_ALLOC, 16, 0, (size_t)1 << 40, X_FAIL, {0}},
    {"align SIZE_MAX", OP_ALLOC, 16, 0, SIZE_MAX, X_FAIL, {0}},
    /* realloc */
    {"realloc to 0", OP_REALLOC, 0, 0, 0, X_FREED, {0}},
    {"realloc from NULL", OP_REALLOC_NULL, 16, 0, 0, X_BLOCK, {0}},
    {"realloc from NULL to 0", OP_REALLOC_NULL, 0, 0, 0, X_NOTHING, {0}},
    {"realloc to SIZE_MAX", OP_REALLOC, SIZE_MAX, 0, 0, X_FAIL, {0}},
    {"realloc to PTRDIFF_MAX - 16", OP_REALLOC, PTRDIFF_LIMIT - 16, 0, 0, X_FAIL, {0}},
    {"realloc to 1 << 50 (no memory)", OP_REALLOC, (size_t)1 << 50, 0, 0, X_FAIL, {0}},
    {"realloc at alignment 5", OP_REALLOC, 32, 0, 5, X_FAIL, {0}},
    /* frees */
    {"free NULL", OP_FREE_NULL, 16, 0, 0, X_NOTHING, {0}},
    {"free NULL, bad size and alignment", OP_FREE_NULL, SIZE_MAX, 0, 3, X_NOTHING, {0}},
    {"free of a foreign pointer", OP_FREE_FOREIGN, 16, 0, 0, X_REFUSED, {BAD_FREE_SKIPS}},
    {"free twice", OP_FREE_TWICE, 16, 0, 0, X_REFUSED, {BAD_FREE_SKIPS}},
    /* the vtable of a library allocator checks its input too */
    {"vtable alloc SIZE_MAX", OP_VTABLE_ALLOC, SIZE_MAX, 0, 0, X_NOTHING, {[K_C_MADE] = C_MADE_VTABLE}},
    {"vtable alloc at alignment 3", OP_VTABLE_ALLOC, 8, 0, 3, X_NOTHING, {[K_C_MADE] = C_MADE_VTABLE}},
    {"vtable alloc 0", OP_VTABLE_ALLOC, 0, 0, 8, X_NOTHING, {[K_C_MADE] = C_MADE_VTABLE}},
    /* destroy */
    {"destroy twice", OP_DESTROY_TWICE, 0, 0, 0, X_REFUSED, {DESTROY_SKIPS}},
    {"use after destroy", OP_AFTER_DESTROY, 0, 0, 0, X_DEAD, {DESTROY_SKIPS}},
};

/* ---- Running them ---- */

static int failures;
static const char* cur_row;
static const char* cur_kind;

#define EXPECT(cond)                                                                            \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAILED: row \"%s\", kind %s: %s (%s:%d)\n", cur_row, cur_kind, #cond, \
                    __FILE__, __LINE__);                                                        \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

/* stderr is captured around each step whose message the headers promise. */
static int saved_stderr = -1;
static FILE* captured;

static void capture_begin(void) {
    fflush(stderr);
    captured = tmpfile();
    CHECK(captured != NULL);
    saved_stderr = dup(2);
    CHECK(saved_stderr >= 0 && dup2(fileno(captured), 2) == 2);
}

/* Bytes written to stderr since capture_begin (echoed to the real stderr). */
static long capture_end(void) {
    fflush(stderr);
    CHECK(dup2(saved_stderr, 2) == 2);
    close(saved_stderr);
    long n = (long)lseek(fileno(captured), 0, SEEK_END);
    rewind(captured);
    char buf[512];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, captured)) > 0) fwrite(buf, 1, got, stderr);
    fclose(captured);
    return n;
}

static int same_counts(GooAllocStats a, GooAllocStats b) {
    return a.allocation_count == b.allocation_count && a.bytes_allocated == b.bytes_allocated &&
           a.total_allocations == b.total_allocations && a.total_frees == b.total_frees &&
           a.failed_allocations == b.failed_allocations;
}

static alignas(16) unsigned char foreign[256];

/* A usable block: aligned as asked (natural for 0), writable, counted; freed and counted. */
static void expect_block(GooAllocator* a, GooAllocStats before, void* p, size_t size, size_t align) {
    EXPECT(p != NULL);
    if (!p) return;
    size_t want = align ? align : (size >= 16 ? 16 : 1);
    EXPECT((uintptr_t)p % want == 0);
    memset(p, 0x5a, size);
    GooAllocStats s = goo_get_alloc_stats(a);
    EXPECT(s.allocation_count == before.allocation_count + 1);
    EXPECT(s.bytes_allocated == before.bytes_allocated + size);
    goo_memory_free_ex(a, p, size, align);
    s = goo_get_alloc_stats(a);
    EXPECT(s.allocation_count == before.allocation_count);
    EXPECT(s.total_frees == before.total_frees + 1);
    EXPECT(s.failed_allocations == before.failed_allocations);
}

static void expect_fail(GooAllocator* a, GooAllocStats before, void* p) {
    EXPECT(p == NULL);
    GooAllocStats s = goo_get_alloc_stats(a);
    EXPECT(s.failed_allocations == before.failed_allocations + 1);
    EXPECT(s.allocation_count == before.allocation_count);
    EXPECT(s.total_allocations == before.total_allocations);
}

/* A block of 16 bytes filled with a pattern, for the rows that start from one. */
static unsigned char* block16(GooAllocator* a) {
    unsigned char* p = (unsigned char*)goo_memory_alloc_with(a, 16);
    EXPECT(p != NULL);
    if (p) for (int i = 0; i < 16; i++) p[i] = (unsigned char)(i + 1);
    return p;
}

static int intact16(const unsigned char* p) {
    for (int i = 0; i < 16; i++)
        if (p[i] != (unsigned char)(i + 1)) return 0;
    return 1;
}

/* Runs one row against one allocator; returns whether the allocator is still alive after it. */
static int run_row(const Row* r, const Kind* k, GooAllocator* a) {
    GooAllocStats before = goo_get_alloc_stats(a);
    switch (r->op) {
    case OP_ALLOC:
    case OP_ALLOC_ARRAY: {
        void* p = r->op == OP_ALLOC ? goo_memory_alloc_ex(a, r->size, r->align, 0)
                                    : goo_memory_alloc_array(a, r->size, r->elem, r->align, 0);
        size_t size = r->op == OP_ALLOC ? r->size : r->size * r->elem;
        if (r->expect == X_BLOCK) {
            expect_block(a, before, p, size, r->align);
        } else if (r->expect == X_EMPTY) {
            EXPECT(p != NULL);
            goo_memory_free_ex(a, p, 0, r->align);
            EXPECT(same_counts(goo_get_alloc_stats(a), before));
        } else {
            expect_fail(a, before, p);
        }
        return 1;
    }
    case OP_REALLOC: {
        unsigned char* p = block16(a);
        if (!p) return 1;
        GooAllocStats with_block = goo_get_alloc_stats(a);
        void* q = goo_memory_realloc_ex(a, p, 16, r->size, r->align, 0);
        if (r->expect == X_FREED) {
            EXPECT(q == NULL);
            GooAllocStats s = goo_get_alloc_stats(a);
            EXPECT(s.allocation_count == before.allocation_count);
            EXPECT(s.total_frees == before.total_frees + 1);
            return 1;
        }
        expect_fail(a, with_block, q);
        EXPECT(intact16(p));
        goo_memory_free_with(a, p, 16);
        return 1;
    }
    case OP_REALLOC_NULL:
        if (r->expect == X_NOTHING) { /* no block and new_size 0: NULL, nothing allocated */
            EXPECT(goo_memory_realloc_with(a, NULL, 0, r->size) == NULL);
            EXPECT(goo_memory_realloc_ex(a, NULL, 0, r->size, 0, 0) == NULL);
            EXPECT(same_counts(goo_get_alloc_stats(a), before));
            return 1;
        }
        expect_block(a, before, goo_memory_realloc_with(a, NULL, 0, r->size), r->size, 0);
        return 1;
    case OP_FREE_NULL:
        goo_memory_free_ex(a, NULL, r->size, r->align);
        goo_memory_free_with(a, NULL, r->size);
        EXPECT(same_counts(goo_get_alloc_stats(a), before));
        return 1;
    case OP_FREE_FOREIGN:
    case OP_FREE_TWICE: {
        unsigned char* p = foreign + 64;
        if (r->op == OP_FREE_TWICE) {
            p = block16(a);
            if (!p) return 1;
            goo_memory_free_with(a, p, 16);
            before = goo_get_alloc_stats(a);
        }
        size_t heap_refused = goo_heap_refused_count();
        capture_begin();
        goo_memory_free_with(a, p, 16);
        long said = capture_end();
        if (k == &kinds[K_HEAP]) {
            /* one line the first time in the process; every refusal counted */
            static int heap_said;
            EXPECT(said > 0 || heap_said);
            heap_said = 1;
            EXPECT(goo_heap_refused_count() == heap_refused + 1);
        } else {
            EXPECT(said > 0);
        }
        EXPECT(same_counts(goo_get_alloc_stats(a), before));
        if (r->op == OP_FREE_TWICE) {
            /* the block is handed out once, not twice */
            void* x = goo_memory_alloc_with(a, 16);
            void* y = goo_memory_alloc_with(a, 16);
            EXPECT(x != NULL && y != NULL && x != y);
            goo_memory_free_with(a, y, 16);
            goo_memory_free_with(a, x, 16);
        }
        return 1;
    }
    case OP_VTABLE_ALLOC:
        EXPECT(a->alloc(a->context, r->size, r->align, 0) == NULL);
        a->free(a->context, NULL, 8, 8);
        EXPECT(same_counts(goo_get_alloc_stats(a), before));
        return 1;
    case OP_DESTROY_TWICE:
        k->destroy(a);
        capture_begin();
        k->destroy(a);
        EXPECT(capture_end() > 0);
        return k->end != NULL; /* only the temporary arena survives a destroy */
    case OP_AFTER_DESTROY:
        capture_begin();
        k->destroy(a);
        EXPECT(k->after_destroy(a));
        EXPECT(capture_end() > 0);
        return k->end != NULL; /* only the temporary arena survives a destroy */
    }
    return 1;
}

int main(void) {
    size_t nrows = sizeof rows / sizeof rows[0];
    int ran = 0, skipped = 0;
    for (size_t i = 0; i < nrows; i++) {
        for (int kind = 0; kind < K_COUNT; kind++) {
            const Row* r = &rows[i];
            const Kind* k = &kinds[kind];
            cur_row = r->name;
            cur_kind = k->name;
            if (r->skip[kind]) {
                printf("skip: row \"%s\", kind %s: %s\n", r->name, k->name, r->skip[kind]);
                skipped++;
                continue;
            }
            GooAllocator* a = k->make();
            EXPECT(a != NULL);
            if (!a) continue;
            ran++;
            if (!run_row(r, k, a)) continue;
            /* still usable */
            GooAllocStats before = goo_get_alloc_stats(a);
            void* p = goo_memory_alloc_with(a, 16);
            EXPECT(p != NULL);
            if (p) {
                memset(p, 1, 16);
                goo_memory_free_with(a, p, 16);
            }
            GooAllocStats after = goo_get_alloc_stats(a);
            EXPECT(after.allocation_count == before.allocation_count);
            EXPECT(after.total_allocations == before.total_allocations + 1);
            (k->end ? k->end : k->destroy)(a);
        }
    }
    printf("test_bad_input_table: %zu rows x %d kinds: %d run, %d skipped, %d failed checks\n", nrows,
           (int)K_COUNT, ran, skipped, failures);
    if (failures) return 1;
    printf("test_bad_input_table: ok\n");
    return 0;
}
