/*
 * goo-bench-traces: replays allocation traces (recorded by recorder.c, see
 * scripts/bench-traces.sh) through glibc malloc, mimalloc (mi_malloc/mi_free/mi_realloc, static,
 * prefixed: it does not replace malloc) and goo-memory's C ABI (goo_memory_alloc/free/realloc,
 * sized, through the current allocator = the built-in default, and goo_memory_*_with a heap
 * allocator), interleaved in rounds with the order rotating; each figure is the median of the
 * per-round ratios to glibc. Then each contender replays once more in a child process of its own,
 * which reports its peak RSS (getrusage). Goals are printed beside the figures, never asserted.
 *
 * A trace is replayed on one thread in recorded order (the recorded thread is kept in the file;
 * cross-thread frees become same-thread frees here). Frees of blocks allocated before recording
 * began are dropped. Each block is written (first and last byte) when allocated, as a program
 * would touch it.
 *
 *   goo-bench-traces [--rounds N] file.trace...
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "goo/runtime/memory.h"
#include "trace.h"

void* mi_malloc(size_t size);
void* mi_realloc(void* p, size_t size);
void* mi_malloc_aligned(size_t size, size_t align);
void mi_free(void* p);

typedef struct Op {
    uint8_t kind;  /* TRACE_* */
    uint32_t slot; /* the block's slot (ALLOC: new; FREE, REALLOC: existing) */
    uint64_t size; /* ALLOC, REALLOC: new size */
    uint64_t align;
} Op;

typedef struct Trace {
    const char* name;
    Op* ops;
    size_t n_ops, n_slots, threads;
} Trace;

static void die(const char* m) {
    fprintf(stderr, "goo-bench-traces: %s\n", m);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Open-addressing map address -> slot, for loading. */
typedef struct Map {
    uint64_t* keys;
    uint32_t* vals;
    size_t cap;
} Map;
static size_t h(uint64_t k, size_t cap) { return (size_t)((k * 0x9e3779b97f4a7c15u) >> 20) & (cap - 1); }
static void map_put(Map* m, uint64_t k, uint32_t v) {
    size_t i = h(k, m->cap);
    while (m->keys[i] && m->keys[i] != k) i = (i + 1) & (m->cap - 1);
    m->keys[i] = k;
    m->vals[i] = v;
}
static bool map_take(Map* m, uint64_t k, uint32_t* v) {
    size_t i = h(k, m->cap);
    while (m->keys[i]) {
        if (m->keys[i] == k) {
            *v = m->vals[i];
            /* backward-shift deletion */
            size_t j = i;
            for (;;) {
                j = (j + 1) & (m->cap - 1);
                if (!m->keys[j]) break;
                size_t home = h(m->keys[j], m->cap);
                if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
                    m->keys[i] = m->keys[j];
                    m->vals[i] = m->vals[j];
                    i = j;
                }
            }
            m->keys[i] = 0;
            return true;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return false;
}

static Trace load(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) die("cannot open a trace");
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f) / sizeof(TraceEvent);
    fseek(f, 0, SEEK_SET);
    TraceEvent* ev = malloc(n * sizeof *ev);
    if (!ev || fread(ev, sizeof *ev, n, f) != n) die("cannot read a trace");
    fclose(f);
    Trace t = {path, malloc(n * sizeof(Op)), 0, 0, 0};
    Map m = {calloc(1 << 24, 8), calloc(1 << 24, 4), 1 << 24};
    uint32_t* free_slots = malloc(n * sizeof(uint32_t));
    size_t n_free = 0;
    if (!t.ops || !m.keys || !m.vals || !free_slots) die("out of memory loading");
    for (size_t i = 0; i < n; i++) {
        TraceEvent* e = &ev[i];
        if (e->thread > t.threads) t.threads = e->thread;
        uint32_t slot;
        Op* o = &t.ops[t.n_ops];
        if (e->op == TRACE_ALLOC) {
            slot = n_free ? free_slots[--n_free] : (uint32_t)t.n_slots++;
            *o = (Op){TRACE_ALLOC, slot, e->size ? e->size : 1, e->align};
            map_put(&m, e->ptr, slot);
            t.n_ops++;
        } else if (e->op == TRACE_FREE) {
            if (!map_take(&m, e->old, &slot)) continue;
            *o = (Op){TRACE_FREE, slot, 0, 0};
            free_slots[n_free++] = slot;
            t.n_ops++;
        } else if (e->op == TRACE_REALLOC) {
            if (!map_take(&m, e->old, &slot)) { /* resizing an unknown block: a fresh one here */
                slot = n_free ? free_slots[--n_free] : (uint32_t)t.n_slots++;
                *o = (Op){TRACE_ALLOC, slot, e->size, 0};
            } else {
                *o = (Op){TRACE_REALLOC, slot, e->size, 0};
            }
            map_put(&m, e->ptr, slot);
            t.n_ops++;
        }
    }
    free(ev);
    free(m.keys);
    free(m.vals);
    free(free_slots);
    return t;
}

