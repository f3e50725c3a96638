#!/usr/bin/env python3
"""Hearty benchmark: the whole system under order, cancel and read load.

`make bench` runs `python3 bench/bench.py --bin-dir build/bin` (extra flags via
BENCH_ARGS). It starts the five services afresh in a temporary folder through
the end-to-end harness (tests/e2e/harness.py) with LOG_LEVEL=warn, then:

  1. prints each service's start-to-ready time and idle RSS;
  2. runs hearty-loadgen in order mode through the gateway (--orders, default
     20,000, at --concurrency, default 100);
  3. cancels a random share of the orders it got (--cancel, default 2,000);
  4. reads orders and mileage views (--reads, default 20,000);
  5. prints per phase the rate, latency p50/p99/max, status counts, the CPU
     each service spent per request, and each service's RSS at the end;
  6. waits (at most --quiet-timeout, 60 s) for the event consumers to catch up
     and checks DESIGN.md's invariants.

Exit status: 0 when the invariants held and every service stayed up, 1 when
they did not, 2 when the system or the load generator could not run. --json
FILE also writes every figure to FILE.
"""
import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

DEFAULT_SERVICES = ("order", "payment", "mileage", "mileage-view", "gateway")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- arguments ---------------------------------------------------------------

def nonnegative(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def parse_args(argv):
    p = argparse.ArgumentParser(description="Benchmark the Hearty services end to end.")
    p.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"),
                   help="folder with the hearty-* executables (default build/bin)")
    p.add_argument("--loadgen", help="load generator (default BIN_DIR/hearty-loadgen)")
    p.add_argument("--orders", type=nonnegative, default=20000, help="orders to place (20000)")
    p.add_argument("--concurrency", type=nonnegative, default=100,
                   help="virtual clients of every phase (100)")
    p.add_argument("--customers", type=nonnegative, default=100, help="distinct customers (100)")
    p.add_argument("--cancel", type=nonnegative, default=2000,
                   help="orders to cancel afterwards, 0 to skip (2000)")
    p.add_argument("--reads", type=nonnegative, default=20000,
                   help="reads afterwards, half orders, half mileage views; 0 to skip (20000)")
    p.add_argument("--duration-max", type=nonnegative, default=120,
                   help="seconds after which a phase stops issuing requests (120)")
    p.add_argument("--timeout-ms", type=nonnegative, default=10000,
                   help="per-request timeout of the load generator (10000)")
    p.add_argument("--quiet-timeout", type=nonnegative, default=60,
                   help="seconds to wait for consumers to catch up (60)")
    p.add_argument("--seed", type=nonnegative, default=1, help="random seed (1)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the services, repeatable (e.g. WORKERS=32)")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = p.parse_args(argv)
    for name in ("orders", "concurrency", "customers", "duration_max", "timeout_ms"):
        if getattr(a, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    for kv in a.env:
        if "=" not in kv or kv.startswith("="):
            p.error("--env wants KEY=VALUE, got %r" % kv)
    a.bin_dir = os.path.abspath(a.bin_dir)
    a.loadgen = os.path.abspath(a.loadgen or os.path.join(a.bin_dir, "hearty-loadgen"))
    return a


# ---- process figures from /proc ----------------------------------------------

def proc_cpu_seconds(pid):
    """User + system CPU seconds of pid so far, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except (OSError, TypeError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    """A kB figure (VmRSS, VmHWM) from /proc/pid/status, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, TypeError, ValueError):
        return None
    return None


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except (OSError, TypeError):
        return False
    return text[text.rindex(")") + 2:].split()[0] not in ("Z", "X")


def machine_cpu():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


# ---- the system --------------------------------------------------------------

