// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
//
// The hardware path uses SSE4.2 `crc32` on x86_64 and the ARMv8 CRC
// extension on aarch64, chosen at run time so one static binary runs on any
// CPU of its architecture. The portable path is slicing-by-8.

#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

static uint32_t table[8][256];
static int hardware;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void initialize(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
        }
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    hardware = __builtin_cpu_supports("sse4.2");
#elif defined(__aarch64__)
    hardware = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#else
    hardware = 0;
#endif
}

static uint32_t extend_tables(uint32_t state, const uint8_t *p, size_t n) {
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= state;  // little-endian targets only (x86_64, aarch64)
        state = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^
                table[5][(word >> 16) & 0xff] ^ table[4][(word >> 24) & 0xff] ^
                table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^
                table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) {
        state = (state >> 8) ^ table[0][(state ^ *p++) & 0xff];
    }
    return state;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t extend_hardware(uint32_t state, const uint8_t *p, size_t n) {
    uint64_t s = state;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        s = _mm_crc32_u64(s, word);
        p += 8;
        n -= 8;
    }
    uint32_t s32 = (uint32_t)s;
    while (n--) {
        s32 = _mm_crc32_u8(s32, *p++);
    }
    return s32;
}
#elif defined(__aarch64__)
__attribute__((target("+crc")))
static uint32_t extend_hardware(uint32_t state, const uint8_t *p, size_t n) {
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        state = __crc32cd(state, word);
        p += 8;
        n -= 8;
    }
    while (n--) {
        state = __crc32cb(state, *p++);
    }
    return state;
}
#endif

uint32_t avml_crc32c_extend(uint32_t crc, const void *data, size_t length) {
    pthread_once(&once, initialize);
#if defined(__x86_64__) || defined(__aarch64__)
    if (hardware) {
        return ~extend_hardware(~crc, data, length);
    }
#endif
    return ~extend_tables(~crc, data, length);
}

uint32_t avml_crc32c_extend_portable(uint32_t crc, const void *data, size_t length) {
    pthread_once(&once, initialize);
    return ~extend_tables(~crc, data, length);
}

int avml_crc32c_hardware_available(void) {
    pthread_once(&once, initialize);
    return hardware;
}
