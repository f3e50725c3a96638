"""End-to-end harness for Hearty: real processes on free loopback ports.

Python 3 standard library only. The API below is stable; bench/bench.py imports it.

    from harness import System
    with System(bin_dir) as s:            # starts every service, waits for /readyz
        st, hd, body = s.place_order("c-1", qty=2, price=4500)
        assert s.wait_quiet(5) == []      # every invariant of DESIGN.md holds

System(bin_dir=None, tmp=None, env=None, services=SERVICES, service_env=None,
       routes=None, log_level=None)
    bin_dir      folder with hearty-<service>; default $HEARTY_BIN_DIR or build/bin
    tmp          folder for databases, logs and the routes file; default a new
                 tempfile.mkdtemp() (removed by close() unless $KEEP_TMP is set)
    env          environment overrides for every service
    service_env  {service: {VAR: value}} per-service overrides
    routes       extra gateway routes, [(prefix, base_url), ...]
    log_level    LOG_LEVEL (default $HEARTY_LOG_LEVEL or "warn")

Methods: start(), start_service(name, env=None), stop_service(name), kill(name),
freeze(name), thaw(name), url(name), pid(name), db(name), rss_kb(name),
log_tail(name), log_events(name, msg=None), dump_logs(), close(), request(...),
call(name, ...), wait_until(...), check_invariants(), wait_quiet(timeout),
place_order(...), cancel_order(...), list_all(name, path), query(name, sql)
(read-only SQLite), outbox(name), events_for(name, type, pay_id), metrics(name),
metric(name, family, **labels). Attributes: services, ports, tmp, ready_seconds,
rate_bp.

Module helpers: request(), wait_until(), free_ports(), is_error_shape(),
place_order(), cancel_order(), expected_points(), mileage_of(), parse_metrics(),
loadgen() (runs bench's hearty-loadgen, returns its JSON report), Upstream (a stub
HTTP server), HeartyTestCase (unittest assertions), main().

HEARTY_SANITIZED=1 (set by CTest for the sanitizer build) makes
HeartyTestCase.assertLatency() a no-op: under the sanitizers everything is several
times slower, so tests keep their functional assertions and skip latency bounds.

Set KEEP_TMP=1 to keep the temporary folders (databases, logs) for a post-mortem and
HEARTY_LOG_LEVEL=debug for chattier services.
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

SERVICES = ("order", "payment", "mileage", "mileage-view", "gateway")
DB_FILES = {
    "order": "order.db",
    "payment": "payment.db",
    "mileage": "mileage.db",
    "mileage-view": "view.db",
    "gateway": "gateway.db",
}
ROUTE_PREFIXES = (
    ("/orders", "order"),
    ("/pays", "payment"),
    ("/mileages", "mileage"),
    ("/mileageViews", "mileage-view"),
)
READY_TIMEOUT = 10.0
SANITIZED = os.environ.get("HEARTY_SANITIZED", "") not in ("", "0")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_bin_dir():
    return os.environ.get("HEARTY_BIN_DIR") or os.path.join(REPO_ROOT, "build", "bin")


# --------------------------------------------------------------------------- HTTP

def request(method, url, body=None, headers=None, raw=None, timeout=10):
    """One HTTP request on a fresh connection.

    body: a JSON value, encoded with Content-Type: application/json (unless headers
    name another Content-Type); raw: bytes or str sent verbatim instead (no
    Content-Type added). Returns (status, headers with lower-case names, parsed JSON
    or text). Connection errors are raised (ConnectionRefusedError, socket.timeout...).
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    hdrs = dict(headers or {})
    data = None
    if raw is not None:
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    elif body is not None:
        data = json.dumps(body).encode("utf-8")
        if not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        send_error = None
        try:
            conn.request(method, path, body=data, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError) as e:
            # The server may answer (413) and close before reading the whole body.
            send_error = e
        try:
            resp = conn.getresponse()
            payload = resp.read()
        except (http.client.HTTPException, OSError):
            if send_error is not None:
                raise send_error
            raise
        rh = {}
        for k, v in resp.getheaders():
            k = k.lower()
            rh[k] = rh[k] + ", " + v if k in rh else v
        return resp.status, rh, _decode(payload, rh.get("content-type", ""))
    finally:
        conn.close()


