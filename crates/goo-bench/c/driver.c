/*
 * goo-bench-c: the benchmark driver written in C. It measures goo-memory the way users' C
 * programs use it: compiled by gcc against the public headers and the static library
 * (libgoo_memory.a), calling only the C ABI, with direct calls (no LTO across the boundary).
 * Built and run by scripts/bench-c.sh [--quick] [--rounds N].
 *
 * Workloads: 64-byte pairs (system allocator, the default), pool churn, arena, two threads (one
 * shared tracked allocator; frees of blocks the other thread allocated), pairs through a debug
 * allocator (against the undecorated system allocator), the allocators threads share, and
 * what a limit costs.
 *
 * Peers, measured in the same run:
 *   - glibc malloc/free: the real one. The driver refuses to run when malloc or free resolve
 *     anywhere but libc.so.6 (an LD_PRELOADed or linked-in allocator would replace them).
 *   - mimalloc through its prefixed API (mi_malloc/mi_free), linked statically from the
 *     libmimalloc-sys build; its symbols are mi_-prefixed, so it does not replace malloc.
 *
 * Method (this machine's speed drifts 2x within minutes): the contenders of a group run
 * interleaved in rounds, the order rotating each round; each contender's time is divided by
 * the baseline's time of the same round; the table shows the median of those per-round ratios
 * and the median ns/op. One unrecorded warm-up pass comes first. The program prints; it never
 * judges a time (the goal lines say "goal met" or "goal missed" and nothing fails on them).
 */
#define _GNU_SOURCE /* dladdr, Dl_info, RTLD_DEFAULT */
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "goo_memory.h" /* the legacy API, and goo/runtime/memory.h */

/* mimalloc's prefixed API, declared here rather than taken from mimalloc.h: the header lives in
 * the cargo registry under a versioned path, and these three are all the driver needs. */
void* mi_malloc(size_t size);
void mi_free(void* p);
int mi_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Makes the compiler treat p as used (and memory as clobbered), so no allocation, free or
 * malloc/free pair can be dropped or merged; it emits no instruction. */
static inline void keep(void* p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char* what) {
    fprintf(stderr, "goo-bench-c: %s\n", what);
    exit(1);
}

static void* xmalloc(size_t size) {
    void* p = malloc(size);
    if (!p) die("out of memory (harness)");
    return p;
}

static uint64_t xorshift64(uint64_t* state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static double median(double* v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* ------------------------------------------------------------------------------------------ */
/* Harness: interleaved rounds, median of per-round ratios                                    */
/* ------------------------------------------------------------------------------------------ */

/* One contender: run(ctx, iters) performs iters units of work and returns the elapsed ns. */
typedef struct Contender {
    const char* name;
    uint64_t (*run)(void* ctx, uint64_t iters);
    void* ctx;
} Contender;

typedef struct Row {
    double median_ns;    /* per operation */
    double median_ratio; /* to the baseline, within each round */
} Row;

enum { MAX_CONTENDERS = 8 };

/* --json FILE: every comparison is also written there, in the shape of goo-bench's --json
 * (`cargo run -p goo-bench -- chart` draws it). NULL when not asked for. */
static FILE* json_out;
static int json_groups;

static void json_string(FILE* f, const char* s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

/* The CPU's model name and the online core count. */
static void machine(char* buf, size_t len) {
    char line[256];
    const char* model = "unknown CPU";
    FILE* f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            model = strchr(line, ':') + 2;
            line[strcspn(line, "\n")] = 0;
            break;
        }
    }
    snprintf(buf, len, "%s, %ld cores", model, sysconf(_SC_NPROCESSORS_ONLN));
    if (f) fclose(f);
}

static void json_begin(const char* path, int argc, char** argv) {
    json_out = fopen(path, "w");
    if (!json_out) die("cannot open the --json file");
    char command[1024] = "goo-bench-c", host[256];
    for (int i = 1; i < argc; i++) {
        strncat(command, " ", sizeof command - strlen(command) - 1);
        strncat(command, argv[i], sizeof command - strlen(command) - 1);
    }
    machine(host, sizeof host);
    fputs("{\n  \"command\": ", json_out);
    json_string(json_out, command);
    fputs(",\n  \"machine\": ", json_out);
    json_string(json_out, host);
    fputs(",\n  \"groups\": [", json_out);
}

static void json_group(const char* title, const Contender* c, size_t n, size_t baseline, int rounds, const Row* rows) {
    if (!json_out) return;
    fputs(json_groups++ ? ",\n    {\"title\": " : "\n    {\"title\": ", json_out);
    json_string(json_out, title);
    fputs(", \"baseline\": ", json_out);
    json_string(json_out, c[baseline].name);
    fprintf(json_out, ", \"rounds\": %d, \"rows\": [", rounds);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ", {\"name\": " : "{\"name\": ", json_out);
        json_string(json_out, c[i].name);
        fprintf(json_out, ", \"ns_per_op\": %.4f, \"ratio\": %.4f}", rows[i].median_ns, rows[i].median_ratio);
    }
    fputs("]}", json_out);
}

static void json_end(void) {
    if (!json_out) return;
    fputs("\n  ]\n}\n", json_out);
    if (fclose(json_out) != 0) die("writing the --json file");
    json_out = NULL;
}

/* Runs the contenders `rounds` times, interleaved with the order rotating, and prints a table:
 * median ns per operation (a unit of work is ops_per_iter operations) and the median of the
 * per-round ratios to contender `baseline`. Fills rows[0..n). */
