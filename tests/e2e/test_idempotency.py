#!/usr/bin/env python3
"""Idempotency: Idempotency-Key on POST /orders, one payment per orderId, one accrual
per payId, harmless repeated cancels."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main  # noqa: E402

ORDER = {"customerId": "i-1", "item": "toast-set", "qty": 2, "price": 4500}


class Idempotency(HeartyTestCase):
    def test_idempotency_key(self):
        with System() as s:
            k = {"Idempotency-Key": "key-1"}
            st1, hd1, b1 = s.call("gateway", "POST", "/orders", ORDER, headers=k)
            self.assertEqual(st1, 201, b1)
            self.assertNotEqual(hd1.get("idempotent-replayed"), "true", "first answer marked replayed")
            for i in range(2):
                st2, hd2, b2 = s.call("gateway", "POST", "/orders", ORDER, headers=k)
                self.assertEqual((st2, b2), (st1, b1), "replay %d: same status and body" % i)
                self.assertEqual(hd2.get("idempotent-replayed"), "true", "replay %d header: %s" % (i, hd2))
            rows = s.query("order", "SELECT id FROM orders WHERE customer_id = 'i-1'")
            self.assertEqual(rows, [{"id": b1["orderId"]}], "one order for one key")
            self.assertEqual(len(s.query("payment", "SELECT id FROM payments WHERE customer_id = 'i-1'")), 1)

            # same key, different body
            other = dict(ORDER, qty=3)
            self.assertError(s.call("gateway", "POST", "/orders", other, headers=k), 422,
                             "idempotency_mismatch", "same key, different body")
            # a different key is a new order
            b3 = self.assertStatus(s.call("gateway", "POST", "/orders", ORDER,
                                          headers={"Idempotency-Key": "key-2"}), 201, "new key")
            self.assertNotEqual(b3["orderId"], b1["orderId"])
            # no key: two orders
            n1 = self.assertStatus(s.call("gateway", "POST", "/orders", ORDER), 201, "no key 1")
            n2 = self.assertStatus(s.call("gateway", "POST", "/orders", ORDER), 201, "no key 2")
            self.assertNotEqual(n1["orderId"], n2["orderId"])
            # the key survives a restart of order
            s.kill("order")
            s.start_service("order")
            st4, hd4, b4 = s.call("gateway", "POST", "/orders", ORDER, headers=k)
            self.assertEqual((st4, b4, hd4.get("idempotent-replayed")), (201, b1, "true"),
                             "replay after order restart")
            self.assertQuiet(s, 5)

    def test_in_progress(self):
        with System(env={"PAYMENT_TIMEOUT_MS": "5000"}) as s:
            key = {"Idempotency-Key": "slow-1"}
            body = dict(ORDER, customerId="i-2")
            s.freeze("payment")
            first = {}

            def send():
                try:
                    first["resp"] = s.call("order", "POST", "/orders", body, headers=key, timeout=20)
                except Exception as e:  # noqa: BLE001
                    first["error"] = e
            t = threading.Thread(target=send, daemon=True)
            try:
                t.start()
                # wait until order has recorded the key (bounded), then send the second
                seen = s.wait_until(lambda: s.query("order", "SELECT id FROM orders WHERE idem_key = ?",
                                                    ("slow-1",)), 3)
                if not seen:
                    time.sleep(0.5)
                resp = s.call("order", "POST", "/orders", body, headers=key, timeout=5)
                self.assertError(resp, 409, "in_progress", "same key while the first is in flight")
            finally:
                s.thaw("payment")
                t.join(15)
            self.assertFalse(t.is_alive(), "first request never finished")
            self.assertNotIn("error", first, first)
            st1, _, b1 = first["resp"]
            self.assertEqual(st1, 201, b1)
            st2, hd2, b2 = s.call("order", "POST", "/orders", body, headers=key)
            self.assertEqual((st2, b2, hd2.get("idempotent-replayed")), (201, b1, "true"))
            self.assertEqual(len(s.query("order", "SELECT id FROM orders WHERE customer_id = 'i-2'")), 1)
            self.assertQuiet(s, 5)

    def test_payment_once_per_order(self):
        with System() as s:
            body = {"orderId": 4242, "customerId": "i-3", "amount": 9000}
            p1 = self.assertStatus(s.call("payment", "POST", "/pays", body), 201, "first POST /pays")
            self.assertEqual((p1["orderId"], p1["customerId"], p1["amount"], p1["status"]),
                             (4242, "i-3", 9000, "APPROVED"), p1)
            self.assertEqual(p1["mileage"]["status"], "SAVED", p1)
            self.assertEqual(p1["mileage"]["points"], 90, p1)
            p2 = self.assertStatus(s.call("payment", "POST", "/pays", body), 200, "second POST /pays")
            self.assertEqual(p2["payId"], p1["payId"])
            self.assertEqual(p2["status"], "APPROVED")
            self.assertError(s.call("payment", "POST", "/pays", dict(body, amount=9001)), 409, "conflict",
                             "same orderId, different amount")
            self.assertError(s.call("payment", "POST", "/pays", dict(body, customerId="i-4")), 409, "conflict",
                             "same orderId, different customer")
            self.assertEqual(s.query("payment", "SELECT id FROM payments WHERE order_id = 4242"),
                             [{"id": p1["payId"]}])
            self.assertEqual(len(s.events_for("payment", "PayApproved", p1["payId"])), 1)

            # repeated POST /mileages accrues once
            mb = {"payId": p1["payId"], "customerId": "i-3", "amount": 9000}
            for i in range(3):
                m = self.assertStatus(s.call("mileage", "POST", "/mileages", mb), 200, "repeat accrual %d" % i)
                self.assertEqual((m["payId"], m["points"], m["status"]), (p1["payId"], 90, "SAVED"), m)
            self.assertEqual(len(s.events_for("mileage", "MileageSaved", p1["payId"])), 1)

            # repeated payment cancel: 200 each, one PayCancelled
            for i in range(3):
                c = self.assertStatus(s.call("payment", "POST", "/pays/%d/cancel" % p1["payId"]), 200,
                                      "cancel %d" % i)
                self.assertEqual(c["status"], "CANCELLED")
            self.assertEqual(len(s.events_for("payment", "PayCancelled", p1["payId"])), 1)
            # a repeat POST /pays for a cancelled payment charges nothing new
            p3 = self.assertStatus(s.call("payment", "POST", "/pays", body), 200, "POST /pays after cancel")
            self.assertEqual((p3["payId"], p3["status"]), (p1["payId"], "CANCELLED"))
            self.assertQuiet(s, 5)

    def test_accrual_race_with_event(self):
        """Synchronous POST /mileages racing the PayApproved event: one accrual."""
        with System() as s:
            s.stop_service("mileage")
            pays = []
            for i in range(5):
                p = self.assertStatus(s.call("payment", "POST", "/pays",
                                             {"orderId": 500 + i, "customerId": "i-5", "amount": 1000 * (i + 1)}),
                                      201, "POST /pays with mileage down")
                self.assertEqual(p["mileage"]["status"], "PENDING", p)
                pays.append(p)
            s.start_service("mileage")
            results = {}

            def accrue(p):
                results[p["payId"]] = [
                    s.call("mileage", "POST", "/mileages",
                           {"payId": p["payId"], "customerId": "i-5", "amount": p["amount"]})[0]
                    for _ in range(2)]
            ts = [threading.Thread(target=accrue, args=(p,)) for p in pays]
            for t in ts:
                t.start()
            for t in ts:
                t.join(20)
            for p in pays:
                sts = results[p["payId"]]
                self.assertIn(sts[0], (200, 201), sts)
                self.assertEqual(sts[1], 200, sts)
            self.assertQuiet(s, 5)
            for p in pays:
                self.assertEqual(len(s.events_for("mileage", "MileageSaved", p["payId"])), 1)
            rows = s.query("mileage", "SELECT sum(points) AS n FROM mileages WHERE customer_id = 'i-5'")
            self.assertEqual(rows, [{"n": 10 + 20 + 30 + 40 + 50}])


if __name__ == "__main__":
    main()
