/* Threads: per-thread allocators are really per thread, and N threads x M operations on one
 * tracked allocator (a library one, and one written in C) keep exact totals. A fork while other
 * threads allocate leaves no lock of the library held in the child. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "goo/runtime/debug.h"
#include "goo/runtime/memory.h"
#include "goo/runtime/region.h"
#include "goo/runtime/scoped.h"
#include "check.h"

#define THREADS 8
#define OPS 20000

static GooAllocator* shared;

static void* hammer(void* arg) {
    uintptr_t id = (uintptr_t)arg;
    void* held[16] = {0};
    size_t sizes[16] = {0};
    for (int i = 0; i < OPS; i++) {
        int slot = (int)((i * 7 + id) % 16);
        if (held[slot]) {
            goo_memory_free_with(shared, held[slot], sizes[slot]);
            held[slot] = NULL;
        } else {
            sizes[slot] = 1 + (size_t)((i + id) % 200);
            held[slot] = goo_memory_alloc_with(shared, sizes[slot]);
            CHECK(held[slot] != NULL);
        }
    }
    /* Leave exactly one 10-byte block per thread, freed by the main thread. */
    for (int s = 0; s < 16; s++)
        if (held[s]) goo_memory_free_with(shared, held[s], sizes[s]);
    return goo_memory_alloc_with(shared, 10);
}

static void run_shared(GooAllocator* a) {
    shared = a;
    GooAllocStats before = goo_get_alloc_stats(a);
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, hammer, (void*)i) == 0);
    void* left[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], &left[i]) == 0);
    GooAllocStats s = goo_get_alloc_stats(a);
    CHECK_EQ(s.allocation_count - before.allocation_count, THREADS);
    CHECK_EQ(s.bytes_allocated - before.bytes_allocated, THREADS * 10);
    CHECK_EQ(s.total_allocations - before.total_allocations, s.total_frees - before.total_frees + THREADS);
    for (int i = 0; i < THREADS; i++) goo_memory_free_with(a, left[i], 10);
    s = goo_get_alloc_stats(a);
    CHECK_EQ(s.allocation_count, before.allocation_count);
    CHECK_EQ(s.bytes_allocated, before.bytes_allocated);
}

static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)ctx; (void)alignment; (void)options;
    return malloc(size);
}
static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)ctx; (void)size; (void)alignment;
    free(ptr);
}

/* Per-thread allocators: each thread sets its own and sees only its own. */
static void* own_allocator(void* arg) {
    (void)arg;
    CHECK(goo_get_thread_allocator() == NULL);
    GooAllocator* mine = goo_system_allocator_create();
    goo_set_thread_allocator(mine);
    for (int i = 0; i < 100; i++) {
        void* p = goo_memory_alloc(32);
        CHECK(goo_get_thread_allocator() == mine);
        goo_memory_free(p, 32);
    }
    void* keep = goo_memory_alloc(5);
    GooAllocStats s = goo_get_alloc_stats(mine);
    CHECK_EQ(s.total_allocations, 101);
    CHECK_EQ(s.bytes_allocated, 5);
    goo_memory_free(keep, 5);
    goo_set_thread_allocator(NULL);
    mine->destroy(mine);
    return NULL;
}

#if !defined(__SANITIZE_ADDRESS__)
/* Waits for the child of fork number i; ends the test unless it exited with 0. */
static void wait_for_child(pid_t pid, int i) {
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fork %d: the child %s %d\n", i, WIFSIGNALED(status) ? "died of signal" : "exited with",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        exit(1);
    }
}

/* Forks `forks` times, `pause_us` microseconds apart, while other threads run: each child
 * runs in_child (an alarm ends a child that hangs) and exits with what it returns. */
static void fork_children(int forks, long pause_us, int (*in_child)(void)) {
    for (int i = 0; i < forks; i++) {
        if (pause_us) nanosleep(&(struct timespec){0, pause_us * 1000}, NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10);
            _exit(in_child());
        }
        wait_for_child(pid, i);
    }
}

/* Two threads churn through the default heap and a debug allocator while the main thread
 * forks: each child allocates and frees through both (and makes an allocator), then exits. A
 * lock held by a churning thread at the fork would hang the child (the alarm ends it). */
static atomic_bool stop_churning;
static GooAllocator* churned_debug;

