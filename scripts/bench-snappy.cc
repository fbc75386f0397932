// Times Google's libsnappy the way avml-bench (Sources/avml-bench) times ours:
// every 64 KiB chunk of a file compressed into its own slot of one reused buffer,
// then decompressed, ROUNDS rounds, reporting the best round as one JSON line.
// scripts/bench.py compiles it with: g++ -O2 bench-snappy.cc -lsnappy
//
//   bench-snappy FILE [ROUNDS]
#include <snappy.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <vector>

static double now() {
    timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return double(time.tv_sec) + double(time.tv_nsec) / 1e9;
}

static bool readFile(const char* path, std::vector<char>& out) {
    FILE* file = std::fopen(path, "rb");
    if (!file) return false;
    std::fseek(file, 0, SEEK_END);
    long size = std::ftell(file);
    std::fseek(file, 0, SEEK_SET);
    if (size < 0) {
        std::fclose(file);
        return false;
    }
    out.resize(size_t(size));
    size_t got = std::fread(out.data(), 1, out.size(), file);
    std::fclose(file);
    out.resize(got);
    return true;
}

int main(int argc, char** argv) {
    std::vector<char> input;
    if (argc < 2 || !readFile(argv[1], input)) {
        std::fprintf(stderr, "usage: bench-snappy FILE [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
    if (rounds < 1) rounds = 3;
    const size_t chunk = size_t(1) << 16;
    const size_t count = input.size();
    const size_t chunks = (count + chunk - 1) / chunk;
    const size_t slot = snappy::MaxCompressedLength(chunk);
    char* compressed = static_cast<char*>(std::aligned_alloc(64, (chunks * slot + 63) / 64 * 64 + 64));
    char* restored = static_cast<char*>(std::aligned_alloc(64, (count + chunk + 63) / 64 * 64));
    if (!compressed || !restored) {
        std::fprintf(stderr, "bench-snappy: out of memory\n");
        return 1;
    }
    std::vector<size_t> sizes(chunks, 0);
    double bestCompress = std::numeric_limits<double>::infinity();
    double bestDecompress = std::numeric_limits<double>::infinity();
    for (int round = 0; round < rounds; round++) {
        double start = now();
        for (size_t index = 0; index < chunks; index++) {
            size_t offset = index * chunk;
            size_t length = std::min(count, offset + chunk) - offset;
            snappy::RawCompress(input.data() + offset, length, compressed + index * slot, &sizes[index]);
        }
        bestCompress = std::min(bestCompress, now() - start);
        double decodeStart = now();
        for (size_t index = 0; index < chunks; index++) {
            if (!snappy::RawUncompress(compressed + index * slot, sizes[index], restored + index * chunk)) {
                std::fprintf(stderr, "bench-snappy: chunk %zu does not decode\n", index);
                return 1;
            }
        }
        bestDecompress = std::min(bestDecompress, now() - decodeStart);
    }
    if (std::memcmp(restored, input.data(), count) != 0) {
        std::fprintf(stderr, "bench-snappy: round trip differs\n");
        return 1;
    }
    size_t total = 0;
    for (size_t size : sizes) total += size;
    double megabytes = double(count) / 1e6;
    std::printf(
        "{\"codec\": \"libsnappy %d.%d.%d\", \"input_bytes\": %zu, \"compressed_bytes\": %zu, \"ratio\": %.6f, "
        "\"compress_MBps\": %.3f, \"decompress_MBps\": %.3f}\n",
        SNAPPY_MAJOR, SNAPPY_MINOR, SNAPPY_PATCHLEVEL, count, total, count ? double(total) / double(count) : 0.0,
        megabytes / bestCompress, megabytes / bestDecompress);
    std::free(compressed);
    std::free(restored);
    return 0;
}
