/* C code for the Zig tests: what a C part of the runtime does with the allocators Zig hands it,
 * and an allocator written in C that Zig uses through goo_memory.allocator(). */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "goo/runtime/memory.h"

/* ---- An allocator written in C: posix_memalign behind the vtable, counting its calls ---- */

typedef struct {
    size_t allocs, reallocs, frees;
} CCounts;

static void* c_alloc(void* ctx, size_t size, size_t alignment, GooAllocOptions options) {
    (void)options;
    void* p = NULL;
    if (posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) != 0) return NULL;
    ((CCounts*)ctx)->allocs++;
    return p;
}

static void* c_realloc(void* ctx, void* ptr, size_t old_size, size_t new_size, size_t alignment,
                       GooAllocOptions options) {
    void* n = c_alloc(ctx, new_size, alignment, options);
    if (!n) return NULL;
    ((CCounts*)ctx)->allocs--;
    ((CCounts*)ctx)->reallocs++;
    memcpy(n, ptr, old_size < new_size ? old_size : new_size);
    free(ptr);
    return n;
}

static void c_free(void* ctx, void* ptr, size_t size, size_t alignment) {
    (void)size;
    (void)alignment;
    ((CCounts*)ctx)->frees++;
    free(ptr);
}

static CCounts c_counts;
static GooAllocator c_made = {c_alloc, c_realloc, c_free, NULL, GOO_ALLOC_STRATEGY_NULL, NULL, &c_counts, true,
                              {0, 0, 0, 0, 0, 0, 0}};

/* The C-made allocator, and how often its functions were called. */
GooAllocator* goo_zig_test_c_allocator(void) { return &c_made; }
size_t goo_zig_test_c_allocs(void) { return c_counts.allocs; }
size_t goo_zig_test_c_frees(void) { return c_counts.frees; }

/* ---- C code using an allocator it was handed ---- */

typedef struct Node {
    struct Node* next;
    size_t value;
} Node;

/* A list of n nodes and a growing array, everything freed with its size; returns the sum of the
 * list's values (n(n-1)/2) and 0 if an allocation failed (after freeing what it had). */
size_t goo_zig_test_c_workload(GooAllocator* a, size_t n) {
    Node* head = NULL;
    size_t* array = NULL;
    size_t capacity = 0, sum = 0, ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        Node* node = goo_memory_alloc_ex(a, sizeof *node, _Alignof(Node), GOO_ALLOC_DEFAULT);
        if (!node) { ok = 0; break; }
        node->value = i;
        node->next = head;
        head = node;
        if (i == capacity) {
            size_t grown = capacity ? capacity * 2 : 4;
            size_t* bigger = goo_memory_realloc_ex(a, array, capacity * sizeof *array, grown * sizeof *array,
                                                   _Alignof(size_t), GOO_ALLOC_ZERO);
            if (!bigger) { ok = 0; break; }
            array = bigger;
            capacity = grown;
        }
        array[i] = i;
    }
    while (head) {
        Node* next = head->next;
        sum += head->value;
        goo_memory_free_ex(a, head, sizeof *head, _Alignof(Node));
        head = next;
    }
    goo_memory_free_ex(a, array, capacity * sizeof *array, _Alignof(size_t));
    return ok ? sum : 0;
}

/* Allocates four blocks (one resized) and frees three: the 200-byte one is leaked. Returns it
 * and its size. */
void* goo_zig_test_plant_leak(GooAllocator* a, size_t* leaked_size) {
    char* kept = goo_memory_alloc_with(a, 48);
    char* grown = goo_memory_alloc_ex(a, 16, 8, GOO_ALLOC_ZERO);
    char* leaked = goo_memory_alloc_with(a, 120);
    char* big = goo_memory_alloc_with(a, 70000);
    if (!kept || !grown || !leaked || !big) return NULL;
    leaked = goo_memory_realloc_with(a, leaked, 120, 200);
    if (!leaked) return NULL;
    memset(leaked, 'x', 200);
    goo_memory_free_with(a, kept, 48);
    goo_memory_free_ex(a, grown, 16, 8);
    goo_memory_free_with(a, big, 70000);
    *leaked_size = 200;
    return leaked;
}

/* ---- What the library writes to stderr (a refusal's message), captured for a test ---- */

static FILE* captured;
static int saved_stderr = -1;

/* Sends stderr (fd 2) to a temporary file until goo_zig_test_stderr_end. */
bool goo_zig_test_stderr_begin(void) {
    fflush(stderr);
    captured = tmpfile();
    if (!captured) return false;
    saved_stderr = dup(2);
    if (saved_stderr < 0 || dup2(fileno(captured), 2) < 0) {
        fclose(captured);
        return false;
    }
    return true;
}

/* Restores stderr; copies what was written meanwhile into buffer (NUL-terminated, truncated
 * to size) and returns its length. */
size_t goo_zig_test_stderr_end(char* buffer, size_t size) {
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    rewind(captured);
    size_t n = fread(buffer, 1, size - 1, captured);
    buffer[n] = '\0';
    fclose(captured);
    return n;
}
