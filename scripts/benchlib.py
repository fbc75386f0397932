"""Helpers that bench.py and the bench_guest modules share, so that each is written once.

The repository's paths, logging to stderr, the list of problems that makes a benchmark exit 1,
running a command into a log file, the command line as the report prints it, and ForeignLoad
(how much CPU other processes took during a measured phase: the noise beside the numbers).
Stdlib only; imported with a plain `import benchlib` from the scripts/ folder.
"""
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST = os.path.join(ROOT, "tests", "guest")  # the QEMU test guest bench_guest boots

program = "bench"  # the name in front of problems on stderr; each entry point sets its own
problems = []  # things that could not run (or did not check out); any makes the exit status 1


def log(message):
    print(message, file=sys.stderr, flush=True)


def problem(message):
    problems.append(message)
    log(f"{program}: {message}")


def command_line():
    """This run's command line, the script's path relative to the working directory when it was."""
    return shlex.join([os.path.relpath(sys.argv[0]) if not os.path.isabs(sys.argv[0]) else sys.argv[0],
                       *sys.argv[1:]])


def run_logged(command, logfile, **kwargs):
    """Runs command with its output appended to logfile; on failure raises with the log's tail."""
    with open(logfile, "a") as f:
        f.write(f"$ {shlex.join(command)}\n")
        f.flush()
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, **kwargs)
    if result.returncode != 0:
        with open(logfile, errors="replace") as f:
            tail = "".join(f.readlines()[-15:])
        raise RuntimeError(f"`{shlex.join(command)}` exited {result.returncode}; last lines of {logfile}:\n{tail}")


def read_first_line(path, default="unknown"):
    try:
        with open(path) as f:
            return f.readline().strip() or default
    except OSError:
        return default


class ForeignLoad:
    """CPU time the machine spent outside this benchmark's processes during a phase.

    /proc/stat (all CPUs) minus the CPU time of this process and its waited-for children.
    User time left over is other processes (another build, say): the noise signal.  System
    time left over is mostly kernel threads working for us (the writeback `sync` waits for),
    so it is shown apart.  Steal is time the hypervisor gave to another guest.
    """

    def __init__(self):
        self.stat, self.own, self.wall = self._stat(), self._own(), time.monotonic()

    @staticmethod
    def _stat():
        with open("/proc/stat") as f:
            user, nice, system, _, _, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
        hz = os.sysconf("SC_CLK_TCK")
        return (user + nice) / hz, (system + irq + softirq) / hz, steal / hz

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.children_user, t.system + t.children_system

    def summary(self):
        (user, system, steal), (own_user, own_system) = self._stat(), self._own()
        wall = time.monotonic() - self.wall
        other_user = max(0.0, user - self.stat[0] - (own_user - self.own[0]))
        other_system = max(0.0, system - self.stat[1] - (own_system - self.own[1]))
        cpus = os.cpu_count() or 1
        return (f"other processes' user CPU {other_user:.1f} s ({100 * other_user / (wall * cpus):.0f} % of "
                f"{cpus} CPUs over {wall:.0f} s); kernel time outside our processes {other_system:.1f} s "
                f"(mostly writeback); steal {steal - self.stat[2]:.1f} s")
