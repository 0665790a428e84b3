/* Debug allocator (issue #20): the leak report groups live blocks by site, with count and
 * bytes, largest group first, as text and JSON; it is printed when a debug allocator is
 * destroyed and by goo_memory_cleanup; GOO_DEBUG_TRACES adds a trace per site;
 * GOO_MEMORY_DEBUG=1 puts a debug allocator over the default at goo_memory_init. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "goo/runtime/debug.h"
#include "goo/runtime/stats.h"
#include "goo_memory.h"
#include "child.h"
#include "debug_report.h"

static GooAllocator* dbg;
static GooAllocator* arena;
static void* blocks[8];
static int small_line, large_line, single_line;

static void allocate_groups(void) {
    for (int i = 0; i < 3; i++) {
        blocks[i] = GOO_ALLOC_HERE(dbg, 64); small_line = __LINE__;
    }
    blocks[3] = GOO_ALLOC_HERE(dbg, 300); large_line = __LINE__;
    blocks[4] = GOO_ALLOC_HERE(dbg, 10); single_line = __LINE__;
    blocks[5] = GOO_ALLOC_HERE(dbg, 10);
    goo_memory_free_with(dbg, blocks[5], 10); /* freed: not in the report */
}

static void grouped(void) {
    arena = goo_arena_allocator_create(0);
    CHECK(arena != NULL);
    dbg = goo_debug_allocator_create(arena, 0);
    CHECK(dbg != NULL);
    CHECK(goo_allocator_set_name(dbg, "parser"));
    allocate_groups();

    char text[4096];
    size_t n = goo_debug_report_buffer(dbg, text, sizeof text, GOO_REPORT_TEXT);
    CHECK(n > 0 && n < sizeof text);
    CHECK(strstr(text, "\"parser\": 5 live block(s), 502 byte(s) from 3 site(s); 0 error(s) reported") != NULL);
    /* Largest group first: 300 bytes, then 3 x 64, then 10. */
    const char* large = strstr(text, "  300 byte(s) in 1 block(s) allocated at ");
    const char* small = strstr(text, "  192 byte(s) in 3 block(s) allocated at ");
    const char* single = strstr(text, "  10 byte(s) in 1 block(s) allocated at ");
    CHECK(large != NULL && small != NULL && single != NULL);
    CHECK(large < small && small < single);
    CHECK(HAS_SITE(large, "300 byte(s)", large_line));
    CHECK(HAS_SITE(small, "192 byte(s)", small_line));
    CHECK(HAS_SITE(single, "10 byte(s)", single_line));

    char json[4096];
    n = goo_debug_report_buffer(dbg, json, sizeof json, GOO_REPORT_JSON);
    CHECK(n > 0 && n < sizeof json);
    CHECK(strncmp(json, "{\"allocator\":", 13) == 0);
    CHECK(strstr(json, "\"name\":\"parser\",\"live_blocks\":5,\"live_bytes\":502,\"errors\":0,\"sites\":[") != NULL);
    const char* j_large = strstr(json, "\"address\":null,\"blocks\":1,\"bytes\":300,\"trace\":[]");
    const char* j_small = strstr(json, "\"address\":null,\"blocks\":3,\"bytes\":192,\"trace\":[]");
    CHECK(j_large != NULL && j_small != NULL && j_large < j_small);
    CHECK(json[n - 2] == '}' && json[n - 1] == '\n'); /* one JSON object, then a newline (types.h) */
    /* Refused: an allocator that is no debug allocator, an unknown format. */
    CHECK_EQ(goo_debug_report_buffer(arena, text, sizeof text, GOO_REPORT_TEXT), 0);
    CHECK_EQ(text[0], 0);
    CHECK_EQ(goo_debug_report_buffer(dbg, text, sizeof text, (GooReportFormat)7), 0);
    CHECK_EQ(goo_debug_report(dbg, NULL, GOO_REPORT_TEXT), 0);
}

static void cleanup_now(void* arg) {
    (void)arg;
    goo_memory_cleanup();
}

static void destroy_dbg(void* arg) {
    (void)arg;
    goo_allocator_destroy(dbg);
}

