#!/usr/bin/env python3
"""Deadline propagation (issue 4, DESIGN.md's resilience defaults): every outbound call of
the gateway, order and payment carries Request-Deadline-Ms, the time left, bounded by the
caller's configured total timeout and by a deadline its own client sent; a callee that
picks a request up after its deadline answers 503 deadline_exceeded without doing the
work; a malformed Request-Deadline-Ms is a 400."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SANITIZED, HeartyTestCase, System, Upstream, main  # noqa: E402


def fake_services(seen):
    """A stub for payment and mileage: valid answers to the calls order and payment make."""
    path, method = seen["path"], seen["method"]
    body = json.loads(seen["body"]) if seen["body"] else {}
    if method == "POST" and path == "/pays":
        return 201, {"payId": 1000 + body["orderId"], "orderId": body["orderId"],
                     "customerId": body["customerId"], "amount": body["amount"], "status": "APPROVED",
                     "mileage": {"points": 0, "status": "PENDING"}}
    if method == "POST" and path.startswith("/pays/") and path.endswith("/cancel"):
        pay_id = int(path.split("/")[2])
        return 200, {"payId": pay_id, "status": "CANCELLED"}
    if method == "POST" and path == "/mileages":
        return 201, {"payId": body["payId"], "customerId": body["customerId"],
                     "points": body["amount"] // 100, "status": "SAVED"}
    # The feed consumers' polls and anything else: "not now".
    return 503, {"error": {"code": "unavailable", "message": "stub"}}


class Deadlines(HeartyTestCase):
    def setUp(self):
        self.stub = Upstream("stub", respond=fake_services)

    def tearDown(self):
        self.stub.close()

    def deadline_seen(self, path_prefix, method="POST"):
        """Request-Deadline-Ms of the last request to path_prefix the stub saw (int ms)."""
        reqs = [r for r in self.stub.requests if r["path"].startswith(path_prefix) and r["method"] == method]
        self.assertTrue(reqs, "no %s %s reached the stub" % (method, path_prefix))
        v = reqs[-1]["headers"].get("request-deadline-ms")
        self.assertIsNotNone(v, "no Request-Deadline-Ms on %s %s: %s" % (method, path_prefix, reqs[-1]["headers"]))
        self.assertRegex(v, r"^[0-9]+$", "Request-Deadline-Ms is whole milliseconds")
        self.stub.requests.clear()
        return int(v)

    def assertWithin(self, v, low, high, what):
        """low <= v <= high; high is the contract, low (most of the budget is left when
        the call goes out) a latency bound that the sanitizer build does not hold."""
        if SANITIZED:
            low = 1
        self.assertTrue(low <= v <= high, "%s: Request-Deadline-Ms %d, want %d..%d" % (what, v, low, high))

    def test_gateway_to_upstream(self):
        with System(services=("gateway",), routes=[("/stub", self.stub.url)],
                    service_env={"gateway": {"UPSTREAM_TIMEOUT_MS": "1500"}}) as s:
            st, _, _ = s.call("gateway", "GET", "/stub/a")
            self.assertEqual(st, 503)  # the stub's answer, passed through
            self.assertWithin(self.deadline_seen("/stub", "GET"), 1000, 1500, "gateway, UPSTREAM_TIMEOUT_MS=1500")
            s.call("gateway", "GET", "/stub/b", headers={"Request-Deadline-Ms": "300"})
            self.assertWithin(self.deadline_seen("/stub", "GET"), 1, 300, "gateway, client deadline 300")
            s.call("gateway", "GET", "/stub/c", headers={"Request-Deadline-Ms": "60000"})
            self.assertWithin(self.deadline_seen("/stub", "GET"), 1000, 1500,
                              "gateway, client deadline 60000 (its own total is shorter)")

    def test_gateway_stops_at_the_client_deadline(self):
        slow = Upstream("slow", delay=2.0)
        try:
            with System(services=("gateway",), routes=[("/slow", slow.url)]) as s:
                t0 = time.monotonic()
                resp = s.call("gateway", "GET", "/slow/x", headers={"Request-Deadline-Ms": "300"})
                took = time.monotonic() - t0
                self.assertError(resp, 504, "gateway_timeout", "upstream slower than the client's deadline")
                self.assertLatency(took, 1.3, "the gateway waited %.2f s past a 300 ms deadline" % took)
        finally:
            slow.close()

    def test_order_to_payment(self):
        env = {"order": {"PAYMENT_URL": self.stub.url, "PAYMENT_TIMEOUT_MS": "2000"}}
        with System(services=("order",), service_env=env) as s:
            b = self.assertStatus(s.place_order("dd-1", via="order"), 201, "order with the stub payment")
            self.assertWithin(self.deadline_seen("/pays"), 1500, 2000, "order -> payment, PAYMENT_TIMEOUT_MS=2000")
            self.assertStatus(s.call("order", "POST", "/orders",
                                     {"customerId": "dd-1", "item": "toast", "qty": 1, "price": 100},
                                     headers={"Request-Deadline-Ms": "300"}), 201, "order, client deadline 300")
            self.assertWithin(self.deadline_seen("/pays"), 1, 300, "order -> payment, client deadline 300")
            self.assertStatus(s.cancel_order(b["orderId"], via="order"), 200, "cancel with the stub payment")
            self.assertWithin(self.deadline_seen("/pays/"), 1500, 2000, "order -> payment cancel")

    def test_payment_to_mileage(self):
        env = {"payment": {"MILEAGE_URL": self.stub.url, "MILEAGE_TIMEOUT_MS": "800"}}
        with System(services=("payment",), service_env=env) as s:
            st, _, b = s.call("payment", "POST", "/pays", {"orderId": 1, "customerId": "dd-2", "amount": 10000})
            self.assertEqual((st, b["mileage"]), (201, {"points": 100, "status": "SAVED"}), b)
            self.assertWithin(self.deadline_seen("/mileages"), 500, 800, "payment -> mileage, MILEAGE_TIMEOUT_MS=800")
            st, _, b = s.call("payment", "POST", "/pays", {"orderId": 2, "customerId": "dd-2", "amount": 10000},
                              headers={"Request-Deadline-Ms": "300"})
            self.assertEqual(st, 201, b)
            self.assertWithin(self.deadline_seen("/mileages"), 1, 300, "payment -> mileage, client deadline 300")

    def test_chain(self):
        """client -> gateway -> order -> payment: the client's deadline caps every hop."""
        env = {"order": {"PAYMENT_URL": self.stub.url, "PAYMENT_TIMEOUT_MS": "2000"}}
        with System(services=("order", "gateway"), service_env=env) as s:
            self.assertStatus(s.place_order("dd-3"), 201, "order through the gateway")
            self.assertWithin(self.deadline_seen("/pays"), 1500, 2000, "gateway -> order -> payment")
            self.assertStatus(s.place_order("dd-3", headers={"Request-Deadline-Ms": "300"}), 201,
                              "order through the gateway, client deadline 300")
            self.assertWithin(self.deadline_seen("/pays"), 1, 300, "gateway -> order -> payment, client deadline 300")

    def test_expired_deadline_skips_the_work(self):
        with System(services=("order", "payment"),
                    service_env={"payment": {"FAULT_DELAY_MS": "300"}}) as s:
            pay = {"orderId": 77, "customerId": "dd-4", "amount": 5000}
            for ms in ("0", "100"):
                resp = s.call("payment", "POST", "/pays", pay, headers={"Request-Deadline-Ms": ms})
                self.assertError(resp, 503, "deadline_exceeded", "POST /pays with Request-Deadline-Ms %s" % ms)
                self.assertIn("retry-after", resp[1])
            self.assertEqual(s.query("payment", "SELECT id FROM payments"), [], "work done for a caller that gave up")
            st, _, b = s.call("payment", "POST", "/pays", pay, headers={"Request-Deadline-Ms": "5000"})
            self.assertEqual((st, b.get("status")), (201, "APPROVED"), b)

            resp = s.call("order", "POST", "/orders", {"customerId": "dd-4", "item": "toast", "qty": 1, "price": 100},
                          headers={"Request-Deadline-Ms": "0"})
            self.assertError(resp, 503, "deadline_exceeded", "POST /orders with Request-Deadline-Ms 0")
            self.assertEqual(s.query("order", "SELECT id FROM orders"), [], "order written for a caller that gave up")

    def test_malformed_deadline(self):
        with System(services=("order", "payment", "gateway")) as s:
            for name, method, path, body in (
                    ("gateway", "GET", "/orders?customerId=x", None),
                    ("order", "GET", "/orders?customerId=x", None),
                    ("payment", "POST", "/pays", {"orderId": 5, "customerId": "dd-5", "amount": 100})):
                for bad in ("abc", "-1", "1.5", "12ms", "3600001", "99999999999999999999"):
                    resp = s.call(name, method, path, body, headers={"Request-Deadline-Ms": bad})
                    self.assertError(resp, 400, "invalid_argument", "%s with Request-Deadline-Ms %r" % (name, bad))
            self.assertEqual(s.query("payment", "SELECT id FROM payments"), [], "a 400 did the work")
            st, _, _ = s.call("order", "GET", "/orders?customerId=x", headers={"Request-Deadline-Ms": "3600000"})
            self.assertEqual(st, 200, "the largest deadline is accepted")


if __name__ == "__main__":
    main()