static void compare(const char* title, Contender* c, size_t n, size_t baseline, uint64_t iters,
                    uint64_t ops_per_iter, int rounds, Row* rows) {
    double* ns = xmalloc(sizeof(double) * n * (size_t)rounds); /* ns[i * rounds + r] */
    double* scratch = xmalloc(sizeof(double) * (size_t)rounds);
    /* Warm-up: one unrecorded, shorter pass each (caches, page faults, thread slots). */
    for (size_t i = 0; i < n; i++) c[i].run(c[i].ctx, iters / 4 + 1);
    for (int r = 0; r < rounds; r++) {
        for (size_t k = 0; k < n; k++) {
            size_t i = ((size_t)r + k) % n;
            uint64_t t = c[i].run(c[i].ctx, iters);
            ns[i * (size_t)rounds + (size_t)r] = (double)t / (double)(iters * ops_per_iter);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (int r = 0; r < rounds; r++)
            scratch[r] = ns[i * (size_t)rounds + (size_t)r] / ns[baseline * (size_t)rounds + (size_t)r];
        rows[i].median_ratio = median(scratch, (size_t)rounds);
        memcpy(scratch, &ns[i * (size_t)rounds], sizeof(double) * (size_t)rounds);
        rows[i].median_ns = median(scratch, (size_t)rounds);
    }
    printf("\n## %s\n", title);
    printf("(%d interleaved rounds x %llu ops; ratio = median of per-round ratios to `%s`)\n\n", rounds,
           (unsigned long long)(iters * ops_per_iter), c[baseline].name);
    printf("| %-56s | %8s | %7s |\n", "contender", "ns/op", "ratio");
    printf("|%s|%s|%s|\n", "----------------------------------------------------------", "---------:",
           "--------:");
    for (size_t i = 0; i < n; i++)
        printf("| %-56s | %8.2f | %6.2fx |\n", c[i].name, rows[i].median_ns, rows[i].median_ratio);
    json_group(title, c, n, baseline, rounds, rows);
    free(scratch);
    free(ns);
}

/* A goal line: the measured ratio beside its goal (lower is better for every goal here). */
static void goal(const char* what, double ratio, double limit) {
    printf("goal: %s: %.2fx (goal <= %.2fx) %s\n", what, ratio, limit,
           ratio <= limit ? "goal met" : "goal missed");
}

/* ------------------------------------------------------------------------------------------ */
/* Startup checks: the peers are what they claim to be                                        */
/* ------------------------------------------------------------------------------------------ */

/* The shared object holding addr ("" for the main program on some systems), or NULL. */
static const char* object_of(void* addr, void** base) {
    Dl_info info;
    if (!addr || !dladdr(addr, &info)) return NULL;
    if (base) *base = info.dli_fbase;
    return info.dli_fname ? info.dli_fname : "";
}

static bool is_libc(const char* path) {
    const char* slash = path ? strrchr(path, '/') : NULL;
    return path && strcmp(slash ? slash + 1 : path, "libc.so.6") == 0;
}

/* Function pointers cannot be cast to void* in ISO C; copy the bits (same size on every
 * platform with dladdr). */
#define FN_ADDR(dst, fn)                                                                          \
    do {                                                                                          \
        _Static_assert(sizeof(&fn) == sizeof(void*), "function and object pointers differ");      \
        __typeof__(&fn) f_ = &fn;                                                                 \
        memcpy(&(dst), &f_, sizeof(void*));                                                       \
    } while (0)

static void check_peers(void) {
    /* malloc and free, both as the dynamic linker resolves them for everyone (RTLD_DEFAULT) and
     * as this program calls them (the address taken here; the script builds a PIE, where that
     * is the resolved address, not a PLT stub). */
    void* called_malloc;
    void* called_free;
    FN_ADDR(called_malloc, malloc);
    FN_ADDR(called_free, free);
    const char* where[4] = {
        object_of(dlsym(RTLD_DEFAULT, "malloc"), NULL),
        object_of(dlsym(RTLD_DEFAULT, "free"), NULL),
        object_of(called_malloc, NULL),
        object_of(called_free, NULL),
    };
    for (int i = 0; i < 4; i++) {
        if (!is_libc(where[i])) {
            fprintf(stderr,
                    "goo-bench-c: %s resolves into %s, not libc.so.6: the glibc peer would not be glibc "
                    "(LD_PRELOAD? a malloc-replacing library linked in?); refusing to run\n",
                    i % 2 ? "free" : "malloc",
                    where[i] ? (*where[i] ? where[i] : "the program itself") : "nothing");
            exit(1);
        }
    }
    /* mimalloc and goo-memory must be the statically linked copies (same object as this code). */
    void *self, *self_base = NULL, *mi, *mi_base = NULL, *goo, *goo_base = NULL;
    FN_ADDR(self, check_peers);
    FN_ADDR(mi, mi_malloc);
    FN_ADDR(goo, goo_memory_alloc_with);
    object_of(self, &self_base);
    const char* mi_obj = object_of(mi, &mi_base);
    const char* goo_obj = object_of(goo, &goo_base);
    if (mi_base != self_base || goo_base != self_base) {
        fprintf(stderr,
                "goo-bench-c: mi_malloc (%s) or goo_memory_alloc_with (%s) is not linked statically; "
                "refusing\n",
                mi_obj ? mi_obj : "?", goo_obj ? goo_obj : "?");
        exit(1);
    }
    int v = mi_version();
    printf("peers: malloc/free -> %s (glibc %s); mi_malloc/mi_free -> mimalloc %d.%d.%d, static; "
           "goo_memory_* -> libgoo_memory.a, static\n",
           where[0], gnu_get_libc_version(), v / 10000, v / 100 % 100, v % 100);
    /* Settings that change what a figure means. */
    const char* names[] = {"GOO_SYSTEM_CACHE", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "LD_PRELOAD"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char* val = getenv(names[i]);
        if (val && *val) printf("note: %s=%s is set\n", names[i], val);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Workloads 1 and 2: 64-byte alloc+free pairs                                                */
/* ------------------------------------------------------------------------------------------ */

enum { PAIR_SIZE = 64 };

/* Each contender is its own loop of direct calls, as a C program writes it. */
static uint64_t pairs_malloc(void* ctx, uint64_t n) {
    (void)ctx;
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void* p = malloc(PAIR_SIZE);
        keep(p);
        free(p);
    }
    return now_ns() - t;
}

static uint64_t pairs_mimalloc(void* ctx, uint64_t n) {
    (void)ctx;
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void* p = mi_malloc(PAIR_SIZE);
        keep(p);
        mi_free(p);
    }
    return now_ns() - t;
}

/* ctx: the GooAllocator*. */
static uint64_t pairs_goo_with(void* ctx, uint64_t n) {
    GooAllocator* a = ctx;
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void* p = goo_memory_alloc_with(a, PAIR_SIZE);
        keep(p);
        goo_memory_free_with(a, p, PAIR_SIZE);
    }
    return now_ns() - t;
}

/* Through the current allocator (here the built-in default: no thread allocator is set). */
static uint64_t pairs_goo_current(void* ctx, uint64_t n) {
    (void)ctx;
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void* p = goo_memory_alloc(PAIR_SIZE);
        keep(p);
        goo_memory_free(p, PAIR_SIZE);
    }
    return now_ns() - t;
}

/* The legacy API (goo_memory.h): unsized, as malloc; a 16-byte header keeps size and allocator. */
static uint64_t pairs_goo_legacy(void* ctx, uint64_t n) {
    (void)ctx;
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void* p = goo_alloc(PAIR_SIZE);
        keep(p);
        goo_free(p);
    }
    return now_ns() - t;
}

