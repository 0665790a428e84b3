/* Allocators that threads share, from C: a shared arena, a shared pool and a locked allocator
 * over an arena. THREADS threads allocate, fill every block with their pattern, free some of
 * their own and hand some to the next thread to free; after the join every live block is intact
 * and disjoint from the others, the stats are exact, and a reset empties the allocator. A
 * reset (mark, rewind, count) while a thread is held inside the allocator, by a parent that
 * blocks, is refused; after the join it succeeds. Destroying the locked wrapper leaves the arena. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "goo/runtime/arena.h"
#include "goo/runtime/memory.h"
#include "goo/runtime/pool.h"
#include "check.h"

#define THREADS 4
#define OPS 4000
#define QUEUE 8192

typedef struct {
    unsigned char* ptr;
    size_t size;
    unsigned char fill;
} Block;

/* A queue of blocks handed to a thread to free. */
typedef struct {
    pthread_mutex_t lock;
    Block blocks[QUEUE];
    size_t count;
} Queue;

typedef struct {
    GooAllocator* allocator;
    size_t (*size)(unsigned* seed);
    Queue queues[THREADS];
    pthread_mutex_t lock;
    size_t allocs, frees;
    Block live[THREADS * OPS];
    size_t live_count;
} Run;

typedef struct {
    Run* run;
    unsigned id;
} Worker;

static unsigned next_rand(unsigned* seed) {
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

static void fill(Block b) { memset(b.ptr, b.fill, b.size); }

static bool intact(Block b) {
    for (size_t i = 0; i < b.size; i++)
        if (b.ptr[i] != b.fill) return false;
    return true;
}

static void release(Run* run, Block b, size_t* frees) {
    CHECK(intact(b));
    goo_memory_free_with(run->allocator, b.ptr, b.size);
    (*frees)++;
}

static void* work(void* arg) {
    Worker* w = arg;
    Run* run = w->run;
    unsigned seed = 12345u + w->id * 7919u;
    Block* mine = malloc(OPS * sizeof(Block));
    CHECK(mine != NULL);
    size_t kept = 0, allocs = 0, frees = 0;
    for (int i = 0; i < OPS; i++) {
        Block b = {NULL, run->size(&seed), (unsigned char)(w->id * 37 + (unsigned)i)};
        b.ptr = goo_memory_alloc_with(run->allocator, b.size);
        CHECK(b.ptr != NULL);
        fill(b);
        allocs++;
        switch (next_rand(&seed) % 3) {
        case 0: /* the newest block, freed at once */
            release(run, b, &frees);
            break;
        case 1: {
            Queue* q = &run->queues[(w->id + 1) % THREADS];
            pthread_mutex_lock(&q->lock);
            CHECK(q->count < QUEUE);
            q->blocks[q->count++] = b;
            pthread_mutex_unlock(&q->lock);
            break;
        }
        default:
            mine[kept++] = b;
        }
        if (i % 16 == 0) {
            Queue* q = &run->queues[w->id];
            pthread_mutex_lock(&q->lock);
            for (size_t k = 0; k < q->count; k++) release(run, q->blocks[k], &frees);
            q->count = 0;
            pthread_mutex_unlock(&q->lock);
        }
        if (kept > 64) {
            size_t k = next_rand(&seed) % kept;
            release(run, mine[k], &frees);
            mine[k] = mine[--kept];
        }
    }
    pthread_mutex_lock(&run->lock);
    run->allocs += allocs;
    run->frees += frees;
    for (size_t k = 0; k < kept; k++) run->live[run->live_count++] = mine[k];
    pthread_mutex_unlock(&run->lock);
    free(mine);
    return NULL;
}

static int by_address(const void* a, const void* b) {
    uintptr_t x = (uintptr_t)((const Block*)a)->ptr, y = (uintptr_t)((const Block*)b)->ptr;
    return x < y ? -1 : x > y;
}

/* The threads' run over `a`; checks the live blocks and the stats. */
static Run* hammer(GooAllocator* a, size_t (*size)(unsigned*)) {
    Run* run = calloc(1, sizeof(Run));
    CHECK(run != NULL);
    run->allocator = a;
    run->size = size;
    pthread_mutex_init(&run->lock, NULL);
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&run->queues[i].lock, NULL);
    pthread_t t[THREADS];
    Worker w[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (Worker){run, i};
        CHECK(pthread_create(&t[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < THREADS; i++) {
        Queue* q = &run->queues[i];
        for (size_t k = 0; k < q->count; k++) run->live[run->live_count++] = q->blocks[k];
        pthread_mutex_destroy(&q->lock);
    }
    pthread_mutex_destroy(&run->lock);
    size_t bytes = 0;
    for (size_t k = 0; k < run->live_count; k++) {
        CHECK(intact(run->live[k]));
        bytes += run->live[k].size;
    }
    qsort(run->live, run->live_count, sizeof(Block), by_address);
    for (size_t k = 1; k < run->live_count; k++)
        CHECK(run->live[k - 1].ptr + run->live[k - 1].size <= run->live[k].ptr);
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK_EQ(s.total_allocations, run->allocs);
    CHECK_EQ(s.total_frees, run->frees);
    CHECK_EQ(s.allocation_count, run->live_count);
    CHECK_EQ(s.bytes_allocated, bytes);
    CHECK_EQ(s.failed_allocations, 0);
    return run;
}

static size_t arena_size(unsigned* seed) {
    unsigned r = next_rand(seed);
    if (r % 20 == 0) return 3000 + r % 6000; /* a chunk of its own now and then */
    if (r % 4 == 0) return 1 + r % 512;
    return 1 + r % 64;
}

static size_t object_size(unsigned* seed) { return 1 + next_rand(seed) % 48; }

/* A parent whose next allocation blocks until released: it holds a thread inside the
 * allocator that asks it (under that allocator's lock). */
static pthread_barrier_t inside, released;
static bool armed;

static void* gate_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx, (void)options;
    if (__atomic_exchange_n(&armed, false, __ATOMIC_SEQ_CST)) {
        pthread_barrier_wait(&inside);
        pthread_barrier_wait(&released);
    }
    void* p = NULL;
    return posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) == 0 ? p : NULL;
}

static void gate_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx, (void)size, (void)alignment;
    free(ptr);
}

