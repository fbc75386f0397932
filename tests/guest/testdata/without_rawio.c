/* without_rawio PROGRAM [ARG...]: runs PROGRAM as this root process, but without
 * CAP_SYS_RAWIO, as a container or a service with reduced capabilities runs it.
 *
 * Dropping the capability from the bounding set is enough for root: at execve the
 * kernel gives root every capability of the bounding set, and no others. Built
 * static (`gcc -static`) for the test guest, which has no libc. */
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: without_rawio PROGRAM [ARG...]\n");
        return 2;
    }
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_RAWIO, 0, 0, 0) != 0) {
        fprintf(stderr, "without_rawio: prctl(PR_CAPBSET_DROP, CAP_SYS_RAWIO): %s\n", strerror(errno));
        return 2;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "without_rawio: cannot run %s: %s\n", argv[1], strerror(errno));
    return 127;
}
