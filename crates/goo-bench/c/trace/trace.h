/* One event of an allocation trace (recorder.c writes them, replay.c reads them). */
#ifndef GOO_TRACE_H
#define GOO_TRACE_H
#include <stdint.h>

enum { TRACE_ALLOC = 1, TRACE_FREE = 2, TRACE_REALLOC = 3 };

typedef struct TraceEvent {
    uint8_t op;      /* TRACE_* */
    uint8_t pad[3];
    uint32_t thread; /* 1 = the first thread that allocated, 2 = the next, ... */
    uint64_t ptr;    /* the block returned (ALLOC, REALLOC) */
    uint64_t old;    /* the block freed or resized (FREE, REALLOC) */
    uint64_t size;   /* bytes asked for (ALLOC, REALLOC) */
    uint64_t align;  /* 0, or the alignment asked for (memalign family) */
} TraceEvent;

#endif