static void* alloc_once(void* a) { return goo_memory_alloc_with(a, 40); }
static void* alloc_once_48(void* a) { return goo_memory_alloc_with(a, 48); }

/* Starts a thread that is held inside an allocation from `a`; returns once it is inside. */
static pthread_t hold_a_thread_inside(GooAllocator* a) {
    pthread_t t;
    __atomic_store_n(&armed, true, __ATOMIC_SEQ_CST);
    CHECK(pthread_create(&t, NULL, alloc_once, a) == 0);
    pthread_barrier_wait(&inside);
    return t;
}

/* Lets the held thread go and joins it; returns its block. */
static void* let_it_go(pthread_t t) {
    void* block = NULL;
    pthread_barrier_wait(&released);
    CHECK(pthread_join(t, &block) == 0);
    CHECK(block != NULL);
    return block;
}

static void shared_arena(void) {
    GooAllocator* a = goo_arena_allocator_create_shared(1024);
    CHECK(a != NULL);
    Run* run = hammer(a, arena_size);
    CHECK(goo_arena_allocator_chunk_count(a) >= THREADS);
    CHECK(goo_get_alloc_stats(a).bytes_reserved >= goo_get_alloc_stats(a).bytes_allocated);
    CHECK(goo_arena_allocator_reset(a)); /* after the join */
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK_EQ(s.allocation_count, 0);
    CHECK_EQ(s.bytes_allocated, 0);
    CHECK(goo_arena_allocator_chunk_count(a) <= THREADS + 1);
    free(run);
    goo_arena_allocator_destroy(a);

    /* A block moved by a realloc, then the arena reset: the bytes handed out again are the
     * program's, with no report from valgrind or ASan (the shared arena annotates nothing). */
    a = goo_arena_allocator_create_shared(0);
    CHECK(a != NULL);
    char* p = goo_memory_alloc_with(a, 64);
    char* q = goo_memory_alloc_with(a, 16); /* p is no longer the newest block: it moves */
    CHECK(p != NULL && q != NULL);
    memset(p, 1, 64);
    char* moved = goo_memory_realloc_with(a, p, 64, 128);
    CHECK(moved != NULL && moved != p);
    memset(moved, 1, 128);
    CHECK(goo_arena_allocator_reset(a));
    char* again = goo_memory_alloc_with(a, 64);
    CHECK(again == p);
    memset(again, 2, 64);
    goo_arena_allocator_destroy(a);

    /* Refusals while a thread is inside (taking a chunk from the blocking parent). */
    GooAllocator parent = {0};
    parent.alloc = gate_alloc;
    parent.free = gate_free;
    a = goo_arena_allocator_create_shared_ex(&parent, 256, 0);
    CHECK(a != NULL);
    GooArenaMark mark = goo_arena_mark(a);
    pthread_t t = hold_a_thread_inside(a);
    CHECK(!goo_arena_allocator_reset(a));
    GooArenaMark busy = goo_arena_mark(a);
    CHECK(!goo_arena_rewind(a, mark));
    let_it_go(t);
    CHECK(!goo_arena_rewind(a, busy)); /* the mark refused while busy names nothing */
    CHECK_EQ(goo_get_alloc_stats(a).allocation_count, 1);
    CHECK(goo_arena_rewind(a, mark));
    CHECK_EQ(goo_get_alloc_stats(a).allocation_count, 0);
    CHECK(goo_arena_allocator_reset(a));
    goo_arena_allocator_destroy(a);
}