static void bench_pairs(uint64_t iters, int rounds) {
    GooAllocator* tracked = goo_system_allocator_create();
    GooAllocator* untracked = goo_system_allocator_create();
    if (!tracked || !untracked) die("goo_system_allocator_create failed");
    if (!tracked->track_stats) die("a new system allocator should track stats");
    untracked->track_stats = false;

    Contender c[] = {
        {"glibc malloc/free", pairs_malloc, NULL},
        {"mimalloc mi_malloc/mi_free", pairs_mimalloc, NULL},
        {"goo_memory_*_with(system), stats on", pairs_goo_with, tracked},
        {"goo_memory_*_with(system), stats off", pairs_goo_with, untracked},
    };
    Row rows[MAX_CONTENDERS];
    compare("1. 64-byte alloc+free pairs, one thread", c, 4, 0, iters, 1, rounds, rows);
    goal("stats on vs glibc", rows[2].median_ratio, 0.8);
    GooAllocStats s = goo_get_alloc_stats(tracked);
    if (s.allocation_count != 0) die("tracked system allocator: live allocations left after pairs");
    goo_allocator_destroy(tracked);
    goo_allocator_destroy(untracked);

    if (goo_get_thread_allocator() != NULL) die("a thread allocator is set; workload 2 wants the default");
    Contender d[] = {
        {"glibc malloc/free", pairs_malloc, NULL},
        {"goo_memory_alloc/free (current = built-in default)", pairs_goo_current, NULL},
    };
    compare("2. 64-byte alloc+free pairs through the current allocator", d, 2, 0, iters, 1, rounds, rows);
    goal("goo_memory_alloc/free vs glibc", rows[1].median_ratio, 0.95);

    /* Apart from the row above: run in its rounds, the legacy pairs moved its ratio by 10%. */
    Contender e[] = {
        {"glibc malloc/free", pairs_malloc, NULL},
        {"goo_alloc/goo_free (legacy, unsized)", pairs_goo_legacy, NULL},
    };
    compare("2. 64-byte alloc+free pairs through the legacy API (a 16-byte header)", e, 2, 0, iters, 1, rounds,
            rows);
}

/* ------------------------------------------------------------------------------------------ */
/* Workload 3: random-order churn over many live 64-byte objects                              */
/* (mirrors crates/goo-bench/src/pool_bench.rs)                                               */
/* ------------------------------------------------------------------------------------------ */

enum { CHURN_SIZE = 64 };

/* live slots; each op frees a random slot and allocates it again. Every contender has its own
 * slots and the same seed, so all of them touch the same sequence of slots. */
typedef struct Churn {
    void** slots;
    size_t live;
    uint64_t rng;
    GooAllocator* pool; /* the goo contender's pool; NULL for the others */
} Churn;

static void churn_init(Churn* ch, size_t live, GooAllocator* pool) {
    ch->slots = xmalloc(sizeof(void*) * live);
    ch->live = live;
    ch->rng = 0x9e3779b97f4a7c15u;
    ch->pool = pool;
}

/* The timed loop, written once and expanded per allocator so that each makes direct calls
 * (through a function pointer, the call itself would be part of every figure). ALLOC is an
 * expression; FREE a statement freeing `p`. */
#define CHURN_LOOP(ch, n, ALLOC, FREE)                                                            \
    for (uint64_t k_ = 0; k_ < (n); k_++) {                                                       \
        size_t i_ = (size_t)(xorshift64(&(ch)->rng) % (ch)->live);                                \
        void* p = (ch)->slots[i_];                                                                \
        FREE;                                                                                     \
        p = ALLOC;                                                                                \
        keep(p);                                                                                  \
        (ch)->slots[i_] = p;                                                                      \
    }

static uint64_t churn_malloc(void* ctx, uint64_t n) {
    Churn* ch = ctx;
    uint64_t t = now_ns();
    CHURN_LOOP(ch, n, malloc(CHURN_SIZE), free(p))
    return now_ns() - t;
}

static uint64_t churn_mimalloc(void* ctx, uint64_t n) {
    Churn* ch = ctx;
    uint64_t t = now_ns();
    CHURN_LOOP(ch, n, mi_malloc(CHURN_SIZE), mi_free(p))
    return now_ns() - t;
}

static uint64_t churn_goo_pool(void* ctx, uint64_t n) {
    Churn* ch = ctx;
    GooAllocator* pool = ch->pool;
    uint64_t t = now_ns();
    CHURN_LOOP(ch, n, goo_memory_alloc_with(pool, CHURN_SIZE), goo_memory_free_with(pool, p, CHURN_SIZE))
    return now_ns() - t;
}

/* Fill and drain outside the timed loops. */
static void churn_fill(Churn* ch, void* (*alloc)(Churn*)) {
    for (size_t i = 0; i < ch->live; i++)
        if (!(ch->slots[i] = alloc(ch))) die("churn fill: allocation failed");
}
static void churn_drain(Churn* ch, void (*release)(Churn*, void*)) {
    for (size_t i = 0; i < ch->live; i++) release(ch, ch->slots[i]);
    free(ch->slots);
}
static void* fill_malloc(Churn* ch) { (void)ch; return malloc(CHURN_SIZE); }
static void* fill_mimalloc(Churn* ch) { (void)ch; return mi_malloc(CHURN_SIZE); }
static void* fill_goo(Churn* ch) { return goo_memory_alloc_with(ch->pool, CHURN_SIZE); }
static void drain_malloc(Churn* ch, void* p) { (void)ch; free(p); }
static void drain_mimalloc(Churn* ch, void* p) { (void)ch; mi_free(p); }
static void drain_goo(Churn* ch, void* p) { goo_memory_free_with(ch->pool, p, CHURN_SIZE); }

static void bench_churn(uint64_t iters, int rounds, size_t live) {
    /* An unchecked pool, explicitly: goo_pool_allocator_create(_ex) would pick checked mode
     * when GOO_POOL_CHECKED=1 is in the environment. 1024 objects per block, as the Rust group. */
    GooPoolOptions o = {NULL, CHURN_SIZE, 0, 1024, 0, GOO_POOL_CHECK_OFF};
    GooAllocator* pool = goo_pool_allocator_create_opts(&o);
    if (!pool) die("goo_pool_allocator_create_opts failed");
    pool->track_stats = false; /* the mechanism against the peers, which keep no stats either */

    Churn gl, mi, gp;
    churn_init(&gl, live, NULL);
    churn_init(&mi, live, NULL);
    churn_init(&gp, live, pool);
    churn_fill(&gl, fill_malloc);
    churn_fill(&mi, fill_mimalloc);
    churn_fill(&gp, fill_goo);
    GooPoolStats ps;
    if (!goo_pool_allocator_get_stats(pool, &ps) || ps.checked || ps.live_objects != live)
        die("the pool is not an unchecked pool holding every live object");

    char title[128];
    snprintf(title, sizeof title,
             "3. random-order churn over %zu live 64-byte objects (free one, allocate one)", live);
    Contender c[] = {
        {"mimalloc mi_malloc/mi_free", churn_mimalloc, &mi},
        {"glibc malloc/free", churn_malloc, &gl},
        {"goo pool via goo_memory_*_with, unchecked, stats off", churn_goo_pool, &gp},
    };
    Row rows[MAX_CONTENDERS];
    compare(title, c, 3, 0, iters, 1, rounds, rows);
    goal("goo pool vs mimalloc", rows[2].median_ratio, 0.7);
    printf("(goo pool vs glibc: %.2fx)\n", rows[2].median_ratio / rows[1].median_ratio);

    churn_drain(&gl, drain_malloc);
    churn_drain(&mi, drain_mimalloc);
    churn_drain(&gp, drain_goo);
    goo_pool_allocator_destroy(pool);
}

