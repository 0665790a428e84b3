/* Runs a test step in a child process and captures what it writes to stderr. The includer
 * defines _POSIX_C_SOURCE (for fork and pipe) before its first include. */
#ifndef GOO_TEST_CHILD_H
#define GOO_TEST_CHILD_H
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Runs f in a child; returns its termination signal (0 if it exited), and its stderr in buf. */
static inline int in_child(void (*f)(void), char* buf, size_t len) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        f();
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < len && (n = read(fds[0], buf + got, len - 1 - got)) > 0) got += (size_t)n;
    buf[got] = 0;
    close(fds[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

#endif
