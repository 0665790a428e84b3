/* What a region cleanup (or an allocator callback) may do to its own region tree while a reset
 * or destroy runs (issue #18): destroying or resetting its own region, its parent or a sibling
 * is refused, counted and leaves the running operation whole; creating a child under a region
 * being destroyed is refused; other regions are unaffected. Every case gives all memory back
 * (checked on a tracked parent; valgrind checks the rest). */
#include <stdint.h>
#include <string.h>

#include "goo/runtime/memory.h"
#include "check.h"

static GooAllocator* sys;

/* What the cleanups did, in order: one letter per cleanup run. */
static char order[64];
static int order_len;
static void note(char c) {
    CHECK(order_len + 1 < (int)sizeof order);
    order[order_len++] = c;
    order[order_len] = 0;
}
static void clear_order(void) {
    order_len = 0;
    order[0] = 0;
}

/* A cleanup that notes its letter, then makes one request of the region tree. */
typedef enum { DESTROY, DESTROY_VTABLE, RESET, CREATE_CHILD, NOTHING } Request;
typedef struct {
    char letter;
    Request request;
    GooAllocator* target;
    bool reset_result;        /* what RESET returned */
    GooAllocator* new_child;  /* what CREATE_CHILD returned */
} Act;

/* A cleanup's action: note letter, then make request of target. */
static Act acting(char letter, Request request, GooAllocator* target) {
    Act a = {letter, request, target, false, NULL};
    return a;
}

static void act(void* arg) {
    Act* a = (Act*)arg;
    note(a->letter);
    switch (a->request) {
    case DESTROY: goo_region_allocator_destroy(a->target); break;
    case DESTROY_VTABLE: a->target->destroy(a->target); break;
    case RESET: a->reset_result = goo_region_allocator_reset(a->target); break;
    case CREATE_CHILD:
        a->new_child = goo_region_create_child(a->target, 0);
        if (a->new_child) CHECK(goo_memory_alloc_with(a->new_child, 100) != NULL);
        break;
    case NOTHING: break;
    }
}

/* Whether region is live: goo_region_report refuses (and counts) a region that is not. */
static uint64_t probes_refused;
static bool live(GooAllocator* region) {
    char buf[1];
    bool is_live = goo_region_report(region, buf, sizeof buf) > 0;
    probes_refused += !is_live;
    return is_live;
}

/* Refused region requests, not counting live()'s. */
static uint64_t refusals(void) { return goo_region_refused_count() - probes_refused; }

static GooAllocator* root_region(void) {
    GooAllocator* r = goo_region_allocator_create_ex(sys, 512, true);
    CHECK(r != NULL);
    CHECK(goo_memory_alloc_with(r, 64) != NULL);
    return r;
}

static GooAllocator* child_of(GooAllocator* parent) {
    GooAllocator* c = goo_region_create_child(parent, 0);
    CHECK(c != NULL);
    CHECK(goo_memory_alloc_with(c, 64) != NULL);
    return c;
}

/* A parent with three children, each holding a block; the order log cleared. */
typedef struct {
    GooAllocator *p, *c1, *c2, *c3;
} Family;

static Family family(void) {
    clear_order();
    Family f;
    f.p = root_region();
    f.c1 = child_of(f.p);
    f.c2 = child_of(f.p);
    f.c3 = child_of(f.p);
    return f;
}

/* Registers act(a) as a cleanup of region. */
static void on_cleanup(GooAllocator* region, Act* a) { CHECK(goo_region_add_cleanup(region, act, a) != 0); }

static void all_memory_back(void) {
    CHECK_EQ(goo_get_alloc_stats(sys).allocation_count, 0);
    CHECK_EQ(goo_get_alloc_stats(sys).bytes_allocated, 0);
}

/* A cleanup destroying (either way) or resetting its own region during that region's destroy
 * or reset: refused; the operation finishes, each cleanup running once, and after a reset the
 * region stays usable. */
