// zlib from the system (Debian: zlib1g-dev, which also provides libz.a for the static build).
#include <zlib.h>

// deflateInit2 and inflateInit2 are macros, which Swift cannot call.
// windowBits 15 + 16 asks zlib for a gzip wrapper (RFC 1952) instead of a zlib one.
static inline int avml_deflate_init_gzip(z_streamp stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

// 15 + 32: accept a gzip or zlib wrapper, detected from the header.
static inline int avml_inflate_init_auto(z_streamp stream) {
    return inflateInit2(stream, 15 + 32);
}
