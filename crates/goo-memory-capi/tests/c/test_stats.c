/* Stats registry, reports, callbacks (observe, intercept, threads), fault injection and the
 * exhaustive allocation-failure checker, through the C ABI. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goo/runtime/memory.h"
#include "check.h"
#include "child.h"

/* ---- observing callbacks: every event exactly once, in order ---- */
typedef struct {
    GooAllocator* only;
    uint32_t kinds[64];
    int n;
} Log;

static bool log_event(const GooMemoryEvent* e, void* user) {
    Log* log = (Log*)user;
    if (e->allocator == log->only && log->n < 64) log->kinds[log->n++] = e->kind;
    return true;
}

static void observe(void) {
    GooAllocator* a = goo_system_allocator_create();
    Log log;
    memset(&log, 0, sizeof log);
    log.only = a;
    uint64_t id = goo_memory_add_callback(GOO_EVENT_ALL, log_event, &log);
    CHECK(id != 0);
    void* p = goo_memory_alloc_with(a, 10);
    p = goo_memory_realloc_with(a, p, 10, 20);
    goo_memory_free_with(a, p, 20);
    CHECK(goo_memory_alloc_ex(a, 8, 3, 0) == NULL); /* invalid: request, then failure */
    a->destroy(a);
    uint32_t want[] = {GOO_EVENT_REQUEST, GOO_EVENT_ALLOC, GOO_EVENT_REQUEST, GOO_EVENT_REALLOC,
                       GOO_EVENT_FREE,    GOO_EVENT_REQUEST, GOO_EVENT_FAILURE, GOO_EVENT_DESTROY};
    CHECK_EQ(log.n, sizeof want / sizeof want[0]);
    for (int i = 0; i < log.n; i++) CHECK_EQ(log.kinds[i], want[i]);
    CHECK(goo_memory_remove_callback(id));
    CHECK(!goo_memory_remove_callback(id));
    /* arena reset is an event too */
    GooAllocator* arena = goo_arena_allocator_create(0);
    memset(&log, 0, sizeof log);
    log.only = arena;
    id = goo_memory_add_callback(GOO_EVENT_RESET | GOO_EVENT_ALLOC, log_event, &log);
    goo_memory_alloc_with(arena, 8);
    goo_arena_allocator_reset(arena);
    CHECK_EQ(log.n, 2);
    CHECK_EQ(log.kinds[1], GOO_EVENT_RESET);
    goo_memory_remove_callback(id);
    arena->destroy(arena);
}

/* ---- a reset is told after it happened ---- */
typedef struct ResetSeen {
    GooAllocator* target;
    size_t live_then;
    void* kept;
    int calls;
} ResetSeen;

static bool at_reset(const GooMemoryEvent* e, void* user) {
    ResetSeen* seen = user;
    if (e->allocator == seen->target) {
        seen->calls++;
        seen->live_then = goo_get_alloc_stats(seen->target).allocation_count;
        seen->kept = goo_memory_alloc_with(seen->target, 24);
    }
    return true;
}

static void reset_event_comes_after(void) {
    GooAllocator* kinds[] = {goo_arena_allocator_create(0), goo_pool_allocator_create(32, 16),
                             goo_region_allocator_create(0, true), goo_arena_allocator_create_shared(0)};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        GooAllocator* a = kinds[i];
        CHECK(a != NULL);
        ResetSeen seen = {a, 99, NULL, 0};
        uint64_t id = goo_memory_add_callback(GOO_EVENT_RESET, at_reset, &seen);
        CHECK(goo_memory_alloc_with(a, 24) != NULL);
        CHECK(goo_memory_alloc_with(a, 24) != NULL);
        bool reset = i == 1 ? goo_pool_allocator_reset(a)
                   : i == 2 ? goo_region_allocator_reset(a)
                            : goo_arena_allocator_reset(a);
        CHECK(reset);
        CHECK(goo_memory_remove_callback(id));
        CHECK_EQ(seen.calls, 1);
        CHECK_EQ(seen.live_then, 0); /* the callback sees the reset done */
        CHECK(seen.kept != NULL);    /* and what it allocates then stays */
        memset(seen.kept, 1, 24);
        CHECK_EQ(goo_get_alloc_stats(a).allocation_count, 1);
        goo_allocator_destroy(a);
    }
}

