#define _GNU_SOURCE
#include "system_shims.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int avml_available_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) {
            return count;
        }
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

long long avml_parse_utc_time(const char *text, const char *format) {
    struct tm fields;
    memset(&fields, 0, sizeof(fields));
    const char *end = strptime(text, format, &fields);
    if (end == NULL || *end != '\0') {
        return -1;
    }
    return (long long)timegm(&fields);
}

void avml_stream_out(int fd, long long offset, long long count, long long dropOffset, long long dropCount) {
    (void)sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
    if (dropCount > 0) {
        (void)posix_fadvise(fd, dropOffset, dropCount, POSIX_FADV_DONTNEED);
    }
}

int avml_set_direct_io(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) {
        return errno;
    }
    flags = on ? (flags | O_DIRECT) : (flags & ~O_DIRECT);
    return fcntl(fd, F_SETFL, flags) < 0 ? errno : 0;
}
