/* Tiny assertion helper for the C tests: prints the failing expression and exits 1. */
#ifndef GOO_TEST_CHECK_H
#define GOO_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#define CHECK_EQ(a, b)                                                                 \
    do {                                                                               \
        unsigned long long va_ = (unsigned long long)(a), vb_ = (unsigned long long)(b); \
        if (va_ != vb_) {                                                              \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%llu vs %llu)\n",       \
                    __FILE__, __LINE__, #a, #b, va_, vb_);                             \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#endif