static void own_region(void) {
    Request requests[] = {DESTROY, DESTROY_VTABLE, RESET};
    for (int destroying = 0; destroying < 2; destroying++) {
        for (int i = 0; i < 3; i++) {
            clear_order();
            GooAllocator* r = root_region();
            Act a = acting('a', requests[i], r);
            on_cleanup(r, &a);
            uint64_t refused = refusals();
            if (destroying) {
                goo_region_allocator_destroy(r);
            } else {
                CHECK(goo_region_allocator_reset(r));
            }
            CHECK(strcmp(order, "a") == 0);
            CHECK_EQ(refusals(), refused + 1);
            CHECK(!a.reset_result);
            if (!destroying) {
                CHECK(live(r));
                CHECK_EQ(goo_region_stats(r).allocation_count, 0);
                CHECK(goo_memory_alloc_with(r, 32) != NULL);
                goo_region_allocator_destroy(r);
                CHECK(strcmp(order, "a") == 0);
            }
            CHECK(!live(r));
            all_memory_back();
        }
    }
    /* the same through the vtable's destroy */
    clear_order();
    GooAllocator* r = root_region();
    Act a = acting('a', DESTROY_VTABLE, r);
    on_cleanup(r, &a);
    uint64_t refused = refusals();
    r->destroy(r);
    CHECK(strcmp(order, "a") == 0);
    CHECK_EQ(refusals(), refused + 1);
    CHECK(!live(r));
    all_memory_back();
}

/* A child's cleanup destroying or resetting its parent, during the child's destroy, the
 * child's reset, the parent's reset and the parent's destroy: refused every time. */
static void parent_from_child(void) {
    Request requests[] = {DESTROY, DESTROY_VTABLE, RESET};
    for (int i = 0; i < 3; i++) {
        clear_order();
        GooAllocator* p = root_region();
        GooAllocator* c = child_of(p);
        Act a = acting('c', requests[i], p);
        uint64_t refused = refusals();

        on_cleanup(c, &a);
        CHECK(goo_region_allocator_reset(c));
        CHECK(live(p) && live(c));
        on_cleanup(c, &a);
        CHECK(goo_region_allocator_reset(p));
        CHECK(live(p) && live(c));
        on_cleanup(c, &a);
        goo_region_allocator_destroy(c);
        CHECK(live(p) && !live(c));

        GooAllocator* c2 = child_of(p);
        on_cleanup(c2, &a);
        goo_region_allocator_destroy(p);
        CHECK(!live(p) && !live(c2));
        CHECK(strcmp(order, "cccc") == 0);
        CHECK_EQ(refusals(), refused + 4);
        all_memory_back();
    }
}

/* During the parent's reset, a child's cleanup destroying that child or a sibling: refused,
 * and the reset goes on to the end (every cleanup runs once, every region is emptied). */
static void child_and_sibling_during_parent_reset(void) {
    Family f = family();
    GooAllocator* g = child_of(f.c3);
    Act self = acting('1', DESTROY, f.c1), sibling = acting('2', DESTROY, f.c3);
    Act grandchild = acting('g', DESTROY_VTABLE, g), last = acting('3', NOTHING, NULL);
    Act own = acting('p', NOTHING, NULL);
    on_cleanup(f.c1, &self);
    on_cleanup(f.c2, &sibling);
    on_cleanup(f.c2, &grandchild);
    on_cleanup(f.c3, &last);
    on_cleanup(f.p, &own);
    uint64_t refused = refusals();
    CHECK(goo_region_allocator_reset(f.p));
    CHECK(strcmp(order, "1g23p") == 0);
    CHECK_EQ(refusals(), refused + 3);
    CHECK(live(f.c1) && live(f.c2) && live(f.c3) && live(g));
    CHECK_EQ(goo_region_subtree_stats(f.p).allocation_count, 0);
    goo_region_allocator_destroy(f.p);
    all_memory_back();
}

/* Outside the running operation's path the tree works as usual: during a child's own destroy
 * its cleanup may destroy a sibling and reset the sibling's subtree. */
