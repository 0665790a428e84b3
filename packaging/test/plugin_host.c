/* A program that loads the shared library as a plugin (dlopen, RTLD_LOCAL), uses it from a
 * worker thread, unloads it (dlclose) while that thread still runs, and lets the thread exit:
 * the library's thread-exit hooks must not run in unmapped code (it stays loaded: -z nodelete).
 * Then many load/use/unload cycles: the program can still make pthread keys of its own (the
 * library takes no new ones per load). Prints "ok", or what failed.
 * usage: plugin_host /path/to/libgoo_memory.so */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sched.h>

typedef void* (*alloc_fn)(size_t);
typedef void (*free_fn)(void*, size_t);

static alloc_fn goo_alloc_p, temp_alloc_p;
static free_fn goo_free_p;
static atomic_bool used, may_exit;

static void* worker(void* arg) {
    (void)arg;
    void* p = goo_alloc_p(64);
    goo_free_p(p, 64);
    (void)temp_alloc_p(32); /* the thread's temporary arena, freed at its exit */
    atomic_store(&used, 1);
    while (!atomic_load(&may_exit)) sched_yield();
    return NULL;
}

static int cycle(const char* path) {
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return printf("dlopen: %s\n", dlerror()), 1;
    goo_alloc_p = (alloc_fn)(uintptr_t)dlsym(lib, "goo_memory_alloc");
    goo_free_p = (free_fn)(uintptr_t)dlsym(lib, "goo_memory_free");
    temp_alloc_p = (alloc_fn)(uintptr_t)dlsym(lib, "goo_temp_alloc");
    if (!goo_alloc_p || !goo_free_p || !temp_alloc_p) return printf("dlsym failed\n"), 1;
    atomic_store(&used, 0);
    atomic_store(&may_exit, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL)) return printf("pthread_create failed\n"), 1;
    while (!atomic_load(&used)) sched_yield();
    dlclose(lib); /* the worker still runs, with the library's per-thread state */
    atomic_store(&may_exit, 1);
    pthread_join(t, NULL);
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 2) return printf("usage: plugin_host libgoo_memory.so\n"), 1;
    for (int i = 0; i < 600; i++)
        if (cycle(argv[1])) return 1;
    pthread_key_t key;
    if (pthread_key_create(&key, NULL)) return printf("no pthread key left for the program\n"), 1;
    printf("ok\n");
    return 0;
}
