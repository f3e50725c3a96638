#!/usr/bin/env python3
"""The seed's overload scenario for new orders (issue 4): 100 concurrent clients place
orders through the gateway for 20 s while payment is slow (FAULT_DELAY_MS far above
order's PAYMENT_TIMEOUT_MS) or frozen (SIGSTOP). Order's payment breaker opens and the
orders are refused fast with 503 + Retry-After (never a 500, nothing hangs past the
timeout), kept PAYMENT_FAILED without points; once the fault is removed the breaker closes
within the open interval + probes and every order succeeds again. See overload.py for
what is measured; the figures are printed on lines starting with "FIGURES:"."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overload as ov  # noqa: E402
from harness import HeartyTestCase, loadgen, main  # noqa: E402

FOLLOW_UP = 300


class OverloadOrders(HeartyTestCase):
    def scenario(self, kind):
        with ov.new_system() as s:
            told_ok = 0
            for i in range(3):
                self.assertStatus(s.place_order("ov-warm", price=1000 + i), 201, "order before the fault")
                told_ok += 1
            self.assertEqual(ov.breaker_state(s), 0)

            ov.apply_fault(s, kind)
            poller = ov.StatePoller(s)
            poller.start()
            try:
                r = ov.run_load(s, "order", ov.FAULT_SECONDS, ov.THINK_MS)
                ov.check_fault_run(self, r, "orders, payment %s, %d clients" % (kind, ov.CLIENTS), "201")
                calls = ov.breaker_calls(s)
                self.assertIn(1, poller.seen, "order's payment breaker never seen open (states %s, calls %s)"
                              % (poller.seen, calls))
                self.assertGreater(calls.get("short_circuited", 0), 0, "no call short-circuited: %s" % calls)
                opened = [e for e in s.log_events("order", "circuit breaker changed state")
                          if e.get("dependency") == "payment" and e.get("to") == "open"]
                self.assertTrue(opened, "no log line for the breaker opening")
                # The gateway passes order's 503s on without opening its own circuit over them.
                self.assertEqual(ov.breaker_state(s, "gateway", "orders"), 0, "gateway's breaker for /orders")
                self.assertEqual(ov.breaker_calls(s, "gateway", "orders").get("short_circuited"), 0)

                sat = ov.run_load(s, "order", ov.SATURATE_SECONDS, 0)
                ov.check_fault_run(self, sat, "orders, payment %s, %d clients without pause"
                                   % (kind, ov.CLIENTS), "201", p99=False)
            finally:
                poller.finish()
            told_ok += r["status"].get("201", 0) + sat["status"].get("201", 0)

            driver = ov.Driver(lambda: s.place_order("ov-rec", price=2000, timeout=10)[0])
            driver.start()
            fixed_at = ov.remove_fault(s, kind)
            took, answers = ov.wait_closed(self, s, fixed_at, driver)
            ok_times = [t - fixed_at for t, st in answers if st == 201 and t >= fixed_at]
            self.assertTrue(ok_times, "no order succeeded while the breaker closed: %s" % answers[-10:])
            self.assertEqual([st for _, st in answers if st not in (201, 503)], [],
                             "recovery answers other than 201 and 503")
            told_ok += sum(1 for _, st in answers if st == 201)

            follow = loadgen(s.url("gateway"), mode="order", requests=FOLLOW_UP, concurrency=ov.GENTLE,
                             duration_max=60, customers=20, seed=7)
            self.assertEqual(follow["status"], {"201": FOLLOW_UP},
                             "availability after recovery: %s" % ov.describe(follow))
            told_ok += FOLLOW_UP

            failed = ov.settle(self, s)
            paid = s.query("order", "SELECT count(*) AS n FROM orders WHERE status = 'PAID'")[0]["n"]
            if kind == "slow":
                # The deadline stopped payment's work: nothing was charged for a 503.
                self.assertEqual(paid, told_ok, "PAID orders vs 201 answers")
            else:
                # A frozen payment finds the requests in its socket buffers when it wakes:
                # their outcome was unknown (503), settled PAID later, never charged twice.
                self.assertGreaterEqual(paid, told_ok, "PAID orders vs 201 answers")

            ov.fault_figures("orders", kind, r, sat, poller.opened_after(r))
            ov.figure("orders, payment %s: recovery: breaker closed %.2f s after the fault was removed"
                      " (bound %.1f s), first 201 after %.2f s; follow-up %d/%d 201 (p99 %.1f ms);"
                      " %d orders PAYMENT_FAILED, %d PAID of which %d settled after a 503"
                      % (kind, took, (ov.OPEN_MS + ov.PAYMENT_TIMEOUT_MS) / 1000.0 + ov.RECOVERY_SLACK_S,
                         min(ok_times), follow["status"].get("201", 0), FOLLOW_UP,
                         follow["latency_ms"]["p99"], failed, paid, paid - told_ok))

    def test_payment_slow(self):
        self.scenario("slow")

    def test_payment_frozen(self):
        self.scenario("frozen")


if __name__ == "__main__":
    main()
