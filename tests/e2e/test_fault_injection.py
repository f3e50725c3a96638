#!/usr/bin/env python3
"""Fault injection (issue 4), configured by environment on any service and off by default:
FAULT_DELAY_MS (sleep before the work, then the deadline check), FAULT_ABORT_PERCENT with
FAULT_ABORT_STATUS (503 with Retry-After by default; code fault_injected) and
FAULT_RESPONSE_DELAY_MS (the work is done, the answer is late). Probes (/healthz, /readyz,
/metrics) are never faulted."""
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main  # noqa: E402

PROBES = ("/healthz", "/readyz", "/metrics")
FAST_S = 0.2


class FaultInjection(HeartyTestCase):
    def pay(self, s, order_id, headers=None):
        return s.call("payment", "POST", "/pays", {"orderId": order_id, "customerId": "fi-1", "amount": 1000},
                      headers=headers)

    def timed(self, fn):
        t0 = time.monotonic()
        out = fn()
        return out, time.monotonic() - t0

    def assertProbesFast(self, s, name):
        for p in PROBES:
            (st, _, _), took = self.timed(lambda: s.call(name, "GET", p, timeout=5))
            self.assertEqual(st, 200, "%s %s" % (name, p))
            self.assertLatency(took, FAST_S, "%s %s took %.2f s: probes are never faulted" % (name, p, took))

    def test_off_by_default(self):
        with System(services=("payment",)) as s:
            for i in range(20):
                st, _, b = self.pay(s, 100 + i)
                self.assertEqual(st, 201, b)

    def test_abort(self):
        with System(services=("payment", "mileage"),
                    service_env={"payment": {"FAULT_ABORT_PERCENT": "100"},
                                 "mileage": {"FAULT_ABORT_PERCENT": "100", "FAULT_ABORT_STATUS": "500"}}) as s:
            st, hd, b = resp = self.pay(s, 1)
            self.assertError(resp, 503, "fault_injected", "payment aborting 100%")
            self.assertIn("retry-after", hd)
            self.assertEqual(s.query("payment", "SELECT id FROM payments"), [], "an aborted request did the work")
            resp = s.call("mileage", "GET", "/mileages?customerId=fi-1")
            self.assertError(resp, 500, "fault_injected", "mileage aborting 100% with 500")
            self.assertNotIn("retry-after", resp[1])
            self.assertProbesFast(s, "payment")
            self.assertProbesFast(s, "mileage")

    def test_abort_share(self):
        with System(services=("mileage",), service_env={"mileage": {"FAULT_ABORT_PERCENT": "50"}}) as s:
            codes = [s.call("mileage", "GET", "/mileages?customerId=fi-2")[0] for _ in range(200)]
            aborted = codes.count(503)
            self.assertEqual(set(codes), {200, 503}, codes)
            self.assertTrue(50 <= aborted <= 150, "FAULT_ABORT_PERCENT=50 aborted %d of 200" % aborted)

    def test_delay_then_deadline(self):
        with System(services=("payment",), service_env={"payment": {"FAULT_DELAY_MS": "300"}}) as s:
            (st, _, b), took = self.timed(lambda: self.pay(s, 1))
            self.assertEqual(st, 201, b)
            self.assertGreaterEqual(took, 0.3, "FAULT_DELAY_MS=300 but the answer took %.2f s" % took)
            resp, took = self.timed(lambda: self.pay(s, 2, headers={"Request-Deadline-Ms": "100"}))
            self.assertError(resp, 503, "deadline_exceeded", "a delayed request whose caller gave up")
            self.assertEqual([r["order_id"] for r in s.query("payment", "SELECT order_id FROM payments")], [1])
            self.assertProbesFast(s, "payment")

    def test_response_delay_does_the_work(self):
        with System(services=("payment",), service_env={"payment": {"FAULT_RESPONSE_DELAY_MS": "400"}}) as s:
            (st, _, b), took = self.timed(lambda: self.pay(s, 1))
            self.assertEqual(st, 201, b)
            self.assertGreaterEqual(took, 0.4)
            # A caller that gives up before the answer: the payment happened anyway.
            with self.assertRaises(OSError):
                s.call("payment", "POST", "/pays", {"orderId": 2, "customerId": "fi-1", "amount": 1000}, timeout=0.2)
            self.eventually(lambda: self.assertEqual(
                len(s.query("payment", "SELECT id FROM payments WHERE order_id = 2")), 1), 3,
                "the work of a late answer is done")

    def test_response_delay_spares_probes(self):
        """FAULT_RESPONSE_DELAY_MS never holds back the probes: they run inline in
        libmicrohttpd's connection threads, where a sleep would stall every other
        connection of that thread."""
        with System(services=("payment",), service_env={"payment": {"FAULT_RESPONSE_DELAY_MS": "700"}}) as s:
            # Bounds well under the delay, so that this holds under the sanitizers too.
            for p in PROBES:
                (st, _, _), took = self.timed(lambda: s.call("payment", "GET", p, timeout=5))
                self.assertEqual(st, 200, p)
                self.assertLess(took, 0.5, "%s took %.2f s with FAULT_RESPONSE_DELAY_MS=700" % (p, took))
            results = []

            def probe():
                results.append(self.timed(lambda: s.call("payment", "GET", "/healthz", timeout=10))[1])
            ts = [threading.Thread(target=probe) for _ in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertLess(max(results), 0.5, "concurrent probes: %s" % results)

    def test_bad_settings_refused(self):
        with System(services=("payment",)) as s:
            s.stop_service("payment")
            for var, value in (("FAULT_ABORT_PERCENT", "101"), ("FAULT_ABORT_STATUS", "200"),
                               ("FAULT_DELAY_MS", "-1"), ("FAULT_RESPONSE_DELAY_MS", "x")):
                with self.assertRaises(RuntimeError, msg="%s=%s accepted" % (var, value)):
                    s.start_service("payment", env={var: value})
                s.forget("payment")
            s.start_service("payment")


if __name__ == "__main__":
    main()
