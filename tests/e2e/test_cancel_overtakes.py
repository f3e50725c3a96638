#!/usr/bin/env python3
"""Cancel overtakes accrual: a payment cancelled before mileage ever saw it ends with no
points, and a late synchronous accrual for it is refused (409, no points)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main, mileage_of  # noqa: E402


class CancelOvertakes(HeartyTestCase):
    def test_cancel_before_accrual(self):
        with System() as s:
            keep = self.assertStatus(s.place_order("co-1", qty=1, price=8000), 201, "order kept")
            s.stop_service("mileage")
            o = self.assertStatus(s.place_order("co-1", qty=1, price=10000), 201, "order, mileage down")
            self.assertEqual(mileage_of(o), {"points": 0, "status": "PENDING"}, o)
            c = self.assertStatus(s.cancel_order(o["orderId"]), 200, "cancel, mileage down")
            self.assertEqual(c["status"], "CANCELLED")
            # a payment created and cancelled directly, never seen by mileage
            p = self.assertStatus(s.call("payment", "POST", "/pays",
                                         {"orderId": 777001, "customerId": "co-2", "amount": 5000}),
                                  201, "POST /pays, mileage down")
            self.assertEqual(p["mileage"]["status"], "PENDING", p)
            self.assertStatus(s.call("payment", "POST", "/pays/%d/cancel" % p["payId"]), 200, "cancel pay")

            s.start_service("mileage")
            pay_ids = (o["payId"], p["payId"])

            def consumed():
                pos = s.query("mileage", "SELECT position FROM feed_positions WHERE feed = 'payment'")
                last = s.query("payment", "SELECT max(position) AS m FROM outbox")[0]["m"]
                assert pos and pos[0]["position"] >= last, (pos, last)
            self.eventually(consumed, 5, "mileage consumed the payment feed")

            for pid in pay_ids:
                rows = s.query("mileage", "SELECT status FROM mileages WHERE pay_id = ?", (pid,))
                self.assertIn(rows, ([], [{"status": "CANCELLED"}]), "ledger for cancelled payId %d" % pid)
            bal = s.query("mileage", "SELECT coalesce(sum(points), 0) AS n FROM mileages"
                                     " WHERE status = 'SAVED' AND customer_id IN ('co-1', 'co-2')")
            self.assertEqual(bal, [{"n": keep["mileage"]["points"]}], "only the kept order's points")

            # late synchronous accruals are refused, with no points
            for pid, cid, amount in ((o["payId"], "co-1", 10000), (p["payId"], "co-2", 5000)):
                self.assertError(s.call("mileage", "POST", "/mileages",
                                        {"payId": pid, "customerId": cid, "amount": amount}),
                                 409, "conflict", "POST /mileages for cancelled payId %d" % pid)
                st, _, m = s.call("mileage", "GET", "/mileages/%d" % pid)
                self.assertTrue(st == 404 or (st == 200 and m["status"] == "CANCELLED"), (st, m))
            self.assertQuiet(s, 5)

            def view():
                st, _, sm = s.call("gateway", "GET", "/mileageViews/customers/co-2")
                assert st == 200 and sm["balance"] == 0 and sm["payments"] == 1, (st, sm)
                st, _, sm = s.call("gateway", "GET", "/mileageViews/customers/co-1")
                assert st == 200 and sm["balance"] == 80 and sm["payments"] == 2, (st, sm)
            self.eventually(view, 3, "view balances after the overtaking cancel")

    def test_accrual_refused_after_cancel_consumed(self):
        """Mileage consumed PayCancelled (while payment's sync call never reached it):
        the accrual request that arrives afterwards is 409."""
        with System() as s:
            s.freeze("mileage")
            try:
                p = self.assertStatus(s.call("payment", "POST", "/pays",
                                             {"orderId": 880001, "customerId": "co-3", "amount": 12300},
                                             timeout=15),
                                      201, "POST /pays with mileage frozen")
                self.assertEqual(p["mileage"]["status"], "PENDING", p)
                self.assertStatus(s.call("payment", "POST", "/pays/%d/cancel" % p["payId"]), 200, "cancel")
            finally:
                s.thaw("mileage")

            # The invariants hold before mileage reads anything (no row is fine), so
            # wait for what this test is about: mileage has consumed the PayCancelled.
            def cancel_consumed():
                last = s.query("payment", "SELECT MAX(position) AS p FROM outbox")[0]["p"]
                got = s.query("mileage", "SELECT position FROM feed_positions WHERE feed = 'payment'")
                assert got and got[0]["position"] >= last, (got, last)
            self.eventually(cancel_consumed, 10, "mileage consumed payment's feed")
            self.assertQuiet(s, 5)
            self.assertError(s.call("mileage", "POST", "/mileages",
                                    {"payId": p["payId"], "customerId": "co-3", "amount": 12300}),
                             409, "conflict", "accrual after the cancel was consumed")
            rows = s.query("mileage", "SELECT status FROM mileages WHERE pay_id = ?", (p["payId"],))
            self.assertIn(rows, ([], [{"status": "CANCELLED"}]))
            self.assertQuiet(s, 3)


if __name__ == "__main__":
    main()