/* ------------------------------------------------------------------------------------------ */
/* Workload 4: 16-byte allocations into a warm arena, then reset                              */
/* ------------------------------------------------------------------------------------------ */

enum { ARENA_SIZE = 16, ARENA_OBJECTS = 10000 /* per run; fits the warm chunk */ };

/* ctx: the arena. One unit of work: ARENA_OBJECTS allocations, then one reset. */
static uint64_t arena_runs(void* ctx, uint64_t runs) {
    GooAllocator* arena = ctx;
    uint64_t t = now_ns();
    for (uint64_t r = 0; r < runs; r++) {
        for (int i = 0; i < ARENA_OBJECTS; i++) keep(goo_memory_alloc_with(arena, ARENA_SIZE));
        goo_arena_allocator_reset(arena);
    }
    return now_ns() - t;
}

/* ctx: room for ARENA_OBJECTS pointers. The same blocks: ARENA_OBJECTS mallocs, then their frees. */
static uint64_t malloc_runs(void* ctx, uint64_t runs) {
    void** held = ctx;
    uint64_t t = now_ns();
    for (uint64_t r = 0; r < runs; r++) {
        for (int i = 0; i < ARENA_OBJECTS; i++) keep(held[i] = malloc(ARENA_SIZE));
        for (int i = 0; i < ARENA_OBJECTS; i++) free(held[i]);
    }
    return now_ns() - t;
}

static void bench_arena(uint64_t runs, int rounds) {
    /* A first chunk that holds a whole run (as the Rust group sizes it); the warm-up pass
     * then leaves it warm. */
    size_t initial = (size_t)ARENA_OBJECTS * (ARENA_SIZE + 8);
    GooAllocator* tracked = goo_arena_allocator_create(initial);
    GooAllocator* untracked = goo_arena_allocator_create(initial);
    if (!tracked || !untracked) die("goo_arena_allocator_create failed");
    if (!tracked->track_stats) die("a C-created arena should track stats (arena.h)");
    untracked->track_stats = false;
    void** held = xmalloc(sizeof(void*) * ARENA_OBJECTS);

    Contender c[] = {
        {"glibc malloc(16) x N, then free x N", malloc_runs, held},
        {"goo arena: goo_memory_alloc_with x N + reset, stats on", arena_runs, tracked},
        {"goo arena: goo_memory_alloc_with x N + reset, stats off", arena_runs, untracked},
    };
    Row rows[MAX_CONTENDERS];
    compare("4. 16-byte allocations into a warm arena, then reset (N = 10000 per run; per allocation)",
            c, 3, 0, runs, ARENA_OBJECTS, rounds, rows);
    goal("arena, stats on vs glibc malloc+free", rows[1].median_ratio, 0.2);
    goal("arena, stats off vs glibc malloc+free", rows[2].median_ratio, 0.2);
    if (goo_arena_allocator_chunk_count(tracked) != 1 || goo_arena_allocator_chunk_count(untracked) != 1)
        printf("note: an arena holds more than one chunk: a run did not fit the warm chunk\n");

    free(held);
    goo_arena_allocator_destroy(tracked);
    goo_arena_allocator_destroy(untracked);
}

/* ------------------------------------------------------------------------------------------ */
/* Workload 5: two threads, 64-byte pairs, one shared tracked allocator                       */
/* ------------------------------------------------------------------------------------------ */

/* Two worker threads live for the whole group, so a timed run measures pairs, not thread
 * creation or a thread's first use of an allocator (the warm-up pass takes that). Each run:
 * the main thread sets the job, both workers pass `start`, work, pass `done`; the wall time is
 * from the main thread's passing `start` to its passing `done`. */
typedef struct Team {
    pthread_barrier_t start, done;
    pthread_t threads[2];
    uint64_t (*work)(void* ctx, uint64_t n); /* written before `start`, read after it */
    void* work_ctx;
    uint64_t n;
    bool quit;
} Team;

static void* team_worker(void* arg) {
    Team* team = arg;
    for (;;) {
        pthread_barrier_wait(&team->start);
        if (team->quit) return NULL;
        team->work(team->work_ctx, team->n);
        pthread_barrier_wait(&team->done);
    }
}

static void team_start(Team* team) {
    if (pthread_barrier_init(&team->start, NULL, 3) || pthread_barrier_init(&team->done, NULL, 3))
        die("pthread_barrier_init failed");
    team->quit = false;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&team->threads[i], NULL, team_worker, team)) die("pthread_create failed");
}

static void team_stop(Team* team) {
    team->quit = true;
    pthread_barrier_wait(&team->start);
    for (int i = 0; i < 2; i++) pthread_join(team->threads[i], NULL);
    pthread_barrier_destroy(&team->start);
    pthread_barrier_destroy(&team->done);
}

/* A contender: both workers run `work` on `work_ctx`; returns the wall time. */
typedef struct TeamJob {
    Team* team;
    uint64_t (*work)(void* ctx, uint64_t n);
    void* work_ctx;
} TeamJob;

static uint64_t team_run(void* ctx, uint64_t n) {
    TeamJob* job = ctx;
    Team* team = job->team;
    team->work = job->work;
    team->work_ctx = job->work_ctx;
    team->n = n;
    pthread_barrier_wait(&team->start);
    uint64_t t = now_ns();
    pthread_barrier_wait(&team->done);
    return now_ns() - t;
}

/* Two threads, each freeing half of what the other allocated (issue #19): per batch, each
 * worker allocates XF_BATCH blocks of sizes a runtime's objects take, both meet, then each
 * frees the first half of its own blocks and the second half of the other's, and both meet
 * again. Half of every thread's frees are of blocks another thread allocated: what a heap's
 * remote frees cost. The workers meet on a spin barrier (a pthread barrier's wake-ups would
 * dwarf a batch). */
