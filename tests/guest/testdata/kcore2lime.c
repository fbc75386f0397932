/*
 * kcore2lime: a minimal, independent "honest reader" used to check the QEMU
 * test harness (tests/guest/run.sh + compare.py) without avml.
 *
 *   kcore2lime OUT.lime [all|kernel]
 *
 * Reads the top-level "System RAM" ranges of /proc/iomem (or, with
 * "kernel", only the nested "Kernel code" and "Kernel rodata" ranges) and
 * the PT_LOAD program headers of /proc/kcore (p_paddr = physical address;
 * p_paddr == all-ones means no physical address and is skipped), and writes
 * a LiME image (32-byte headers: magic 0x4C694D45, version 1, start, end
 * inclusive, reserved 0) of every part of those ranges that kcore maps.
 * Parts kcore does not map (e.g. partial pages) are left out.
 *
 * Build: gcc -static -O2 -Wall -o kcore2lime kcore2lime.c
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct range { uint64_t start, end; };           /* end inclusive */
struct seg { uint64_t paddr, size, offset; };

static void die(const char *msg) { perror(msg); exit(1); }

static size_t read_ranges(int kernel_only, struct range *out, size_t max) {
    FILE *f = fopen("/proc/iomem", "r");
    if (!f) die("/proc/iomem");
    char line[512];
    size_t n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        const char *p = line;
        int depth = 0;
        while (*p == ' ') { p++; depth++; }
        uint64_t s, e;
        char name[256];
        if (sscanf(p, "%" SCNx64 "-%" SCNx64 " : %255[^\n]", &s, &e, name) != 3) continue;
        if (kernel_only ? (depth > 0 && (!strcmp(name, "Kernel code") || !strcmp(name, "Kernel rodata")))
                        : (depth == 0 && !strcmp(name, "System RAM"))) {
            out[n].start = s;
            out[n].end = e;
            n++;
        }
    }
    fclose(f);
    return n;
}

static void full_pread(int fd, void *buf, size_t len, off_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, off + done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("pread /proc/kcore");
        done += r;
    }
}

static void full_write(int fd, const void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = write(fd, (const char *)buf + done, len - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("write");
        done += r;
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "all") && strcmp(argv[2], "kernel"))) {
        fprintf(stderr, "usage: %s OUT.lime [all|kernel]\n", argv[0]);
        return 2;
    }
    int kernel_only = argc == 3 && !strcmp(argv[2], "kernel");
    static struct range ranges[256];
    size_t nr = read_ranges(kernel_only, ranges, 256);
    if (nr == 0) { fprintf(stderr, "no ranges found in /proc/iomem\n"); return 1; }

    int kc = open("/proc/kcore", O_RDONLY);
    if (kc < 0) die("/proc/kcore");
    Elf64_Ehdr eh;
    full_pread(kc, &eh, sizeof eh, 0);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64) {
        fprintf(stderr, "/proc/kcore is not ELF64\n");
        return 1;
    }
    uint64_t phnum = eh.e_phnum;
    if (phnum == PN_XNUM) {  /* real count in section header 0's sh_info */
        Elf64_Shdr sh;
        full_pread(kc, &sh, sizeof sh, eh.e_shoff);
        phnum = sh.sh_info;
    }
    Elf64_Phdr *ph = calloc(phnum, sizeof *ph);
    struct seg *segs = calloc(phnum, sizeof *segs);
    if (!ph || !segs) die("calloc");
    full_pread(kc, ph, phnum * sizeof *ph, eh.e_phoff);
    size_t ns = 0;
    for (uint64_t i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_LOAD || ph[i].p_paddr == UINT64_MAX || ph[i].p_memsz == 0) continue;
        segs[ns].paddr = ph[i].p_paddr;
        segs[ns].size = ph[i].p_memsz;
        segs[ns].offset = ph[i].p_offset;
        ns++;
    }

    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) die(argv[1]);
    enum { BUF = 1 << 20 };
    char *buf = malloc(BUF);
    if (!buf) die("malloc");
    uint64_t total = 0, nrec = 0;
    for (size_t r = 0; r < nr; r++) {
        uint64_t addr = ranges[r].start, end = ranges[r].end;
        while (addr <= end) {
            /* segment containing addr that reaches furthest */
            struct seg *best = NULL;
            uint64_t next = UINT64_MAX;
            for (size_t i = 0; i < ns; i++) {
                uint64_t s = segs[i].paddr, e = segs[i].paddr + segs[i].size - 1;
                if (s <= addr && addr <= e) {
                    if (!best || e > best->paddr + best->size - 1) best = &segs[i];
                } else if (s > addr && s < next) {
                    next = s;
                }
            }
            if (!best) {
                if (next > end) break;
                addr = next;
                continue;
            }
            uint64_t seg_end = best->paddr + best->size - 1;
            uint64_t rend = seg_end < end ? seg_end : end;
            uint64_t hdr[4];
            uint32_t magic_version[2] = { 0x4C694D45u, 1 };
            hdr[0] = addr;
            hdr[1] = rend;
            hdr[2] = 0;
            full_write(out, magic_version, sizeof magic_version);
            full_write(out, hdr, 3 * sizeof(uint64_t));
            for (uint64_t a = addr; a <= rend;) {
                uint64_t len = rend - a + 1 < BUF ? rend - a + 1 : BUF;
                full_pread(kc, buf, len, best->offset + (a - best->paddr));
                full_write(out, buf, len);
                a += len;
            }
            total += rend - addr + 1;
            nrec++;
            fprintf(stderr, "kcore2lime: %#" PRIx64 "-%#" PRIx64 "\n", addr, rend);
            if (rend == UINT64_MAX) break;
            addr = rend + 1;
        }
    }
    if (fsync(out) < 0) die("fsync");
    close(out);
    fprintf(stderr, "kcore2lime: wrote %" PRIu64 " records, %" PRIu64 " bytes of memory\n", nrec, total);
    return 0;
}
