/* The leak report of goo_memory_cleanup and the reports' names (issue #18): the temporary
 * arena's kept chunk is no leak once reset; the live-region set goes with the last region
 * (valgrind would see it lost); a region has one name, whichever function set it; text reports
 * escape control characters in names; an unknown report format is refused. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "goo/runtime/memory.h"
#include "check.h"

/* Runs goo_memory_cleanup with stderr going to a temporary file; returns what it wrote. */
static const char* cleanup_output(void) {
    static char out[4096];
    fflush(stderr);
    FILE* tmp = tmpfile();
    CHECK(tmp != NULL);
    int saved = dup(2);
    CHECK(saved >= 0);
    CHECK(dup2(fileno(tmp), 2) == 2);
    goo_memory_cleanup();
    fflush(stderr);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, sizeof out - 1, tmp);
    out[n] = 0;
    fclose(tmp);
    return out;
}

static size_t count_lines(const char* text) {
    size_t n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

/* The line of text holding needle (copied into line), or NULL. */
static const char* line_with(const char* text, const char* needle, char* line, size_t size) {
    const char* at = strstr(text, needle);
    if (!at) return NULL;
    while (at > text && at[-1] != '\n') at--;
    size_t n = strcspn(at, "\n");
    CHECK(n < size);
    memcpy(line, at, n);
    line[n] = 0;
    return line;
}

static void temporary_arena_is_no_leak_once_reset(void) {
    CHECK(strcmp(cleanup_output(), "") == 0);
    char* t = (char*)goo_temp_alloc(100);
    CHECK(t != NULL);
    memset(t, 1, 100);
    /* live temporary allocations are reported, under the temporary arena */
    const char* out = cleanup_output();
    CHECK_EQ(count_lines(out), 1);
    CHECK(strstr(out, "(arena) still has 1 live allocation(s), 100 byte(s)") != NULL);
    goo_temp_reset();
    /* reset: the chunk the arena keeps is the library's, not a leak of the default heap */
    CHECK(strcmp(cleanup_output(), "") == 0);
    CHECK(goo_temp_alloc(70000) != NULL); /* a second chunk, larger than the first */
    goo_temp_reset();
    CHECK_EQ(goo_get_alloc_stats(goo_temp_allocator()).allocation_count, 0);
    CHECK(goo_get_alloc_stats(goo_temp_allocator()).bytes_reserved > 0);
    CHECK_EQ(goo_get_alloc_stats(NULL).allocation_count, 0);
    CHECK(strcmp(cleanup_output(), "") == 0);
}

/* Regions made and destroyed: the live-region set grows and is freed with the last region
 * (valgrind, run by the test harness, reports it if it is not). */
static void live_region_set_goes_with_the_last_region(void) {
    for (int round = 0; round < 2; round++) {
        GooAllocator* roots[8];
        for (int i = 0; i < 8; i++) {
            roots[i] = goo_region_allocator_create(0, true);
            CHECK(roots[i] != NULL);
            for (int j = 0; j < 4; j++) CHECK(goo_region_create_child(roots[i], 0) != NULL);
        }
        for (int i = 0; i < 8; i++) goo_region_allocator_destroy(roots[i]);
    }
    CHECK(strcmp(cleanup_output(), "") == 0);
}

static void one_name_per_allocator(void) {
    GooAllocator* root = goo_region_allocator_create(0, true);
    GooAllocator* child = goo_region_create_child(root, 0);
    char text[16384], line[512];
    CHECK(goo_region_set_name(root, "set by region"));
    CHECK(goo_allocator_set_name(child, "set by allocator"));
    goo_region_report(root, text, sizeof text);
    CHECK(strstr(text, "region \"set by region\"") && strstr(text, "region \"set by allocator\""));
    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    CHECK(strstr(text, "set by region") && strstr(text, "set by allocator"));
    /* the later setter wins, whichever it is; both reports agree */
    CHECK(goo_allocator_set_name(root, "renamed by allocator"));
    CHECK(goo_region_set_name(child, "renamed by region"));
    goo_region_report(root, text, sizeof text);
    CHECK(strstr(text, "\"renamed by allocator\"") && strstr(text, "\"renamed by region\""));
    CHECK(!strstr(text, "set by"));
    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    CHECK(line_with(text, "renamed by allocator", line, sizeof line) && strstr(line, "region"));
    CHECK(line_with(text, "  renamed by region", line, sizeof line) && strstr(line, "region"));
    CHECK(!strstr(text, "set by"));
    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_JSON);
    CHECK(strstr(text, "\"name\":\"renamed by region\",\"kind\":\"region\"") != NULL);
    /* NULL clears it for both */
    CHECK(goo_region_set_name(root, NULL));
    goo_region_report(root, text, sizeof text);
    CHECK(strstr(text, "region \"(unnamed)\"") && !strstr(text, "renamed by allocator"));
    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    CHECK(!strstr(text, "renamed by allocator"));
    /* the leak report names it too */
    CHECK(goo_memory_alloc_with(child, 10) != NULL);
    CHECK(strstr(cleanup_output(), "(region, \"renamed by region\") still has 1 live allocation(s)") != NULL);
    goo_region_allocator_destroy(root);
    CHECK(strcmp(cleanup_output(), "") == 0);
}