enum { XF_BATCH = 10000 };
static const size_t xf_sizes[16] = {16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 24, 32, 48, 64};

typedef struct CrossFree {
    void* (*alloc)(size_t size);
    void (*free)(void* p, size_t size);
    void* blocks[2][XF_BATCH];
    atomic_uint arrived, generation, next_id;
} CrossFree;

static void* xf_malloc(size_t size) { return malloc(size); }
static void xf_free(void* p, size_t size) { (void)size; free(p); }
static void* xf_mi_malloc(size_t size) { return mi_malloc(size); }
static void xf_mi_free(void* p, size_t size) { (void)size; mi_free(p); }
static void* xf_goo_alloc(size_t size) { return goo_memory_alloc(size); }
static void xf_goo_free(void* p, size_t size) { goo_memory_free(p, size); }

/* Both workers wait here for each other (sense by generation). */
static void xf_meet(CrossFree* x) {
    unsigned generation = atomic_load(&x->generation);
    if (atomic_fetch_add(&x->arrived, 1) == 1) {
        atomic_store(&x->arrived, 0);
        atomic_fetch_add(&x->generation, 1);
    } else {
        while (atomic_load(&x->generation) == generation) __asm__ volatile("pause");
    }
}

/* A worker's share of `batches` batches (ctx: the CrossFree); each run's two calls take ids 0
 * and 1. */
static uint64_t worker_cross_free(void* ctx, uint64_t batches) {
    CrossFree* x = ctx;
    unsigned id = atomic_fetch_add(&x->next_id, 1) & 1;
    void** mine = x->blocks[id];
    void** theirs = x->blocks[1 - id];
    for (uint64_t b = 0; b < batches; b++) {
        for (int k = 0; k < XF_BATCH; k++) {
            char* p = x->alloc(xf_sizes[k & 15]);
            if (!p) die("an allocation failed in the cross-thread workload");
            p[0] = (char)k; /* touched, as a program's objects are */
            mine[k] = p;
        }
        xf_meet(x);
        for (int k = 0; k < XF_BATCH / 2; k++) x->free(mine[k], xf_sizes[k & 15]);
        for (int k = XF_BATCH / 2; k < XF_BATCH; k++) x->free(theirs[k], xf_sizes[k & 15]);
        xf_meet(x);
    }
    return 0;
}

static void bench_cross_free(Team* team, uint64_t batches, int rounds) {
    static CrossFree glibc = {.alloc = xf_malloc, .free = xf_free};
    static CrossFree mi = {.alloc = xf_mi_malloc, .free = xf_mi_free};
    static CrossFree goo = {.alloc = xf_goo_alloc, .free = xf_goo_free};
    TeamJob jobs[] = {{team, worker_cross_free, &glibc}, {team, worker_cross_free, &mi}, {team, worker_cross_free, &goo}};
    Contender c[] = {
        {"glibc malloc/free, 2 threads", team_run, &jobs[0]},
        {"mimalloc mi_malloc/mi_free, 2 threads", team_run, &jobs[1]},
        {"goo_memory_alloc/free (heap, stats on), 2 threads", team_run, &jobs[2]},
    };
    Row rows[MAX_CONTENDERS];
    compare("5. two threads, each freeing half of what the other allocated (16-256 bytes; wall time per "
            "alloc+free per thread)",
            c, 3, 0, batches, XF_BATCH, rounds, rows);
    goal("default heap, cross-thread frees vs glibc's", rows[2].median_ratio, 0.8);
    goal("default heap, cross-thread frees vs mimalloc's", rows[2].median_ratio / rows[1].median_ratio, 1.0);
}

/* A producer and a consumer (issue #19): one worker allocates 64-byte blocks, touches them and
 * passes them through a ring; the other frees them. Every block is freed by the thread that did
 * not allocate it, as in a program's work queue or message passing. */
enum { PC_RING = 1024, PC_SIZE = 64 };
typedef struct ProducerConsumer {
    void* (*alloc)(size_t size);
    void (*free)(void* p, size_t size);
    void* ring[PC_RING];
    _Atomic uint64_t produced, consumed;
    atomic_uint next_id;
} ProducerConsumer;

/* A worker's share of a run of n blocks (ctx: the ProducerConsumer); of each run's two calls the
 * first to arrive produces. */
static uint64_t worker_producer_consumer(void* ctx, uint64_t n) {
    ProducerConsumer* pc = ctx;
    bool producer = (atomic_fetch_add(&pc->next_id, 1) & 1) == 0;
    uint64_t base = producer ? atomic_load(&pc->produced) : atomic_load(&pc->consumed);
    for (uint64_t i = base; i < base + n; i++) {
        if (producer) {
            while (i - atomic_load_explicit(&pc->consumed, memory_order_acquire) >= PC_RING) __asm__ volatile("pause");
            char* p = pc->alloc(PC_SIZE);
            if (!p) die("an allocation failed in the producer/consumer workload");
            p[0] = (char)i;
            pc->ring[i % PC_RING] = p;
            atomic_store_explicit(&pc->produced, i + 1, memory_order_release);
        } else {
            while (atomic_load_explicit(&pc->produced, memory_order_acquire) <= i) __asm__ volatile("pause");
            pc->free(pc->ring[i % PC_RING], PC_SIZE);
            atomic_store_explicit(&pc->consumed, i + 1, memory_order_release);
        }
    }
    return 0;
}

static void bench_producer_consumer(Team* team, uint64_t blocks, int rounds) {
    static ProducerConsumer glibc = {.alloc = xf_malloc, .free = xf_free};
    static ProducerConsumer mi = {.alloc = xf_mi_malloc, .free = xf_mi_free};
    static ProducerConsumer goo = {.alloc = xf_goo_alloc, .free = xf_goo_free};
    TeamJob jobs[] = {{team, worker_producer_consumer, &glibc},
                      {team, worker_producer_consumer, &mi},
                      {team, worker_producer_consumer, &goo}};
    Contender c[] = {
        {"glibc malloc/free, 2 threads", team_run, &jobs[0]},
        {"mimalloc mi_malloc/mi_free, 2 threads", team_run, &jobs[1]},
        {"goo_memory_alloc/free (heap, stats on), 2 threads", team_run, &jobs[2]},
    };
    Row rows[MAX_CONTENDERS];
    compare("5. a producer allocates 64-byte blocks, a consumer frees them (wall time per block)", c, 3, 0,
            blocks, 1, rounds, rows);
    printf("default heap, producer/consumer: %.2fx glibc's, %.2fx mimalloc's\n", rows[2].median_ratio,
           rows[2].median_ratio / rows[1].median_ratio);
}

