#!/usr/bin/env python3
"""Happy path through the gateway: order -> payment -> mileage (sync) -> view (events)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SERVICES, HeartyTestCase, System, main, mileage_of  # noqa: E402


class HappyPath(HeartyTestCase):
    def test_order_pay_accrue_view(self):
        with System() as s:
            resp = s.place_order("c-1", item="toast-set", qty=2, price=4500)
            o = self.assertStatus(resp, 201, "POST /orders via gateway")
            self.assertIsInstance(o["orderId"], int)
            self.assertIsInstance(o["payId"], int)
            for k, want in (("customerId", "c-1"), ("item", "toast-set"), ("qty", 2),
                            ("price", 4500), ("amount", 9000), ("status", "PAID")):
                self.assertEqual(o.get(k), want, "order field %s in %s" % (k, o))
            self.assertEqual(mileage_of(o), {"points": 90, "status": "SAVED"}, o)
            self.assertIn("createdAt", o)
            self.assertIn("updatedAt", o)
            oid, pid = o["orderId"], o["payId"]

            got = self.assertStatus(s.call("gateway", "GET", "/orders/%d" % oid), 200, "GET order")
            self.assertEqual((got["orderId"], got["status"], got["payId"], got["amount"]),
                             (oid, "PAID", pid, 9000), got)
            p = self.assertStatus(s.call("gateway", "GET", "/pays/%d" % pid), 200, "GET pay")
            self.assertEqual((p["payId"], p["orderId"], p["customerId"], p["amount"], p["status"]),
                             (pid, oid, "c-1", 9000, "APPROVED"), p)
            m = self.assertStatus(s.call("gateway", "GET", "/mileages/%d" % pid), 200, "GET mileage")
            self.assertEqual((m["payId"], m["customerId"], m["amount"], m["points"], m["status"]),
                             (pid, "c-1", 9000, 90, "SAVED"), m)

            lst = self.assertStatus(s.call("gateway", "GET", "/orders?customerId=c-1"), 200, "list orders")
            self.assertEqual([i["orderId"] for i in lst["items"]], [oid])
            self.assertIsNone(lst["next"])
            lst = self.assertStatus(s.call("gateway", "GET", "/pays?orderId=%d" % oid), 200, "list pays")
            self.assertEqual([i["payId"] for i in lst["items"]], [pid])
            lst = self.assertStatus(s.call("gateway", "GET", "/mileages?customerId=c-1"), 200, "list mileages")
            self.assertEqual([(i["payId"], i["points"]) for i in lst["items"]], [(pid, 90)])

            def view_row():
                st, _, b = s.call("gateway", "GET", "/mileageViews?customerId=c-1")
                assert st == 200, (st, b)
                assert len(b["items"]) == 1, b
                r = b["items"][0]
                want = {"payId": pid, "orderId": oid, "customerId": "c-1", "amount": 9000,
                        "points": 90, "payStatus": "APPROVED", "mileageStatus": "SAVED"}
                assert {k: r.get(k) for k in want} == want, r
                assert r.get("updatedAt"), r
            self.eventually(view_row, 2, "view row for the order")

            def summary(want):
                def check():
                    st, _, b = s.call("gateway", "GET", "/mileageViews/customers/c-1")
                    assert st == 200, (st, b)
                    assert b == want, b
                return check
            self.eventually(summary({"customerId": "c-1", "balance": 90, "earned": 90,
                                     "cancelled": 0, "payments": 1}), 2, "customer summary")

            # floor of 1%: 12345 -> 123; 199 -> 1
            o2 = self.assertStatus(s.place_order("c-1", qty=1, price=12345), 201, "second order")
            self.assertEqual(mileage_of(o2), {"points": 123, "status": "SAVED"}, o2)
            o3 = self.assertStatus(s.place_order("c-1", qty=1, price=199), 201, "third order")
            self.assertEqual(mileage_of(o3), {"points": 1, "status": "SAVED"}, o3)
            self.assertEqual(len({oid, o2["orderId"], o3["orderId"]}), 3)
            self.eventually(summary({"customerId": "c-1", "balance": 214, "earned": 214,
                                     "cancelled": 0, "payments": 3}), 2, "customer summary after 3 orders")
            # another customer is separate
            self.assertStatus(s.place_order("c-2", qty=3, price=1000), 201, "order of c-2")
            self.eventually(summary({"customerId": "c-1", "balance": 214, "earned": 214,
                                     "cancelled": 0, "payments": 3}), 2, "c-1 unchanged")
            self.assertQuiet(s, 5)

    def test_probes_and_metrics(self):
        with System() as s:
            for name in SERVICES:
                st, hd, b = s.call(name, "GET", "/healthz")
                self.assertEqual((st, b), (200, {"status": "ok"}), name + " /healthz")
                st, hd, b = s.call(name, "GET", "/readyz")
                self.assertEqual((st, b), (200, {"status": "ready"}), name + " /readyz")
                st, hd, b = s.call(name, "GET", "/metrics")
                self.assertEqual(st, 200, name + " /metrics")
                self.assertTrue(hd.get("content-type", "").startswith("text/plain"),
                                "%s /metrics content-type %r" % (name, hd.get("content-type")))
                samples = [l for l in b.splitlines()
                           if re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+( [0-9]+)?$", l)]
                self.assertTrue(samples, "%s /metrics has no Prometheus sample line:\n%s" % (name, b[:500]))
                self.assertLess(s.ready_seconds[name], 10)

    def test_rate_is_configurable(self):
        with System(service_env={"mileage": {"MILEAGE_RATE_BP": "250"}}) as s:
            self.assertEqual(s.rate_bp, 250)
            o = self.assertStatus(s.place_order("r-1", qty=1, price=9999), 201, "order")
            self.assertEqual(mileage_of(o), {"points": 249, "status": "SAVED"}, o)
            self.assertQuiet(s, 5)


if __name__ == "__main__":
    main()
