#ifndef AVML_SYSTEM_SHIMS_H
#define AVML_SYSTEM_SHIMS_H

/// CPUs in this process's affinity mask (what taskset and containers allow), at least 1.
int avml_available_cpus(void);

/// Seconds since 1970 (UTC) for `text` read with strptime(3) in `format`, the whole
/// text and nothing after it; -1 if it does not match. strptime and timegm read the
/// C locale's names of days and months (a Swift program keeps the C locale).
long long avml_parse_utc_time(const char *text, const char *format);

/// Starts writing back [offset, offset + count) of `fd` without waiting for it
/// (sync_file_range with SYNC_FILE_RANGE_WRITE), then lets the page cache drop
/// [dropOffset, dropOffset + dropCount), written back earlier (posix_fadvise
/// DONTNEED). Best effort: errors are ignored; fsync still decides success.
void avml_stream_out(int fd, long long offset, long long count, long long dropOffset, long long dropCount);
/// Turns O_DIRECT on or off for `fd` (fcntl F_SETFL): 0, or the errno (EINVAL where the
/// filesystem cannot write around the page cache, such as tmpfs).
int avml_set_direct_io(int fd, int on);

#endif