def _decode(payload, ctype):
    text = payload.decode("utf-8", errors="replace")
    stripped = text.strip()
    if stripped and ("json" in ctype or stripped[0] in "[{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def wait_until(predicate, timeout, interval=0.05):
    """Call predicate until it returns a true value or timeout seconds pass.
    Exceptions from the predicate count as false. Returns bool."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1, each checked by binding it (all held at
    once, then released). They are drawn below the kernel's ephemeral range when there
    is room, so that no outgoing connection of a parallel test takes a service's port
    while the service is being restarted; otherwise bind(127.0.0.1:0) picks them."""
    import random
    lo, _ = _ephemeral_range()
    socks = []
    try:
        rng = random.SystemRandom()
        tries = 0
        while len(socks) < n and lo > 12000 and tries < 200:
            tries += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", rng.randrange(10000, lo)))
                socks.append(s)
            except OSError:
                s.close()
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def parse_metrics(text):
    """Prometheus text format -> {(family, ((label, value), ...) sorted): float}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, labels = head, ()
        if "{" in head:
            name, _, rest = head.partition("{")
            pairs = []
            for part in rest.rstrip("}").split('",'):
                if "=" in part:
                    k, _, v = part.partition("=")
                    pairs.append((k.strip(), v.strip().strip('"')))
            labels = tuple(sorted(pairs))
        try:
            out[(name, labels)] = float(value)
        except ValueError:
            pass
    return out


def default_loadgen():
    return os.path.join(default_bin_dir(), "hearty-loadgen")


def loadgen(url, mode="order", requests=1000, concurrency=10, duration_max=60, timeout_ms=10000,
            delay_ms=0, customers=None, seed=None, orders_file=None, ok_file=None,
            latency_file=None, binary=None):
    """Runs hearty-loadgen (bench/loadgen.c) against url and returns its JSON report:
    status counts, latency_ms, latency_by_status_ms ({status: {count, p50, p90, p99, max,
    le: {ms: n}}}), retry_after ({status: n}), error_codes, ids_written... With
    latency_file, the report also has "latencies": [(status, microseconds), ...] in
    completion order. Raises RuntimeError when it fails or prints no JSON."""
    cmd = [binary or default_loadgen(), "--url", url, "--mode", mode, "--requests", str(requests),
           "--concurrency", str(concurrency), "--duration-max", str(duration_max),
           "--timeout-ms", str(timeout_ms), "--delay-ms", str(delay_ms)]
    for opt, val in (("--customers", customers), ("--seed", seed), ("--orders-file", orders_file),
                     ("--ok-file", ok_file), ("--latency-file", latency_file)):
        if val is not None:
            cmd += [opt, str(val)]
    limit = duration_max + timeout_ms / 1000.0 + 30
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=limit,
                       check=False, text=True)
    if p.returncode != 0:
        raise RuntimeError("hearty-loadgen exited %d: %s" % (p.returncode, p.stderr.strip()[-600:]))
    try:
        report = json.loads(p.stdout)
    except ValueError:
        raise RuntimeError("hearty-loadgen printed no JSON: %r" % p.stdout[:300])
    if latency_file:
        with open(latency_file) as f:
            report["latencies"] = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
    return report


def is_error_shape(body):
    """True when body is {"error":{"code":<non-empty str>,"message":<str>}}."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    err = body["error"]
    return (isinstance(err.get("code"), str) and err["code"] != ""
            and isinstance(err.get("message"), str))


def _set_pdeathsig():
    # Children die with the test process (a CTest timeout must not leak servers).
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# --------------------------------------------------------------------------- System

class System:
    request = staticmethod(request)
    wait_until = staticmethod(wait_until)

    def __init__(self, bin_dir=None, tmp=None, env=None, services=SERVICES,
                 service_env=None, routes=None, log_level=None):
        self.bin_dir = os.path.abspath(bin_dir or default_bin_dir())
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix="hearty-e2e-")
        os.makedirs(self.tmp, exist_ok=True)
        self.services = tuple(services)
        for name in self.services:
            if name not in SERVICES:
                raise ValueError("unknown service %r" % name)
        self.env = dict(env or {})
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.log_level = log_level or os.environ.get("HEARTY_LOG_LEVEL") or "warn"
        self.ports = dict(zip(SERVICES, free_ports(len(SERVICES))))
        self.procs = {}
        self.logs = {}
        self.frozen = set()
        self.ready_seconds = {}
        self.closed = False
        self.routes_file = os.path.join(self.tmp, "routes.conf")
        lines = ["# written by tests/e2e/harness.py"]
        for prefix, name in ROUTE_PREFIXES:
            lines.append("%s %s" % (prefix, self.url(name)))
        for prefix, base in routes or ():
            lines.append("%s %s" % (prefix, base))
        with open(self.routes_file, "w") as f:
            f.write("\n".join(lines) + "\n")

    # ---- addressing
    @property
    def rate_bp(self):
        merged = dict(self.env)
        merged.update(self.service_env.get("mileage", {}))
        return int(merged.get("MILEAGE_RATE_BP", 100))

    def url(self, name):
        return "http://127.0.0.1:%d" % self.ports[name]

    def pid(self, name):
        p = self.procs.get(name)
        return p.pid if p is not None else None

    def db(self, name):
        return os.path.join(self.tmp, DB_FILES[name])

    def log_path(self, name):
        return os.path.join(self.tmp, name + ".log")

    def running(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def env_for(self, name, extra=None):
        e = dict(os.environ)
        e.update({
            "PORT": str(self.ports[name]),
            "BIND_ADDR": "127.0.0.1",
            "DB_PATH": self.db(name),
            "PAYMENT_URL": self.url("payment"),
            "MILEAGE_URL": self.url("mileage"),
            "ROUTES_FILE": self.routes_file,
            "LOG_LEVEL": self.log_level,
            "FEED_RETRY_MAX_MS": "500",
        })
        e.update(self.env)
        e.update(self.service_env.get(name, {}))
        e.update(extra or {})
        return {k: str(v) for k, v in e.items()}

    # ---- processes
    def _spawn(self, name, env=None):
        if self.running(name):
            raise RuntimeError("%s is already running (pid %d)" % (name, self.pid(name)))
        binary = os.path.join(self.bin_dir, "hearty-" + name)
        if not os.access(binary, os.X_OK):
            raise RuntimeError("missing executable %s (build with `make`, or set "
                               "HEARTY_BIN_DIR)" % binary)
        old = self.logs.pop(name, None)
        if old:
            old.close()
        log = open(self.log_path(name), "ab")
        log.write(("--- harness: starting %s at %.3f\n" % (name, time.time())).encode())
        log.flush()
        self.logs[name] = log
        pre = _set_pdeathsig if threading.current_thread() is threading.main_thread() else None
        self.procs[name] = subprocess.Popen(
            [binary], env=self.env_for(name, env), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp, preexec_fn=pre)
        self.frozen.discard(name)
        return time.monotonic()

    def wait_ready(self, name, started=None, timeout=READY_TIMEOUT):
        """Wait until GET /readyz is 200; raises with the log tail on failure."""
        started = started or time.monotonic()
        deadline = started + timeout
        proc = self.procs[name]
        last = "no answer"
        while True:
            if proc.poll() is not None:
                raise RuntimeError("%s exited with status %s before it was ready\n%s"
                                   % (name, proc.returncode, self.log_tail(name)))
            try:
                st, _, body = request("GET", self.url(name) + "/readyz", timeout=1)
                if st == 200:
                    self.ready_seconds[name] = time.monotonic() - started
                    return self.ready_seconds[name]
                last = "%d %s" % (st, body)
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                raise RuntimeError("%s not ready within %.0f s (last: %s)\n%s"
                                   % (name, timeout, last, self.log_tail(name)))
            # Poll finely at first: ready_seconds is a figure the benchmark reports.
            time.sleep(0.002 if time.monotonic() - started < 0.5 else 0.02)

    def start(self, one_by_one=False):
        """Start every configured service not yet running; wait until all are ready.

        one_by_one waits for each before starting the next, so ready_seconds
        measures each service alone (the benchmark's start-to-ready figures)."""
        started = {}
        for name in self.services:
            if not self.running(name):
                started[name] = self._spawn(name)
                if one_by_one:
                    self.wait_ready(name, started.pop(name))
        for name, t0 in started.items():
            self.wait_ready(name, t0)
        return self

    def start_service(self, name, env=None, wait=True):
        """(Re)start one service; env overrides apply to this start only."""
        t0 = self._spawn(name, env)
        if wait:
            self.wait_ready(name, t0)
        return self.pid(name)

    def stop_service(self, name, timeout=15):
        """SIGTERM and wait; returns the exit status. SIGKILL and raise if it hangs."""
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        p.send_signal(signal.SIGTERM)
        if name in self.frozen:
            p.send_signal(signal.SIGCONT)
            self.frozen.discard(name)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise RuntimeError("%s did not exit within %s s of SIGTERM" % (name, timeout))

    def forget(self, name):
        """The test has checked how this (ended) process stopped: close() skips it."""
        p = self.procs.pop(name, None)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()

    def kill(self, name):
        """SIGKILL and wait; returns the exit status."""
        p = self.procs.get(name)
        if p is None:
            return None
        if p.poll() is None:
            p.kill()
        self.frozen.discard(name)
        return p.wait()

    def freeze(self, name):
        os.kill(self.pid(name), signal.SIGSTOP)
        self.frozen.add(name)

    def thaw(self, name):
        os.kill(self.pid(name), signal.SIGCONT)
        self.frozen.discard(name)

    def rss_kb(self, name):
        with open("/proc/%d/status" % self.pid(name)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def log_tail(self, name, lines=40):
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 65536))
                data = f.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log for %s)" % name
        return "\n".join("  %s| %s" % (name, l) for l in data[-lines:])

    def log_events(self, name, msg=None):
        """The JSON log lines of a service (all its runs), as dicts; only those whose
        "msg" is msg when given. Lines that are not JSON are skipped."""
        out = []
        try:
            with open(self.log_path(name), "rb") as f:
                for raw in f:
                    try:
                        e = json.loads(raw.decode("utf-8", errors="replace"))
                    except ValueError:
                        continue
                    if isinstance(e, dict) and (msg is None or e.get("msg") == msg):
                        out.append(e)
        except OSError:
            pass
        return out

    def close(self):
        """Stop everything (SIGTERM, SIGKILL after 5 s); remove the temp folder we made
        unless $KEEP_TMP is set.

        Raises RuntimeError when a service did not end cleanly: an exit status
        other than 0 after SIGTERM (a leak report under AddressSanitizer, a crash,
        a hang), or a death by any signal but the SIGKILL a test sends."""
        if self.closed:
            return
        self.closed = True
        live = [p for p in self.procs.values() if p.poll() is None]
        for name, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                if name in self.frozen:
                    p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 5
        hung = []
        for name, p in self.procs.items():
            if p not in live:
                continue
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                hung.append("%s did not stop within 5 s of SIGTERM\n%s" % (name, self.log_tail(name, 30)))
                p.kill()
                p.wait()
        for log in self.logs.values():
            log.close()
        unclean = hung + ["%s exited with %s\n%s" % (name, p.returncode, self.log_tail(name, 30))
                          for name, p in self.procs.items()
                          if p.returncode not in (0, -signal.SIGKILL)]
        if os.environ.get("KEEP_TMP"):
            sys.stderr.write("harness: kept %s\n" % self.tmp)
        elif self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if unclean:
            raise RuntimeError("services did not stop cleanly:\n" + "\n".join(unclean))

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            self.dump_logs()
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def dump_logs(self, lines=25, out=None):
        out = out or sys.stderr
        for name in self.procs:
            out.write("--- log tail of %s (pid %s, %s)\n%s\n" % (
                name, self.pid(name),
                "running" if self.running(name) else "exit %s" % self.procs[name].returncode,
                self.log_tail(name, lines)))

    # ---- HTTP helpers
    def call(self, name, method, path, body=None, headers=None, raw=None, timeout=10):
        return request(method, self.url(name) + path, body=body, headers=headers,
                       raw=raw, timeout=timeout)

    def place_order(self, customer_id, item="toast-set", qty=1, price=4500,
                    headers=None, via="gateway", timeout=10):
        """POST /orders (through the gateway by default) -> (status, headers, body)."""
        return self.call(via, "POST", "/orders",
                         {"customerId": customer_id, "item": item, "qty": qty,
                          "price": price}, headers=headers, timeout=timeout)

    def cancel_order(self, order_id, via="gateway", timeout=10):
        """POST /orders/{id}/cancel -> (status, headers, body)."""
        return self.call(via, "POST", "/orders/%s/cancel" % order_id, timeout=timeout)

    def list_all(self, name, path, limit=None, max_pages=1000):
        """Follow a bounded list to its end; returns the items. Raises on a non-200,
        a repeated cursor or more than max_pages pages."""
        items, after, seen = [], None, set()
        for _ in range(max_pages):
            q = []
            if limit is not None:
                q.append("limit=%d" % limit)
            if after is not None:
                q.append("after=%s" % urllib.parse.quote(str(after)))
            sep = "&" if "?" in path else "?"
            st, _, body = self.call(name, "GET", path + (sep + "&".join(q) if q else ""))
            if st != 200:
                raise AssertionError("GET %s%s -> %s %s" % (name, path, st, body))
            items.extend(body["items"])
            after = body["next"]
            if after is None:
                return items
            if after in seen:
                raise AssertionError("cursor %r repeated for %s" % (after, path))
            seen.add(after)
        raise AssertionError("more than %d pages for %s" % (max_pages, path))

    def metrics(self, name, timeout=5):
        """GET /metrics of a service, parsed by parse_metrics()."""
        st, _, text = self.call(name, "GET", "/metrics", timeout=timeout)
        if st != 200:
            raise AssertionError("GET %s /metrics -> %s %s" % (name, st, text))
        return parse_metrics(text)

    def metric(self, name, family, **labels):
        """One series of a service's /metrics (labels must match exactly), or None."""
        return self.metrics(name).get((family, tuple(sorted(labels.items()))))

    # ---- databases
    def query(self, name, sql, args=()):
        """Rows (as dicts) from a service's SQLite file, opened read-only."""
        path = self.db(name)
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        uri = "file:%s?mode=ro" % urllib.parse.quote(path)
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()

    def outbox(self, name, type=None):
        """The outbox rows of payment or mileage, oldest first, as dicts with
        position, type and data (parsed JSON, or the raw text if it is not JSON)."""
        rows = self.query(name, "SELECT position, type, data FROM outbox ORDER BY position")
        out = []
        for r in rows:
            if type is not None and r["type"] != type:
                continue
            try:
                r["data"] = json.loads(r["data"])
            except (ValueError, TypeError):
                pass
            out.append(r)
        return out

    def events_for(self, name, type, pay_id):
        """Outbox rows of that type whose data.payId is pay_id."""
        return [r for r in self.outbox(name, type)
                if isinstance(r["data"], dict) and r["data"].get("payId") == pay_id]

    def check_invariants(self, view=True):
        """DESIGN.md's invariants over the SQLite files; a list of violations
        (empty = all hold). The ledger and view checks only hold at a quiet point
        (consumers caught up); see wait_quiet()."""
        v = []
        have = set(self.services)
        rate = self.rate_bp

        def read(name, sql):
            try:
                return self.query(name, sql)
            except (sqlite3.Error, OSError) as e:
                v.append("cannot read %s (%s): %s" % (DB_FILES[name], sql, e))
                return None

        pays = orders = mil = views = custs = None
        mevents = {}
        if "payment" in have:
            rows = read("payment", "SELECT id, order_id, customer_id, amount, status FROM payments")
            if rows is not None:
                pays = {r["id"]: r for r in rows}
                per_order = {}
                for r in rows:
                    per_order.setdefault(r["order_id"], []).append(r["id"])
                    # VOIDED: order gave up on the orderId; nothing was charged.
                    if r["status"] not in ("APPROVED", "CANCELLED", "VOIDED"):
                        v.append("payment %d has unknown status %r" % (r["id"], r["status"]))
                for oid, ids in per_order.items():
                    if len(ids) > 1:
                        v.append("order %s has %d payments %s" % (oid, len(ids), ids))
        if "mileage" in have:
            rows = read("mileage", "SELECT pay_id, customer_id, amount, points, status FROM mileages")
            if rows is not None:
                mil = {r["pay_id"]: r for r in rows}
            evs = read("mileage", "SELECT position, type, data FROM outbox ORDER BY position")
            for e in evs or ():
                try:
                    d = json.loads(e["data"])
                    key = (e["type"], d["payId"])
                except (ValueError, TypeError, KeyError):
                    v.append("mileage outbox position %s: unreadable data %r" % (e["position"], e["data"]))
                    continue
                mevents.setdefault(key, []).append(d)
        if "order" in have:
            orders = read("order", "SELECT id, customer_id, amount, status, pay_id FROM orders")

        # payments <-> ledger
        if pays is not None and mil is not None:
            bal_ledger, bal_expected = {}, {}
            for pid, p in pays.items():
                m = mil.get(pid)
                if p["status"] == "APPROVED":
                    want = p["amount"] * rate // 10000
                    bal_expected[p["customer_id"]] = bal_expected.get(p["customer_id"], 0) + want
                    if m is None:
                        v.append("payment %d APPROVED (amount %d): no mileage row (want %d points SAVED)"
                                 % (pid, p["amount"], want))
                    elif m["status"] != "SAVED" or m["points"] != want or m["customer_id"] != p["customer_id"]:
                        v.append("payment %d APPROVED (amount %d, customer %s): mileage row is %s %s points"
                                 " customer %s (want SAVED %d)" % (pid, p["amount"], p["customer_id"],
                                                                   m["status"], m["points"], m["customer_id"], want))
                elif p["status"] == "CANCELLED" and m is not None and m["status"] != "CANCELLED":
                    v.append("payment %d CANCELLED but its mileage row is %s (%s points)"
                             % (pid, m["status"], m["points"]))
            for pid, m in mil.items():
                if m["status"] not in ("SAVED", "CANCELLED"):
                    v.append("mileage %s has unknown status %r" % (pid, m["status"]))
                if m["status"] == "SAVED":
                    bal_ledger[m["customer_id"]] = bal_ledger.get(m["customer_id"], 0) + m["points"]
                    p = pays.get(pid)
                    if p is None or p["status"] != "APPROVED":
                        v.append("mileage %s SAVED (%s points) without an APPROVED payment (payment: %s)"
                                 % (pid, m["points"], p and p["status"]))
            for c in sorted(set(bal_ledger) | set(bal_expected)):
                if bal_ledger.get(c, 0) != bal_expected.get(c, 0):
                    v.append("customer %s: ledger balance %d != %d expected from APPROVED payments"
                             % (c, bal_ledger.get(c, 0), bal_expected.get(c, 0)))
        # ledger <-> its own events (exactly once)
        if mil is not None:
            for pid, m in mil.items():
                saved = len(mevents.get(("MileageSaved", pid), ()))
                cancelled = len(mevents.get(("MileageCancelled", pid), ()))
                if saved > 1 or cancelled > 1:
                    v.append("mileage %s: %d MileageSaved and %d MileageCancelled events (at most 1 each)"
                             % (pid, saved, cancelled))
                elif m["status"] == "SAVED" and (saved != 1 or cancelled != 0):
                    v.append("mileage %s SAVED but %d MileageSaved / %d MileageCancelled events"
                             % (pid, saved, cancelled))
                elif m["status"] == "CANCELLED" and saved == 1 and cancelled != 1:
                    v.append("mileage %s CANCELLED after a MileageSaved but no MileageCancelled event" % pid)
            for (typ, pid), lst in mevents.items():
                if pid not in mil:
                    v.append("%s event for payId %s that has no ledger row" % (typ, pid))
        # orders <-> payments
        if orders is not None and pays is not None:
            by_order = {p["order_id"]: p for p in pays.values()}
            for o in orders:
                p = by_order.get(o["id"])
                if o["status"] == "PAID":
                    if p is None or p["status"] != "APPROVED" or p["id"] != o["pay_id"]:
                        v.append("order %d PAID (pay_id %s) but its payment is %s"
                                 % (o["id"], o["pay_id"], p and "%d %s" % (p["id"], p["status"])))
                elif o["status"] == "CANCELLED":
                    if p is None or p["status"] != "CANCELLED":
                        v.append("order %d CANCELLED but its payment is %s"
                                 % (o["id"], p and "%d %s" % (p["id"], p["status"])))
                elif o["status"] == "PAYMENT_FAILED":
                    if p is not None and p["status"] != "VOIDED":
                        v.append("order %d PAYMENT_FAILED but it was charged: payment %d %s"
                                 % (o["id"], p["id"], p["status"]))
                elif o["status"] != "PENDING":
                    v.append("order %d has unknown status %r" % (o["id"], o["status"]))
                if p is not None and p["status"] == "VOIDED" and o["status"] != "PAYMENT_FAILED":
                    v.append("order %d is %s but its payment %d was VOIDED" % (o["id"], o["status"], p["id"]))
        # view <-> payments and ledger
        if view and "mileage-view" in have:
            rows = read("mileage-view", "SELECT pay_id, order_id, customer_id, amount, points,"
                        " pay_status, mileage_status FROM mileage_views")
            if rows is not None:
                views = {r["pay_id"]: r for r in rows}
            rows = read("mileage-view", "SELECT customer_id, balance, earned, cancelled, payments FROM customers")
            if rows is not None:
                custs = {r["customer_id"]: r for r in rows}
        if views is not None and pays is not None:
            for pid, p in pays.items():
                w = views.get(pid)
                if p["status"] == "VOIDED":
                    # no event, no view row: nothing was charged
                    if w is not None:
                        v.append("view: row for VOIDED payment %d" % pid)
                    continue
                if w is None:
                    v.append("view: no row for payment %d (%s)" % (pid, p["status"]))
                    continue
                got = (w["order_id"], w["customer_id"], w["amount"], w["pay_status"])
                want = (p["order_id"], p["customer_id"], p["amount"], p["status"])
                if got != want:
                    v.append("view row %d (orderId, customerId, amount, payStatus) = %s, payment has %s"
                             % (pid, got, want))
            for pid in views:
                if pid not in pays:
                    v.append("view row %s has no payment" % pid)
        if views is not None and mil is not None:
            for pid, w in views.items():
                m = mil.get(pid)
                if m is None:
                    if w["mileage_status"] is not None:
                        v.append("view row %s mileageStatus %s but the ledger has no row"
                                 % (pid, w["mileage_status"]))
                elif (m["status"] == "CANCELLED" and w["mileage_status"] is None
                      and ("MileageSaved", pid) not in mevents
                      and ("MileageCancelled", pid) not in mevents):
                    pass  # cancelled before any accrual: nothing was ever published
                elif w["mileage_status"] != m["status"]:
                    v.append("view row %s mileageStatus %s, ledger %s" % (pid, w["mileage_status"], m["status"]))
                elif m["status"] == "SAVED" and w["points"] != m["points"]:
                    v.append("view row %s points %s, ledger %s" % (pid, w["points"], m["points"]))
            for pid in mil:
                if pid not in views:
                    v.append("view: no row for ledger payId %s (%s)" % (pid, mil[pid]["status"]))
        if views is not None and custs is not None and mil is not None:
            want = {}
            for w in views.values():
                want.setdefault(w["customer_id"], {"balance": 0, "earned": 0, "cancelled": 0, "payments": 0})
                want[w["customer_id"]]["payments"] += 1
            for m in mil.values():
                c = want.setdefault(m["customer_id"], {"balance": 0, "earned": 0, "cancelled": 0, "payments": 0})
                if m["status"] == "SAVED":
                    c["balance"] += m["points"]
            for (typ, pid), lst in mevents.items():
                m = mil.get(pid)
                if m is None:
                    continue
                c = want[m["customer_id"]]
                if typ == "MileageSaved":
                    c["earned"] += lst[0].get("points", 0)
                elif typ == "MileageCancelled":
                    c["cancelled"] += lst[0].get("points", 0)
            for cid, exp in sorted(want.items()):
                row = custs.get(cid)
                if row is None:
                    v.append("view: no customer summary for %s (want %s)" % (cid, exp))
                    continue
                got = {k: row[k] for k in exp}
                if got != exp:
                    v.append("view customer %s: %s, want %s" % (cid, got, exp))
                if row["balance"] != row["earned"] - row["cancelled"]:
                    v.append("view customer %s: balance %s != earned %s - cancelled %s"
                             % (cid, row["balance"], row["earned"], row["cancelled"]))
            for cid in custs:
                if cid not in want:
                    v.append("view: customer summary %s without payments" % cid)
        return v

    def wait_quiet(self, timeout=10, interval=0.1):
        """Wait until check_invariants() is empty (consumers caught up); returns the
        violations left when timeout seconds passed ([] = quiet and consistent)."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.check_invariants()
            if not v or time.monotonic() >= deadline:
                return v
            time.sleep(interval)


# --------------------------------------------------------------------------- helpers

class Upstream:
    """A tiny HTTP server on loopback for tests: records every request in .requests and
    answers, after delay seconds, with respond(seen) -> (status, JSON value) if given,
    else 200 (418 for a path containing /status/418) echoing the request as JSON:
    {"name","method","path","headers" (lower-case names),"body" (text)}."""

    def __init__(self, name, delay=0.0, respond=None):
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
                seen = {"name": up.name, "method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                with up.lock:
                    up.requests.append(seen)
                if up.delay:
                    time.sleep(up.delay)
                if up.respond is not None:
                    status, answer = up.respond(seen)
                else:
                    status, answer = (418 if "/status/418" in self.path else 200), seen
                out = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.send_header("X-Upstream", up.name)
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

        self.name = name
        self.delay = delay
        self.respond = respond
        self.lock = threading.Lock()
        self.requests = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def place_order(system, customer_id, item="toast-set", qty=1, price=4500, headers=None,
                via="gateway", timeout=10):
    return system.place_order(customer_id, item, qty, price, headers, via, timeout)


def cancel_order(system, order_id, via="gateway", timeout=10):
    return system.cancel_order(order_id, via, timeout)


def expected_points(amount, rate_bp=100):
    return amount * rate_bp // 10000


def main():
    """unittest.main() with verbose output; exit status 1 on failure."""
    unittest.main(module="__main__", verbosity=2)


class HeartyTestCase(unittest.TestCase):
    """Assertions shared by the e2e tests."""
    maxDiff = None

    def assertStatus(self, resp, status, what=""):
        st, hd, body = resp
        if st != status:
            self.fail("%s: want status %d, got %d %s" % (what or "request", status, st,
                                                         json.dumps(body)[:600] if not isinstance(body, str) else body[:600]))
        return body

    def assertError(self, resp, status, code=None, what=""):
        st, hd, body = resp
        self.assertStatus(resp, status, what)
        self.assertTrue(is_error_shape(body), "%s: not the error shape "
                        '{"error":{"code","message"}}: %r' % (what, body))
        if code is not None:
            self.assertEqual(body["error"]["code"], code, "%s: error code (%r)" % (what, body))
        self.assertIn("json", hd.get("content-type", ""), "%s: content-type of an error" % what)
        return body

    def assertLatency(self, value, bound, msg=""):
        """value <= bound (a time or a latency), unless the services run under the
        sanitizers (SANITIZED), where only functional assertions hold."""
        if not SANITIZED:
            self.assertLessEqual(value, bound, msg)

    def assertQuiet(self, system, timeout=10):
        v = system.wait_quiet(timeout)
        if v:
            self.fail("invariants violated after %s s:\n  " % timeout + "\n  ".join(v[:40]))

    def eventually(self, fn, timeout, what, interval=0.05):
        """Call fn until it returns without raising AssertionError (and anything else
        it raises counts as not yet); after timeout, fail with the last error."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - report the last one
                last = e
            if time.monotonic() >= deadline:
                self.fail("%s: not within %.1f s: %s" % (what, timeout, last))
            time.sleep(interval)


def mileage_of(body):
    """{"points","status"} of the "mileage" object of an order or payment answer."""
    m = body.get("mileage") if isinstance(body, dict) else None
    if not isinstance(m, dict):
        return m
    return {"points": m.get("points"), "status": m.get("status")}
