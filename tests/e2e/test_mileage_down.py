#!/usr/bin/env python3
"""Mileage down: orders and cancels keep working; when mileage returns it accrues the
pending points and removes the cancelled ones, exactly once each."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main, mileage_of  # noqa: E402


class MileageDown(HeartyTestCase):
    def run_scenario(self, stop):
        with System() as s:
            cid = "md-1"
            a = self.assertStatus(s.place_order(cid, qty=1, price=10000), 201, "order A")
            b = self.assertStatus(s.place_order(cid, qty=1, price=20000), 201, "order B")
            c = self.assertStatus(s.place_order(cid, qty=1, price=30000), 201, "order C")
            for o in (a, b, c):
                self.assertEqual(o["mileage"]["status"], "SAVED", o)
            self.assertQuiet(s, 5)

            stop(s, "mileage")
            t0 = time.monotonic()
            d = self.assertStatus(s.place_order(cid, qty=1, price=40000), 201, "order D, mileage down")
            e = self.assertStatus(s.place_order(cid, qty=2, price=25050), 201, "order E, mileage down")
            self.assertLess(time.monotonic() - t0, 4, "two orders with mileage down took too long")
            for o in (d, e):
                self.assertEqual(o["status"], "PAID", o)
                self.assertEqual(mileage_of(o), {"points": 0, "status": "PENDING"}, o)
                p = self.assertStatus(s.call("payment", "GET", "/pays/%d" % o["payId"]), 200, "GET pay")
                self.assertEqual(p["status"], "APPROVED")
            ca = self.assertStatus(s.cancel_order(a["orderId"]), 200, "cancel A (SAVED) while mileage down")
            cd = self.assertStatus(s.cancel_order(d["orderId"]), 200, "cancel D (PENDING) while mileage down")
            self.assertEqual((ca["status"], cd["status"]), ("CANCELLED", "CANCELLED"))

            # the ledger is untouched while mileage is away
            ledger = {r["pay_id"]: r["status"] for r in s.query("mileage", "SELECT pay_id, status FROM mileages")}
            self.assertEqual(ledger, {a["payId"]: "SAVED", b["payId"]: "SAVED", c["payId"]: "SAVED"})
            # the view still answers while mileage is down
            st, _, _ = s.call("gateway", "GET", "/mileageViews/customers/" + cid)
            self.assertEqual(st, 200)

            s.start_service("mileage")
            t1 = time.monotonic()

            def caught_up():
                rows = {r["pay_id"]: (r["status"], r["points"])
                        for r in s.query("mileage", "SELECT pay_id, status, points FROM mileages")}
                assert rows.get(a["payId"], ("?",))[0] == "CANCELLED", rows
                assert rows[b["payId"]] == ("SAVED", 200), rows
                assert rows[c["payId"]] == ("SAVED", 300), rows
                assert rows[e["payId"]] == ("SAVED", 501), rows
                assert d["payId"] not in rows or rows[d["payId"]][0] == "CANCELLED", rows
                return rows
            self.eventually(caught_up, 5, "mileage caught up after restart")
            self.assertLess(time.monotonic() - t1, 5.5)
            self.assertQuiet(s, 5)

            # exactly once: one MileageSaved per accrued payment, one MileageCancelled for A
            for o in (a, b, c, e):
                self.assertEqual(len(s.events_for("mileage", "MileageSaved", o["payId"])), 1,
                                 "MileageSaved events for payId %d" % o["payId"])
            self.assertEqual(len(s.events_for("mileage", "MileageCancelled", a["payId"])), 1)
            self.assertEqual(len(s.events_for("mileage", "MileageCancelled", b["payId"])), 0)
            self.assertLessEqual(len(s.events_for("mileage", "MileageSaved", d["payId"])), 1)
            # through the API as well
            m = self.assertStatus(s.call("gateway", "GET", "/mileages/%d" % e["payId"]), 200, "GET mileage E")
            self.assertEqual((m["status"], m["points"]), ("SAVED", 501))

            def view():
                st, _, sm = s.call("gateway", "GET", "/mileageViews/customers/" + cid)
                assert st == 200 and sm["balance"] == 200 + 300 + 501 and sm["payments"] == 5, sm
            self.eventually(view, 5, "view balance after mileage returned")

            # consumers that restart again apply nothing twice
            s.kill("mileage")
            s.start_service("mileage")
            s.stop_service("mileage-view")
            s.start_service("mileage-view")
            time.sleep(0.5)
            self.assertQuiet(s, 5)
            self.assertEqual(len(s.events_for("mileage", "MileageSaved", e["payId"])), 1)

    def test_mileage_killed(self):
        self.run_scenario(lambda s, n: s.kill(n))

    def test_mileage_terminated(self):
        self.run_scenario(lambda s, n: s.stop_service(n))


if __name__ == "__main__":
    main()