static void shared_pool(void) {
    GooAllocator* p = goo_pool_allocator_create_shared_ex(NULL, 48, 16, 32, 0);
    CHECK(p != NULL);
    Run* run = hammer(p, object_size);
    for (size_t k = 0; k < run->live_count; k++) CHECK((uintptr_t)run->live[k].ptr % 16 == 0);
    GooPoolStats ps;
    CHECK(goo_pool_allocator_get_stats(p, &ps));
    CHECK_EQ(ps.live_objects, run->live_count);
    CHECK_EQ(ps.free_objects + ps.live_objects, ps.total_objects);
    CHECK(!ps.checked);
    /* A foreign pointer is refused and counted, no stats changed. */
    long foreign[8];
    goo_memory_free_with(p, foreign, 48);
    CHECK(goo_pool_allocator_get_stats(p, &ps));
    CHECK_EQ(ps.misuse_detected, 1);
    CHECK_EQ(goo_get_alloc_stats(p).allocation_count, run->live_count);
    CHECK(goo_pool_allocator_reset(p));
    CHECK(goo_pool_allocator_get_stats(p, &ps));
    CHECK_EQ(ps.live_objects, 0);
    CHECK_EQ(goo_get_alloc_stats(p).allocation_count, 0);
    free(run);
    goo_pool_allocator_destroy(p);

    GooAllocator parent = {0};
    parent.alloc = gate_alloc;
    parent.free = gate_free;
    p = goo_pool_allocator_create_shared_ex(&parent, 40, 0, 8, 0);
    CHECK(p != NULL);
    pthread_t t = hold_a_thread_inside(p);
    CHECK(!goo_pool_allocator_reset(p));
    CHECK(!goo_pool_allocator_get_stats(p, &ps));
    void* block = let_it_go(t);
    CHECK(goo_pool_allocator_get_stats(p, &ps));
    CHECK_EQ(ps.live_objects, 1);
    goo_memory_free_with(p, block, 40); /* freed on another thread than its own */
    CHECK(goo_pool_allocator_get_stats(p, &ps));
    CHECK_EQ(ps.live_objects, 0);
    goo_pool_allocator_destroy(p);

    /* A cap that one block holds: the first thread's block takes all of it, and the free
     * objects are on that thread's own list; another thread still gets them, until every
     * object is live. */
    p = goo_pool_allocator_create_shared_ex(NULL, 48, 0, 0, 100);
    CHECK(p != NULL);
    void* first = goo_memory_alloc_with(p, 48);
    CHECK(first != NULL);
    CHECK(goo_pool_allocator_get_stats(p, &ps));
    CHECK_EQ(ps.total_objects, 100);
    pthread_t other;
    void* got = NULL;
    CHECK(pthread_create(&other, NULL, alloc_once_48, p) == 0);
    CHECK(pthread_join(other, &got) == 0);
    CHECK(got != NULL);
    void* held[100];
    size_t n = 0;
    while (n < 100 && (held[n] = goo_memory_alloc_with(p, 48)) != NULL) n++;
    CHECK_EQ(n, 98); /* the cap: 100 live, two of them allocated above */
    CHECK_EQ(goo_get_alloc_stats(p).failed_allocations, 1);
    goo_memory_free_with(p, first, 48);
    CHECK(pthread_create(&other, NULL, alloc_once_48, p) == 0);
    CHECK(pthread_join(other, &first) == 0);
    CHECK(first != NULL);
    goo_pool_allocator_destroy(p);
}

