// workload: kernel state that Volatility 3 plugins look for and a small guest lacks, held until
// killed. Built static by test_symbols.sh (gcc -static) and run in the guest as root:
//   - an eBPF program, named avml_workload (linux.ebpf.EBPF walks prog_idr);
//   - a perf event with that program attached (linux.tracing.perf_events.PerfEvents lists only
//     events that have a BPF program);
//   - an anonymous mapping that is writable and executable, with bytes in it
//     (linux.malware.malfind.Malfind);
//   - a child that asked to be traced and stopped (linux.ptrace.Ptrace: tracer and tracee).
// Prints "ready" on stdout once all of it is in place; any failure exits non-zero naming the call.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(void) {
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) die("mmap PROT_READ|PROT_WRITE|PROT_EXEC");
    memset(code, 0x90, 64);  // nop sled, then ret
    code[64] = 0xc3;

    // r0 = 0; exit: the smallest program the verifier accepts.
    struct bpf_insn instructions[2] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr load;
    memset(&load, 0, sizeof load);
    load.prog_type = BPF_PROG_TYPE_PERF_EVENT;
    load.insns = (unsigned long)instructions;
    load.insn_cnt = 2;
    load.license = (unsigned long)"GPL";
    strncpy(load.prog_name, "avml_workload", sizeof load.prog_name - 1);
    int program = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
    if (program < 0) die("bpf(BPF_PROG_LOAD)");

    struct perf_event_attr attributes;
    memset(&attributes, 0, sizeof attributes);
    attributes.size = sizeof attributes;
    attributes.type = PERF_TYPE_SOFTWARE;
    // Page faults are counted by the "software" PMU, which has a name on every kernel; cpu-clock's
    // PMU has none on 5.10 (6.12 names it), and PerfEvents skips events whose PMU name it cannot read.
    attributes.config = PERF_COUNT_SW_PAGE_FAULTS;
    attributes.sample_period = 1000000;
    int event = (int)syscall(SYS_perf_event_open, &attributes, 0, -1, -1, 0);
    if (event < 0) die("perf_event_open");
    if (ioctl(event, PERF_EVENT_IOC_SET_BPF, program) != 0) die("ioctl PERF_EVENT_IOC_SET_BPF");

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) die("ptrace(PTRACE_TRACEME)");
        raise(SIGSTOP);
        for (;;) pause();
    }
    int status;
    if (waitpid(child, &status, WUNTRACED) != child || !WIFSTOPPED(status)) die("waitpid for the traced child");
    printf("ready: bpf program fd %d, perf event fd %d, rwx mapping at %p, traced child %d\n", program, event,
           (void *)code, (int)child);
    fflush(stdout);
    for (;;) pause();
}
