"""The seed's overload scenario (issue 4), shared by test_overload_orders.py and
test_overload_cancels.py: 100 concurrent clients through the gateway while payment is
slow (fault injection) or frozen (SIGSTOP), then the fault is removed.

Not a test file itself (CTest registers test_*.py only).

What a scenario measures and asserts:
- the fault run: CLIENTS clients for FAULT_SECONDS, each pausing a random 0..THINK_MS ms
  before a request (siege's -d), so that the latency measured is the service's, not the
  queue of a machine saturated on purpose. Order's payment breaker opens (metrics, log);
  every answer is a 2xx or a 503 with Retry-After and code "unavailable" (never a 500,
  no transport error); the refusals' p99 is within REJECT_P99_MS; no answer takes longer
  than order's PAYMENT_TIMEOUT_MS + SLACK_MS; the gateway's breaker stays closed.
  Refusals are the 503s of requests that did not wait for payment: all 503s but as many
  of the slowest as order counted payment calls that timed out (see rejections()). Both
  the refusals' and all 503s' percentiles are printed.
- the saturating run: the same CLIENTS with no pause (siege -c100 without -d) for
  SATURATE_SECONDS: the same assertions except the p99, which is the machine's queue at
  saturation (Little's law) and is printed as a figure. It runs under an exclusive
  cross-process lock, the asserted fault runs under a shared one, so that one test's
  saturation never inflates another test's measured latency (CTest runs -j 2).
- recovery: from the moment the fault is removed, a few clients keep calling while
  order's /metrics is polled; the breaker must close within the open interval + one
  attempt timeout + RECOVERY_SLACK_S; then a follow-up load (GENTLE clients) must be
  answered 100% 2xx, every PENDING order gets settled and DESIGN.md's invariants hold.
Under the sanitizers (HEARTY_SANITIZED=1) the latency bounds are not asserted and order's
payment timeout is doubled.
"""
import contextlib
import fcntl
import os
import tempfile
import threading
import time

from harness import SANITIZED, System, loadgen

CLIENTS = 100
FAULT_SECONDS = 20
SATURATE_SECONDS = 6
THINK_MS = 200
PAYMENT_TIMEOUT_MS = 1000 if SANITIZED else 500   # several times slower under the sanitizers
OPEN_MS = 2000
PROBES = 3
FAULT_DELAY_MS = 3000        # payment's FAULT_DELAY_MS: far above PAYMENT_TIMEOUT_MS
REJECT_P99_MS = 100          # the bound
SLACK_MS = 1000              # the gateway hop and a noisy machine, on top of the total timeout
RECOVERY_SLACK_S = 1.5
GENTLE = 10                  # clients of the loads that must all succeed (before and after the fault)
LOADGEN_TIMEOUT_MS = 10000   # the client's own limit: far above every bound asserted
MAX_REQUESTS = 2000000

ORDER_ENV = {
    "PAYMENT_TIMEOUT_MS": str(PAYMENT_TIMEOUT_MS),
    "PAYMENT_BREAKER_OPEN_MS": str(OPEN_MS),
    "PAYMENT_BREAKER_PROBES": str(PROBES),
}

LOCK_PATH = os.path.join(tempfile.gettempdir(), "hearty-e2e-overload.lock")


@contextlib.contextmanager
def load_lock(exclusive):
    """Shared for measured runs, exclusive for saturating ones (across processes). Runs
    unlocked if the lock file cannot be opened (another user's, say)."""
    try:
        f = open(LOCK_PATH, "a+")
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def new_system():
    return System(service_env={"order": dict(ORDER_ENV)})


def apply_fault(s, kind):
    if kind == "slow":
        s.kill("payment")
        s.start_service("payment", env={"FAULT_DELAY_MS": str(FAULT_DELAY_MS)})
    elif kind == "frozen":
        s.freeze("payment")
    else:
        raise ValueError(kind)


def remove_fault(s, kind):
    """Returns the monotonic time the fault was gone (payment ready again / thawed)."""
    if kind == "slow":
        # SIGKILL: a graceful stop would first sleep through every queued FAULT_DELAY_MS.
        s.kill("payment")
        s.start_service("payment")
    else:
        s.thaw("payment")
    return time.monotonic()


def breaker_state(s, name="order", dependency="payment"):
    return s.metric(name, "breaker_state", dependency=dependency)


def breaker_calls(s, name="order", dependency="payment"):
    out = {}
    for (family, labels), v in s.metrics(name).items():
        labels = dict(labels)
        if family == "breaker_calls_total" and labels.get("dependency") == dependency:
            out[labels.get("outcome")] = v
    return out