static void bench_threads(uint64_t iters, int rounds) {
    GooAllocator* shared = goo_system_allocator_create();
    if (!shared || !shared->track_stats) die("goo_system_allocator_create failed");
    Team team;
    team_start(&team);
    TeamJob glibc = {&team, pairs_malloc, NULL};
    TeamJob goo = {&team, pairs_goo_with, shared};
    Contender c[] = {
        {"glibc malloc/free, 2 threads", team_run, &glibc},
        {"goo_memory_*_with, 2 threads, one shared tracked system", team_run, &goo},
    };
    Row rows[MAX_CONTENDERS];
    compare("5. 64-byte alloc+free pairs, two threads (wall time per pair per thread)", c, 2, 0, iters, 1,
            rounds, rows);
    goal("2 threads on one tracked allocator vs glibc's 2 threads", rows[1].median_ratio, 0.95);
    bench_cross_free(&team, iters / 20000 + 1, rounds);
    bench_producer_consumer(&team, iters, rounds);
    team_stop(&team);
    /* The shared allocator's totals must be exact under two threads. */
    GooAllocStats s = goo_get_alloc_stats(shared);
    uint64_t expected = 2 * ((iters / 4 + 1) + (uint64_t)rounds * iters);
    if (s.allocation_count != 0 || s.total_allocations != expected || s.total_frees != expected)
        die("shared allocator's stats are not exact after two threads");
    printf("(shared allocator's stats: %zu allocations and frees counted by 2 threads, as made)\n",
           s.total_allocations);
    goo_allocator_destroy(shared);
}

/* ------------------------------------------------------------------------------------------ */
/* Workload 6: 64-byte alloc+free pairs through a debug allocator                             */
/* ------------------------------------------------------------------------------------------ */

/* ctx: the debug allocator. Sites given as __FILE__:__LINE__: no stack walk. */
static uint64_t pairs_goo_here(void* ctx, uint64_t n) {
    GooAllocator* a = ctx;
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void* p = GOO_ALLOC_HERE(a, PAIR_SIZE);
        keep(p);
        GOO_FREE_HERE(a, p, PAIR_SIZE);
    }
    return now_ns() - t;
}

static void bench_debug(uint64_t iters, int rounds) {
    GooAllocator* plain = goo_system_allocator_create();
    GooAllocator* parent = goo_system_allocator_create();
    GooAllocator* traced_parent = goo_system_allocator_create();
    if (!plain || !parent || !traced_parent) die("goo_system_allocator_create failed");
    GooAllocator* debug = goo_debug_allocator_create(parent, 0);
    GooAllocator* traced = goo_debug_allocator_create(traced_parent, GOO_DEBUG_TRACES);
    if (!debug || !traced) die("goo_debug_allocator_create failed");
    Contender c[] = {
        {"goo_memory_*_with(system), stats on (undecorated)", pairs_goo_with, plain},
        {"debug over system, sites by return address", pairs_goo_with, debug},
        {"debug over system, GOO_ALLOC_HERE/GOO_FREE_HERE sites", pairs_goo_here, debug},
        {"debug over system, GOO_DEBUG_TRACES (8 frames)", pairs_goo_with, traced},
    };
    Row rows[MAX_CONTENDERS];
    compare("6. 64-byte alloc+free pairs through a debug allocator (1 MiB quarantine)", c, 4, 0, iters, 1,
            rounds, rows);
    goal("debug, no traces, GOO_ALLOC_HERE sites vs undecorated", rows[2].median_ratio, 3.0);
    goal("debug, no traces, return-address sites vs undecorated", rows[1].median_ratio, 3.0);
    if (goo_debug_error_count(debug) != 0 || goo_debug_error_count(traced) != 0 ||
        goo_get_alloc_stats(debug).allocation_count != 0)
        die("the debug allocators found misuse in correct pairs");
    goo_allocator_destroy(debug);
    goo_allocator_destroy(traced);
    goo_allocator_destroy(parent);
    goo_allocator_destroy(traced_parent);
    goo_allocator_destroy(plain);
}

/* ------------------------------------------------------------------------------------------ */
/* Workload 7: allocators two threads share: the shared arena and the shared pool              */
/* ------------------------------------------------------------------------------------------ */

/* Per thread per run; large enough that the barriers between runs (a few microseconds) are a
 * small share of a run. */
enum { MT_OBJECTS = 100000, MT_BATCH = 1000 };
static size_t mt_size; /* the allocation size of the group running */

/* ctx: an arena. One unit of work: MT_OBJECTS allocations on the calling thread, then a reset. */
static uint64_t single_arena_runs(void* ctx, uint64_t runs) {
    GooAllocator* arena = ctx;
    uint64_t t = now_ns();
    for (uint64_t r = 0; r < runs; r++) {
        for (int i = 0; i < MT_OBJECTS; i++) keep(goo_memory_alloc_with(arena, mt_size));
        goo_arena_allocator_reset(arena);
    }
    return now_ns() - t;
}

/* A worker's share of a run: MT_OBJECTS allocations from the shared arena ctx. */
static uint64_t worker_arena(void* ctx, uint64_t n) {
    (void)n;
    GooAllocator* arena = ctx;
    for (int i = 0; i < MT_OBJECTS; i++) keep(goo_memory_alloc_with(arena, mt_size));
    return 0;
}

/* One worker's run of MT_OBJECTS allocations from the arena ctx; the other worker only meets
 * the barriers. The one-thread baseline of the shared arena's rows: it pays the same barriers
 * and wake-ups between runs, so the ratio compares allocations, not thread synchronisation. */
static atomic_int lone_claimed; /* cleared by the main thread before each run's `start` */
static uint64_t worker_arena_lone(void* ctx, uint64_t n) {
    if (atomic_exchange(&lone_claimed, 1) == 0) worker_arena(ctx, n);
    return 0;
}

/* A worker's share of a run: MT_OBJECTS mallocs, then their frees. */
static uint64_t worker_malloc(void* ctx, uint64_t n) {
    (void)ctx, (void)n;
    static _Thread_local void** held;
    if (!held) held = xmalloc(sizeof(void*) * MT_OBJECTS); /* per worker, for the program's life */
    for (int i = 0; i < MT_OBJECTS; i++) keep(held[i] = malloc(mt_size));
    for (int i = 0; i < MT_OBJECTS; i++) free(held[i]);
    return 0;
}

/* A contender of workload 6: each run, both workers do `work` once; then the main thread
 * resets `reset` (the shared arena, with the workers done). Wall time of all runs. */
