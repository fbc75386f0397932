// SHA-256 from OpenSSL's libcrypto (Debian's libssl-dev; libcrypto.a in the static build).
//
// The low-level SHA256_* functions, not EVP: OpenSSL 3 marks them deprecated but keeps
// them, and they link only the SHA-256 code (about 16 KB, with the SHA-NI and AVX2
// paths chosen at run time through OPENSSL_ia32cap), while EVP_DigestInit pulls in
// OpenSSL's provider machinery (a static test program grew from 0.7 to 4.3 MB).
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "avml_sha256.h"

// SHA256_Init, _Update and _Final return 1 unconditionally in every OpenSSL release
// (they only compute): there is no failure to report.
void avml_sha256_init(SHA256_CTX *context) {
    SHA256_Init(context);
}

void avml_sha256_update(SHA256_CTX *context, const void *data, size_t count) {
    SHA256_Update(context, data, count);
}

void avml_sha256_final(SHA256_CTX *context, unsigned char *digest) {
    SHA256_Final(digest, context);
}
