/*
 * The pod sandbox's pause process for the kbin lab's registry.k8s.io/pause image (written here,
 * built by tests/upstream/images.sh with `gcc -static -Os`). It holds the pod's namespaces:
 * it sleeps until SIGTERM or SIGINT (then exits 0) and, as PID 1 of a shared PID namespace,
 * reaps every child that is re-parented to it. `pause -v` prints its version.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "dev"
#endif

static void on_stop(int sig) { (void)sig; _exit(0); }

static void on_child(int sig) {
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    errno = saved;
}

int main(int argc, char **argv) {
    struct sigaction stop = {.sa_handler = on_stop};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("pause %s (kbin lab)\n", VERSION);
        return 0;
    }
    if (getpid() != 1) fprintf(stderr, "pause: warning: not PID 1, orphans go elsewhere\n");
    if (sigaction(SIGINT, &stop, NULL) || sigaction(SIGTERM, &stop, NULL) ||
        sigaction(SIGCHLD, &child, NULL)) {
        perror("pause: sigaction");
        return 1;
    }
    on_child(0); /* children orphaned before the handler was in place */
    for (;;) pause();
}