class StatePoller(threading.Thread):
    """Polls order's payment breaker state; remembers when it first left closed."""

    def __init__(self, s, interval=0.05):
        super().__init__(daemon=True)
        self.s, self.interval = s, interval
        self.opened_at = None
        self.seen = set()
        self.stop = threading.Event()

    def opened_after(self, r):
        """Seconds from the start of load run r to the breaker's opening (None: not seen)."""
        return None if self.opened_at is None else self.opened_at - r["started_at"]

    def run(self):
        while not self.stop.is_set():
            try:
                st = breaker_state(self.s)
            except Exception:  # noqa: BLE001 - a busy service answers later
                st = None
            if st is not None:
                self.seen.add(int(st))
                if st != 0 and self.opened_at is None:
                    self.opened_at = time.monotonic()
            self.stop.wait(self.interval)

    def finish(self):
        self.stop.set()
        self.join(10)


class Driver(threading.Thread):
    """A few clients calling fn() in a loop (as users would) while recovery is watched;
    records (monotonic time, status) of each answer."""

    def __init__(self, fn, clients=3, pause=0.02):
        super().__init__(daemon=True)
        self.fn, self.clients, self.pause = fn, clients, pause
        self.lock = threading.Lock()
        self.answers = []
        self.stop = threading.Event()

    def one(self):
        while not self.stop.is_set():
            try:
                st = self.fn()
            except OSError:
                st = None
            with self.lock:
                self.answers.append((time.monotonic(), st))
            self.stop.wait(self.pause)

    def run(self):
        ts = [threading.Thread(target=self.one, daemon=True) for _ in range(self.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def finish(self):
        self.stop.set()
        self.join(15)
        return list(self.answers)


def run_load(s, mode, seconds, think_ms, orders_file=None, ok_file=None):
    """One load run through the gateway; the report also carries "timeouts", the calls
    order made to payment during the run that timed out (each one a 503 that waited the
    whole PAYMENT_TIMEOUT_MS: an attempt, not a refusal), and "rejections", the latencies
    (ms, sorted) of the other 503s."""
    exclusive = think_ms == 0
    lat_file = tempfile.NamedTemporaryFile(prefix="hearty-latency-", suffix=".txt", delete=False)
    lat_file.close()
    try:
        with load_lock(exclusive):
            before = breaker_calls(s)
            started = time.monotonic()
            r = loadgen(s.url("gateway"), mode=mode, requests=MAX_REQUESTS, concurrency=CLIENTS,
                        duration_max=seconds, timeout_ms=LOADGEN_TIMEOUT_MS, delay_ms=think_ms,
                        orders_file=orders_file, ok_file=ok_file, latency_file=lat_file.name)
            after = breaker_calls(s)
    finally:
        os.unlink(lat_file.name)
    r["started_at"] = started
    r["timeouts"] = int(after.get("timeout", 0) - before.get("timeout", 0))
    r["rejections"] = rejections(r, r["timeouts"])
    return r


def rejections(r, timeouts, status=503, timeout_ms=PAYMENT_TIMEOUT_MS):
    """The latencies (ms, sorted) of the answers of that status without as many of the
    slowest as there were dependency calls that timed out, and only among answers that
    took at least 90% of the call's timeout_ms: a call that went out and timed out
    answers no sooner than that, so what is removed is indistinguishable from those
    attempts; every other answer did not wait for the dependency (for 503s: a refusal,
    short-circuited or bulkhead) and counts. (Background calls, such as the reconciler's,
    may add a few timeouts no client saw: at most that many slow answers are dropped.)"""
    lat = sorted(us / 1000.0 for st, us in r["latencies"] if st == status)
    floor = 0.9 * timeout_ms
    k = 0
    while k < timeouts and lat and lat[-1] >= floor:
        lat.pop()
        k += 1
    return lat


def pct(sorted_values, q):
    """Nearest-rank percentile, as loadgen computes it."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values), max(1, int(q * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


def availability(r):
    ok = sum(v for k, v in r["status"].items() if k.startswith("2"))
    return ok, r["requests"]


def describe(r):
    lat = r["latency_by_status_ms"]
    return "%d requests in %.1f s (%.0f/s), status %s, retry_after %s, codes %s, latency by status %s" % (
        r["requests"], r["seconds"], r["rate"], r["status"], r["retry_after"], r["error_codes"],
        {k: {q: v[q] for q in ("count", "p50", "p99", "max")} for k, v in lat.items()})


def check_fault_run(tc, r, what, ok_status, p99=True):
    """The assertions every run under the fault shares (tc: a TestCase)."""
    info = "%s: %s" % (what, describe(r))
    tc.assertEqual(r["transport_errors"], 0, "requests without an HTTP answer; " + info)
    tc.assertEqual(r["abandoned"], 0, "requests still open at the hard deadline; " + info)
    tc.assertGreater(r["requests"], 0, info)
    bad = {k: v for k, v in r["status"].items() if k not in (ok_status, "503")}
    tc.assertEqual(bad, {}, "answers other than %s and 503 (no 500 ever); %s" % (ok_status, info))
    n503 = r["status"].get("503", 0)
    tc.assertGreater(n503, 0, "nothing was refused under the fault; " + info)
    tc.assertEqual(r["retry_after"].get("503", 0), n503, "a 503 without Retry-After; " + info)
    tc.assertEqual(set(r["error_codes"]), {"unavailable"}, "error codes; " + info)
    bound = PAYMENT_TIMEOUT_MS + SLACK_MS
    tc.assertLatency(r["latency_ms"]["max"], bound,
                       "an answer outlived order's total timeout %d ms + %d ms; %s"
                       % (PAYMENT_TIMEOUT_MS, SLACK_MS, info))
    rej = r["rejections"]
    tc.assertGreater(len(rej), 0, "no 503 was a refusal; " + info)
    if p99:
        tc.assertLatency(pct(rej, 0.99), REJECT_P99_MS,
                           "refusals' p99 over %d ms (%d refusals, %d payment calls timed out,"
                           " refusals over 100 ms: %d); %s"
                           % (REJECT_P99_MS, len(rej), r["timeouts"],
                              sum(1 for v in rej if v > 100), info))


def wait_closed(tc, s, fixed_at, driver):
    """Polls until order's payment breaker is closed; returns seconds since fixed_at."""
    limit = (OPEN_MS + PAYMENT_TIMEOUT_MS) / 1000.0 + RECOVERY_SLACK_S
    closed_at = None
    deadline = fixed_at + limit + 10  # keep watching past the bound, to report the figure
    while time.monotonic() < deadline:
        try:
            if breaker_state(s) == 0:
                closed_at = time.monotonic()
                break
        except OSError:
            pass
        time.sleep(0.02)
    answers = driver.finish()
    tc.assertIsNotNone(closed_at, "order's payment breaker did not close within %.1f s of the fault's"
                       " removal; calls %s" % (limit + 10, breaker_calls(s)))
    took = closed_at - fixed_at
    tc.assertLatency(took, limit, "the breaker closed %.2f s after the fault was removed: over the"
                       " open interval %d ms + attempt timeout %d ms + %.1f s"
                       % (took, OPEN_MS, PAYMENT_TIMEOUT_MS, RECOVERY_SLACK_S))
    return took, answers


def settle(tc, s, timeout=30):
    """No order left PENDING (the reconciler settled them), then the invariants hold."""
    def no_pending():
        rows = s.query("order", "SELECT id FROM orders WHERE status = 'PENDING'")
        assert rows == [], "%d orders still PENDING (first %s)" % (len(rows), rows[:5])
    tc.eventually(no_pending, timeout, "the reconciler settles every PENDING order", interval=0.25)
    tc.assertQuiet(s, 20)
    failed = s.query("order", "SELECT id FROM orders WHERE status = 'PAYMENT_FAILED'")
    failed = {r["id"] for r in failed}
    charged = [p for p in s.query("payment", "SELECT id, order_id, status FROM payments")
               if p["order_id"] in failed and p["status"] != "VOIDED"]
    tc.assertEqual(charged, [], "payments (not VOIDED) for PAYMENT_FAILED orders")
    voided = {p["id"] for p in s.query("payment", "SELECT id FROM payments WHERE status = 'VOIDED'")}
    points = [m for m in s.query("mileage", "SELECT pay_id, points, status FROM mileages")
              if m["pay_id"] in voided]
    tc.assertEqual(points, [], "mileage for VOIDED payments (failed orders)")
    return len(failed)


def fault_figures(what, kind, r, sat, opened_after):
    ok, total = availability(r)
    sok, stotal = availability(sat)
    lat, slat = r["latency_by_status_ms"]["503"], sat["latency_by_status_ms"]["503"]
    rej, srej = r["rejections"], sat["rejections"]
    figure("%s, payment %s: fault run (%d clients, pause 0..%d ms, %.0f s): availability %.1f%%"
           " (%d/%d 2xx); refusals (503 without a payment call, %d): p50 %.1f ms p99 %.1f ms"
           " max %.0f ms; all 503s p99 %.1f ms max %.0f ms (%d payment calls timed out);"
           " %.0f req/s; breaker open %.2f s after the load began"
           % (what, kind, CLIENTS, THINK_MS, r["seconds"], 100.0 * ok / total, ok, total, len(rej),
              pct(rej, 0.5), pct(rej, 0.99), rej[-1], lat["p99"], lat["max"], r["timeouts"],
              r["rate"], opened_after if opened_after is not None else -1))
    figure("%s, payment %s: saturating run (%d clients, no pause, %.0f s): availability %.1f%%"
           " (%d/%d); refusals p50 %.1f ms p99 %.1f ms max %.0f ms; all 503s p99 %.1f ms"
           " max %.0f ms (%d payment calls timed out); %.0f req/s"
           % (what, kind, CLIENTS, sat["seconds"], 100.0 * sok / stotal, sok, stotal,
              pct(srej, 0.5), pct(srej, 0.99), srej[-1], slat["p99"], slat["max"],
              sat["timeouts"], sat["rate"]))


def figure(line):
    print("FIGURES: " + line, flush=True)
