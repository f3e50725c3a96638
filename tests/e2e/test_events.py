#!/usr/bin/env python3
"""The outbox feeds (payment, mileage): CloudEvents 1.0 items in position order, the
after/limit/next contract, and the long poll (held until an append or the wait ends)."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main  # noqa: E402


class Events(HeartyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = System()
        try:
            cls.s.start()
        except BaseException:
            cls.s.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def feed(self, name, query, timeout=10):
        return self.assertStatus(self.s.call(name, "GET", "/events?" + query, timeout=timeout), 200,
                                 "%s /events?%s" % (name, query))

    def test_cloudevents(self):
        s = self.s
        o = self.assertStatus(s.place_order("ev-1", qty=3, price=1000), 201, "order")
        self.assertStatus(s.cancel_order(o["orderId"]), 200, "cancel")
        self.assertQuiet(s, 5)
        got = self.feed("payment", "after=0&limit=500")
        mine = [i for i in got["items"] if i["event"]["data"].get("payId") == o["payId"]]
        self.assertEqual([i["event"]["type"] for i in mine], ["PayApproved", "PayCancelled"], got)
        for i in mine:
            e = i["event"]
            self.assertEqual((e["specversion"], e["id"], e["source"], e["datacontenttype"]),
                             ("1.0", str(i["position"]), "/payment", "application/json"), e)
            self.assertTrue(isinstance(e["time"], str) and e["time"], e)
            self.assertEqual(e["data"], {"payId": o["payId"], "orderId": o["orderId"], "customerId": "ev-1",
                                         "amount": 3000}, e)
        positions = [i["position"] for i in got["items"]]
        self.assertEqual(positions, sorted(set(positions)), "positions ascend without repeats")
        self.assertEqual(got["next"], positions[-1])

        got = self.feed("mileage", "after=0&limit=500")
        mine = [i for i in got["items"] if i["event"]["data"].get("payId") == o["payId"]]
        self.assertEqual([i["event"]["type"] for i in mine], ["MileageSaved", "MileageCancelled"], got)
        for i in mine:
            e = i["event"]
            self.assertEqual((e["specversion"], e["id"], e["source"]), ("1.0", str(i["position"]), "/mileage"), e)
            self.assertEqual(e["data"], {"payId": o["payId"], "customerId": "ev-1", "points": 30}, e)

    def test_after_limit_next(self):
        s = self.s
        for i in range(4):
            self.assertStatus(s.place_order("ev-2", price=100 + i), 201, "order %d" % i)
        allp = [i["position"] for i in self.feed("payment", "after=0&limit=500")["items"]]
        self.assertGreaterEqual(len(allp), 4)
        page = self.feed("payment", "after=%d&limit=2" % allp[0])
        self.assertEqual([i["position"] for i in page["items"]], allp[1:3])
        self.assertEqual(page["next"], allp[2])
        last = allp[-1]
        empty = self.feed("payment", "after=%d" % last)
        self.assertEqual((empty["items"], empty["next"]), ([], last), "empty page: next stays at after")
        beyond = self.feed("payment", "after=%d" % (last + 1000))
        self.assertEqual(beyond["items"], [])

    def test_long_poll(self):
        s = self.s
        last = self.feed("payment", "after=0&limit=500")["next"]
        t0 = time.monotonic()
        got = self.feed("payment", "after=%d&wait=800" % last)
        took = time.monotonic() - t0
        self.assertEqual(got["items"], [])
        self.assertTrue(0.6 <= took < 2.0, "an empty long poll with wait=800 took %.2f s" % took)

        result = {}

        def poll():
            t1 = time.monotonic()
            result["body"] = self.feed("payment", "after=%d&wait=5000" % last, timeout=10)
            result["took"] = time.monotonic() - t1
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.3)
        o = self.assertStatus(s.place_order("ev-3", via="order"), 201, "order during the long poll")
        th.join(10)
        self.assertIn("body", result, "long poll never answered")
        self.assertLess(result["took"], 2.0, "the long poll was not woken by the append")
        types = [(i["event"]["type"], i["event"]["data"]["payId"]) for i in result["body"]["items"]]
        self.assertIn(("PayApproved", o["payId"]), types)


if __name__ == "__main__":
    main()
