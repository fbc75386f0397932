#ifndef AVML_SYSTEM_SHIMS_H
#define AVML_SYSTEM_SHIMS_H

/// CPUs in this process's affinity mask (what taskset and containers allow), at least 1.
int avml_available_cpus(void);

#endif
