#!/usr/bin/env python3
"""Cancellation: order cancel -> payment cancel -> PayCancelled -> mileage and view."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main  # noqa: E402


def pay_cancelled_events(s, pay_id):
    return len(s.events_for("payment", "PayCancelled", pay_id))


class Cancel(HeartyTestCase):
    def summary(self, s, cid):
        st, _, b = s.call("gateway", "GET", "/mileageViews/customers/" + cid)
        assert st == 200, (st, b)
        return b

    def test_cancel_flow(self):
        with System() as s:
            a = self.assertStatus(s.place_order("k-1", qty=1, price=10000), 201, "order A")
            b = self.assertStatus(s.place_order("k-1", qty=1, price=5000), 201, "order B")
            self.assertEqual((a["mileage"]["points"], b["mileage"]["points"]), (100, 50))

            def full():
                assert self.summary(s, "k-1")["balance"] == 150
            self.eventually(full, 2, "balance 150 before the cancel")

            t0 = time.monotonic()
            c = self.assertStatus(s.cancel_order(a["orderId"]), 200, "cancel A")
            self.assertEqual((c["orderId"], c["status"], c["payId"]), (a["orderId"], "CANCELLED", a["payId"]), c)

            def cancelled():
                st, _, p = s.call("gateway", "GET", "/pays/%d" % a["payId"])
                assert (st, p["status"]) == (200, "CANCELLED"), p
                st, _, m = s.call("gateway", "GET", "/mileages/%d" % a["payId"])
                assert (st, m["status"]) == (200, "CANCELLED"), m
                st, _, lst = s.call("gateway", "GET", "/mileageViews?customerId=k-1")
                rows = {r["payId"]: r for r in lst["items"]}
                ra = rows[a["payId"]]
                assert (ra["payStatus"], ra["mileageStatus"]) == ("CANCELLED", "CANCELLED"), ra
                rb = rows[b["payId"]]
                assert (rb["payStatus"], rb["mileageStatus"], rb["points"]) == ("APPROVED", "SAVED", 50), rb
                sm = self.summary(s, "k-1")
                assert sm == {"customerId": "k-1", "balance": 50, "earned": 150, "cancelled": 100,
                              "payments": 2}, sm
            self.eventually(cancelled, 2, "payment, mileage and view cancelled")
            self.assertLess(time.monotonic() - t0, 2.5)

            o = self.assertStatus(s.call("gateway", "GET", "/orders/%d" % a["orderId"]), 200, "GET A")
            self.assertEqual(o["status"], "CANCELLED")

            # repeating is harmless: 200, same state, no second PayCancelled
            for i in range(2):
                c2 = self.assertStatus(s.cancel_order(a["orderId"]), 200, "repeated cancel %d" % i)
                self.assertEqual((c2["status"], c2["payId"]), ("CANCELLED", a["payId"]), c2)
            p2 = self.assertStatus(s.call("payment", "POST", "/pays/%d/cancel" % a["payId"]), 200,
                                   "repeated payment cancel")
            self.assertEqual(p2["status"], "CANCELLED")
            time.sleep(0.3)
            self.assertEqual(pay_cancelled_events(s, a["payId"]), 1, "PayCancelled events for payId")
            self.assertEqual(self.summary(s, "k-1"), {"customerId": "k-1", "balance": 50, "earned": 150,
                                                     "cancelled": 100, "payments": 2})
            self.assertEqual(s.query("mileage", "SELECT status FROM mileages WHERE pay_id = ?",
                                     (a["payId"],)), [{"status": "CANCELLED"}])

            # unknown order
            self.assertError(s.cancel_order(987654), 404, "not_found", "cancel unknown order")
            self.assertError(s.call("payment", "POST", "/pays/987654/cancel"), 404, "not_found",
                             "cancel unknown payment")
            self.assertQuiet(s, 5)

    def test_payment_down(self):
        """Payment unreachable: new orders 503 + Retry-After and PAYMENT_FAILED (no
        points); cancels 503 + Retry-After and the order stays PAID; a PAYMENT_FAILED
        order is not cancellable (409)."""
        with System(env={"PAYMENT_TIMEOUT_MS": "1000"}) as s:
            a = self.assertStatus(s.place_order("pd-1", qty=1, price=3000), 201, "order A")
            s.stop_service("payment")
            t0 = time.monotonic()
            st, hd, body = s.place_order("pd-1", qty=1, price=7000)
            self.assertError((st, hd, body), 503, "unavailable", "order while payment is down")
            self.assertLess(time.monotonic() - t0, 3, "a fallback answer is fast")
            self.assertIn("retry-after", hd, "503 without Retry-After")
            st, hd, body = s.cancel_order(a["orderId"])
            self.assertError((st, hd, body), 503, "unavailable", "cancel while payment is down")
            self.assertIn("retry-after", hd)
            orders = s.list_all("order", "/orders?customerId=pd-1")
            by_status = sorted((o["status"], o["amount"]) for o in orders)
            self.assertEqual(by_status, [("PAID", 3000), ("PAYMENT_FAILED", 7000)], orders)
            failed = [o for o in orders if o["status"] == "PAYMENT_FAILED"][0]
            s.start_service("payment")

            # the breaker may stay open for its interval; bounded wait for recovery
            def ok():
                st2, _, b2 = s.cancel_order(a["orderId"])
                assert st2 == 200, (st2, b2)
                return b2
            c = self.eventually(ok, 10, "cancel after payment returned", interval=0.2)
            self.assertEqual(c["status"], "CANCELLED")
            self.assertError(s.cancel_order(failed["orderId"]), 409, "conflict", "cancel a PAYMENT_FAILED order")
            self.assertEqual(s.query("payment", "SELECT count(*) AS n FROM payments WHERE order_id = ?",
                                     (failed["orderId"],)), [{"n": 0}])
            self.assertQuiet(s, 5)


if __name__ == "__main__":
    main()