typedef struct TeamRuns {
    Team* team;
    uint64_t (*work)(void* ctx, uint64_t n);
    void* work_ctx;
    GooAllocator* reset;
} TeamRuns;

static uint64_t team_runs(void* ctx, uint64_t runs) {
    TeamRuns* job = ctx;
    Team* team = job->team;
    team->work = job->work;
    team->work_ctx = job->work_ctx;
    team->n = 1;
    uint64_t t = now_ns();
    for (uint64_t r = 0; r < runs; r++) {
        atomic_store(&lone_claimed, 0);
        pthread_barrier_wait(&team->start);
        pthread_barrier_wait(&team->done);
        if (job->reset && !goo_arena_allocator_reset(job->reset)) die("a shared arena's reset after the join was refused");
    }
    return now_ns() - t;
}

static void bench_shared_arena(Team* team, size_t size, uint64_t runs, int rounds) {
    mt_size = size;
    /* Chunks that hold a whole run, warm after the first (a reset keeps each thread's). */
    size_t initial = (size_t)MT_OBJECTS * (size + 8);
    GooAllocator* single = goo_arena_allocator_create(initial);
    GooAllocator* shared = goo_arena_allocator_create_shared(initial);
    GooAllocator* shared_off = goo_arena_allocator_create_shared(initial);
    GooAllocator* shared_one = goo_arena_allocator_create_shared(initial);
    if (!single || !shared || !shared_off || !shared_one) die("creating the arenas failed");
    shared_off->track_stats = false;
    TeamRuns lone = {team, worker_arena_lone, single, single};
    TeamRuns on = {team, worker_arena, shared, shared};
    TeamRuns off = {team, worker_arena, shared_off, shared_off};
    TeamRuns glibc = {team, worker_malloc, NULL, NULL};
    Contender c[] = {
        {"goo arena, one worker of the team, stats on", team_runs, &lone},
        {"goo shared arena, 2 threads, stats on", team_runs, &on},
        {"goo shared arena, 2 threads, stats off", team_runs, &off},
        {"glibc malloc x N + free x N, 2 threads", team_runs, &glibc},
        {"goo shared arena, one thread, stats on", single_arena_runs, shared_one},
        {"goo arena, main thread alone, stats on", single_arena_runs, single},
    };
    Row rows[MAX_CONTENDERS];
    char title[160];
    snprintf(title, sizeof title,
             "7. %zu-byte allocations, N = %d per thread per run, then a reset (wall time per allocation "
             "per thread)",
             size, MT_OBJECTS);
    compare(title, c, 6, 0, runs, MT_OBJECTS, rounds, rows);
    goal("shared arena, 2 threads vs the arena on one thread", rows[1].median_ratio, 1.2);
    goal("shared arena, 2 threads vs glibc's 2 threads", rows[1].median_ratio / rows[3].median_ratio, 0.3);
    if (goo_arena_allocator_chunk_count(shared) > 3) /* a chunk per worker, maybe the main thread's */
        printf("note: the shared arena holds %zu chunks: a run did not fit the warm ones\n",
               goo_arena_allocator_chunk_count(shared));
    /* The shared arena's totals must be exact under two threads. */
    GooAllocStats s = goo_get_alloc_stats(shared);
    uint64_t expected = 2 * (uint64_t)MT_OBJECTS * ((runs / 4 + 1) + (uint64_t)rounds * runs);
    if (s.allocation_count != 0 || s.total_allocations != expected || s.total_frees != expected)
        die("the shared arena's stats are not exact after two threads");
    goo_arena_allocator_destroy(single);
    goo_arena_allocator_destroy(shared);
    goo_arena_allocator_destroy(shared_off);
    goo_arena_allocator_destroy(shared_one);
}

/* A worker's batch: MT_BATCH 64-byte objects allocated, then freed in allocation order, n
 * times. ctx: the allocator (NULL: mimalloc). */
static uint64_t batches_goo(void* ctx, uint64_t n) {
    GooAllocator* a = ctx;
    void* held[MT_BATCH];
    for (uint64_t r = 0; r < n; r++) {
        for (int i = 0; i < MT_BATCH; i++) keep(held[i] = goo_memory_alloc_with(a, PAIR_SIZE));
        for (int i = 0; i < MT_BATCH; i++) goo_memory_free_with(a, held[i], PAIR_SIZE);
    }
    return 0;
}

static uint64_t batches_mimalloc(void* ctx, uint64_t n) {
    (void)ctx;
    void* held[MT_BATCH];
    for (uint64_t r = 0; r < n; r++) {
        for (int i = 0; i < MT_BATCH; i++) keep(held[i] = mi_malloc(PAIR_SIZE));
        for (int i = 0; i < MT_BATCH; i++) mi_free(held[i]);
    }
    return 0;
}

static void bench_shared_pool(Team* team, uint64_t iters, int rounds) {
    GooAllocator* on = goo_pool_allocator_create_shared(PAIR_SIZE, 1024);
    GooAllocator* off = goo_pool_allocator_create_shared(PAIR_SIZE, 1024);
    if (!on || !off) die("goo_pool_allocator_create_shared failed");
    off->track_stats = false;
    TeamJob mi = {team, pairs_mimalloc, NULL}, glibc = {team, pairs_malloc, NULL};
    TeamJob pool_on = {team, pairs_goo_with, on}, pool_off = {team, pairs_goo_with, off};
    Contender pairs[] = {
        {"mimalloc mi_malloc/mi_free, 2 threads", team_run, &mi},
        {"glibc malloc/free, 2 threads", team_run, &glibc},
        {"goo shared pool, 2 threads, stats on", team_run, &pool_on},
        {"goo shared pool, 2 threads, stats off", team_run, &pool_off},
    };
    Row rows[MAX_CONTENDERS];
    compare("7. 64-byte alloc+free pairs, two threads (wall time per pair per thread)", pairs, 4, 0, iters, 1,
            rounds, rows);
    goal("shared pool, 2 threads, stats on vs mimalloc's 2 threads", rows[2].median_ratio, 1.0);
    goal("shared pool, 2 threads, stats off vs mimalloc's 2 threads", rows[3].median_ratio, 1.0);

    TeamJob bmi = {team, batches_mimalloc, NULL};
    TeamJob bon = {team, batches_goo, on}, boff = {team, batches_goo, off};
    Contender batches[] = {
        {"mimalloc mi_malloc/mi_free, 2 threads", team_run, &bmi},
        {"goo shared pool, 2 threads, stats on", team_run, &bon},
        {"goo shared pool, 2 threads, stats off", team_run, &boff},
    };
    char title[160];
    snprintf(title, sizeof title,
             "7. batches of %d 64-byte objects, allocated then freed in order, two threads (per object)",
             MT_BATCH);
    compare(title, batches, 3, 0, iters / MT_BATCH, MT_BATCH, rounds, rows);
    goal("shared pool batches, 2 threads, stats on vs mimalloc's 2 threads", rows[1].median_ratio, 1.0);
    GooAllocStats s = goo_get_alloc_stats(on);
    if (s.allocation_count != 0 || s.total_allocations != s.total_frees)
        die("the shared pool's stats are not exact after two threads");
    goo_pool_allocator_destroy(on);
    goo_pool_allocator_destroy(off);
}

