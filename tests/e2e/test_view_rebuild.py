#!/usr/bin/env python3
"""View rebuild: delete the read model's database; replaying the feeds reproduces it
exactly (rows, updatedAt, customer summaries)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main  # noqa: E402

CUSTOMERS = ("vr-1", "vr-2", "vr-3")


class ViewRebuild(HeartyTestCase):
    def snapshot(self, s):
        snap = {}
        for c in CUSTOMERS:
            rows = s.list_all("mileage-view", "/mileageViews?customerId=" + c, limit=2)
            st, _, sm = s.call("mileage-view", "GET", "/mileageViews/customers/" + c)
            assert st == 200, (st, sm)
            snap[c] = {"rows": rows, "summary": sm}
        return snap

    def test_rebuild(self):
        with System() as s:
            orders = []
            for i in range(9):
                c = CUSTOMERS[i % 3]
                orders.append(self.assertStatus(s.place_order(c, qty=1 + i % 2, price=1000 * (i + 1)), 201,
                                                "order %d" % i))
            for i in (1, 4, 6):
                self.assertStatus(s.cancel_order(orders[i]["orderId"]), 200, "cancel %d" % i)
            self.assertQuiet(s, 5)
            before = self.snapshot(s)
            self.assertEqual(sum(len(v["rows"]) for v in before.values()), 9)
            self.assertEqual(sum(v["summary"]["payments"] for v in before.values()), 9)

            s.stop_service("mileage-view")
            for suffix in ("", "-wal", "-shm"):
                p = s.db("mileage-view") + suffix
                if os.path.exists(p):
                    os.remove(p)
            t0 = time.monotonic()
            s.start_service("mileage-view")

            def same():
                after = self.snapshot(s)
                assert after == before, "after rebuild:\n%s\nbefore:\n%s" % (after, before)
            self.eventually(same, 5, "rebuilt view equals the old one", interval=0.1)
            self.assertLess(time.monotonic() - t0, 5.5)
            self.assertQuiet(s, 3)

            # the rebuilt view keeps following new events
            o = self.assertStatus(s.place_order("vr-1", qty=1, price=50000), 201, "order after rebuild")
            want = before["vr-1"]["summary"]["balance"] + 500

            def follows():
                st, _, sm = s.call("mileage-view", "GET", "/mileageViews/customers/vr-1")
                assert sm["balance"] == want, sm
            self.eventually(follows, 3, "rebuilt view follows new events")
            self.assertQuiet(s, 3)
            self.assertTrue(o["payId"])


if __name__ == "__main__":
    main()
