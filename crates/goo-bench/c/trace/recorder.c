/*
 * goo-trace-recorder: an LD_PRELOAD shim that logs every malloc, calloc, realloc, free,
 * posix_memalign, aligned_alloc and memalign of a program, with sizes and thread, for
 * replay-traces.c. Built and used by scripts/record-traces.sh.
 *
 *   LD_PRELOAD=goo-trace-recorder.so GOO_TRACE_OUT=file.trace program ...
 *
 * Output: a binary file of TraceEvent records (below), in the order the calls returned under
 * one lock. It calls glibc's __libc_* functions, so it needs no dlsym (which allocates) and
 * records no call of its own. Only the first process writes (children inherit LD_PRELOAD but
 * GOO_TRACE_OUT is cleared for them: a trace is one process).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trace.h"

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);
extern void* __libc_memalign(size_t, size_t);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fd = -1;
static pid_t owner;
static TraceEvent buf[4096];
static size_t used;
static _Thread_local uint32_t my_thread;
static uint32_t threads;

static void flush_locked(void) {
    size_t off = 0, len = used * sizeof(TraceEvent);
    while (off < len) {
        ssize_t w = write(fd, (char*)buf + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    used = 0;
}

__attribute__((constructor)) static void start(void) {
    const char* out = getenv("GOO_TRACE_OUT");
    if (!out || !*out) return;
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    owner = getpid();
    unsetenv("GOO_TRACE_OUT"); /* children of the traced program are not traced */
}

__attribute__((destructor)) static void stop(void) {
    if (fd < 0) return;
    pthread_mutex_lock(&lock);
    flush_locked();
    close(fd);
    fd = -1;
    pthread_mutex_unlock(&lock);
}

static void record(uint8_t op, void* ptr, void* old, uint64_t size, uint64_t align) {
    if (fd < 0 || getpid() != owner) return;
    int saved = errno;
    pthread_mutex_lock(&lock);
    if (!my_thread) my_thread = ++threads;
    TraceEvent* e = &buf[used++];
    e->op = op;
    e->thread = my_thread;
    e->ptr = (uint64_t)(uintptr_t)ptr;
    e->old = (uint64_t)(uintptr_t)old;
    e->size = size;
    e->align = align;
    if (used == sizeof buf / sizeof *buf) flush_locked();
    pthread_mutex_unlock(&lock);
    errno = saved;
}

void* malloc(size_t n) {
    void* p = __libc_malloc(n);
    if (p) record(TRACE_ALLOC, p, NULL, n, 0);
    return p;
}
void* calloc(size_t a, size_t b) {
    void* p = __libc_calloc(a, b);
    if (p) record(TRACE_ALLOC, p, NULL, (uint64_t)a * b, 0);
    return p;
}
void* realloc(void* old, size_t n) {
    void* p = __libc_realloc(old, n);
    if (!old) {
        if (p) record(TRACE_ALLOC, p, NULL, n, 0);
    } else if (n == 0) {
        record(TRACE_FREE, NULL, old, 0, 0);
    } else if (p) {
        record(TRACE_REALLOC, p, old, n, 0);
    }
    return p;
}
void free(void* p) {
    if (p) record(TRACE_FREE, NULL, p, 0, 0);
    __libc_free(p);
}
void* memalign(size_t align, size_t n) {
    void* p = __libc_memalign(align, n);
    if (p) record(TRACE_ALLOC, p, NULL, n, align);
    return p;
}
void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
int posix_memalign(void** out, size_t align, size_t n) {
    void* p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    record(TRACE_ALLOC, p, NULL, n, align);
    *out = p;
    return 0;
}