static void* churn(void* arg) {
    (void)arg;
    while (!atomic_load(&stop_churning)) {
        void* blocks[64];
        for (int i = 0; i < 64; i++) blocks[i] = goo_memory_alloc((size_t)(16 + i * 40));
        for (int i = 0; i < 64; i++) goo_memory_free(blocks[i], (size_t)(16 + i * 40));
        void* d = goo_memory_alloc_with(churned_debug, 48);
        goo_memory_free_with(churned_debug, d, 48);
    }
    return NULL;
}

/* The child: allocates through the default heap and the debug allocator, makes an arena. */
static int allocate_in_child(void) {
    for (int k = 0; k < 2000; k++) {
        void* p = goo_memory_alloc((size_t)(1 + k % 3000));
        if (!p) return 2;
        goo_memory_free(p, (size_t)(1 + k % 3000));
        void* d = goo_memory_alloc_with(churned_debug, 24);
        if (!d) return 3;
        goo_memory_free_with(churned_debug, d, 24);
    }
    GooAllocator* arena = goo_arena_allocator_create(0);
    if (!arena || !goo_memory_alloc_with(arena, 100)) return 4;
    goo_allocator_destroy(arena);
    return goo_debug_error_count(churned_debug) == 0 ? 0 : 5;
}

static void forks_while_threads_allocate(void) {
    churned_debug = goo_debug_allocator_create(NULL, 0);
    CHECK(churned_debug != NULL);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, churn, NULL) == 0);
    fork_children(40, 0, allocate_in_child);
    atomic_store(&stop_churning, true);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK_EQ(goo_debug_error_count(churned_debug), 0);
    goo_allocator_destroy(churned_debug);
}
#endif

#if !defined(__SANITIZE_ADDRESS__)
/* Three threads allocate and free through a limited system allocator, each counting against
 * its grant of the limit, while the main thread forks: each child fills the allocator to its
 * limit, whose last requests take every grant back. A thread of the parent inside its grant at
 * the fork, or holding the limit's lock, must not make the child wait for it (the alarm ends a
 * child that hangs). */
static GooAllocator* limited;
static atomic_bool stop_limited;
enum { LIMITED_BYTES = 64 * 1000 };

static void* churn_limited(void* arg) {
    (void)arg;
    while (!atomic_load(&stop_limited)) {
        void* p = goo_memory_alloc_with(limited, 64);
        if (p) goo_memory_free_with(limited, p, 64);
    }
    return NULL;
}

/* The child: fills the limited allocator; 0 when the limit stopped it where it should. */
static int fill_the_limit(void) {
    size_t held = 0;
    while (held < 2 * LIMITED_BYTES / 64 && goo_memory_alloc_with(limited, 64)) held++;
    return held == 0 || held > LIMITED_BYTES / 64 ? 6 : 0;
}

static void forks_while_threads_use_a_limit(void) {
    limited = goo_system_allocator_create();
    CHECK(limited != NULL);
    CHECK(goo_allocator_set_limit(limited, LIMITED_BYTES));
    pthread_t t[3];
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&t[i], NULL, churn_limited, NULL) == 0);
    fork_children(60, 300, fill_the_limit);
    atomic_store(&stop_limited, true);
    for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK_EQ(goo_get_alloc_stats(limited).bytes_allocated, 0);
    goo_allocator_destroy(limited);
}
#endif

#if !defined(__SANITIZE_ADDRESS__)
/* Threads change the library's process-wide settings (callbacks, names, regions, a C-made
 * allocator's limit, the collector hook) in a loop while the main thread forks: a child does
 * each of those once. A lock one of them held at the fork would hang the child (the alarm
 * ends it). */
static atomic_bool stop_settings;
static bool count_event(const GooMemoryEvent* e, void* user_data) {
    (void)e, (void)user_data;
    return true;
}
static void collect(void* user_data, size_t bytes) { (void)user_data, (void)bytes; }

static void change_settings(GooAllocator* named, GooAllocator* c_made, const char* name) {
    goo_memory_remove_callback(goo_memory_add_callback(GOO_EVENT_ALLOC, count_event, NULL));
    goo_allocator_set_name(named, name);
    goo_region_allocator_destroy(goo_region_allocator_create(0, true));
    CHECK(goo_allocator_set_limit(c_made, 100));
    CHECK(goo_allocator_set_limit(c_made, 0));
    goo_memory_set_gc_handler(collect, NULL);
    goo_memory_set_gc_handler(NULL, NULL);
}

