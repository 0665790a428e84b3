/*
 * goo-memory stats registry, allocation callbacks and fault injection.
 *
 * The registry: every library allocator while it lives, the default allocator, and allocators
 * written in C once they are named (unname them, name NULL, before they die).
 * Callbacks: registration and removal are thread-safe; with no callback registered the
 * allocation path pays one relaxed load and a predictable branch. Allocations made inside a
 * callback (on that thread) are not reported to callbacks. A callback may use any allocator,
 * the one whose event it reports included, and an arena, pool, region or scope that is asking
 * that allocator for memory at the moment (its parent): such an allocator is whole whenever
 * its parent runs. The exceptions: a shared arena or a shared pool asked again by the thread
 * it is taking memory for refuses an allocation that needs its lock (a new chunk or block):
 * NULL, counted, a message on stderr (arena.h, pool.h); the locked allocator refuses every
 * request from inside it (memory.h). A callback removed while another thread is
 * dispatching may still be running there.
 */
#ifndef GOO_RUNTIME_STATS_H
#define GOO_RUNTIME_STATS_H

#include <stdio.h>

#include "goo/runtime/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GooReportFormat (goo/core/types.h): GOO_REPORT_TEXT is a table: name, kind, the seven stats,
 * size classes, regions as trees; GOO_REPORT_JSON is the object types.h describes field by
 * field. */

/* Event bits for goo_memory_add_callback. */
enum {
    GOO_EVENT_REQUEST = 1,  /* before an allocation or reallocation: return false to fail it */
    GOO_EVENT_ALLOC = 2,    /* after a successful allocation (ptr, size) */
    GOO_EVENT_REALLOC = 4,  /* after a successful reallocation (old_ptr, old_size -> ptr, size) */
    GOO_EVENT_FREE = 8,     /* after a free */
    GOO_EVENT_FAILURE = 16, /* a request returned NULL (after the strategy) */
    GOO_EVENT_RESET = 32,   /* after an allocator freed all its blocks at once (arena, region, pool) */
    GOO_EVENT_DESTROY = 64, /* a library allocator is being destroyed */
    GOO_EVENT_ALL = 127
};

typedef struct GooMemoryEvent {
    uint32_t kind; /* one GOO_EVENT_* bit */
    GooAllocator* allocator;
    void* ptr;
    void* old_ptr;
    size_t size;
    size_t old_size;
    size_t alignment;
    GooAllocOptions options;
} GooMemoryEvent;

/* The return value counts for GOO_EVENT_REQUEST only: false makes the request fail, which then
 * goes through the allocator's strategy like any failure (each retry asks again). */
typedef bool (*GooMemoryCallback)(const GooMemoryEvent* event, void* user_data);

/* Which requests to fail (any combination). */
typedef struct GooFaultSpec {
    GooAllocator* allocator; /* only requests to this allocator (NULL = any) */
    uint64_t fail_nth;       /* fail the nth matching request, 1-based (0 = off) */
    double probability;      /* fail each matching request with this probability, in [0, 1] (0 = off) */
    uint64_t seed;           /* seed for the probability */
    size_t fail_above;       /* fail every matching request larger than this (0 = off) */
    bool this_thread_only;   /* only requests made by the installing thread */
} GooFaultSpec;

/* What goo_memory_check_all_allocation_failures found. */
typedef struct GooExhaustiveResult {
    uint64_t allocations; /* requests made by a run without failures */
    uint64_t runs;        /* runs with one request failing */
    uint64_t leaks;       /* runs that left live allocations behind (incl. the run without failures) */
    uint64_t crashes;     /* runs that died from a signal or exited on their own */
    uint64_t first_bad;   /* first failing request (1-based) whose run leaked or crashed, 0 if none */
} GooExhaustiveResult;

typedef int (*GooExhaustiveFn)(void* ctx);

/* Names an allocator (copied; NULL clears). An allocator has one name, shown by every report:
 * for a region it is the name goo_region_set_name sets too. For an allocator written in C,
 * naming it adds it to the registry and NULL removes it. Returns false if allocator is NULL.
 * Text reports print names escaped: a control character (a newline, say), a Unicode line or
 * paragraph separator, a bidirectional control, a backslash or a double quote is written as
 * \n, \r, \t, \u{1b}, \u{2028}, \\, \", so each allocator stays on its own line. JSON
 * escapes them as JSON does. */
bool goo_allocator_set_name(GooAllocator* allocator, const char* name);
/* Writes the report of every live tracked allocator to out. Returns the bytes written. A format
 * other than GOO_REPORT_TEXT and GOO_REPORT_JSON is refused: nothing is written, a message goes
 * to stderr and 0 is returned (a report is never empty). 0 too if out is NULL. Any thread may
 * report while others create and destroy allocators, but a single-owner allocator (arena,
 * pool, region, scope, temporary arena) has its chunk lists read: report from the thread that
 * uses it, or while that thread does not (reading them while they change is a data race, as
 * is the at-exit report of GOO_MEMORY_STATS while another thread still uses one). */
size_t goo_memory_stats_report(FILE* out, GooReportFormat format);
/* The same report into buffer, NUL-terminated and truncated like snprintf; returns the full
 * length. buffer may be NULL when size is 0. An unknown format is refused as above: 0 is
 * returned and buffer, when size > 0, holds the empty string. */
size_t goo_memory_stats_report_buffer(char* buffer, size_t size, GooReportFormat format);
/* The size-class histogram of a library allocator: live and total allocations for sizes up to
 * 8, 16, 32, ... 128 KiB (classes 0..14) and larger (class 15). Fills 16 entries of each
 * (either may be NULL); returns false (nothing written) for allocators written in C. */
bool goo_allocator_size_classes(GooAllocator* allocator, size_t live[16], size_t total[16]);

/* Registers fn for the events in events_mask. Returns an id (never 0), or 0 if 32 callbacks are
 * already registered, fn is NULL or the mask is empty. */
uint64_t goo_memory_add_callback(uint32_t events_mask, GooMemoryCallback fn, void* user_data);
/* Removes a callback or fault injector by id. Returns whether it was registered. Another
 * thread's allocation that began before the call may still run the callback once (dispatch
 * takes no lock): free a callback's user_data only once such calls are done. A fault
 * injector's own state is kept until goo_memory_cleanup for that reason. */
bool goo_memory_remove_callback(uint64_t id);

/* Installs a fault injector (a GOO_EVENT_REQUEST callback). Returns its id for
 * goo_memory_remove_callback, or 0 (nothing installed) if spec is NULL, its probability is not
 * in [0, 1] (NaN included; a message on stderr), or 32 callbacks are already registered. */
uint64_t goo_memory_inject_faults(const GooFaultSpec* spec);
/* Runs fn(ctx) once to count its allocation requests on this thread, then once per request
 * with exactly that one failing, each in a forked child (so crashes are caught). Runs that leak
 * (live allocations in tracked allocators grow) or crash (a signal, or an exit of its own: its
 * status is reported) are reported on stderr and counted in *result (if not NULL). Every C
 * stdio output stream is flushed before each fork, so a child that calls exit() writes none
 * of the caller's pending output again. Returns true when no run leaked or crashed. */
bool goo_memory_check_all_allocation_failures(GooExhaustiveFn fn, void* ctx, GooExhaustiveResult* result);

#ifdef __cplusplus
}
#endif

#endif /* GOO_RUNTIME_STATS_H */
