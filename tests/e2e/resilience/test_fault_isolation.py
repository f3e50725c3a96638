#!/usr/bin/env python3
"""Fault isolation: when payment hangs, order's circuit breaker opens and answers fast
503s with Retry-After (orders and cancels) instead of waiting, and closes again when
payment recovers; above MAX_INFLIGHT a server sheds load with an immediate 503."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import HeartyTestCase, System, Upstream, main  # noqa: E402

FAST = 0.1  # seconds: an answer this quick did not wait for the payment timeout


class FaultIsolation(HeartyTestCase):
    def test_breaker_opens_and_recovers(self):
        with System(env={"PAYMENT_TIMEOUT_MS": "300"}) as s:
            kept = self.assertStatus(s.place_order("cb-1", via="order"), 201, "order before the fault")
            s.freeze("payment")
            try:
                times, streak = [], 0
                for _ in range(40):
                    t0 = time.monotonic()
                    st, hd, b = s.place_order("cb-1", via="order", timeout=5)
                    dt = time.monotonic() - t0
                    times.append(round(dt, 3))
                    self.assertError((st, hd, b), 503, "unavailable", "order while payment hangs")
                    self.assertIn("retry-after", hd, "503 without Retry-After")
                    self.assertLess(dt, 1.5, "an order waited %.2f s with PAYMENT_TIMEOUT_MS=300" % dt)
                    streak = streak + 1 if dt < FAST else 0
                    if streak >= 5:
                        break
                self.assertGreaterEqual(streak, 5, "the breaker never opened; answer times: %s" % times)
                t0 = time.monotonic()
                st, hd, b = s.cancel_order(kept["orderId"], via="order", timeout=5)
                self.assertError((st, hd, b), 503, "unavailable", "cancel while the breaker is open")
                self.assertIn("retry-after", hd)
                self.assertLess(time.monotonic() - t0, 0.5, "cancel with an open breaker was not fast")
                st, _, o = s.call("order", "GET", "/orders/%d" % kept["orderId"])
                self.assertEqual((st, o["status"]), (200, "PAID"), "order must stay PAID")
            finally:
                s.thaw("payment")

            def recovered():
                st, _, b = s.place_order("cb-2", via="order")
                assert st == 201, (st, b)
                return b
            self.eventually(recovered, 20, "orders accepted again after payment recovered", interval=0.25)
            self.assertQuiet(s, 10)

    def test_timed_out_orders_resolve(self):
        """Orders whose payment call timed out (503 to the client) do not stay PENDING,
        and none ends PAYMENT_FAILED while its payment is APPROVED (charged, with points)."""
        with System(env={"PAYMENT_TIMEOUT_MS": "300"}) as s:
            s.freeze("payment")
            try:
                for i in range(4):
                    self.assertError(s.place_order("to-1", price=1000 + i, via="order", timeout=5), 503,
                                     "unavailable", "order while payment hangs")
            finally:
                s.thaw("payment")

            def resolved():
                pending = s.query("order", "SELECT id, status FROM orders WHERE status = 'PENDING'")
                assert pending == [], "orders still PENDING: %s" % pending
            self.eventually(resolved, 10, "timed-out orders resolved", interval=0.2)
            failed = {o["id"] for o in s.query("order", "SELECT id FROM orders WHERE status = 'PAYMENT_FAILED'")}
            orphans = [p for p in s.query("payment", "SELECT id, order_id, status FROM payments")
                       if p["order_id"] in failed and p["status"] == "APPROVED"]
            self.assertEqual(orphans, [], "APPROVED payments (with points) for PAYMENT_FAILED orders")
            self.assertQuiet(s, 5)

    def test_payment_rejects(self):
        """Payment answering 4xx: 502 payment_rejected, the order kept PAYMENT_FAILED."""
        stub = Upstream("payment-stub", respond=lambda seen: (
            400, {"error": {"code": "invalid_argument", "message": "amount: rejected by the stub"}}))
        try:
            with System(services=("order",), service_env={"order": {"PAYMENT_URL": stub.url}}) as s:
                self.assertError(s.place_order("pr-1", via="order"), 502, "payment_rejected", "payment said 400")
                self.assertEqual(len(stub.requests), 1, "a 4xx must not be retried: %s" % stub.requests)
                orders = s.list_all("order", "/orders?customerId=pr-1")
                self.assertEqual([o["status"] for o in orders], ["PAYMENT_FAILED"], orders)
                self.assertError(s.cancel_order(orders[0]["orderId"], via="order"), 409, "conflict",
                                 "cancel a PAYMENT_FAILED order")
        finally:
            stub.close()

    def test_load_shedding(self):
        with System(env={"PAYMENT_TIMEOUT_MS": "3000"},
                    service_env={"order": {"MAX_INFLIGHT": "4", "WORKERS": "2"}}) as s:
            self.assertStatus(s.place_order("ls-1", via="order"), 201, "order before the fault")
            s.freeze("payment")
            results = []
            lock = threading.Lock()

            def one():
                t0 = time.monotonic()
                try:
                    st, hd, b = s.place_order("ls-1", via="order", timeout=10)
                except OSError as e:
                    st, hd, b = None, {}, repr(e)
                with lock:
                    results.append((st, time.monotonic() - t0, "retry-after" in hd, b))
            ts = [threading.Thread(target=one) for _ in range(12)]
            try:
                for t in ts:
                    t.start()
                for t in ts:
                    t.join(15)
                # health is not shed
                st, _, _ = s.call("order", "GET", "/healthz")
                self.assertEqual(st, 200)
            finally:
                s.thaw("payment")
            self.assertEqual(len(results), 12, "a client hung")
            shed = [r for r in results if r[0] == 503 and r[1] < 0.5]
            self.assertTrue(shed, "no immediate 503 above MAX_INFLIGHT=4: %s" % [(r[0], round(r[1], 2)) for r in results])
            for r in shed:
                self.assertTrue(r[2], "shed 503 without Retry-After: %s" % (r,))
            self.assertEqual([r for r in results if r[0] not in (201, 503)], [], "unexpected answers")
            self.assertQuiet(s, 10)


if __name__ == "__main__":
    main()