/* goo_memory_cleanup reports a live debug allocator's blocks by site; its destroy does too. The
 * arena under it takes the leaked blocks back when it is destroyed. */
static void at_cleanup_and_destroy(void) {
    const char* out = capture_stderr(cleanup_now, NULL);
    CHECK(strstr(out, "goo-memory: leak report of debug allocator") != NULL);
    CHECK(strstr(out, "(debug, \"parser\") still has 5 live allocation(s), 502 byte(s)") != NULL);
    CHECK(HAS_SITE(out, "192 byte(s) in 3 block(s) allocated at", small_line));
    out = capture_stderr(destroy_dbg, NULL);
    CHECK(strstr(out, "goo-memory: leak report of debug allocator") != NULL);
    CHECK(strstr(out, "\"parser\": 5 live block(s), 502 byte(s) from 3 site(s)") != NULL);
    CHECK(HAS_SITE(out, "300 byte(s) in 1 block(s) allocated at", large_line));
    goo_arena_allocator_destroy(arena);
}

/* A chain of calls, for the traces. */
static void* __attribute__((noinline)) leaf_alloc(size_t n) {
    void* p = goo_memory_alloc_with(dbg, n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static void* __attribute__((noinline)) middle_alloc(size_t n) {
    void* p = leaf_alloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static void traces(void) {
    dbg = goo_debug_allocator_create(NULL, GOO_DEBUG_TRACES);
    CHECK(dbg != NULL);
    void* p = middle_alloc(33);
    CHECK(p != NULL);
    char text[8192];
    CHECK(goo_debug_report_buffer(dbg, text, sizeof text, GOO_REPORT_TEXT) < sizeof text);
    const char* site = strstr(text, "33 byte(s) in 1 block(s) allocated at leaf_alloc (");
    CHECK(site != NULL);
    const char* frame0 = strstr(site, "      #0 leaf_alloc (");
    const char* frame1 = strstr(site, "      #1 middle_alloc (");
    const char* frame2 = strstr(site, "      #2 traces (");
    CHECK(frame0 != NULL && frame1 != NULL && frame2 != NULL && frame0 < frame1 && frame1 < frame2);
    char json[8192];
    CHECK(goo_debug_report_buffer(dbg, json, sizeof json, GOO_REPORT_JSON) < sizeof json);
    CHECK(strstr(json, "\"trace\":[\"leaf_alloc (") != NULL);
    CHECK(strstr(text, " 0x0") == NULL); /* no frame past the outermost */
    /* A site named by file and line: its trace starts at the caller too, not in the library. */
    void* q = GOO_ALLOC_HERE(dbg, 44);
    CHECK(q != NULL);
    CHECK(goo_debug_report_buffer(dbg, text, sizeof text, GOO_REPORT_TEXT) < sizeof text);
    site = strstr(text, "44 byte(s) in 1 block(s) allocated at ");
    CHECK(site != NULL);
    frame0 = strstr(site, "      #0 traces (");
    CHECK(frame0 != NULL && frame0 == strstr(site, "      #0 "));
    goo_memory_free_with(dbg, q, 44);
    goo_memory_free_with(dbg, p, 33);
    goo_allocator_destroy(dbg);
}

/* A file name with a quote and a newline: escaped once in the text report (one site to a
 * line) and once in the JSON report (as JSON escapes it, not the text's escapes again). */
static void odd_file_names(void) {
    GooAllocator* d = goo_debug_allocator_create(NULL, 0);
    CHECK(d != NULL);
    void* p = goo_memory_alloc_at(d, 12, "odd\"na\nme.c", 7);
    CHECK(p != NULL);
    char text[4096], json[4096];
    CHECK(goo_debug_report_buffer(d, text, sizeof text, GOO_REPORT_TEXT) < sizeof text);
    CHECK(strstr(text, "allocated at odd\\\"na\\nme.c:7") != NULL);
    CHECK(goo_debug_report_buffer(d, json, sizeof json, GOO_REPORT_JSON) < sizeof json);
    CHECK(strstr(json, "\"site\":\"odd\\\"na\\nme.c:7\"") != NULL);
    goo_memory_free_with(d, p, 12);
    goo_allocator_destroy(d);
}

/* Allocations on known lines, in the child as in the parent. */
static inline void keep(void* p) { __asm__ volatile("" : : "r"(p) : "memory"); }
enum { ENV_LINE = __LINE__ + 1 };
static void* env_alloc(void) { void* p = goo_memory_alloc(40); keep(p); return p; }
enum { LEGACY_LINE = __LINE__ + 1 };
static void* legacy_alloc(void) { void* p = goo_alloc(24); keep(p); return p; }

/* Leaks on purpose, so it runs in a child. */
static void from_the_environment(void) {
    CHECK(setenv("GOO_MEMORY_DEBUG", "1", 1) == 0);
    CHECK(goo_memory_init());
    GooAllocator* d = goo_get_default_allocator();
    CHECK(goo_allocator_is_debug(d));
    CHECK(goo_allocator_is_debug(NULL)); /* NULL: the current allocator */
    char* p = (char*)env_alloc();
    CHECK(p != NULL);
    void* legacy = legacy_alloc();
    CHECK(legacy != NULL);
    goo_memory_free(p, 40);
    goo_memory_free(p, 40); /* a double free, through the default */
    CHECK_EQ(goo_debug_error_count(d), 1);
    goo_memory_cleanup();
    CHECK(!goo_allocator_is_debug(goo_get_default_allocator()));
    /* The debug allocator outlived the cleanup while a block of it was live: the legacy block
     * still frees through it (its header names it), checked, and a double free is reported. */
    CHECK(goo_allocator_is_debug(d));
    goo_free(legacy);
    CHECK_EQ(goo_debug_error_count(d), 1);
    goo_free(legacy);
    CHECK_EQ(goo_debug_error_count(d), 2);
    fprintf(stderr, "child done\n");
}

/* A scope begun over the GOO_MEMORY_DEBUG allocator, with nothing allocated yet: the cleanup
 * leaves that allocator (the scope's parent) alive, and the scope goes on as usual. */
static bool destroyed_debug;
static GooAllocator* env_debug;
static bool on_destroy(const GooMemoryEvent* e, void* user_data) {
    (void)user_data;
    if (e->allocator == env_debug) destroyed_debug = true;
    return true;
}

static void a_scope_over_the_environments_debug_allocator(void) {
    CHECK(setenv("GOO_MEMORY_DEBUG", "1", 1) == 0);
    CHECK(goo_memory_init());
    env_debug = goo_get_default_allocator();
    CHECK(goo_allocator_is_debug(env_debug));
    GooAllocator* scope = goo_scope_begin();
    CHECK(scope != NULL);
    CHECK(goo_memory_add_callback(GOO_EVENT_DESTROY, on_destroy, NULL) != 0);
    goo_memory_cleanup();
    CHECK(!destroyed_debug);
    char* p = goo_memory_alloc_with(scope, 100);
    CHECK(p != NULL);
    memset(p, 1, 100);
    goo_scope_end(scope);
    /* Nothing is over it any more: the next cleanup destroys it (valgrind saw it kept for
     * good). */
    CHECK(goo_memory_add_callback(GOO_EVENT_DESTROY, on_destroy, NULL) != 0);
    goo_memory_cleanup();
    CHECK(destroyed_debug);
    fprintf(stderr, "scope child done\n");
}

int main(void) {
    grouped();
    at_cleanup_and_destroy();
    traces();
    odd_file_names();
    char out[16384];
    CHECK_EQ(in_child(from_the_environment, out, sizeof out), 0);
    CHECK(strstr(out, "child done") != NULL);
    CHECK(strstr(out, "double free of the block") != NULL);
    CHECK(HAS_SITE(out, "allocated at", ENV_LINE));
    CHECK(strstr(out, "goo-memory: leak report of debug allocator") != NULL);
    CHECK(HAS_SITE(out, "40 byte(s) in 1 block(s) allocated at", LEGACY_LINE));
    CHECK_EQ(in_child(a_scope_over_the_environments_debug_allocator, out, sizeof out), 0);
    CHECK(strstr(out, "scope child done") != NULL);
    printf("test_debug_leaks: ok\n");
    return 0;
}
