#!/usr/bin/env python3
"""Load shedding (issue 4): a service accepts at most MAX_INFLIGHT requests queued or
running in its WORKERS; above that it answers at once 503 + Retry-After (counted in
http_shed_total) instead of queueing without bound, its probes still answer, and it
serves normally once the burst is over. The gateway passes a shed 503 on without opening
its breaker over it, and sheds its own load the same way."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, Upstream, main, request  # noqa: E402

MAX_INFLIGHT = 4
WORKERS = 2
DELAY_MS = 1000      # FAULT_DELAY_MS: each admitted request holds a worker this long
BURST = 12
FAST_S = 0.3         # a shed answer does not wait for a worker


def burst(url_fn, n, method="POST", body_fn=None):
    """n requests at once (a barrier releases them together); [(status, headers, body,
    seconds from release to answer)]."""
    gate = threading.Barrier(n + 1)
    out = [None] * n

    def one(i):
        gate.wait()
        t0 = time.monotonic()
        try:
            st, hd, b = request(method, url_fn(i), body=body_fn(i) if body_fn else None, timeout=15)
        except OSError as e:
            st, hd, b = None, {}, repr(e)
        out[i] = (st, hd, b, time.monotonic() - t0)
    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    gate.wait()
    return ts, out


class LoadShedding(HeartyTestCase):
    def check_burst(self, s, name, ts, out, ok_status):
        # While the admitted requests sleep, probes still answer at once.
        t0 = time.monotonic()
        for probe in ("/healthz", "/readyz", "/metrics"):
            st, _, _ = s.call(name, "GET", probe, timeout=5)
            self.assertEqual(st, 200, "%s %s during the burst" % (name, probe))
        self.assertLatency(time.monotonic() - t0, 1.0, "%s's probes waited behind the burst" % name)
        for t in ts:
            t.join(20)
        self.assertNotIn(None, out, "a client never got an answer")
        summary = [(r[0], round(r[3], 2)) for r in out]
        self.assertEqual([r for r in out if r[0] not in (ok_status, 503)], [], "answers: %s" % summary)
        shed = [r for r in out if r[0] == 503]
        admitted = [r for r in out if r[0] == ok_status]
        self.assertLessEqual(len(admitted), MAX_INFLIGHT, "more admitted than MAX_INFLIGHT: %s" % summary)
        self.assertGreaterEqual(len(admitted), 1, "nothing admitted: %s" % summary)
        for st, hd, b, took in shed:
            self.assertError((st, hd, b), 503, "unavailable", "%s shedding" % name)
            self.assertIn("retry-after", hd, "shed 503 without Retry-After")
            self.assertLatency(took, FAST_S, "a shed answer took %.2f s: %s" % (took, summary))
        for r in admitted:
            self.assertGreaterEqual(r[3], DELAY_MS / 1000.0 * 0.9, "admitted requests did the work: %s" % summary)
        shed_total = s.metric(name, "http_shed_total")
        self.assertEqual(shed_total, len(shed), "%s http_shed_total" % name)
        return len(admitted), len(shed)

    def test_order_sheds(self):
        env = {"order": {"MAX_INFLIGHT": str(MAX_INFLIGHT), "WORKERS": str(WORKERS),
                         "FAULT_DELAY_MS": str(DELAY_MS)}}
        with System(service_env=env) as s:
            ts, out = burst(lambda i: s.url("order") + "/orders", BURST,
                            body_fn=lambda i: {"customerId": "ls-%d" % i, "item": "toast", "qty": 1, "price": 100})
            admitted, shed = self.check_burst(s, "order", ts, out, 201)
            shed_ms = 1000 * max(r[3] for r in out if r[0] == 503)
            # Nothing was written for a shed request: exactly the admitted orders exist.
            self.assertEqual(s.query("order", "SELECT count(*) AS n FROM orders")[0]["n"], admitted)
            # The service is healthy afterwards.
            for i in range(3):
                self.assertStatus(s.place_order("ls-after", via="order"), 201, "order after the burst")
            # Through the gateway: order's shed 503 passes through, the gateway's breaker stays closed.
            ts, out = burst(lambda i: s.url("gateway") + "/orders", BURST,
                            body_fn=lambda i: {"customerId": "ls-gw", "item": "toast", "qty": 1, "price": 100})
            for t in ts:
                t.join(20)
            statuses = sorted(r[0] for r in out)
            self.assertIn(503, statuses, "no shed answer through the gateway: %s" % statuses)
            self.assertEqual(set(statuses), {201, 503}, statuses)
            for st, hd, b, took in out:
                if st == 503:
                    self.assertIn("retry-after", hd, "Retry-After passed on by the gateway")
                    self.assertError((st, hd, b), 503, "unavailable", "shed through the gateway")
            self.assertEqual(s.metric("gateway", "breaker_state", dependency="orders"), 0)
            self.assertQuiet(s, 10)
            print("FIGURES: shedding: order MAX_INFLIGHT=%d WORKERS=%d, burst of %d: %d admitted, %d shed"
                  " in at most %.0f ms" % (MAX_INFLIGHT, WORKERS, BURST, admitted, shed, shed_ms), flush=True)

    def test_gateway_sheds(self):
        slow = Upstream("slow", delay=DELAY_MS / 1000.0)
        try:
            env = {"gateway": {"MAX_INFLIGHT": str(MAX_INFLIGHT), "WORKERS": str(WORKERS)}}
            with System(services=("gateway",), service_env=env, routes=[("/slow", slow.url)]) as s:
                ts, out = burst(lambda i: s.url("gateway") + "/slow/%d" % i, BURST, method="GET")
                admitted, shed = self.check_burst(s, "gateway", ts, out, 200)
                self.assertEqual(len(slow.requests), admitted, "the upstream saw only the admitted requests")
                st, _, b = s.call("gateway", "GET", "/slow/after")
                self.assertEqual(st, 200, b)
                self.assertEqual(s.metric("gateway", "breaker_state", dependency="slow"), 0)
        finally:
            slow.close()


if __name__ == "__main__":
    main()
