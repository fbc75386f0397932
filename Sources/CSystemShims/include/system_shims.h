#ifndef AVML_SYSTEM_SHIMS_H
#define AVML_SYSTEM_SHIMS_H

/// CPUs in this process's affinity mask (what taskset and containers allow), at least 1.
int avml_available_cpus(void);

/// Seconds since 1970 (UTC) for `text` read with strptime(3) in `format`, the whole
/// text and nothing after it; -1 if it does not match. strptime and timegm read the
/// C locale's names of days and months (a Swift program keeps the C locale).
long long avml_parse_utc_time(const char *text, const char *format);

#endif
