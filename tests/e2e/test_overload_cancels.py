#!/usr/bin/env python3
"""The seed's overload scenario for cancellations (issue 4): orders are placed, then 100
concurrent clients cancel them through the gateway for 20 s while payment is slow
(FAULT_DELAY_MS far above order's PAYMENT_TIMEOUT_MS) or frozen (SIGSTOP). Order's
payment breaker opens; cancels are refused fast with 503 + Retry-After and the orders stay
PAID; once the fault is removed the breaker closes within the open interval + probes,
every cancel succeeds, and every order answered 200 is really cancelled (payment and
points too). See overload.py; the figures are printed on lines starting with "FIGURES:"."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overload as ov  # noqa: E402
from harness import HeartyTestCase, loadgen, main  # noqa: E402

ORDERS = 400
FOLLOW_UP = 200


def read_ids(path):
    with open(path) as f:
        return [int(line) for line in f if line.strip()]


def write_ids(path, ids):
    with open(path, "w") as f:
        f.write("".join("%d\n" % i for i in ids))


class OverloadCancels(HeartyTestCase):
    def statuses(self, s, ids):
        rows = s.query("order", "SELECT id, status, pay_id FROM orders")
        want = set(ids)
        return {r["id"]: r for r in rows if r["id"] in want}

    def scenario(self, kind):
        with ov.new_system() as s:
            ids_file = os.path.join(s.tmp, "orders.txt")
            placed = loadgen(s.url("gateway"), mode="order", requests=ORDERS, concurrency=ov.GENTLE,
                             duration_max=60, orders_file=ids_file, customers=40, seed=3)
            self.assertEqual(placed["status"], {"201": ORDERS}, "orders before the fault: %s"
                             % ov.describe(placed))
            ids = read_ids(ids_file)
            self.assertEqual(len(ids), ORDERS)
            self.assertQuiet(s, 20)  # every order's points are in before the fault

            cancelled = set()  # ids whose cancel was answered 200

            ov.apply_fault(s, kind)
            poller = ov.StatePoller(s)
            poller.start()
            try:
                ok_file = os.path.join(s.tmp, "ok-fault.txt")
                r = ov.run_load(s, "cancel", ov.FAULT_SECONDS, ov.THINK_MS, orders_file=ids_file,
                                ok_file=ok_file)
                ov.check_fault_run(self, r, "cancels, payment %s, %d clients" % (kind, ov.CLIENTS), "200")
                cancelled.update(read_ids(ok_file))
                calls = ov.breaker_calls(s)
                self.assertIn(1, poller.seen, "order's payment breaker never seen open (states %s, calls %s)"
                              % (poller.seen, calls))
                self.assertGreater(calls.get("short_circuited", 0), 0, "no call short-circuited: %s" % calls)
                self.assertEqual(ov.breaker_state(s, "gateway", "orders"), 0, "gateway's breaker for /orders")

                sat_ok = os.path.join(s.tmp, "ok-saturate.txt")
                sat = ov.run_load(s, "cancel", ov.SATURATE_SECONDS, 0, orders_file=ids_file, ok_file=sat_ok)
                ov.check_fault_run(self, sat, "cancels, payment %s, %d clients without pause"
                                   % (kind, ov.CLIENTS), "200", p99=False)
                cancelled.update(read_ids(sat_ok))

                # A refused cancel leaves the order PAID (and its payment APPROVED).
                rows = self.statuses(s, ids)
                wrong = {i: r["status"] for i, r in rows.items()
                         if r["status"] != ("CANCELLED" if i in cancelled else "PAID")}
                self.assertEqual(wrong, {}, "orders whose cancel was refused must stay PAID")
            finally:
                poller.finish()

            lock = threading.Lock()
            queue = [i for i in ids if i not in cancelled]

            def cancel_next():
                # Cancel an order that is PAID now: cancels answered 503 during the
                # fault may have been applied since (the feed), and cancelling a
                # CANCELLED order never calls payment, so it would never probe the
                # breaker. With none left, place one (a payment call) and cancel it.
                paid = s.query("order", "SELECT id FROM orders WHERE status = 'PAID'"
                                        " ORDER BY id LIMIT 20")
                with lock:
                    oid = paid[len(queue) % len(paid)]["id"] if paid else None
                if oid is None:
                    st, _, o = s.place_order("ov-rec", price=2000, timeout=10)
                    if st != 201:
                        return 503 if st == 503 else st
                    oid = o["orderId"]
                    with lock:
                        ids.append(oid)
                st = s.cancel_order(oid, timeout=10)[0]
                if st == 200:
                    with lock:
                        cancelled.add(oid)
                return st

            driver = ov.Driver(cancel_next)
            driver.start()
            fixed_at = ov.remove_fault(s, kind)
            took, answers = ov.wait_closed(self, s, fixed_at, driver)
            ok_times = [t - fixed_at for t, st in answers if st == 200 and t >= fixed_at]
            self.assertTrue(ok_times, "no cancel succeeded while the breaker closed: %s" % answers[-10:])
            self.assertEqual([st for _, st in answers if st not in (200, 503)], [],
                             "recovery answers other than 200 and 503")

            rows = self.statuses(s, ids)
            rest = [i for i in ids if rows[i]["status"] == "PAID"][:FOLLOW_UP]
            # The recovery driver may have used up the PAID orders: place fresh ones.
            while len(rest) < FOLLOW_UP // 2:
                st, _, o = s.place_order("ov-follow", price=1500, timeout=10)
                self.assertEqual(st, 201, "order placed after recovery: %s" % o)
                rest.append(o["orderId"])
                ids.append(o["orderId"])
            rest_file = os.path.join(s.tmp, "rest.txt")
            write_ids(rest_file, rest)
            ok_file = os.path.join(s.tmp, "ok-follow.txt")
            follow = loadgen(s.url("gateway"), mode="cancel", requests=len(rest), concurrency=ov.GENTLE,
                             duration_max=60, orders_file=rest_file, ok_file=ok_file)
            self.assertEqual(follow["status"], {"200": len(rest)},
                             "availability after recovery: %s" % ov.describe(follow))
            cancelled.update(read_ids(ok_file))

            ov.settle(self, s)
            rows = self.statuses(s, ids)
            pays = {p["id"]: p["status"] for p in s.query("payment", "SELECT id, status FROM payments")}
            miles = {m["pay_id"]: m["status"] for m in s.query("mileage", "SELECT pay_id, status FROM mileages")}
            not_cancelled = {i: (rows[i]["status"], pays.get(rows[i]["pay_id"]), miles.get(rows[i]["pay_id"]))
                             for i in cancelled
                             if (rows[i]["status"], pays.get(rows[i]["pay_id"]), miles.get(rows[i]["pay_id"]))
                             != ("CANCELLED", "CANCELLED", "CANCELLED")}
            self.assertEqual(not_cancelled, {}, "orders answered 200 to a cancel: (order, payment, mileage)")
            late = [i for i in ids if i not in cancelled and rows[i]["status"] == "CANCELLED"]
            if kind == "slow":
                # The deadline stopped payment's work: a refused cancel cancelled nothing.
                self.assertEqual(late, [], "orders CANCELLED although every cancel of theirs was refused")

            ov.fault_figures("cancels", kind, r, sat, poller.opened_after(r))
            ov.figure("cancels, payment %s: recovery: breaker closed %.2f s after the fault was removed"
                      " (bound %.1f s), first 200 after %.2f s; follow-up %d/%d 200 (p99 %.1f ms);"
                      " %d orders cancelled with a 200, %d cancelled later after a 503"
                      % (kind, took, (ov.OPEN_MS + ov.PAYMENT_TIMEOUT_MS) / 1000.0 + ov.RECOVERY_SLACK_S,
                         min(ok_times), follow["status"].get("200", 0), len(rest),
                         follow["latency_ms"]["p99"], len(cancelled), len(late)))

    def test_payment_slow(self):
        self.scenario("slow")

    def test_payment_frozen(self):
        self.scenario("frozen")


if __name__ == "__main__":
    main()