/* ---- interception: exactly the chosen request fails ---- */
static int requests;
static bool refuse_third(const GooMemoryEvent* e, void* user) {
    if (e->allocator != (GooAllocator*)user) return true;
    return ++requests != 3;
}

static void intercept(void) {
    GooAllocator* a = goo_system_allocator_create();
    uint64_t id = goo_memory_add_callback(GOO_EVENT_REQUEST, refuse_third, a);
    void* got[5];
    for (int i = 0; i < 5; i++) got[i] = goo_memory_alloc_with(a, 16);
    for (int i = 0; i < 5; i++) CHECK((got[i] == NULL) == (i == 2));
    CHECK_EQ(goo_get_alloc_stats(a).failed_allocations, 1);
    for (int i = 0; i < 5; i++) goo_memory_free_with(a, got[i], 16);
    goo_memory_remove_callback(id);
    a->destroy(a);
}

/* ---- callbacks from several threads: nothing lost, nothing doubled ---- */
static atomic_long thread_allocs, thread_frees;
static bool count_event(const GooMemoryEvent* e, void* user) {
    (void)user;
    if (e->kind == GOO_EVENT_ALLOC) atomic_fetch_add(&thread_allocs, 1);
    if (e->kind == GOO_EVENT_FREE) atomic_fetch_add(&thread_frees, 1);
    return true;
}

static GooAllocator* shared;
static void* worker(void* arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        void* p = goo_memory_alloc_with(shared, 32);
        goo_memory_free_with(shared, p, 32);
    }
    return NULL;
}