class Bench:
    def __init__(self, args, system, names, workdir, figures):
        self.args = args
        self.system = system
        self.names = names
        self.workdir = workdir
        self.figures = figures
        figures.update({"services": {}, "phases": {}, "problems": []})

    # -- service helpers
    def pid(self, name):
        try:
            return self.system.pid(name)
        except Exception:  # noqa: BLE001 - a dead service must not stop the report
            return None

    def rss(self, name):
        try:
            return self.system.rss_kb(name)
        except Exception:  # noqa: BLE001
            return proc_status_kb(self.pid(name), "VmRSS")

    def cpu_snapshot(self):
        return {n: proc_cpu_seconds(self.pid(n)) for n in self.names}

    def problem(self, text):
        self.figures["problems"].append(text)
        print("PROBLEM: " + text)

    # -- phases
    def record_start(self):
        ready = getattr(self.system, "ready_seconds", {}) or {}
        for n in self.names:
            self.figures["services"][n] = {
                "ready_seconds": ready.get(n),
                "idle_rss_kb": self.rss(n),
                "pid": self.pid(n),
            }
        rows = [(n, fmt(s["ready_seconds"], "%.3f s"), fmt(s["idle_rss_kb"], "%d kB"))
                for n, s in self.figures["services"].items()]
        table("Start", ("service", "start to ready", "idle RSS"), rows)

    def loadgen(self, phase, mode, requests, ids_file):
        cmd = [self.args.loadgen, "--url", self.system.url("gateway"), "--mode", mode,
               "--requests", str(requests), "--concurrency", str(self.args.concurrency),
               "--customers", str(self.args.customers),
               "--duration-max", str(self.args.duration_max),
               "--timeout-ms", str(self.args.timeout_ms), "--seed", str(self.args.seed)]
        if ids_file:
            cmd += ["--orders-file", ids_file]
        limit = self.args.duration_max + self.args.timeout_ms / 1000.0 + 30
        cpu0, mach0 = self.cpu_snapshot(), machine_cpu()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        print("\n== %s: %d requests, %d clients ..." % (phase, requests, self.args.concurrency),
              flush=True)
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=limit, check=False, text=True)
        except subprocess.TimeoutExpired:
            raise BenchError("%s: hearty-loadgen ran over %.0f s" % (phase, limit))
        if p.returncode != 0:
            raise BenchError("%s: hearty-loadgen exited %d: %s"
                             % (phase, p.returncode, p.stderr.strip()[-500:]))
        try:
            result = json.loads(p.stdout)
        except ValueError:
            raise BenchError("%s: hearty-loadgen printed no JSON: %r" % (phase, p.stdout[:300]))
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1, mach1 = self.cpu_snapshot(), machine_cpu()
        result["service_cpu_seconds"] = {
            n: (cpu1[n] - cpu0[n]) if cpu0[n] is not None and cpu1[n] is not None else None
            for n in self.names}
        result["loadgen_cpu_seconds"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        busy, total = mach1[0] - mach0[0], mach1[1] - mach0[1]
        result["machine_busy_pct"] = 100.0 * busy / total if total else None
        self.figures["phases"][phase] = result
        print_phase(phase, result)
        return result

    def run_orders(self):
        ids = os.path.join(self.workdir, "order-ids.txt")
        r = self.loadgen("orders", "order", self.args.orders, ids)
        if r["status"].get("201", 0) == 0:
            self.problem("no order was created (status counts %s, samples %s)"
                         % (r["status"], r.get("samples")))
        return ids, r.get("ids_written", 0)

    def run_cancels(self, ids_file):
        with open(ids_file) as f:
            ids = [line.strip() for line in f if line.strip()]
        share = random.Random(self.args.seed).sample(ids, min(self.args.cancel, len(ids)))
        path = os.path.join(self.workdir, "cancel-ids.txt")
        with open(path, "w") as f:
            f.write("".join(i + "\n" for i in share))
        self.loadgen("cancels", "cancel", len(share), path)

    def run_reads(self, ids_file, have_ids):
        self.loadgen("reads", "read", self.args.reads, ids_file if have_ids else None)

    def record_end(self):
        rows = []
        for n in self.names:
            s = self.figures["services"].setdefault(n, {})
            pid = s.get("pid") or self.pid(n)
            s["alive"] = proc_alive(pid)
            s["end_rss_kb"] = self.rss(n) if s["alive"] else None
            s["peak_rss_kb"] = proc_status_kb(pid, "VmHWM")
            if not s["alive"]:
                self.problem("service %s (pid %s) is no longer running" % (n, pid))
            rows.append((n, fmt(s.get("idle_rss_kb"), "%d kB"), fmt(s["end_rss_kb"], "%d kB"),
                         fmt(s["peak_rss_kb"], "%d kB"), "yes" if s["alive"] else "NO"))
        table("Memory", ("service", "idle RSS", "end RSS", "peak RSS", "running"), rows)

    def check(self):
        t0 = time.monotonic()
        quiet = call_list(self.system.wait_quiet, self.args.quiet_timeout)
        waited = time.monotonic() - t0
        inv = call_list(self.system.check_invariants)
        self.figures["quiet"] = {"seconds": waited, "violations": quiet}
        self.figures["invariants"] = {"violations": inv}
        print("\n== Consistency")
        print("consumers caught up: %s after %.2f s"
              % ("yes" if not quiet else "NO", waited))
        for v in quiet[:20]:
            print("  quiet: " + str(v))
        print("invariants held: %s" % ("yes" if not inv else "NO (%d violations)" % len(inv)))
        for v in inv[:20]:
            print("  violation: " + str(v))
        return not quiet and not inv


class BenchError(Exception):
    pass


def call_list(fn, *a):
    """Calls a harness check; an exception becomes a one-item violation list."""
    try:
        out = fn(*a)
    except Exception as e:  # noqa: BLE001 - reported as a violation
        return ["%s raised %s: %s" % (getattr(fn, "__name__", "check"), type(e).__name__, e)]
    if out is None or out is True:
        return []
    if out is False:
        return ["%s returned False" % getattr(fn, "__name__", "check")]
    return list(out)


# ---- output ------------------------------------------------------------------

def fmt(v, spec):
    return "-" if v is None else spec % v


def table(title, head, rows):
    print("\n== " + title)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = "  ".join("%%-%ds" % w if i == 0 else "%%%ds" % w for i, w in enumerate(widths))
    print(line % tuple(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line % tuple(r))


def status_text(status, transport):
    parts = ["%s:%d" % (k, v) for k, v in sorted(status.items())]
    if transport:
        parts.append("transport:%d" % transport)
    return " ".join(parts) or "-"


def print_phase(phase, r):
    """The few lines shown as soon as a phase ends."""
    lat = r["latency_ms"]
    print("%d requests in %.2f s = %.0f req/s (2xx %.0f/s); latency p50 %.2f ms, "
          "p99 %.2f ms, max %.2f ms" % (r["requests"], r["seconds"], r["rate"], ok_rate(r),
                                        lat["p50"], lat["p99"], lat["max"]))
    print("status %s; new connections %d; machine busy %s; loadgen CPU %.2f s"
          % (status_text(r["status"], r["transport_errors"]), r["new_connections"],
             fmt(r["machine_busy_pct"], "%.0f%%"), r["loadgen_cpu_seconds"]))
    routes = r.get("routes", {})
    for route, rr in routes.items():
        if len(routes) > 1:
            print("  %s: %s" % (route, status_text(rr["status"], rr["transport_errors"])))
    for code, text in r.get("samples", {}).items():
        print("  first %s answer: %s" % (code, text[:200]))
    if r["errors"]:
        print("  transport errors: %s" % r["errors"])
    if r.get("abandoned"):
        print("  abandoned at the hard deadline: %d" % r["abandoned"])


def ok_rate(r):
    ok = sum(v for k, v in r["status"].items() if k.startswith("2"))
    return r["rate"] * ok / r["requests"] if r["requests"] else 0.0


def print_summary(figures, names):
    """Throughput and CPU-per-request tables over every phase that ran."""
    phases = figures.get("phases", {})
    rows = []
    for ph, r in phases.items():
        lat = r["latency_ms"]
        rows.append((ph, str(r["requests"]), "%.0f" % r["rate"], "%.0f" % ok_rate(r),
                     "%.2f" % lat["p50"], "%.2f" % lat["p99"], "%.2f" % lat["max"],
                     status_text(r["status"], r["transport_errors"])))
    table("Throughput (%d clients)" % figures["config"]["concurrency"],
          ("phase", "requests", "req/s", "2xx/s", "p50 ms", "p99 ms", "max ms", "status"), rows)
    rows = []
    for n in names:
        row = [n]
        for r in phases.values():
            c = r["service_cpu_seconds"].get(n)
            row.append(fmt(c / r["requests"] * 1e6 if c is not None and r["requests"] else None,
                           "%.0f"))
        rows.append(tuple(row))
    rows.append(tuple(["(loadgen)"] + [
        "%.0f" % (r["loadgen_cpu_seconds"] / r["requests"] * 1e6) if r["requests"] else "-"
        for r in phases.values()]))
    rows.append(tuple(["(machine busy %)"] + [fmt(r["machine_busy_pct"], "%.0f")
                                               for r in phases.values()]))
    table("CPU per request, microseconds", tuple(["service"] + list(phases)), rows)


# ---- main --------------------------------------------------------------------

def service_names(system, harness):
    for cand in (getattr(system, "services", None), getattr(harness, "SERVICES", None)):
        if isinstance(cand, dict):
            cand = list(cand)
        if isinstance(cand, (list, tuple)) and cand and all(isinstance(x, str) for x in cand):
            return list(cand)
    return list(DEFAULT_SERVICES)


def check_inputs(args):
    missing = [p for p in [os.path.join(args.bin_dir, "hearty-" + n) for n in DEFAULT_SERVICES]
               + [args.loadgen] if not os.access(p, os.X_OK)]
    if missing:
        raise BenchError("missing executables (run make first): " + ", ".join(missing))
    if not os.path.exists(os.path.join(ROOT, "tests", "e2e", "harness.py")):
        raise BenchError("tests/e2e/harness.py is missing")


def run(args, workdir, figures):
    """Runs every phase; fills figures as it goes and returns the exit status."""
    import harness  # tests/e2e, on sys.path above

    env = {"LOG_LEVEL": "warn"}
    env.update(kv.split("=", 1) for kv in args.env)
    tmp = os.path.join(workdir, "system")
    os.mkdir(tmp)
    system = harness.System(args.bin_dir, tmp=tmp, env=env)
    try:
        t0 = time.monotonic()
        try:
            system.start(one_by_one=True)
        except Exception as e:  # noqa: BLE001
            raise BenchError("the system did not start: %s: %s" % (type(e).__name__, e))
        print("system started in %.2f s (bin %s)" % (time.monotonic() - t0, args.bin_dir))
        bench = Bench(args, system, service_names(system, harness), workdir, figures)
        bench.record_start()
        ids, got = bench.run_orders()
        if args.cancel and got:
            bench.run_cancels(ids)
        if args.reads:
            bench.run_reads(ids, got > 0)
        print_summary(figures, bench.names)
        o = figures["phases"]["orders"]
        print("\norders/s: %.0f (201 answers: %d of %d, p50 %.2f ms, p99 %.2f ms, max %.2f ms)"
              % (ok_rate(o), o["status"].get("201", 0), o["requests"], o["latency_ms"]["p50"],
                 o["latency_ms"]["p99"], o["latency_ms"]["max"]))
        bench.record_end()
        held = bench.check()
        if not held or figures["problems"]:
            print("\n== Log tails")
            system.dump_logs(out=sys.stdout)
        return 0 if held and not figures["problems"] else 1
    except BenchError:
        print("\n== Log tails", file=sys.stderr)
        system.dump_logs()
        raise
    finally:
        try:
            system.close()
        except Exception as e:  # noqa: BLE001
            print("warning: closing the system failed: %s" % e, file=sys.stderr)


def main(argv):
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="hearty-bench-")
    figures = {"config": dict(vars(args))}
    code = 2
    try:
        check_inputs(args)
        code = run(args, workdir, figures)
    except BenchError as e:
        print("bench: " + str(e), file=sys.stderr)
        figures["error"] = str(e)
    finally:
        if args.keep:
            print("kept " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["exit_status"] = code
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, sort_keys=True)
            f.write("\n")
    print("\nbench: %s" % {0: "PASS", 1: "FAIL (invariants or services)",
                           2: "ERROR"}[code])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
