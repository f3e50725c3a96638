#!/usr/bin/env python3
"""Deadline propagation: every outbound call carries the time left in a
Request-Deadline-Ms header, bounded by the caller's own timeout and by a deadline the
client sent (DESIGN.md, resilience defaults)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import HeartyTestCase, System, Upstream, main  # noqa: E402


class Deadlines(HeartyTestCase):
    def deadline_seen(self, up, path_prefix):
        reqs = [r for r in up.requests if r["path"].startswith(path_prefix)]
        self.assertTrue(reqs, "no request to %s reached the stub" % path_prefix)
        v = reqs[-1]["headers"].get("request-deadline-ms")
        self.assertIsNotNone(v, "no Request-Deadline-Ms on %s: %s" % (path_prefix, reqs[-1]["headers"]))
        return int(v)

    def test_order_to_payment(self):
        stub = Upstream("payment-stub")
        try:
            with System(services=("order",),
                        service_env={"order": {"PAYMENT_URL": stub.url, "PAYMENT_TIMEOUT_MS": "2000"}}) as s:
                st, _, b = s.place_order("dd-1", via="order")
                self.assertIn(st, (502, 503), "order with a payment that answers nonsense: %s %s" % (st, b))
                v = self.deadline_seen(stub, "/pays")
                self.assertTrue(0 < v <= 2000, "Request-Deadline-Ms %d with PAYMENT_TIMEOUT_MS=2000" % v)
                st, _, b = s.call("order", "POST", "/orders",
                                  {"customerId": "dd-1", "item": "toast", "qty": 1, "price": 100},
                                  headers={"Request-Deadline-Ms": "700"})
                v = self.deadline_seen(stub, "/pays")
                self.assertTrue(0 < v <= 700, "Request-Deadline-Ms %d when the client allowed 700" % v)
        finally:
            stub.close()

    def test_payment_to_mileage(self):
        stub = Upstream("mileage-stub")
        try:
            with System(services=("payment",),
                        service_env={"payment": {"MILEAGE_URL": stub.url, "MILEAGE_TIMEOUT_MS": "800"}}) as s:
                st, _, b = s.call("payment", "POST", "/pays", {"orderId": 1, "customerId": "dd-2", "amount": 100})
                self.assertEqual(st, 201, b)
                v = self.deadline_seen(stub, "/mileages")
                self.assertTrue(0 < v <= 800, "Request-Deadline-Ms %d with MILEAGE_TIMEOUT_MS=800" % v)
        finally:
            stub.close()


if __name__ == "__main__":
    main()
