#ifndef AVML_SHA256_H
#define AVML_SHA256_H

#include <stddef.h>
#include <openssl/sha.h>

// Wrappers of OpenSSL's SHA256_Init, _Update and _Final, which OpenSSL 3 marks
// deprecated: called from C, so Swift sees no deprecation warnings.

/// SHA256_Init.
void avml_sha256_init(SHA256_CTX *context);

/// SHA256_Update over `count` bytes at `data`.
void avml_sha256_update(SHA256_CTX *context, const void *data, size_t count);

/// SHA256_Final into `digest` (32 bytes); `context` is used up.
void avml_sha256_final(SHA256_CTX *context, unsigned char *digest);

#endif