static void threads(void) {
    shared = goo_system_allocator_create();
    uint64_t id = goo_memory_add_callback(GOO_EVENT_ALLOC | GOO_EVENT_FREE, count_event, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    goo_memory_remove_callback(id);
    CHECK_EQ(atomic_load(&thread_allocs), 8000);
    CHECK_EQ(atomic_load(&thread_frees), 8000);
    shared->destroy(shared);
}

/* ---- fault injection ---- */
static void faults(void) {
    GooAllocator* a = goo_system_allocator_create();
    GooFaultSpec spec;
    memset(&spec, 0, sizeof spec);
    spec.allocator = a;
    spec.fail_nth = 4;
    uint64_t id = goo_memory_inject_faults(&spec);
    CHECK(id != 0);
    for (int i = 1; i <= 6; i++) {
        void* p = goo_memory_alloc_with(a, 8);
        CHECK((p == NULL) == (i == 4));
        goo_memory_free_with(a, p, 8);
    }
    CHECK(goo_memory_remove_callback(id));
    memset(&spec, 0, sizeof spec);
    spec.allocator = a;
    spec.fail_above = 1000;
    id = goo_memory_inject_faults(&spec);
    void* small = goo_memory_alloc_with(a, 1000);
    CHECK(small != NULL);
    CHECK(goo_memory_alloc_with(a, 1001) == NULL);
    goo_memory_free_with(a, small, 1000);
    goo_memory_remove_callback(id);
    memset(&spec, 0, sizeof spec);
    spec.allocator = a;
    spec.probability = 0.25;
    spec.seed = 42;
    id = goo_memory_inject_faults(&spec);
    int failed = 0;
    for (int i = 0; i < 2000; i++) {
        void* p = goo_memory_alloc_with(a, 8);
        if (!p) failed++;
        goo_memory_free_with(a, p, 8);
    }
    goo_memory_remove_callback(id);
    CHECK(failed > 350 && failed < 650);
    /* A probability outside [0, 1] (NaN included) is refused, not read as "never" or "always". */
    const double bad[] = {1.5, -1.0, 0.0 / 0.0, 1.0 / 0.0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spec.probability = bad[i];
        CHECK(goo_memory_inject_faults(&spec) == 0);
    }
    CHECK(goo_memory_inject_faults(NULL) == 0);
    spec.probability = 1.0;
    id = goo_memory_inject_faults(&spec);
    CHECK(id != 0);
    CHECK(goo_memory_alloc_with(a, 8) == NULL);
    CHECK(goo_memory_remove_callback(id));
    void* ok = goo_memory_alloc_with(a, 8);
    CHECK(ok != NULL);
    goo_memory_free_with(a, ok, 8);
    a->destroy(a);
}

/* ---- the exhaustive checker finds a planted leak and passes a correct function ---- */
static int correct(void* ctx) {
    GooAllocator* a = (GooAllocator*)ctx;
    void* x = goo_memory_alloc_with(a, 10);
    if (!x) return 1;
    void* y = goo_memory_alloc_with(a, 20);
    if (!y) {
        goo_memory_free_with(a, x, 10);
        return 1;
    }
    void* z = goo_memory_alloc_with(a, 30);
    if (z) goo_memory_free_with(a, z, 30);
    goo_memory_free_with(a, y, 20);
    goo_memory_free_with(a, x, 10);
    return 0;
}

static int leaky(void* ctx) {
    GooAllocator* a = (GooAllocator*)ctx;
    void* x = goo_memory_alloc_with(a, 10);
    if (!x) return 1;
    void* y = goo_memory_alloc_with(a, 20);
    if (!y) return 1; /* planted leak: x is not freed on this failure path */
    goo_memory_free_with(a, y, 20);
    goo_memory_free_with(a, x, 10);
    return 0;
}

static void exhaustive(void) {
    GooAllocator* a = goo_system_allocator_create();
    GooExhaustiveResult r;
    CHECK(goo_memory_check_all_allocation_failures(correct, a, &r));
    CHECK_EQ(r.allocations, 3);
    CHECK_EQ(r.runs, 3);
    CHECK_EQ(r.leaks + r.crashes, 0);
    CHECK(!goo_memory_check_all_allocation_failures(leaky, a, &r));
    CHECK_EQ(r.allocations, 2);
    CHECK_EQ(r.leaks, 1);
    CHECK_EQ(r.first_bad, 2);
    CHECK_EQ(goo_get_alloc_stats(a).allocation_count, 0);
    a->destroy(a);
}

/* What goo_memory_cleanup() writes to stderr, run in a child so this process keeps its state. */
static void cleanup_in_child(void) { goo_memory_cleanup(); }
static void cleanup_report(char* err, size_t size) { CHECK(in_child(cleanup_in_child, err, size) == 0); }

/* ---- names, reports, and the cleanup leak report ---- */
static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx; (void)alignment; (void)options;
    return malloc(size);
}
static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx; (void)size; (void)alignment;
    free(ptr);
}

