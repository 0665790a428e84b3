/* Helpers for the debug allocator's tests: capture what a step writes to stderr, and find a site
 * in a report. The includer defines _POSIX_C_SOURCE (for dup, fileno) before its first include. */
#ifndef GOO_TEST_DEBUG_REPORT_H
#define GOO_TEST_DEBUG_REPORT_H
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Runs f(arg) with stderr going to a temporary file; returns what it wrote (valid until the
 * next call). */
static inline const char* capture_stderr(void (*f)(void*), void* arg) {
    static char out[16384];
    fflush(stderr);
    FILE* tmp = tmpfile();
    CHECK(tmp != NULL);
    int saved = dup(2);
    CHECK(saved >= 0);
    CHECK(dup2(fileno(tmp), 2) == 2);
    f(arg);
    fflush(stderr);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, sizeof out - 1, tmp);
    out[n] = 0;
    fclose(tmp);
    return out;
}

/* Whether some line of text starts (after spaces) with label and names line `line` of this
 * test's source file as its site: "name.c:LINE" followed by the end of the line, ')' or '"'
 * (a site given with GOO_ALLOC_HERE prints as file:line, a return address as
 * "function (file:line) [address]"). */
#define HAS_SITE(text, label, line) has_site((text), (label), __FILE__, (line))

static inline int has_site(const char* text, const char* label, const char* file, int line) {
    const char* base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char site[256];
    snprintf(site, sizeof site, "%s:%d", base, line);
    size_t site_len = strlen(site);
    for (const char* l = text; *l;) {
        const char* end = strchr(l, '\n');
        if (!end) end = l + strlen(l);
        const char* s = l;
        while (*s == ' ') s++;
        if (strncmp(s, label, strlen(label)) == 0) {
            for (const char* at = s; (at = strstr(at, site)) != NULL && at < end; at++) {
                char next = at[site_len];
                if (at + site_len == end || next == ')' || next == '"') return 1;
            }
        }
        l = *end ? end + 1 : end;
    }
    return 0;
}

#endif