static void siblings_outside_the_path(void) {
    Family f = family();
    Act kill = acting('1', DESTROY, f.c2), reset = acting('x', RESET, f.c3);
    Act dying = acting('2', NOTHING, NULL), emptied = acting('3', NOTHING, NULL);
    on_cleanup(f.c1, &reset);
    on_cleanup(f.c1, &kill);
    on_cleanup(f.c2, &dying);
    on_cleanup(f.c3, &emptied);
    uint64_t refused = refusals();
    goo_region_allocator_destroy(f.c1);
    CHECK(strcmp(order, "12x3") == 0);
    CHECK(reset.reset_result);
    CHECK_EQ(refusals(), refused);
    CHECK(!live(f.c1) && !live(f.c2) && live(f.c3));
    CHECK_EQ(goo_region_stats(f.c3).allocation_count, 0);
    /* another tree is another tree */
    GooAllocator* other = root_region();
    Act elsewhere = acting('o', DESTROY, other);
    on_cleanup(f.p, &elsewhere);
    goo_region_allocator_destroy(f.p);
    CHECK(!live(other) && !live(f.c3));
    CHECK_EQ(refusals(), refused);
    all_memory_back();
}

/* A cleanup creating a child under a region being destroyed: refused (NULL), nothing
 * outlives the tree. During a reset a child may be created: it stays, and goes with its
 * parent. */
static void children_from_cleanups(void) {
    clear_order();
    GooAllocator* p = root_region();
    GooAllocator* c = child_of(p);
    Act under_parent = acting('p', CREATE_CHILD, p);
    Act under_child = acting('c', CREATE_CHILD, c);
    Act under_parent_from_child = acting('q', CREATE_CHILD, p);
    on_cleanup(p, &under_parent);
    on_cleanup(c, &under_child);
    on_cleanup(c, &under_parent_from_child);
    uint64_t refused = refusals();
    goo_region_allocator_destroy(p);
    CHECK(strcmp(order, "qcp") == 0);
    CHECK(under_parent.new_child == NULL && under_child.new_child == NULL &&
          under_parent_from_child.new_child == NULL);
    CHECK_EQ(refusals(), refused + 3);
    all_memory_back();

    clear_order();
    p = root_region();
    c = child_of(p);
    Act during_reset = acting('r', CREATE_CHILD, c);
    on_cleanup(c, &during_reset);
    CHECK(goo_region_allocator_reset(p));
    CHECK(during_reset.new_child != NULL && live(during_reset.new_child));
    CHECK_EQ(goo_region_stats(during_reset.new_child).allocation_count, 1);
    /* a child destroyed directly: its cleanup may give its parent a child */
    GooAllocator* d = child_of(p);
    Act from_dying = acting('d', CREATE_CHILD, p);
    on_cleanup(d, &from_dying);
    goo_region_allocator_destroy(d);
    CHECK(from_dying.new_child != NULL && live(from_dying.new_child));
    goo_region_allocator_destroy(p);
    CHECK(!live(during_reset.new_child) && !live(from_dying.new_child));
    all_memory_back();
}

/* A destroy or reset callback is held to the same rule as a cleanup. */
static bool destroy_in_callback(const GooMemoryEvent* event, void* user_data) {
    GooAllocator* target = *(GooAllocator**)user_data;
    if (event->allocator == target) {
        note(event->kind == GOO_EVENT_RESET ? 'R' : 'D');
        goo_region_allocator_destroy(target);
        CHECK(!goo_region_allocator_reset(target));
    }
    return true;
}

static void callbacks_too(void) {
    clear_order();
    GooAllocator* r = root_region();
    GooAllocator* target = r;
    uint64_t id = goo_memory_add_callback(GOO_EVENT_RESET | GOO_EVENT_DESTROY, destroy_in_callback, &target);
    CHECK(id != 0);
    uint64_t refused = refusals();
    CHECK(goo_region_allocator_reset(r));
    CHECK(live(r));
    goo_region_allocator_destroy(r);
    CHECK(!live(r));
    CHECK(strcmp(order, "RD") == 0);
    CHECK_EQ(refusals(), refused + 4);
    CHECK(goo_memory_remove_callback(id));
    all_memory_back();
}

int main(void) {
    sys = goo_system_allocator_create();
    own_region();
    parent_from_child();
    child_and_sibling_during_parent_reset();
    siblings_outside_the_path();
    children_from_cleanups();
    callbacks_too();
    /* a pointer that is not a live region is refused and counted too */
    uint64_t refused = refusals();
    goo_region_allocator_destroy(sys);
    CHECK_EQ(refusals(), refused + 1);
    sys->destroy(sys);
    printf("test_region_cleanups: ok\n");
    return 0;
}
