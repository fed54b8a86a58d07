"""Where one session's wall time goes: reads `perf script` output of the tracepoints that
bench/session-cost --timeline records and prints, phase by phase, the median wall time and
how much of it the proxy process itself was on a CPU; the rest it spent waiting for others
(the launcher, the DNS server, the backend, the client, the previous session's end).

    perf script -F comm,pid,tid,time,event,trace | python3 timeline.py BINARY_NAME BACKEND_PID
"""

import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*(.+?)\s+(-?\d+)/(-?\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")

# The marks of a session, in the order they happen; a binary that skips a step (a literal
# address needs no DNS) simply has no mark for it, and its phase joins the next.
MARKS = [
    ("connect", "the client connects"),
    ("exec", "the proxy is exec'd (launcher: accept, fork, exec)"),
    ("query", "first DNS query sent (start-up, resolv.conf, runtime, resolver)"),
    ("answer", "last DNS answer read"),
    ("backend", "connect(2) to the backend called"),
    ("splice", "first byte relayed (connect, relay set-up)"),
    ("echo", "the client reads the echo (via the backend)"),
    ("exit", "exit_group (the session's end: EOFs, close, log)"),
    ("exiting", "the kernel's exit begins"),
    ("gone", "off the CPU for good (memory and files released)"),
]


def events(stream):
    for line in stream:
        match = LINE.match(line)
        if match:
            comm, pid, _tid, time, event, trace = match.groups()
            yield comm.strip(), int(pid), float(time) * 1e6, event.split(":")[-1], trace


def field(trace, name):
    match = re.search(rf"\b{name}=(\S+)", trace)
    return match.group(1) if match else None


def sessions(stream, binary, backend):
    """Each proxy process's marks and the intervals it spent on a CPU."""
    marks = defaultdict(dict)
    running = {}
    on_cpu = defaultdict(list)
    client_connects = []
    # The client is sequential (connect, send, read, close): a read belongs to the session
    # of the connect before it, whose proxy is the next one exec'd.
    session_of_connect = {}
    for comm, pid, t, event, trace in events(stream):
        if event == "sched_switch":
            prev, state, nxt = int(field(trace, "prev_pid")), field(trace, "prev_state"), int(field(trace, "next_pid"))
            if prev in running:
                on_cpu[prev].append((running.pop(prev), t))
                if state in ("Z", "X") and "exit" in marks[prev]:
                    marks[prev].setdefault("gone", t)
            if nxt in marks and "gone" not in marks[nxt]:
                running[nxt] = t
            continue
        if comm == "dynbench" and pid != backend:
            if event == "sys_enter_connect":
                client_connects.append(t)
            elif event == "sys_exit_recvfrom" and client_connects:
                proxy = session_of_connect.get(client_connects[-1])
                if proxy is not None:
                    marks[proxy].setdefault("echo", t)
            continue
        if event == "sched_process_exec" and comm == binary[:15]:
            marks[pid] = {"exec": t}
            running[pid] = t
            if client_connects and client_connects[-1] not in session_of_connect:
                marks[pid]["connect"] = client_connects[-1]
                session_of_connect[client_connects[-1]] = pid
            continue
        mark = marks.get(pid)
        if mark is None:
            continue
        if event == "sys_enter_sendto":
            mark.setdefault("query", t)
        elif event == "sys_exit_recvfrom" and "backend" not in mark:
            mark["answer"] = t
        elif event == "sys_enter_connect":
            mark.setdefault("backend", t)
        elif event == "sys_enter_splice":
            mark.setdefault("splice", t)
        elif event == "sys_enter_exit_group":
            mark["exit"] = t
        elif event == "sched_process_exit":
            mark["exiting"] = t
    return marks, on_cpu


def busy_between(intervals, start, end):
    """How long the process was on a CPU between start and end."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)


def main():
    binary, backend = sys.argv[1], int(sys.argv[2])
    marks, on_cpu = sessions(sys.stdin, binary, backend)
    complete = [pid for pid, mark in marks.items() if "gone" in mark and "connect" in mark]
    # The first sessions warm caches up and the last may be cut off by the trace's end.
    complete = sorted(complete)[5:]
    if not complete:
        sys.exit("bench/timeline.py: no complete session in the trace")
    phases = defaultdict(lambda: ([], []))
    for pid in complete:
        mark = marks[pid]
        present = [(key, mark[key]) for key, _ in MARKS if key in mark]
        for (_, start), (key, end) in zip(present, present[1:]):
            phases[key][0].append(end - start)
            phases[key][1].append(busy_between(on_cpu[pid], start, end))
        if "echo" in mark:
            phases["setup"][0].append(mark["echo"] - mark["connect"])
            phases["setup"][1].append(busy_between(on_cpu[pid], mark["connect"], mark["echo"]))
    print(f"{len(complete)} sessions of {binary}; medians in µs since the client's connect")
    print(f"{'wall':>7} {'proxy on CPU':>13}  until")
    for key, label in MARKS[1:]:
        if key in phases:
            wall, busy = phases[key]
            print(f"{statistics.median(wall):7.0f} {statistics.median(busy):13.0f}  {label}")
    if "setup" in phases:
        wall, busy = phases["setup"]
        print(f"{statistics.median(wall):7.0f} {statistics.median(busy):13.0f}  "
              "setup latency: connect to echo, and the proxy's CPU within it")


if __name__ == "__main__":
    main()