static GooAllocator* named;

static void* settings_worker(void* arg) {
    (void)arg;
    static GooAllocator c_made; /* an allocator written in C, with no functions */
    while (!atomic_load(&stop_settings)) change_settings(named, &c_made, "worker");
    return NULL;
}

static int change_settings_in_child(void) {
    static GooAllocator mine;
    change_settings(named, &mine, "child");
    return 0;
}

static void forks_while_threads_change_settings(void) {
    named = goo_system_allocator_create();
    CHECK(named != NULL);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, settings_worker, NULL) == 0);
    fork_children(60, 200, change_settings_in_child);
    atomic_store(&stop_settings, true);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    goo_allocator_set_name(named, NULL);
    goo_allocator_destroy(named);
}
#endif

#if !defined(__SANITIZE_ADDRESS__)
/* A thread whose first use of the temporary arena comes in its exit, in a pthread key's
 * destructor (after the C library ran the thread-locals' destructors), still has it freed:
 * 900 such threads leave the resident memory as it was (each arena's chunk is 64 KiB, a few of
 * its pages touched). */
static pthread_key_t late_key;
static void late_temp_use(void* value) {
    (void)value;
    char* p = goo_temp_alloc(300);
    CHECK(p != NULL);
    memset(p, 1, 300);
}
static void* set_late_key(void* arg) {
    (void)arg;
    CHECK(pthread_setspecific(late_key, (void*)1) == 0);
    return NULL;
}
static size_t resident_kib(void) {
    FILE* f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    unsigned long size = 0, pages = 0;
    CHECK(fscanf(f, "%lu %lu", &size, &pages) == 2);
    fclose(f);
    return (size_t)(pages * (unsigned long)sysconf(_SC_PAGESIZE) / 1024);
}
static void temp_arenas_made_in_thread_exit_are_freed(void) {
    CHECK(pthread_key_create(&late_key, late_temp_use) == 0);
    size_t before = 0;
    for (int i = 0; i < 1000; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, set_late_key, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        if (i == 99) before = resident_kib(); /* after the first threads' one-time costs */
    }
    size_t after = resident_kib();
    if (after > before + 2 * 1024) {
        fprintf(stderr, "900 threads grew the resident memory from %zu to %zu KiB\n", before, after);
        exit(1);
    }
    pthread_key_delete(late_key);
}
#endif

#if !defined(__SANITIZE_ADDRESS__)
/* A thread of the parent has a thread allocator and is alive at the fork: in the child, a new
 * thread (which the C library may start on that thread's cached stack) has none, and its
 * requests do not go to the parent thread's allocator. */