static void names_are_escaped_in_text(void) {
    static const char evil[] = "evil\nname\t\x1b[2J \"quoted\" back\\slash";
    static const char shown[] = "evil\\nname\\t\\u{1b}[2J \\\"quoted\\\" back\\\\slash";
    GooAllocator* root = goo_region_allocator_create(0, true);
    GooAllocator* child = goo_region_create_child(root, 0);
    CHECK(goo_region_set_name(root, evil));
    CHECK(goo_allocator_set_name(child, "\r\n"));
    char text[16384], line[512];

    goo_region_report(root, text, sizeof text);
    CHECK_EQ(count_lines(text), 2); /* one line a region */
    CHECK(line_with(text, shown, line, sizeof line) && strncmp(line, "region \"", 8) == 0);
    CHECK(strstr(text, "  region \"\\r\\n\"") != NULL);

    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    size_t before = count_lines(text);
    CHECK(line_with(text, shown, line, sizeof line) && strstr(line, "region") != NULL);
    CHECK(line_with(text, "  \\r\\n", line, sizeof line) && strstr(line, "region") != NULL);
    CHECK(goo_region_set_name(root, "plain"));
    CHECK(goo_allocator_set_name(child, "plain child"));
    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_TEXT);
    CHECK_EQ(count_lines(text), before); /* the escaped names added no line */

    /* JSON escapes as JSON does */
    CHECK(goo_region_set_name(root, evil));
    goo_memory_stats_report_buffer(text, sizeof text, GOO_REPORT_JSON);
    CHECK(strstr(text, "\"evil\\nname\\t\\u001b[2J \\\"quoted\\\" back\\\\slash\"") != NULL);

    /* and the leak report (the region's chunk is a live block of the default heap too) */
    CHECK(goo_memory_alloc_with(root, 10) != NULL);
    const char* out = cleanup_output();
    CHECK(strstr(out, shown) != NULL);
    for (const char* l = out; *l; l = strchr(l, '\n') + 1) CHECK(strncmp(l, "goo-memory: leak: ", 18) == 0);
    goo_region_allocator_destroy(root);
}

static void unknown_format_is_refused(void) {
    char text[64];
    memset(text, 'x', sizeof text);
    CHECK_EQ(goo_memory_stats_report_buffer(text, sizeof text, (GooReportFormat)2), 0);
    CHECK_EQ(text[0], 0);
    CHECK_EQ(goo_memory_stats_report_buffer(NULL, 0, (GooReportFormat)-1), 0);
    FILE* devnull = fopen("/dev/null", "w");
    CHECK(devnull != NULL);
    CHECK_EQ(goo_memory_stats_report(devnull, (GooReportFormat)7), 0);
    CHECK(goo_memory_stats_report(devnull, GOO_REPORT_JSON) > 0);
    fclose(devnull);
    CHECK(goo_memory_stats_report_buffer(NULL, 0, GOO_REPORT_TEXT) > 0);
}

int main(void) {
    temporary_arena_is_no_leak_once_reset();
    live_region_set_goes_with_the_last_region();
    one_name_per_allocator();
    names_are_escaped_in_text();
    unknown_format_is_refused();
    goo_temp_reset();
    printf("test_cleanup_reports: ok\n");
    return 0;
}