static void bench_shared(uint64_t pairs, uint64_t arena_runs, int rounds) {
    Team team;
    team_start(&team);
    bench_shared_arena(&team, 16, arena_runs, rounds);
    bench_shared_arena(&team, 64, arena_runs, rounds);
    bench_shared_pool(&team, pairs, rounds);
    team_stop(&team);
}


/* ------------------------------------------------------------------------------------------ */
/* Workload 8: what a limit costs (issue #21: under 1 ns added per allocation)                */
/* ------------------------------------------------------------------------------------------ */

/* One comparison of an allocator with and without a limit it never reaches: the time a limit
 * adds per operation, from the median ratio and the unlimited one's median time. */
static void limit_pair(const char* title, const char* what, Contender* c, uint64_t iters, uint64_t ops_per_iter,
                       int rounds) {
    Row rows[MAX_CONTENDERS];
    compare(title, c, 2, 0, iters, ops_per_iter, rounds, rows);
    double added = (rows[1].median_ratio - 1.0) * rows[0].median_ns;
    printf("goal: a limit on %s adds %.2f ns per operation (goal < 1 ns) %s\n", what, added,
           added < 1.0 ? "goal met" : "goal missed");
}

static void bench_limits(uint64_t pairs, uint64_t arena_runs_n, int rounds) {
    const size_t limit = (size_t)1 << 30; /* never reached: what is measured is the checking */
    GooAllocator* a[8] = {
        goo_system_allocator_create(), goo_system_allocator_create(),
        goo_heap_allocator_create(), goo_heap_allocator_create(),
        goo_arena_allocator_create((size_t)ARENA_OBJECTS * (ARENA_SIZE + 8)),
        goo_arena_allocator_create((size_t)ARENA_OBJECTS * (ARENA_SIZE + 8)),
        goo_pool_allocator_create(PAIR_SIZE, 1024), goo_pool_allocator_create(PAIR_SIZE, 1024),
    };
    for (int i = 0; i < 8; i++) {
        if (!a[i]) die("creating the allocators of the limit workload failed");
        if (i % 2 == 1 && !goo_allocator_set_limit(a[i], limit)) die("goo_allocator_set_limit failed");
    }
    Contender sys[] = {{"system, stats on, no limit", pairs_goo_with, a[0]},
                       {"system, stats on, a limit of 1 GiB", pairs_goo_with, a[1]}};
    limit_pair("8. 64-byte pairs through a system allocator, with and without a limit", "a system allocator",
               sys, pairs, 1, rounds);
    Contender heap[] = {{"heap, stats on, no limit", pairs_goo_with, a[2]},
                        {"heap, stats on, a limit of 1 GiB", pairs_goo_with, a[3]}};
    limit_pair("8. 64-byte pairs through a heap allocator, with and without a limit", "a heap allocator", heap,
               pairs, 1, rounds);
    Contender arena[] = {{"arena, stats on, no limit", arena_runs, a[4]},
                         {"arena, stats on, a limit of 1 GiB", arena_runs, a[5]}};
    limit_pair("8. 16-byte allocations into a warm arena, then reset, with and without a limit (per allocation)",
               "an arena", arena, arena_runs_n, ARENA_OBJECTS, rounds);
    Contender pool[] = {{"pool, stats on, no limit", pairs_goo_with, a[6]},
                        {"pool, stats on, a limit of 1 GiB", pairs_goo_with, a[7]}};
    limit_pair("8. 64-byte pairs through a pool, with and without a limit", "a pool", pool, pairs, 1, rounds);
    for (int i = 0; i < 8; i++) goo_allocator_destroy(a[i]);
}

/* ------------------------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(stderr, "usage: goo-bench-c [--quick] [--rounds N] [--only pairs|churn|arena|threads|debug|shared|limits] [--json FILE]\n"
                    "  --quick     5 rounds, fewer iterations (checks the driver works)\n"
                    "  --rounds N  N interleaved rounds (default 15, or 5 with --quick)\n"
                    "  --only W    run one workload\n"
                    "  --json FILE also write the results as JSON (goo-bench's shape; its `chart` draws them)\n");
    exit(2);
}

int main(int argc, char** argv) {
    bool quick = false;
    int rounds = 0;
    const char* only = NULL;
    const char* json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            char* end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) usage();
            rounds = (int)v;
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
            if (strcmp(only, "pairs") && strcmp(only, "churn") && strcmp(only, "arena") && strcmp(only, "threads") &&
                strcmp(only, "debug") && strcmp(only, "shared") && strcmp(only, "limits"))
                usage();
        } else {
            usage();
        }
    }
    if (rounds == 0) rounds = quick ? 5 : 15;
    /* Iterations as the Rust groups use them; the churn keeps 1M live objects even when quick
     * (the live set is what the workload is about), with fewer operations. */
    uint64_t pairs = quick ? 200000 : 2000000;
    uint64_t churn_ops = quick ? 200000 : 2000000;
    uint64_t arena_runs_per_round = quick ? 20 : 200;
    size_t live = 1000000;

    setvbuf(stdout, NULL, _IOLBF, 0); /* a full run takes a while: show each line as it comes */
    printf("# goo-memory C driver%s\n", quick ? " (quick)" : "");
    check_peers();
    if (json_path) json_begin(json_path, argc, argv);
#define SELECTED(name) (!only || strcmp(only, name) == 0)
    if (SELECTED("pairs")) bench_pairs(pairs, rounds);
    if (SELECTED("churn")) bench_churn(churn_ops, rounds, live);
    if (SELECTED("arena")) bench_arena(arena_runs_per_round, rounds);
    if (SELECTED("threads")) bench_threads(pairs, rounds);
    if (SELECTED("debug")) bench_debug(pairs / 20, rounds); /* a debug pair takes tens to hundreds of times longer */
    if (SELECTED("shared")) bench_shared(pairs, quick ? 10 : 40, rounds);
    if (SELECTED("limits")) bench_limits(pairs, arena_runs_per_round, rounds);
    json_end();
    return 0;
}