/* Per contender: the slots' pointers and sizes. */
typedef struct Run {
    void** ptr;
    uint64_t* size;
    uint64_t* align;
} Run;

static inline void touch(void* p, uint64_t n) {
    ((volatile char*)p)[0] = 1;
    ((volatile char*)p)[n - 1] = 1;
}

/* The replay loop, written once per allocator so each makes direct calls. Blocks left live at
 * the end of the trace are freed after the clock stops. */
#define REPLAY(t, r, ALLOC, ALIGNED, FREE, REALLOC)                                           \
    do {                                                                                     \
        for (size_t i_ = 0; i_ < (t)->n_ops; i_++) {                                         \
            const Op* o = &(t)->ops[i_];                                                     \
            uint32_t s = o->slot;                                                            \
            if (o->kind == TRACE_ALLOC) {                                                    \
                uint64_t n = o->size;                                                        \
                void* p = o->align > 16 ? ALIGNED : ALLOC;                                   \
                if (!p) die("allocation failed");                                            \
                touch(p, n);                                                                 \
                (r)->ptr[s] = p; (r)->size[s] = n; (r)->align[s] = o->align > 16 ? o->align : 0; \
            } else if (o->kind == TRACE_FREE) {                                              \
                void* p = (r)->ptr[s]; uint64_t n = (r)->size[s]; uint64_t a = (r)->align[s]; \
                (void)n; (void)a;                                                            \
                FREE;                                                                        \
                (r)->ptr[s] = NULL;                                                          \
            } else {                                                                         \
                void* p = (r)->ptr[s]; uint64_t old = (r)->size[s]; uint64_t n = o->size;    \
                uint64_t a = (r)->align[s]; (void)old; (void)a;                              \
                p = REALLOC;                                                                 \
                if (!p) die("realloc failed");                                               \
                touch(p, n);                                                                 \
                (r)->ptr[s] = p; (r)->size[s] = n;                                           \
            }                                                                                \
        }                                                                                    \
    } while (0)

#define DRAIN(t, r, FREE)                                                                    \
    for (size_t s = 0; s < (t)->n_slots; s++) {                                              \
        void* p = (r)->ptr[s]; uint64_t n = (r)->size[s]; uint64_t a = (r)->align[s];        \
        (void)n; (void)a;                                                                    \
        if (p) { FREE; (r)->ptr[s] = NULL; }                                                 \
    }

static GooAllocator* heap;

