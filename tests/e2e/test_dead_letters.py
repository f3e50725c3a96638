#!/usr/bin/env python3
"""Dead letters: malformed outbox rows are parked with a reason by both consumers of the
payment feed (mileage, mileage-view), later events still flow, and parked events can be
re-driven once, with an operator's corrected data."""
import datetime
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main  # noqa: E402


def insert_outbox(s, rows):
    """Append rows (type, data text) to payment.db's outbox; returns their positions."""
    conn = sqlite3.connect(s.db("payment"), timeout=5)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        positions = []
        with conn:
            for typ, data in rows:
                cur = conn.execute("INSERT INTO outbox (type, time, data) VALUES (?, ?, ?)", (typ, now, data))
                positions.append(cur.lastrowid)
        return positions
    finally:
        conn.close()


class DeadLetters(HeartyTestCase):
    def parked(self, s, name):
        return {d["position"]: d for d in s.list_all(name, "/deadLetters") if d["feed"] == "payment"}

    def test_park_and_redrive(self):
        with System() as s:
            o0 = self.assertStatus(s.place_order("dl-1", qty=1, price=10000), 201, "order 0")
            self.assertQuiet(s, 5)
            real = {"payId": o0["payId"], "orderId": o0["orderId"], "customerId": "dl-1", "amount": 10000}
            bad = [
                ("PayApproved", '{"payId":"oops"}'),
                ("PayApproved", "not json{"),
                ("PayRefunded", '{"payId":%d,"orderId":%d,"customerId":"dl-1","amount":10000}'
                 % (o0["payId"], o0["orderId"])),
            ]
            positions = insert_outbox(s, bad)
            o1 = self.assertStatus(s.place_order("dl-1", qty=1, price=20000), 201, "order 1 after bad rows")

            # the feed serves the non-JSON row with data as a JSON string
            st, _, feed = s.call("payment", "GET", "/events?after=%d&limit=1" % (positions[1] - 1))
            self.assertEqual(st, 200, feed)
            self.assertEqual(len(feed["items"]), 1, feed)
            ev = feed["items"][0]
            self.assertEqual(ev["position"], positions[1])
            self.assertEqual((ev["event"]["type"], ev["event"]["data"], ev["event"]["id"], ev["event"]["source"],
                              ev["event"]["specversion"]),
                             ("PayApproved", "not json{", str(positions[1]), "/payment", "1.0"), ev)

            for name in ("mileage", "mileage-view"):
                def all_parked():
                    got = self.parked(s, name)
                    assert sorted(got) == positions, got
                    return got
                got = self.eventually(all_parked, 5, "%s parked the 3 bad events" % name)
                for pos, (typ, _) in zip(positions, bad):
                    d = got[pos]
                    self.assertEqual((d["status"], d["type"], d["feed"]), ("PARKED", typ, "payment"), d)
                    self.assertIsInstance(d["reason"], str)
                    self.assertTrue(d["reason"].strip(), "%s: empty reason %r" % (name, d))
                    self.assertIsInstance(d["id"], int)
                    self.assertIsInstance(d["event"], dict, d)
                    self.assertEqual(d["event"].get("type"), typ, d)

            # later events still applied
            self.assertStatus(s.cancel_order(o1["orderId"]), 200, "cancel order 1")
            o2 = self.assertStatus(s.place_order("dl-1", qty=1, price=30000), 201, "order 2")
            self.assertEqual(o2["mileage"]["status"], "SAVED")
            self.assertQuiet(s, 5)

            def summary():
                st2, _, sm = s.call("gateway", "GET", "/mileageViews/customers/dl-1")
                assert st2 == 200 and sm["balance"] == 100 + 300 and sm["payments"] == 3, sm
            self.eventually(summary, 3, "view applied later events")

            for name in ("mileage", "mileage-view"):
                dl = self.parked(s, name)[positions[0]]
                url = "/deadLetters/%d/retry" % dl["id"]
                self.assertError(s.call(name, "POST", url), 422, "event_rejected", name + " retry without body")
                self.assertError(s.call(name, "POST", url, raw='{"data":', headers={"Content-Type": "application/json"}),
                                 400, "invalid_json", name + " retry with malformed JSON")
                self.assertError(s.call(name, "POST", url, {"foo": 1}), 400, "invalid_argument",
                                 name + " retry with an unknown field")
                after = self.parked(s, name)[positions[0]]
                self.assertEqual(after["status"], "PARKED", after)
                self.assertTrue(after["reason"].strip())

                r = self.assertStatus(s.call(name, "POST", url, {"data": real}), 200, name + " corrected retry")
                self.assertEqual((r["id"], r["status"]), (dl["id"], "REDRIVEN"), r)
                self.assertError(s.call(name, "POST", url, {"data": real}), 409, "conflict", name + " second retry")
                self.assertError(s.call(name, "POST", url), 409, "conflict", name + " third retry, no body")
                self.assertEqual(self.parked(s, name)[positions[0]]["status"], "REDRIVEN")
                self.assertError(s.call(name, "POST", "/deadLetters/999999/retry"), 404, "not_found",
                                 name + " retry unknown id")
                # the unknown type is rejected again
                dl3 = self.parked(s, name)[positions[2]]
                self.assertError(s.call(name, "POST", "/deadLetters/%d/retry" % dl3["id"]), 422,
                                 "event_rejected", name + " retry of the unknown type")
                self.assertEqual(self.parked(s, name)[positions[2]]["status"], "PARKED")

            # applied once: one MileageSaved for the corrected payId, points unchanged
            self.assertEqual(len(s.events_for("mileage", "MileageSaved", o0["payId"])), 1)
            self.assertEqual(s.query("mileage", "SELECT points, status FROM mileages WHERE pay_id = ?",
                                     (o0["payId"],)), [{"points": 100, "status": "SAVED"}])
            self.assertQuiet(s, 5)

            # paging of dead letters
            st, _, page = s.call("mileage", "GET", "/deadLetters?limit=1")
            self.assertEqual((st, len(page["items"])), (200, 1), page)
            self.assertIsNotNone(page["next"])

            # parked rows survive restarts and are not parked twice
            before = {n: self.parked(s, n) for n in ("mileage", "mileage-view")}
            s.kill("mileage")
            s.kill("mileage-view")
            s.start_service("mileage")
            s.start_service("mileage-view")
            time.sleep(0.5)
            for n in ("mileage", "mileage-view"):
                now = self.parked(s, n)
                self.assertEqual({p: (d["id"], d["status"]) for p, d in now.items()},
                                 {p: (d["id"], d["status"]) for p, d in before[n].items()}, n)
            self.assertQuiet(s, 5)


if __name__ == "__main__":
    main()
