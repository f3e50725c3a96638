#!/usr/bin/env python3
"""Durability: no acknowledged write is lost when a process is SIGKILLed and restarted
(idle, and in the middle of a burst of concurrent orders and cancels); consumers resume
without applying anything twice."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SERVICES, HeartyTestCase, System, main  # noqa: E402


class Ledger:
    """What clients were told (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.orders = {}       # orderId -> acknowledged order body (status PAID)
        self.cancelled = set()  # orderIds whose cancel was acknowledged (200)
        self.maybe = set()     # orderIds whose cancel got no clear answer
        self.errors = []       # unexpected answers (status, body)

    def place(self, s, cid, price):
        try:
            st, _, b = s.place_order(cid, qty=1, price=price, timeout=8)
        except OSError as e:
            return None, repr(e)
        if st == 201:
            with self.lock:
                self.orders[b["orderId"]] = b
            return b, None
        if st not in (502, 503, 504):
            with self.lock:
                self.errors.append(("POST /orders", st, b))
        return None, st

    def cancel(self, s, oid):
        try:
            st, _, b = s.cancel_order(oid, timeout=8)
        except OSError:
            st, b = None, None
        with self.lock:
            if st == 200:
                self.cancelled.add(oid)
            else:
                self.maybe.add(oid)
                if st not in (None, 502, 503, 504):
                    self.errors.append(("POST /orders/%d/cancel" % oid, st, b))
        return st


class Durability(HeartyTestCase):
    def verify(self, s, led, what):
        """Every acknowledged order, payment and accrual is there with its status."""
        for oid, o in sorted(led.orders.items()):
            want = {"CANCELLED"} if oid in led.cancelled else (
                {"PAID", "CANCELLED"} if oid in led.maybe else {"PAID"})
            st, _, got = s.call("order", "GET", "/orders/%d" % oid)
            self.assertEqual(st, 200, "%s: acknowledged order %d: %s %s" % (what, oid, st, got))
            self.assertIn(got["status"], want, "%s: order %d" % (what, oid))
            self.assertEqual((got["payId"], got["amount"]), (o["payId"], o["amount"]), what)
            st, _, p = s.call("payment", "GET", "/pays/%d" % o["payId"])
            self.assertEqual(st, 200, "%s: acknowledged payment %d: %s %s" % (what, o["payId"], st, p))
            self.assertEqual(p["status"], "CANCELLED" if got["status"] == "CANCELLED" else "APPROVED",
                             "%s: payment %d" % (what, o["payId"]))
            st, _, m = s.call("mileage", "GET", "/mileages/%d" % o["payId"])
            if got["status"] == "PAID":
                self.assertEqual((st, m.get("status"), m.get("points")), (200, "SAVED", o["amount"] // 100),
                                 "%s: mileage of payment %d" % (what, o["payId"]))
            elif o["mileage"]["status"] == "SAVED":
                self.assertEqual((st, m.get("status")), (200, "CANCELLED"),
                                 "%s: cancelled mileage of payment %d" % (what, o["payId"]))

    def test_kill_each_service(self):
        with System() as s:
            led = Ledger()
            for i in range(6):
                b, err = led.place(s, "du-%d" % (i % 2), 1000 * (i + 1))
                self.assertIsNotNone(b, err)
            for oid in sorted(led.orders)[:2]:
                self.assertEqual(led.cancel(s, oid), 200)
            for n, name in enumerate(SERVICES):
                s.kill(name)
                s.start_service(name)
                self.assertQuiet(s, 5)
                self.verify(s, led, "after SIGKILL of %s" % name)
                b, err = led.place(s, "du-x", 777 * (n + 1))
                self.assertIsNotNone(b, "order after restarting %s: %s" % (name, err))
                self.assertEqual(led.cancel(s, sorted(led.orders)[2 + n]), 200)
            self.assertQuiet(s, 5)
            self.verify(s, led, "at the end")
            self.assertEqual(led.errors, [])

    def order_killed_while_payment_works(self, s, send):
        """Freeze payment, let order call it (send() in a thread), SIGKILL order, thaw
        payment (it completes the call nobody waits for), restart order."""
        s.freeze("payment")
        t = threading.Thread(target=lambda: self.swallow(send), daemon=True)
        try:
            t.start()
            time.sleep(0.4)
            s.kill("order")
        finally:
            s.thaw("payment")
        t.join(10)
        time.sleep(0.5)  # payment finishes the orphaned request
        s.start_service("order")

    @staticmethod
    def swallow(fn):
        try:
            fn()
        except OSError:
            pass

    def test_order_killed_during_cancel(self):
        """An order whose process died while payment cancelled its payment does not stay
        PAID over the CANCELLED payment once it is back."""
        with System(env={"PAYMENT_TIMEOUT_MS": "5000"}) as s:
            a = self.assertStatus(s.place_order("mk-1", via="order"), 201, "order A")
            self.order_killed_while_payment_works(s, lambda: s.cancel_order(a["orderId"], via="order"))
            st, _, p = s.call("payment", "GET", "/pays/%d" % a["payId"])
            self.assertEqual((st, p["status"]), (200, "CANCELLED"), "payment finished the orphaned cancel")
            v = s.wait_quiet(10)
            self.assertEqual(v, [], "order killed during its cancel: after restart (10 s)")

    def test_order_killed_during_payment(self):
        """An order whose process died while payment approved its payment ends PAID with
        that payment (or PAYMENT_FAILED without one), not PENDING forever."""
        with System(env={"PAYMENT_TIMEOUT_MS": "5000"}) as s:
            self.order_killed_while_payment_works(s, lambda: s.place_order("mk-2", via="order", timeout=10))
            rows = s.query("order", "SELECT id, status, pay_id FROM orders WHERE customer_id = 'mk-2'")
            self.assertEqual(len(rows), 1, rows)
            pays = s.query("payment", "SELECT id, status FROM payments WHERE order_id = ?", (rows[0]["id"],))

            def resolved():
                o = s.query("order", "SELECT status, pay_id FROM orders WHERE id = ?", (rows[0]["id"],))[0]
                if pays and pays[0]["status"] == "APPROVED":
                    assert (o["status"], o["pay_id"]) == ("PAID", pays[0]["id"]), (o, pays)
                else:
                    assert o["status"] == "PAYMENT_FAILED", (o, pays)
            self.eventually(resolved, 10, "order killed during its payment call: resolved after restart",
                            interval=0.2)
            self.assertQuiet(s, 5)

    def test_kill_during_burst(self):
        with System(env={"PAYMENT_TIMEOUT_MS": "2000", "MILEAGE_TIMEOUT_MS": "500"}) as s:
            led = Ledger()
            for victim in ("payment", "mileage", "order", "mileage-view", "gateway"):
                # the breaker may still be open from the previous round: wait for service
                self.eventually(lambda: self.assertIsNotNone(led.place(s, "warm", 100)[0]), 15,
                                "orders accepted before killing %s" % victim, interval=0.2)
                stop = threading.Event()

                def client(k):
                    for j in range(40):
                        if stop.is_set():
                            return
                        b, _ = led.place(s, "bu-%d" % k, 100 * (j + 1) + k)
                        if b is not None and j % 3 == 0:
                            led.cancel(s, b["orderId"])
                        elif b is None:
                            time.sleep(0.02)
                threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(3)]
                for t in threads:
                    t.start()
                time.sleep(0.3)
                s.kill(victim)
                time.sleep(0.3)
                s.start_service(victim)
                time.sleep(0.3)
                stop.set()
                for t in threads:
                    t.join(30)
                    self.assertFalse(t.is_alive(), "a client thread hung")
                sys.stderr.write("burst killing %s: %d orders acknowledged so far, %d cancels, %d unclear\n"
                                 % (victim, len(led.orders), len(led.cancelled), len(led.maybe)))
                v = s.wait_quiet(10)
                self.assertEqual(v, [], "invariants after killing %s mid-burst" % victim)
                self.verify(s, led, "after SIGKILL of %s mid-burst" % victim)
            self.assertGreater(len(led.orders), 20, "too few orders acknowledged to mean anything")
            self.assertEqual(led.errors, [], "unexpected answers during the bursts")
            # consumers are not behind and nothing was applied twice
            for r in s.query("mileage", "SELECT pay_id FROM mileages"):
                self.assertLessEqual(len(s.events_for("mileage", "MileageSaved", r["pay_id"])), 1)


if __name__ == "__main__":
    main()
