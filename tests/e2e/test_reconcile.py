#!/usr/bin/env python3
"""Unknown outcomes (issue 4): when order's call to payment times out after the request
was sent (or payment answers a 5xx other than 503), the order stays PENDING and the client
gets 503; it is settled later by the payment feed or by order's reconciler (POST
/pays/void once the order's lease ran out), never charged twice:
(a) the payment committed but its answer was lost (FAULT_RESPONSE_DELAY_MS above
    PAYMENT_TIMEOUT_MS) -> the order ends PAID with exactly one payment and its points;
(b) the deadline stopped payment's work (FAULT_DELAY_MS above PAYMENT_TIMEOUT_MS) -> no
    payment ever happens, the order ends PAYMENT_FAILED, payment keeps a VOIDED row for the
    orderId (a late charge for it is impossible), no points;
(c) a client retry with the same Idempotency-Key, during and after, never creates a second
    payment; (d) the same as (b) with payment answering 500. For contrast, a 4xx from
payment is a known refusal: 502 payment_rejected, PAYMENT_FAILED at once, no retry."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, Upstream, main  # noqa: E402

PAYMENT_TIMEOUT_MS = 500
LEASE_S = (PAYMENT_TIMEOUT_MS + 1000) / 1000.0   # order's lease on a request's order
FAULT_MS = 1500
SLACK_S = 1.0
OPEN_MS = 1000


class Reconcile(HeartyTestCase):
    def system(self):
        # The failing calls (and their retries) may open order's payment breaker: a short
        # open interval lets it close soon after the fault is removed.
        return System(service_env={"order": {"PAYMENT_TIMEOUT_MS": str(PAYMENT_TIMEOUT_MS),
                                             "PAYMENT_BREAKER_OPEN_MS": str(OPEN_MS),
                                             "RECONCILE_INTERVAL_MS": "200"}})

    def place(self, s, key, cid, price):
        t0 = time.monotonic()
        resp = s.place_order(cid, price=price, headers={"Idempotency-Key": key}, timeout=10)
        return resp, time.monotonic() - t0

    def order_of(self, s, cid):
        rows = s.query("order", "SELECT id, status, pay_id FROM orders WHERE customer_id = ?", (cid,))
        self.assertEqual(len(rows), 1, "one order for %s: %s" % (cid, rows))
        return rows[0]

    def payments_of(self, s, order_id):
        return s.query("payment", "SELECT id, status FROM payments WHERE order_id = ?", (order_id,))

    def assertUnknown(self, resp, took, what):
        st, hd, b = resp
        self.assertError(resp, 503, "unavailable", what)
        self.assertIn("retry-after", hd, "%s: 503 without Retry-After" % what)
        self.assertLatency(took, PAYMENT_TIMEOUT_MS / 1000.0 + SLACK_S, "%s took %.2f s" % (what, took))

    def start_late_payment(self, s):
        """Restarts payment with FAULT_RESPONSE_DELAY_MS. Its probes are held back too
        (a service bug, see test_fault_injection.py), longer than the harness waits for
        /readyz: wait here with a longer timeout, and probe it no more while faulted."""
        s.kill("payment")
        s.start_service("payment", env={"FAULT_RESPONSE_DELAY_MS": str(FAULT_MS)}, wait=False)

        def ready():
            st, _, _ = s.call("payment", "GET", "/readyz", timeout=FAULT_MS / 1000.0 + 5)
            assert st == 200, st
        self.eventually(ready, 15, "payment (answers held back) ready", interval=0.1)

    def test_answer_lost(self):
        """(a) + (c): payment charges, its answer comes too late."""
        with self.system() as s:
            self.start_late_payment(s)
            resp, took = self.place(s, "rc-a", "rc-a", 4200)
            self.assertUnknown(resp, took, "order whose payment answer was lost")
            o = self.order_of(s, "rc-a")
            self.assertIn(o["status"], ("PENDING", "PAID"), "an order perhaps charged is not failed: %s" % o)

            def charged():
                p = self.payments_of(s, o["id"])
                assert [x["status"] for x in p] == ["APPROVED"], p
                return p[0]
            pay = self.eventually(charged, 5, "payment committed before its answer was lost")

            # A retry while the first request still holds the order (its lease).
            st, hd, b = s.place_order("rc-a", price=4200, headers={"Idempotency-Key": "rc-a"}, timeout=10)
            self.assertIn(st, (409, 503, 201), "retry during the fault: %s %s" % (st, b))
            if st == 409:
                self.assertEqual(b["error"]["code"], "in_progress", b)

            def settled():
                row = self.order_of(s, "rc-a")
                assert (row["status"], row["pay_id"]) == ("PAID", pay["id"]), row
            self.eventually(settled, 15, "the order settles PAID from the payment feed", interval=0.2)

            # Retries after it settled replay the answer, with the same payment.
            st, hd, b = s.place_order("rc-a", price=4200, headers={"Idempotency-Key": "rc-a"}, timeout=10)
            self.assertEqual((st, hd.get("idempotent-replayed")), (201, "true"), "replay: %s %s" % (st, b))
            self.assertEqual((b["orderId"], b["status"], b["payId"]), (o["id"], "PAID", pay["id"]), b)
            self.assertEqual(len(self.payments_of(s, o["id"])), 1, "charged twice")

            s.kill("payment")
            s.start_service("payment")
            st, hd, b = s.place_order("rc-a", price=4200, headers={"Idempotency-Key": "rc-a"})
            self.assertEqual((st, b.get("payId")), (201, pay["id"]), b)
            self.assertEqual(len(self.payments_of(s, o["id"])), 1, "charged twice")
            self.assertQuiet(s, 10)
            st, _, m = s.call("mileage", "GET", "/mileages/%d" % pay["id"])
            self.assertEqual((st, m.get("points"), m.get("status")), (200, 42, "SAVED"), m)
            self.assertEqual(len(s.events_for("payment", "PayApproved", pay["id"])), 1)

    def never_happened(self, fault_env, what):
        """(b)/(d) + (c): payment does no work under fault_env; then the fault is removed."""
        with self.system() as s:
            s.kill("payment")
            s.start_service("payment", env=fault_env)
            t0 = time.monotonic()
            resp, took = self.place(s, "rc-b", "rc-b", 3300)
            self.assertUnknown(resp, took, what)
            o = self.order_of(s, "rc-b")
            self.assertEqual(o["status"], "PENDING", "outcome unknown: the order stays PENDING: %s" % o)

            # After the lease a retry resumes the order: payment is called again, never twice charged.
            time.sleep(max(0.0, t0 + LEASE_S + 0.2 - time.monotonic()))
            resp, took = self.place(s, "rc-b", "rc-b", 3300)
            self.assertUnknown(resp, took, what + ", retried with the same key")
            # Long enough for payment to have finished (or skipped) every request it got.
            time.sleep(max(0.0, t0 + LEASE_S + FAULT_MS / 1000.0 + 1.0 - time.monotonic()))
            self.assertEqual(self.payments_of(s, o["id"]), [], "payment did work for a caller that gave up")
            self.assertEqual(self.order_of(s, "rc-b")["status"], "PENDING",
                             "nothing can settle the order while payment is faulty")

            s.kill("payment")
            s.start_service("payment")

            def settled():
                row = self.order_of(s, "rc-b")
                assert row["status"] == "PAYMENT_FAILED", row
            self.eventually(settled, 10, "the reconciler voids the order", interval=0.1)
            pays = self.payments_of(s, o["id"])
            self.assertEqual([p["status"] for p in pays], ["VOIDED"], "payments of the voided order")

            # A late charge for the orderId (a request still on its way) is impossible.
            st, _, p = s.call("payment", "POST", "/pays", {"orderId": o["id"], "customerId": "rc-b", "amount": 3300})
            self.assertEqual((st, p.get("status"), p.get("payId")), (200, "VOIDED", pays[0]["id"]), p)
            # A retry replays the failure; nothing new is charged.
            st, hd, b = s.place_order("rc-b", price=3300, headers={"Idempotency-Key": "rc-b"})
            self.assertEqual((st, hd.get("idempotent-replayed")), (503, "true"), "replay: %s %s" % (st, b))
            self.assertIn("retry-after", hd)
            self.assertEqual(self.payments_of(s, o["id"]), pays, "payments after the retries")
            self.assertEqual(s.events_for("payment", "PayApproved", pays[0]["id"]), [], "no event for a void")
            self.assertQuiet(s, 10)
            self.assertEqual(s.query("mileage", "SELECT pay_id FROM mileages WHERE customer_id = 'rc-b'"), [],
                             "points for a payment that never happened")
            # The system works normally afterwards (once the breaker, if it opened, closed).
            self.eventually(lambda: self.assertStatus(s.place_order("rc-b2", via="order"), 201),
                            OPEN_MS / 1000.0 + 5, "an order succeeds after recovery", interval=0.2)

    def test_work_stopped_by_deadline(self):
        """(b): payment gets the request but the deadline has passed when it would start."""
        self.never_happened({"FAULT_DELAY_MS": str(FAULT_MS)}, "order whose payment was too slow to start")

    def test_payment_500(self):
        """(d): a 5xx other than 503 is an unknown outcome too (the client sees a 503)."""
        self.never_happened({"FAULT_ABORT_PERCENT": "100", "FAULT_ABORT_STATUS": "500"},
                            "order whose payment answered 500")

    def test_payment_rejects(self):
        """A known outcome for contrast: payment answering 4xx is not retried and not an
        unknown outcome: 502 payment_rejected, the order PAYMENT_FAILED at once."""
        stub = Upstream("payment-stub", respond=lambda seen: (
            400, {"error": {"code": "invalid_argument", "message": "amount: rejected by the stub"}}))
        try:
            with System(services=("order",), service_env={"order": {"PAYMENT_URL": stub.url}}) as s:
                self.assertError(s.place_order("pr-1", via="order"), 502, "payment_rejected", "payment said 400")
                calls = [r for r in stub.requests if r["method"] == "POST" and r["path"] == "/pays"]
                self.assertEqual(len(calls), 1, "a 4xx must not be retried: %s" % calls)
                orders = s.list_all("order", "/orders?customerId=pr-1")
                self.assertEqual([o["status"] for o in orders], ["PAYMENT_FAILED"], orders)
                self.assertError(s.cancel_order(orders[0]["orderId"], via="order"), 409, "conflict",
                                 "cancel a PAYMENT_FAILED order")
        finally:
            stub.close()


if __name__ == "__main__":
    main()