static uint64_t run_glibc(const Trace* t, Run* r) {
    uint64_t t0 = now_ns();
    REPLAY(t, r, malloc(n), aligned_alloc(o->align, (n + o->align - 1) / o->align * o->align), free(p),
           realloc(p, n));
    uint64_t dt = now_ns() - t0;
    DRAIN(t, r, free(p));
    return dt;
}
static uint64_t run_mimalloc(const Trace* t, Run* r) {
    uint64_t t0 = now_ns();
    REPLAY(t, r, mi_malloc(n), mi_malloc_aligned(n, o->align), mi_free(p), mi_realloc(p, n));
    uint64_t dt = now_ns() - t0;
    DRAIN(t, r, mi_free(p));
    return dt;
}
static uint64_t run_goo_default(const Trace* t, Run* r) {
    uint64_t t0 = now_ns();
    REPLAY(t, r, goo_memory_alloc(n), goo_memory_alloc_aligned(n, o->align), goo_memory_free_ex(NULL, p, n, a),
           goo_memory_realloc_ex(NULL, p, old, n, a, GOO_ALLOC_DEFAULT));
    uint64_t dt = now_ns() - t0;
    DRAIN(t, r, goo_memory_free_ex(NULL, p, n, a));
    return dt;
}
static uint64_t run_goo_heap(const Trace* t, Run* r) {
    GooAllocator* hp = heap;
    uint64_t t0 = now_ns();
    REPLAY(t, r, goo_memory_alloc_with(hp, n), goo_memory_alloc_ex(hp, n, o->align, GOO_ALLOC_DEFAULT),
           goo_memory_free_ex(hp, p, n, a), goo_memory_realloc_ex(hp, p, old, n, a, GOO_ALLOC_DEFAULT));
    uint64_t dt = now_ns() - t0;
    DRAIN(t, r, goo_memory_free_ex(hp, p, n, a));
    return dt;
}

typedef struct Contender {
    const char* name;
    uint64_t (*run)(const Trace*, Run*);
} Contender;

static const Contender contenders[] = {
    {"glibc malloc/free/realloc", run_glibc},
    {"mimalloc mi_malloc/mi_free/mi_realloc", run_mimalloc},
    {"goo_memory_alloc/free/realloc (default), stats on", run_goo_default},
    {"goo_memory_*_with(heap), stats on", run_goo_heap},
};
enum { NC = sizeof contenders / sizeof *contenders };

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}
static double median(double* v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static Run new_run(const Trace* t) {
    Run r = {calloc(t->n_slots, sizeof(void*)), calloc(t->n_slots, 8), calloc(t->n_slots, 8)};
    if (!r.ptr || !r.size || !r.align) die("out of memory");
    return r;
}

/* A few requests of each kind (small, page-sized, large; aligned; resized) that bring a
 * contender's code into memory. */
static const Op warm_ops[] = {
    {TRACE_ALLOC, 0, 24, 0},      {TRACE_ALLOC, 1, 5000, 0},   {TRACE_ALLOC, 2, 200000, 0},
    {TRACE_ALLOC, 3, 100, 64},    {TRACE_REALLOC, 0, 300, 0},  {TRACE_REALLOC, 1, 40000, 0},
    {TRACE_REALLOC, 2, 1000, 0},  {TRACE_FREE, 0, 0, 0},       {TRACE_FREE, 1, 0, 0},
    {TRACE_FREE, 2, 0, 0},        {TRACE_FREE, 3, 0, 0},
};

/* Peak RSS (KiB) of a child that replays the trace once with contender c, over the child's
 * RSS before the replay (the loaded trace, and the contender's code: the child first makes a
 * few requests through it, as glibc's malloc code is resident before the child starts; the
 * kernel maps code 64 KiB at a time, which would otherwise count a few hundred KiB of the
 * library's code as heap). Called before the parent replays anything, so that no contender
 * starts with memory a warm parent left it (or gave back to the OS). */
static long peak_rss(const Trace* t, int c) {
    int fds[2];
    if (pipe(fds)) die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        Trace warm = {"warm-up", (Op*)warm_ops, sizeof warm_ops / sizeof *warm_ops, 4, 1};
        Run w = new_run(&warm);
        contenders[c].run(&warm, &w);
        Run r = new_run(t);
        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        contenders[c].run(t, &r);
        getrusage(RUSAGE_SELF, &after);
        long d = after.ru_maxrss - before.ru_maxrss;
        if (write(fds[1], &d, sizeof d) != sizeof d) _exit(1);
        _exit(0);
    }
    long d = -1;
    close(fds[1]);
    if (read(fds[0], &d, sizeof d) != sizeof d) d = -1;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return d;
}

