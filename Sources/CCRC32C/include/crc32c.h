#ifndef AVML_CRC32C_H
#define AVML_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends `crc` (a finished CRC-32C, 0 for none yet) over `length` bytes,
/// with the CPU's CRC instruction when it has one, else with tables.
uint32_t avml_crc32c_extend(uint32_t crc, const void *data, size_t length);

/// The same computation with tables only, so tests can compare both paths.
uint32_t avml_crc32c_extend_portable(uint32_t crc, const void *data, size_t length);

/// Non-zero when `avml_crc32c_extend` uses the CPU's CRC-32C instruction.
int avml_crc32c_hardware_available(void);

#endif
