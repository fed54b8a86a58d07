#!/usr/bin/env python3
"""dynproxy's benchmark: a direct connection, socat in inetd mode, systemd-socket-proxyd and
dynproxy (inetd style and fd-3 style), measured side by side in one run.

Runs inside private network and mount namespaces (bench/run sets them up): a dnsmasq on
127.0.0.1:53 answers a name per proxy, /etc/resolv.conf points every proxy at it, and the
compiled backend and load generator (dynbench) do the talking. Measurements are interleaved
(A B C D A B C D ...) so that drift on a shared machine hits every contender alike.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DYNPROXY = os.environ.get("DYNPROXY_BINARY", os.path.join(ROOT, "target/release/dynproxy"))
DYNBENCH = os.environ.get("DYNBENCH_BINARY", os.path.join(HERE, "target/release/dynbench"))
PROXYD = "/lib/systemd/systemd-socket-proxyd"
BACKEND = "127.0.0.1:9000"
GIB = 1 << 30
MIB = 1 << 20
ALL_PARTS = "latency,rate,throughput,memory,many"
CPU_GROUP = 10  # sessions per CPU reading in the latency part


class Contender:
    """One way for a client to reach the backend."""

    def __init__(self, name, port, command, proxy=True):
        self.name = name
        self.proxy = proxy  # False for the floor, which talks to no backend
        self.dns_name = f"{name}.bench.test" if command and proxy else None
        self.address = f"127.0.0.1:{port}" if command else BACKEND
        self.command = command  # None: direct to the backend
        self.cgroup = None
        self.launcher = None
        self.per_connection = bool(command) and "--accept" in command

    def start(self, cgroup_root, log_dir):
        if not self.command:
            return
        self.cgroup = os.path.join(cgroup_root, self.name)
        os.makedirs(self.cgroup, exist_ok=True)
        log = open(os.path.join(log_dir, f"{self.name}.log"), "w")
        # The launcher and every proxy it starts live in the contender's own cgroup.
        self.launcher = subprocess.Popen(
            ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup] + self.command,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_until(lambda: "Listening on" in open(log.name).read(), f"{self.name} to listen")

    def cpu_seconds(self):
        """CPU of the proxy processes: the cgroup's total, less the launcher's own when it
        starts one proxy per connection (without --accept it execs the proxy itself)."""
        if not self.cgroup:
            return 0.0
        with open(os.path.join(self.cgroup, "cpu.stat")) as f:
            usage = int(re.search(r"usage_usec (\d+)", f.read()).group(1)) / 1e6
        if not self.per_connection:
            return usage
        # schedstat's run time is in nanoseconds; /proc/PID/stat's ticks (10 ms) would swamp
        # a reading taken every few sessions.
        with open(f"/proc/{self.launcher.pid}/schedstat") as f:
            launcher = int(f.read().split()[0]) / 1e9
        return usage - launcher

    def processes(self):
        """The proxy processes: all of the cgroup's but a per-connection launcher."""
        if not self.cgroup:
            return []
        with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
        return [p for p in pids if not (self.per_connection and p == self.launcher.pid)]

    def sessions(self):
        """Per-connection processes still running (socket-proxyd has none: it is one process)."""
        return self.processes() if self.per_connection else []

    def stop(self):
        if self.launcher:
            for pid in self.processes() + [self.launcher.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.launcher.wait()
            wait_until(lambda: not self.processes(), f"{self.name}'s processes to end")
            os.rmdir(self.cgroup)


def contenders():
    """Each proxy asks DNS for a name of its own (NAME.bench.test), to count its lookups."""
    inetd = ["systemd-socket-activate", "--accept", "--inetd", "--listen"]
    target = "{}.bench.test:9000".format
    return [
        Contender("direct", 9000, None),
        Contender("socat-inetd", 9101,
                  inetd + ["127.0.0.1:9101", "socat", "STDIO", "TCP:" + target("socat-inetd")]),
        Contender("socket-proxyd", 9102,
                  ["systemd-socket-activate", "--listen", "127.0.0.1:9102", PROXYD, target("socket-proxyd")]),
        Contender("dynproxy", 9103, inetd + ["127.0.0.1:9103", DYNPROXY, target("dynproxy")]),
        # Not a proxy: a static program that only copies stdin to stdout, started the same way,
        # shows what the process-per-connection model costs before any proxying.
        Contender("floor", 9105, inetd + ["127.0.0.1:9105", DYNBENCH, "stdio-echo"], proxy=False),
        Contender("dynproxy-fd3", 9104,
                  ["systemd-socket-activate", "--accept", "--listen", "127.0.0.1:9104", DYNPROXY,
                   target("dynproxy-fd3")]),
    ]


def read_from_disk(paths):
    """Drops each executable from the page cache, so that every contender runs from a copy
    read back from disk, as after a reboot. A binary the build has just written starts
    faster than one that exec's page faults read back from disk: 4–8% less CPU per dynproxy
    session in alternating `bench/session-cost` runs (docs/bench-history.md) — a head start the
    system's binaries do not get."""
    for path in filter(None, paths):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cgroup_hierarchy():
    """The cgroup2 hierarchy: /sys/fs/cgroup/unified on hybrid hosts, else /sys/fs/cgroup."""
    return next(p for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
                if os.path.exists(os.path.join(p, "cgroup.procs")))


def wait_until(check, what, seconds=30):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(0.02)


def dynbench(*args, **kwargs):
    out = subprocess.run([DYNBENCH] + [str(a) for a in args], capture_output=True, text=True,
                         check=True, **kwargs)
    return json.loads(out.stdout)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(values):
    return {"p50": statistics.median(values), "p99": percentile(values, 99), "n": len(values)}


def kernel_kib():
    """Kernel memory that grows with sessions: slab (sockets, pipes, files), stacks, page tables."""
    with open("/proc/meminfo") as f:
        info = dict((line.split(":")[0], int(line.split()[1])) for line in f)
    return info["Slab"] + info["KernelStack"] + info["PageTables"]


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += int(re.search(r"^Pss:\s+(\d+)", f.read(), re.M).group(1))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def low_percentile(values, p):
    """For rates, where the slow tail is the low end: the value that p% of samples reach."""
    return percentile(values, 100 - p)


def measure_latency(cs, rounds, per_round, results):
    """Sequential sessions; CPU is read after every group of CPU_GROUP sessions has ended,
    which gives CPU per connection a distribution too."""
    samples = {c.name: [] for c in cs}
    cpu = {c.name: [] for c in cs}
    for _ in range(rounds):
        for c in cs:
            for _ in range(per_round // CPU_GROUP):
                before = c.cpu_seconds()
                out = dynbench("latency", c.address, CPU_GROUP)
                assert out["errors"] == 0, f"{c.name}: {out['errors']} failed connections"
                samples[c.name] += out["micros"]
                wait_until(lambda: not c.sessions(), f"{c.name} sessions to end")
                cpu[c.name].append((c.cpu_seconds() - before) * 1e6 / CPU_GROUP)
    for c in cs:
        results[c.name]["latency_us"] = summary(samples[c.name])
        if c.command:
            results[c.name]["cpu_us_per_connection"] = summary(cpu[c.name])


def measure_rate(cs, concurrency, seconds, rounds, results):
    """Connections/s per round (its median over rounds is the figure), and how long each
    connection took under that load (p50, p99)."""
    runs = {c.name: [] for c in cs}
    micros = {c.name: [] for c in cs}
    for _ in range(rounds):
        for c in cs:
            out = dynbench("rate", c.address, concurrency, seconds)
            assert out["errors"] == 0, f"{c.name}: {out['errors']} failed connections at c={concurrency}"
            runs[c.name].append(out["connections"] / out["seconds"])
            micros[c.name] += out["micros"]
            wait_until(lambda: not c.sessions(), f"{c.name} sessions to end")
    for c in cs:
        results[c.name][f"rate_c{concurrency}"] = {
            "p50": statistics.median(runs[c.name]), "runs": runs[c.name],
            "connection_us": summary(micros[c.name])}


def measure_throughput(cs, size, rounds, results):
    """Rate of each transfer (p50 over rounds) and of every INTERVAL-sized slice after the
    first (p99: the slow tail, 99% of slices were at least this fast; the first slice holds
    the connection and fills the buffers on the way). CPU per GiB of every transfer."""
    cs = [c for c in cs if c.proxy]
    cpu = {c.name: [] for c in cs}
    for kind in ("upload", "download", "echo"):
        slices = {c.name: [] for c in cs}
        runs = {c.name: [] for c in cs}
        for _ in range(rounds):
            for c in cs:
                before = c.cpu_seconds()
                out = dynbench(kind, c.address, size)
                used = c.cpu_seconds() - before
                moved = size * (2 if kind == "echo" else 1)
                runs[c.name].append(out["bytes"] / MIB / out["seconds"])
                slices[c.name] += [out["interval_bytes"] / MIB / s for s in out["intervals"][1:]]
                cpu[c.name].append(used / (moved / GIB))
        for c in cs:
            results[c.name][f"{kind}_mib_s"] = {
                "p50": statistics.median(runs[c.name]), "runs": runs[c.name],
                "p99": low_percentile(slices[c.name] or runs[c.name], 99), "slices": len(slices[c.name])}
    for c in cs:
        if c.command:
            results[c.name]["cpu_s_per_gib"] = {**summary(cpu[c.name]), "runs": cpu[c.name]}


def measure_memory(cs, sessions, results):
    """PSS of each proxy process (one per session, or one for all) plus the kernel memory
    the held sessions added, per session. The kernel's share cannot be split by session, so
    its mean is added to each process's PSS for p50 and p99."""
    for c in cs:
        if not c.command:
            continue
        baseline = kernel_kib()
        holder = subprocess.Popen([DYNBENCH, "hold", c.address, str(sessions)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        held = json.loads(holder.stdout.readline())
        assert held["failed"] == 0, f"{c.name}: {held['failed']} sessions failed"
        time.sleep(0.5)  # let freed memory settle before reading it
        pss = [pss_kib([pid]) for pid in c.processes()]
        kernel = (kernel_kib() - baseline) / sessions
        holder.stdin.close()
        holder.wait()
        wait_until(lambda: not c.sessions(), f"{c.name} sessions to end", 60)
        per_session = [p + kernel for p in pss] if c.per_connection else [sum(pss) / sessions + kernel]
        results[c.name]["memory_kib_per_session"] = {
            "pss": sum(pss) / sessions, "kernel": kernel, "total": sum(pss) / sessions + kernel,
            "p50": statistics.median(per_session), "p99": percentile(per_session, 99)}


def measure_many(c, sessions, results):
    holder = subprocess.Popen([DYNBENCH, "hold", c.address, str(sessions)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    held = json.loads(holder.stdout.readline())
    running = len(c.processes())
    holder.stdin.close()
    holder.wait()
    wait_until(lambda: not c.sessions(), f"{c.name} sessions to end", 120)
    results[c.name]["concurrent_sessions"] = {"asked": sessions, "held": held["held"],
                                              "failed": held["failed"], "processes": running}


def dns_queries(log_path, cs, connections):
    """Queries per connection each proxy made (A and AAAA count as one lookup each)."""
    with open(log_path) as f:
        log = f.read()
    out = {}
    for c in cs:
        if c.dns_name:
            queries = len(re.findall(rf"query\[A\] {re.escape(c.dns_name)} ", log))
            out[c.name] = queries / connections
    return out


def ratio(results, metric, a, b, key="p50"):
    return results[a][metric][key] / results[b][metric][key]


def targets(r, partial=False):
    """The benchmark issue's targets, each (description, value, limit, passed)."""
    mem = lambda n: r[n]["memory_kib_per_session"]["total"]
    rows = [
        ("setup latency p50 / socat-inetd", lambda: ratio(r, "latency_us", "dynproxy", "socat-inetd"), "<= 0.35"),
        ("connections/s c=8 / socat-inetd", lambda: ratio(r, "rate_c8", "dynproxy", "socat-inetd"), ">= 3"),
        ("CPU per connection / socat-inetd",
         lambda: ratio(r, "cpu_us_per_connection", "dynproxy", "socat-inetd"), "<= 0.35"),
    ]
    for kind in ("upload", "download", "echo"):
        rows.append((f"{kind} throughput / direct",
                     lambda kind=kind: ratio(r, f"{kind}_mib_s", "dynproxy", "direct"), ">= 0.6"))
        rows.append((f"{kind} throughput / socket-proxyd",
                     lambda kind=kind: ratio(r, f"{kind}_mib_s", "dynproxy", "socket-proxyd"), ">= 1.2"))
    rows.append(("relay CPU per GiB / socket-proxyd",
                 lambda: ratio(r, "cpu_s_per_gib", "dynproxy", "socket-proxyd"), "<= 0.8"))
    rows.append(("memory per held session / socat-inetd", lambda: mem("dynproxy") / mem("socat-inetd"), "<= 0.3"))
    many = r.get("dynproxy", {}).get("concurrent_sessions")
    if many:
        rows.append((f"{many['asked']} concurrent sessions held", lambda: many["held"], f">= {many['asked']}"))
    computed = []
    for text, value, limit in rows:
        try:  # a partial run (--only, --parts) checks what it measured
            computed.append((text, value(), limit))
        except KeyError:
            if not partial:
                raise
    rows = computed
    checked = []
    for text, value, limit in rows:
        op, bound = limit.split()
        passed = value <= float(bound) if op == "<=" else value >= float(bound)
        checked.append({"target": text, "value": round(value, 3), "limit": limit, "passed": passed})
    return checked


def table(results, names):
    lines = []
    head = f"{'metric':34}" + "".join(f"{n:>15}" for n in names)
    lines.append(head)
    lines.append("-" * len(head))

    def row(label, get, fmt):
        cells = []
        for n in names:
            try:
                cells.append(format(get(results[n]), fmt))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"{label:34}" + "".join(f"{c:>15}" for c in cells))

    row("setup latency p50 (us)", lambda x: x["latency_us"]["p50"], ".0f")
    row("setup latency p99 (us)", lambda x: x["latency_us"]["p99"], ".0f")
    for c in (8, 32):
        row(f"connections/s c={c}", lambda x: x[f"rate_c{c}"]["p50"], ".0f")
        row(f"  c={c}: one connection p50 (us)", lambda x: x[f"rate_c{c}"]["connection_us"]["p50"], ".0f")
        row(f"  c={c}: one connection p99 (us)", lambda x: x[f"rate_c{c}"]["connection_us"]["p99"], ".0f")
    row("proxy CPU per connection p50 (us)", lambda x: x["cpu_us_per_connection"]["p50"], ".0f")
    row("proxy CPU per connection p99 (us)", lambda x: x["cpu_us_per_connection"]["p99"], ".0f")
    for kind, label in (("upload", "client->backend"), ("download", "backend->client"),
                        ("echo", "echo, each way")):
        row(f"{label} p50 (MiB/s)", lambda x: x[f"{kind}_mib_s"]["p50"], ".0f")
        row(f"{label} p99 (MiB/s)", lambda x: x[f"{kind}_mib_s"]["p99"], ".0f")
    row("relay CPU per GiB p50 (s)", lambda x: x["cpu_s_per_gib"]["p50"], ".3f")
    row("relay CPU per GiB p99 (s)", lambda x: x["cpu_s_per_gib"]["p99"], ".3f")
    row("memory/session p50 (KiB)", lambda x: x["memory_kib_per_session"]["p50"], ".0f")
    row("memory/session p99 (KiB)", lambda x: x["memory_kib_per_session"]["p99"], ".0f")
    row("memory/session mean: PSS (KiB)", lambda x: x["memory_kib_per_session"]["pss"], ".0f")
    row("memory/session mean: kernel (KiB)", lambda x: x["memory_kib_per_session"]["kernel"], ".0f")
    row("memory/session mean: total (KiB)", lambda x: x["memory_kib_per_session"]["total"], ".0f")
    return "\n".join(lines)


def ratios(results, names, subject="dynproxy"):
    """Each metric's median for `subject` divided by every other contender's: below 1 is
    less time, CPU or memory; above 1 more connections or throughput."""
    metrics = [("setup latency p50", "latency_us", "p50"),
               ("connections/s c=8", "rate_c8", "p50"),
               ("connections/s c=32", "rate_c32", "p50"),
               ("proxy CPU per connection p50", "cpu_us_per_connection", "p50"),
               ("client->backend p50", "upload_mib_s", "p50"),
               ("backend->client p50", "download_mib_s", "p50"),
               ("echo, each way p50", "echo_mib_s", "p50"),
               ("relay CPU per GiB p50", "cpu_s_per_gib", "p50"),
               ("memory/session mean: total", "memory_kib_per_session", "total")]
    others = [n for n in names if n != subject]
    head = f"{subject + ' / contender':34}" + "".join(f"{n:>15}" for n in others)
    lines = [head, "-" * len(head)]
    for label, metric, key in metrics:
        cells = []
        for n in others:
            try:
                cells.append(f"{ratio(results, metric, subject, n, key):.2f}")
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        lines.append(f"{label:34}" + "".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def plot(results, names, checked, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # (title, p50, p99): bars are medians, a black tick marks the p99 where there is one.
    panels = [
        ("setup latency (µs, lower is better)", lambda x: x["latency_us"]["p50"],
         lambda x: x["latency_us"]["p99"]),
        ("connections/s at concurrency 8", lambda x: x["rate_c8"]["p50"], None),
        ("proxy CPU per connection (µs)", lambda x: x["cpu_us_per_connection"]["p50"],
         lambda x: x["cpu_us_per_connection"]["p99"]),
        ("throughput client→backend (MiB/s)", lambda x: x["upload_mib_s"]["p50"],
         lambda x: x["upload_mib_s"]["p99"]),
        ("throughput backend→client (MiB/s)", lambda x: x["download_mib_s"]["p50"],
         lambda x: x["download_mib_s"]["p99"]),
        ("memory per held session (KiB, PSS + kernel)",
         lambda x: x["memory_kib_per_session"]["p50"], lambda x: x["memory_kib_per_session"]["p99"]),
    ]
    colours = {"direct": "#999999", "socat-inetd": "#d62728", "socket-proxyd": "#ff7f0e",
               "dynproxy": "#1f77b4", "dynproxy-fd3": "#6baed6", "floor": "#2ca02c"}

    def value(get, n):
        try:
            return get(results[n]) or 0
        except (KeyError, TypeError):
            return 0

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, p50, p99) in zip(axes.flat, panels):
        values = [value(p50, n) for n in names]
        bars = ax.bar(range(len(names)), values, color=[colours[n] for n in names])
        if p99:
            ticks = [(i, value(p99, n)) for i, n in enumerate(names) if value(p99, n)]
            ax.scatter([i for i, _ in ticks], [v for _, v in ticks], marker="_", s=300,
                       color="black", label="p99", zorder=3)
            ax.legend(fontsize=8, loc="upper right")
        ax.set_title(title, fontsize=11)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, fontsize=9)
        for bar, v in zip(bars, values):
            if not v:  # not measured for this contender
                continue
            ax.annotate(f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    passed = sum(1 for t in checked if t["passed"])
    fig.suptitle(f"dynproxy benchmark ({platform.node()}, {os.cpu_count()} cores) — "
                 f"targets met: {passed}/{len(checked)}", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name, cmd in (("socat", ["socat", "-V"]), ("systemd", ["systemctl", "--version"])):
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        versions[name] = out.splitlines()[1 if name == "socat" else 0].strip() if out else "?"
    dyn = subprocess.run([DYNPROXY, "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dynproxy": dyn, **versions}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench/out"), help="where results go")
    parser.add_argument("--plot", default=None, help="PNG path (default: OUT/bench.png)")
    parser.add_argument("--only", default=None,
                        help="comma-separated contenders to run (default: all); for profiling")
    parser.add_argument("--parts", default=ALL_PARTS,
                        help="comma-separated measurements to run (default: all)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    known = {c.name for c in contenders()}
    only = set(args.only.split(",")) if args.only else known
    for unknown, kind, choices in ((only - known, "contender", known),
                                   (parts - set(ALL_PARTS.split(",")), "part", ALL_PARTS.split(","))):
        if unknown:
            parser.error(f"unknown {kind} {', '.join(sorted(unknown))} (choose from {', '.join(sorted(choices))})")
    partial = only != known or parts != set(ALL_PARTS.split(","))
    quick = args.quick
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dynbench-")
    os.chmod(work, 0o755)

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = os.path.join(work, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
    subprocess.run(["mount", "--bind", resolv, os.path.realpath("/etc/resolv.conf")], check=True)

    cs = contenders()
    if args.only:
        cs = [c for c in cs if c.name in only]
    names = [c.name for c in cs]
    dns_log = os.path.join(work, "dnsmasq.log")
    records = [f"--host-record={c.dns_name},127.0.0.1" for c in cs if c.dns_name]
    dnsmasq = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--user=root", "--port=53", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/bench.test/", "--log-queries",
         f"--log-facility={dns_log}", "--host-record=ready.bench.test,127.0.0.1"] + records)
    read_from_disk([DYNPROXY, DYNBENCH, PROXYD, shutil.which("socat"),
                    shutil.which("systemd-socket-activate")])
    backend = subprocess.Popen([DYNBENCH, "backend", BACKEND])
    cgroup_root = os.path.join(cgroup_hierarchy(), f"dynbench-{os.getpid()}")
    os.makedirs(cgroup_root)
    try:
        wait_until(lambda: subprocess.run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9000"],
                                          capture_output=True).returncode == 0, "the backend")
        wait_until(lambda: subprocess.run(["getent", "hosts", "ready.bench.test"],
                                          capture_output=True).returncode == 0, "dnsmasq")
        for c in cs:
            c.start(cgroup_root, work)
        results = {n: {} for n in names}
        rounds = 3 if quick else 6
        per_round = 20 if quick else 60
        queries = {}
        if "latency" in parts:
            print(f"bench: setup latency, {rounds} rounds x {per_round} connections each", file=sys.stderr)
            measure_latency(cs, rounds, per_round, results)
            queries = dns_queries(dns_log, cs, rounds * per_round)
        for concurrency in (8, 32) if "rate" in parts else ():
            print(f"bench: connections/s at concurrency {concurrency}", file=sys.stderr)
            measure_rate(cs, concurrency, 1 if quick else 2, 1 if quick else 3, results)
        size = 64 * MIB if quick else GIB
        if "throughput" in parts:
            print(f"bench: throughput, {size // MIB} MiB per transfer", file=sys.stderr)
            measure_throughput(cs, size, 1 if quick else 3, results)
        sessions = 200
        if "memory" in parts:
            print(f"bench: memory with {sessions} sessions held", file=sys.stderr)
            measure_memory(cs, sessions, results)
        many = 500 if quick else 2000
        if "many" in parts and "dynproxy" in names:
            print(f"bench: {many} concurrent dynproxy sessions", file=sys.stderr)
            measure_many(next(c for c in cs if c.name == "dynproxy"), many, results)
    finally:
        for c in cs:
            c.stop()
        backend.kill()
        dnsmasq.kill()
        os.rmdir(cgroup_root)
        if sys.exc_info()[0] is None:
            shutil.rmtree(work, ignore_errors=True)

    checked = targets(results, partial)
    text = table(results, names)
    if "dynproxy" in names:
        text += "\n\n" + ratios(results, names)
    if partial:
        # A partial run is for tuning: it prints, and leaves the last full run's files alone.
        print("(a partial run: nothing written to " + args.out + ")")
    else:
        report = {"machine": machine(), "quick": quick, "results": results,
                  "dns_lookups_per_connection": queries, "targets": checked}
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(args.out, "table.txt"), "w") as f:
            f.write(text + "\n")
    print(text)
    print()
    if queries:
        print("DNS lookups (A queries) per connection, from dnsmasq's log: " +
              ", ".join(f"{n} {q:.2f}" for n, q in queries.items()))
    else:
        print("DNS lookups per connection: not checked (they are counted during the latency part)")
    print()
    for t in checked:
        print(f"{'PASS' if t['passed'] else 'FAIL'}  {t['target']:45} {t['value']:>10}  (target {t['limit']})")
    if not partial:
        plot(results, names, checked, args.plot or os.path.join(args.out, "bench.png"))
    for n, q in queries.items():
        assert 0.99 <= q <= 1.01, f"{n} asked DNS {q:.2f} times per connection, not once"


if __name__ == "__main__":
    main()