static GooAllocator* parents_own;
static atomic_bool parent_thread_ready, parent_thread_done;
static void* hold_a_thread_allocator(void* arg) {
    (void)arg;
    goo_set_thread_allocator(parents_own);
    goo_memory_free(goo_memory_alloc(8), 8);
    atomic_store(&parent_thread_ready, true);
    while (!atomic_load(&parent_thread_done)) nanosleep(&(struct timespec){0, 1000000}, NULL);
    goo_set_thread_allocator(NULL);
    return NULL;
}
static void* new_thread_in_child(void* arg) {
    (void)arg;
    GooAllocator* inherited = goo_get_thread_allocator();
    size_t before = goo_get_alloc_stats(parents_own).total_allocations;
    goo_memory_free(goo_memory_alloc(24), 24);
    bool went_there = goo_get_alloc_stats(parents_own).total_allocations != before;
    return (void*)(uintptr_t)(inherited != NULL || went_there);
}
static int start_threads_in_child(void) {
    for (int i = 0; i < 8; i++) { /* more threads than the parent had: every cached stack */
        pthread_t t;
        void* wrong = NULL;
        if (pthread_create(&t, NULL, new_thread_in_child, NULL) || pthread_join(t, &wrong)) return 2;
        if (wrong) return 1;
    }
    return 0;
}
static void fork_child_threads_inherit_no_thread_allocator(void) {
    parents_own = goo_system_allocator_create();
    CHECK(parents_own != NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        atomic_store(&parent_thread_ready, false);
        CHECK(pthread_create(&t[i], NULL, hold_a_thread_allocator, NULL) == 0);
        while (!atomic_load(&parent_thread_ready)) nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    fork_children(10, 0, start_threads_in_child);
    atomic_store(&parent_thread_done, true);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    parents_own->destroy(parents_own);
}
#endif

/* A thread whose first request comes from the last round of its key destructors keeps its
 * place in the library (memory.h); threads the C library starts later on its cached stack
 * find that place. One of them that sets a thread allocator and exits must not hand it on,
 * and a destroyed allocator must be no thread's: a thread started later never finds it. */
static pthread_key_t last_round_key;
static int last_round;
static void allocate_in_last_round(void* value) {
    (void)value;
    if (++last_round < PTHREAD_DESTRUCTOR_ITERATIONS) {
        pthread_setspecific(last_round_key, &last_round);
        return;
    }
    goo_memory_free(goo_memory_alloc(16), 16);
}
static void* first_request_in_last_round(void* arg) {
    (void)arg;
    pthread_setspecific(last_round_key, &last_round);
    return NULL;
}
static GooAllocator* kept_at_exit;
static void* exit_with_it_set(void* arg) {
    (void)arg;
    goo_set_thread_allocator(kept_at_exit);
    goo_memory_free(goo_memory_alloc(8), 8);
    return NULL;
}
static void* read_thread_allocator(void* arg) {
    (void)arg;
    return goo_get_thread_allocator();
}
static void destroyed_thread_allocators_are_forgotten(void) {
    goo_memory_free(goo_memory_alloc(8), 8); /* this thread has its place already */
    CHECK(pthread_key_create(&last_round_key, allocate_in_last_round) == 0);
    pthread_t leaker;
    CHECK(pthread_create(&leaker, NULL, first_request_in_last_round, NULL) == 0);
    CHECK(pthread_join(leaker, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        kept_at_exit = goo_system_allocator_create();
        pthread_t t;
        CHECK(pthread_create(&t, NULL, exit_with_it_set, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        kept_at_exit->destroy(kept_at_exit);
        void* seen = NULL;
        CHECK(pthread_create(&t, NULL, read_thread_allocator, NULL) == 0);
        CHECK(pthread_join(t, &seen) == 0);
        CHECK(seen == NULL);
    }
    pthread_key_delete(last_round_key);
}

int main(void) {
    /* Not under the tools: gcc 12's ASan runtime does not guard its own allocator's locks
     * across a fork (a child hangs in its malloc), and valgrind counts the other threads'
     * blocks as lost in every child. */
    const char* valgrind = getenv("GOO_VALGRIND");
    /* Nor the resident memory of a thousand threads: ASan's quarantine holds freed memory,
     * and under valgrind the memory is valgrind's. */
#if !defined(__SANITIZE_ADDRESS__)
    if (!(valgrind && strcmp(valgrind, "1") == 0)) {
        forks_while_threads_allocate();
        forks_while_threads_use_a_limit();
        forks_while_threads_change_settings();
        temp_arenas_made_in_thread_exit_are_freed();
        fork_child_threads_inherit_no_thread_allocator();
    }
#else
    (void)valgrind;
#endif
    destroyed_thread_allocators_are_forgotten();
    GooAllocator* sys = goo_system_allocator_create();
    run_shared(sys);
    GooAllocStats s = goo_get_alloc_stats(sys);
    CHECK_EQ(s.total_allocations, s.total_frees);
    sys->destroy(sys);

    GooAllocator c = {c_alloc, NULL, c_free, NULL, GOO_ALLOC_STRATEGY_NULL, NULL, NULL, true,
                      {0, 0, 0, 0, 0, 0, 0}};
    run_shared(&c);
    CHECK_EQ(c.stats.total_allocations, c.stats.total_frees);

    GooAllocator* main_alloc = goo_system_allocator_create();
    goo_set_thread_allocator(main_alloc);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, own_allocator, NULL) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(goo_get_thread_allocator() == main_alloc);
    CHECK_EQ(goo_get_alloc_stats(main_alloc).total_allocations, 0);
    goo_set_thread_allocator(NULL);
    main_alloc->destroy(main_alloc);
    printf("test_threads: ok\n");
    return 0;
}
