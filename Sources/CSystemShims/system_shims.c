#define _GNU_SOURCE
#include "system_shims.h"

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
