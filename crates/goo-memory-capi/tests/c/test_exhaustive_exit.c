/* goo_memory_check_all_allocation_failures with a function that exit()s when a request fails:
 * the run counts as a crash, reported as an exit with its status (it said "signal 0"), and the
 * caller's C stdio buffers are flushed before each fork, so the child's exit() does not write
 * the caller's pending output a second time. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "goo/runtime/memory.h"

static int exits_on_failure(void* ctx) {
    (void)ctx;
    void* p = goo_memory_alloc(24);
    if (p == NULL) exit(3);
    goo_memory_free(p, 24);
    return 0;
}

static size_t count_lines(FILE* f, const char* line) {
    char buf[512];
    size_t n = 0;
    rewind(f);
    while (fgets(buf, sizeof buf, f) != NULL) {
        if (strstr(buf, line) != NULL) n++;
    }
    return n;
}

int main(void) {
    FILE* out = tmpfile();
    FILE* err = tmpfile();
    CHECK(out != NULL && err != NULL);
    static char out_buf[4096];
    CHECK(setvbuf(out, out_buf, _IOFBF, sizeof out_buf) == 0);
    fprintf(out, "pending line\n"); /* still in the buffer */

    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0);
    CHECK(dup2(fileno(err), 2) == 2);
    GooExhaustiveResult r;
    bool ok = goo_memory_check_all_allocation_failures(exits_on_failure, NULL, &r);
    fflush(stderr);
    CHECK(dup2(saved, 2) == 2);
    close(saved);

    CHECK(!ok);
    CHECK_EQ(r.allocations, 1);
    CHECK_EQ(r.runs, 1);
    CHECK_EQ(r.crashes, 1);
    CHECK_EQ(r.leaks, 0);
    CHECK_EQ(r.first_bad, 1);
    CHECK_EQ(count_lines(err, "failing allocation #1 exits (status 3)"), 1);
    CHECK_EQ(count_lines(err, "signal"), 0);
    fflush(out);
    CHECK_EQ(count_lines(out, "pending line"), 1);
    fclose(out);
    fclose(err);
    return 0;
}