static void locked_arena(void) {
    GooAllocator* arena = goo_arena_allocator_create(0);
    CHECK(arena != NULL);
    GooAllocator* locked = goo_locked_allocator_create(arena);
    CHECK(locked != NULL);
    CHECK(goo_locked_allocator_create(NULL) == NULL);
    Run* run = hammer(locked, arena_size);
    GooAllocStats inner = goo_get_alloc_stats(arena);
    CHECK_EQ(inner.total_allocations, run->allocs);
    CHECK_EQ(inner.allocation_count, run->live_count);
    CHECK_EQ(goo_get_alloc_stats(locked).bytes_reserved, inner.bytes_reserved);
    CHECK(goo_locked_allocator_reset(locked));
    CHECK_EQ(goo_get_alloc_stats(locked).allocation_count, 0);
    CHECK_EQ(goo_get_alloc_stats(arena).allocation_count, 0);
    CHECK(!goo_locked_allocator_reset(arena)); /* not a locked allocator */
    free(run);
    goo_allocator_destroy(locked);
    /* The arena is still there. */
    void* p = goo_memory_alloc_with(arena, 10);
    CHECK(p != NULL);
    goo_memory_free_with(arena, p, 10);
    goo_arena_allocator_destroy(arena);

    /* Over an allocator with no reset: everything but the reset works. */
    GooAllocator* sys = goo_system_allocator_create();
    locked = goo_locked_allocator_create(sys);
    p = goo_memory_alloc_ex(locked, 100, 64, GOO_ALLOC_ZERO);
    CHECK(p != NULL && (uintptr_t)p % 64 == 0 && ((unsigned char*)p)[99] == 0);
    p = goo_memory_realloc_ex(locked, p, 100, 300, 64, GOO_ALLOC_ZERO);
    CHECK(p != NULL && (uintptr_t)p % 64 == 0 && ((unsigned char*)p)[299] == 0);
    CHECK(!goo_locked_allocator_reset(locked));
    goo_memory_free_ex(locked, p, 300, 64);
    CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, 0);
    goo_allocator_destroy(locked);
    goo_allocator_destroy(sys);

    /* A free the inner allocator refuses (a double free in a checked pool, a foreign pointer)
     * is not counted by the wrapper either: the two agree. */
    GooPoolOptions o;
    memset(&o, 0, sizeof o);
    o.object_size = 32;
    o.check = GOO_POOL_CHECK_ON;
    GooAllocator* pool = goo_pool_allocator_create_opts(&o);
    CHECK(pool != NULL);
    locked = goo_locked_allocator_create(pool);
    void* a = goo_memory_alloc_with(locked, 32);
    void* b = goo_memory_alloc_with(locked, 32);
    CHECK(a != NULL && b != NULL);
    goo_memory_free_with(locked, a, 32);
    goo_memory_free_with(locked, a, 32); /* refused by the pool */
    int outside = 0;
    goo_memory_free_with(locked, &outside, 32); /* refused by the pool */
    GooAllocStats w = goo_get_alloc_stats(locked), in = goo_get_alloc_stats(pool);
    CHECK_EQ(w.allocation_count, 1);
    CHECK_EQ(w.total_frees, 1);
    CHECK_EQ(w.bytes_allocated, in.bytes_allocated);
    CHECK_EQ(w.allocation_count, in.allocation_count);
    goo_memory_free_with(locked, b, 32);
    CHECK_EQ(goo_get_alloc_stats(locked).allocation_count, 0);
    goo_allocator_destroy(locked);
    goo_pool_allocator_destroy(pool);
}

int main(void) {
    CHECK(pthread_barrier_init(&inside, NULL, 2) == 0);
    CHECK(pthread_barrier_init(&released, NULL, 2) == 0);
    shared_arena();
    shared_pool();
    locked_arena();
    pthread_barrier_destroy(&inside);
    pthread_barrier_destroy(&released);
    return 0;
}
