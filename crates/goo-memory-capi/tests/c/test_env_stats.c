/* GOO_MEMORY_STATS=text|json prints the report at exit, to stderr or to GOO_MEMORY_STATS_FILE;
 * any other value is refused with a message. The program runs itself again with the variables
 * set (they are read when the library is loaded, before main). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goo/runtime/memory.h"
#include "goo/runtime/stats.h"
#include "check.h"
#include "child.h"

/* The child: one named allocator with a live block, then a normal exit. Both stay reachable
 * from these globals (LeakSanitizer reports only unreachable memory). */
static GooAllocator* volatile child_allocator;
static void* volatile child_block;

static int child(void) {
    child_allocator = goo_system_allocator_create();
    CHECK(child_allocator != NULL && goo_allocator_set_name(child_allocator, "env report"));
    child_block = goo_memory_alloc_with(child_allocator, 48);
    CHECK(child_block != NULL);
    return 0;
}

/* Runs this program as the child with `stats` and `file` (NULL: unset) in the environment;
 * returns what it wrote to stderr. */
static const char* self_path; /* argv[0]: under valgrind, /proc/self/exe is valgrind's */

static void run_child(const char* stats, const char* file, char* err, size_t len) {
    int fds[2];
    pid_t pid = child_fork(fds);
    if (pid == 0) {
        setenv("GOO_MEMORY_STATS", stats, 1);
        if (file) setenv("GOO_MEMORY_STATS_FILE", file, 1);
        else unsetenv("GOO_MEMORY_STATS_FILE");
        char arg[] = "--child";
        char* argv[] = {(char*)self_path, arg, NULL};
        execv(self_path, argv);
        _exit(127);
    }
    int status = child_wait(pid, fds, err, len);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char** argv) {
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child();
    self_path = argv[0];

    static char err[65536];
    run_child("json", NULL, err, sizeof err);
    CHECK(strncmp(err, "{\"allocators\":[", 15) == 0);
    CHECK(strstr(err, "\"name\":\"env report\",\"kind\":\"system\"") != NULL);
    CHECK(strstr(err, "\"bytes_allocated\":48") != NULL);
    CHECK(err[strlen(err) - 1] == '\n');

    run_child("text", NULL, err, sizeof err);
    CHECK(strstr(err, "allocator") == err);
    CHECK(strstr(err, "env report") != NULL);

    char path[] = "/tmp/goo-env-stats-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    run_child("json", path, err, sizeof err);
    CHECK(err[0] == 0); /* nothing on stderr: the report went to the file */
    FILE* f = fopen(path, "r");
    CHECK(f != NULL);
    size_t len = fread(err, 1, sizeof err - 1, f);
    err[len] = 0;
    fclose(f);
    unlink(path);
    CHECK(strstr(err, "\"name\":\"env report\"") != NULL);

    run_child("yaml", NULL, err, sizeof err);
    CHECK(strstr(err, "GOO_MEMORY_STATS=\"yaml\" is neither") != NULL);
    CHECK(strstr(err, "allocators") == NULL);
    return 0;
}
