/* Runs a test step in a child process and captures what it writes to stderr. The includer
 * defines _POSIX_C_SOURCE (for fork and pipe) before its first include. */
#ifndef GOO_TEST_CHILD_H
#define GOO_TEST_CHILD_H
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Forks; in the child (return value 0) stderr goes to the pipe fds[1]. The parent passes both
 * to child_wait. */
static inline pid_t child_fork(int fds[2]) {
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
    }
    return pid;
}

/* Reads the child's stderr into buf and waits for it; returns its wait status. */
static inline int child_wait(pid_t pid, int fds[2], char* buf, size_t len) {
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < len && (n = read(fds[0], buf + got, len - 1 - got)) > 0) got += (size_t)n;
    buf[got] = 0;
    close(fds[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

/* Runs f in a child; returns its termination signal (0 if it exited), and its stderr in buf. */
static inline int in_child(void (*f)(void), char* buf, size_t len) {
    int fds[2];
    pid_t pid = child_fork(fds);
    if (pid == 0) {
        f();
        _exit(0);
    }
    int status = child_wait(pid, fds, buf, len);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

#endif