int main(int argc, char** argv) {
    int rounds = 7;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--rounds") == 0) {
        rounds = atoi(argv[2]);
        first = 3;
    }
    if (first >= argc || rounds < 1) die("usage: goo-bench-traces [--rounds N] file.trace...");
    setvbuf(stdout, NULL, _IOLBF, 0);
    heap = goo_heap_allocator_create();
    if (!heap) die("goo_heap_allocator_create failed");
    /* GOO_REPLAY_ONLY=<contender index>: replay each trace with that contender alone
     * (GOO_REPLAY_REPEAT times, default once) and print its times (for a profiler such as
     * cachegrind or perf; no ratios). */
    const char* only = getenv("GOO_REPLAY_ONLY");
    for (int a = first; a < argc; a++) {
        Trace t = load(argv[a]);
        if (only) {
            int c = atoi(only);
            if (c < 0 || c >= NC) die("GOO_REPLAY_ONLY: no such contender");
            const char* repeat = getenv("GOO_REPLAY_REPEAT");
            int times = repeat ? atoi(repeat) : 1;
            Run r = new_run(&t);
            for (int i = 0; i < times; i++)
                printf("%s: %s: %.2f ms\n", t.name, contenders[c].name, (double)contenders[c].run(&t, &r) / 1e6);
            continue;
        }
        long rss[NC];
        for (int c = 0; c < NC; c++) rss[c] = peak_rss(&t, c);
        Run runs[NC];
        for (int c = 0; c < NC; c++) runs[c] = new_run(&t);
        double ns[NC][64];
        if (rounds > 64) rounds = 64;
        for (int c = 0; c < NC; c++) contenders[c].run(&t, &runs[c]); /* warm-up */
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < NC; k++) {
                int c = (r + k) % NC;
                ns[c][r] = (double)contenders[c].run(&t, &runs[c]);
            }
        printf("\n## %s: %zu operations, %zu slots, %zu recorded threads (%d rounds)\n\n", t.name, t.n_ops,
               t.n_slots, t.threads, rounds);
        printf("| %-52s | %10s | %8s | %12s | %12s |\n", "contender", "ms/replay", "vs glibc", "vs mimalloc",
               "peak RSS KiB");
        printf("|---|---:|---:|---:|---:|\n");
        double ratio[NC], ratio_mi[NC];
        for (int c = 0; c < NC; c++) {
            double v[64], w[64], m[64];
            for (int r = 0; r < rounds; r++) {
                v[r] = ns[c][r] / ns[0][r];
                w[r] = ns[c][r] / ns[1][r];
                m[r] = ns[c][r];
            }
            ratio[c] = median(v, rounds);
            ratio_mi[c] = median(w, rounds);
            printf("| %-52s | %10.2f | %7.2fx | %11.2fx | %12ld |\n", contenders[c].name, median(m, rounds) / 1e6,
                   ratio[c], ratio_mi[c], rss[c]);
        }
        for (int c = 2; c < NC; c++)
            printf("goal: %s: %.2fx glibc (goal <= 0.90x) %s; %.2fx mimalloc (goal <= 1.00x) %s\n",
                   contenders[c].name, ratio[c], ratio[c] <= 0.9 ? "goal met" : "goal missed", ratio_mi[c],
                   ratio_mi[c] <= 1.0 ? "goal met" : "goal missed");
        GooAllocStats s = goo_get_alloc_stats(heap);
        if (s.allocation_count != 0) die("the heap allocator has live blocks after the replays");
    }
    return 0;
}