static void reports(void) {
    GooAllocator* sys = goo_system_allocator_create();
    GooAllocator* arena = goo_arena_allocator_create(0);
    GooAllocator* root = goo_region_allocator_create(1024, true);
    GooAllocator* child = goo_region_create_child(root, 0);
    CHECK(goo_allocator_set_name(sys, "compiler heap"));
    CHECK(goo_allocator_set_name(arena, "parser arena"));
    CHECK(goo_allocator_set_name(root, "request root"));
    CHECK(goo_allocator_set_name(child, "request child"));
    void* p = goo_memory_alloc_with(sys, 100);
    for (int i = 0; i < 10; i++) goo_memory_alloc_with(arena, 24);
    goo_memory_alloc_with(child, 5000);
    char text[16384];
    size_t len = goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    CHECK(len > 0 && len < sizeof text);
    CHECK(strstr(text, "compiler heap") && strstr(text, "parser arena"));
    CHECK(strstr(text, "  request child") != NULL); /* indented under its parent */
    CHECK(strstr(text, "<=32: 10 live/10 total") != NULL);
    len = goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_JSON);
    CHECK(len > 0 && len < sizeof text);
    CHECK(strncmp(text, "{\"allocators\":[", 15) == 0);
    CHECK(strstr(text, "\"name\":\"parser arena\",\"kind\":\"arena\"") != NULL);
    size_t live[16], total[16];
    CHECK(goo_allocator_size_classes(arena, live, total));
    CHECK_EQ(live[2], 10);
    FILE* devnull = fopen("/dev/null", "w");
    CHECK(goo_memory_stats_report(devnull, GOO_REPORT_TEXT) > 0);
    fclose(devnull);

    /* goo_memory_cleanup names the leaking allocator and its kind (checked in a child) */
    GooAllocator* heap = goo_heap_allocator_create();
    GooAllocator* shared = goo_arena_allocator_create_shared(0);
    void* h = goo_memory_alloc_with(heap, 40);
    goo_memory_alloc_with(shared, 8);
    char err[4096];
    cleanup_report(err, sizeof err);
    CHECK(strstr(err, "(system, \"compiler heap\") still has 1 live allocation(s), 100 byte(s)") != NULL);
    CHECK(strstr(err, "(heap) still has 1 live allocation(s), 40 byte(s)") != NULL);
    CHECK(strstr(err, "(shared arena) still has 1 live allocation(s), 8 byte(s)") != NULL);
    goo_memory_free_with(heap, h, 40);
    goo_allocator_destroy(heap);
    goo_allocator_destroy(shared);

    goo_memory_free_with(sys, p, 100);
    goo_region_allocator_destroy(root);
    arena->destroy(arena);
    sys->destroy(sys);
    /* a C allocator joins the registry by name, and leaves it unnamed */
    GooAllocator c;
    memset(&c, 0, sizeof c);
    c.alloc = c_alloc;
    c.free = c_free;
    c.track_stats = true;
    CHECK(goo_allocator_set_name(&c, "my C heap"));
    void* q = goo_memory_alloc_with(&c, 77);
    len = goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    CHECK(strstr(text, "my C heap") != NULL && strstr(text, "custom") != NULL);
    CHECK(!goo_allocator_size_classes(&c, live, total));
    goo_memory_free_with(&c, q, 77);
    CHECK(goo_allocator_set_name(&c, NULL));
    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    CHECK(strstr(text, "my C heap") == NULL);
}

/* ---- an unnamed tracked C-made allocator: outside the registry, still seen ---- */
static int leaky_in_c(void* ctx) {
    GooAllocator* a = (GooAllocator*)ctx;
    void* x = goo_memory_alloc_with(a, 10);
    if (!x) return 1;
    void* y = goo_memory_alloc_with(a, 20);
    if (!y) return 1; /* planted leak, as in leaky() */
    goo_memory_free_with(a, y, 20);
    goo_memory_free_with(a, x, 10);
    return 0;
}

static void unnamed_c_allocator(void) {
    GooAllocator c;
    memset(&c, 0, sizeof c);
    c.alloc = c_alloc;
    c.free = c_free;
    c.track_stats = true;
    GooExhaustiveResult r;
    CHECK(!goo_memory_check_all_allocation_failures(leaky_in_c, &c, &r));
    CHECK_EQ(r.allocations, 2);
    CHECK_EQ(r.leaks, 1);
    CHECK_EQ(r.first_bad, 2);

    /* goo_memory_cleanup reports what unnamed C-made allocators still hold (in a child) */
    void* q = goo_memory_alloc_with(&c, 33);
    CHECK(q != NULL);
    char err[4096];
    cleanup_report(err, sizeof err);
    CHECK(strstr(err, "unnamed C-made allocators still have 1 live allocation(s), 33 byte(s)") != NULL);
    goo_memory_free_with(&c, q, 33);
}

int main(void) {
    observe();
    reset_event_comes_after();
    intercept();
    threads();
    faults();
    exhaustive();
    unnamed_c_allocator();
    reports();
    printf("test_stats: ok\n");
    return 0;
}
