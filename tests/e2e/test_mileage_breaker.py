#!/usr/bin/env python3
"""Payment -> mileage breaker (issue 4): with mileage slow (FAULT_DELAY_MS above payment's
MILEAGE_TIMEOUT_MS) or frozen (SIGSTOP), payment's breaker on mileage opens, payments (and
so orders) stay fast and succeed with mileage {"points":0,"status":"PENDING"}; once mileage
is back the breaker closes, and every pending accrual lands exactly once (the PayApproved
event and any late synchronous call are idempotent per payId)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overload as ov  # noqa: E402
from harness import HeartyTestCase, System, loadgen, main, mileage_of  # noqa: E402

MILEAGE_TIMEOUT_MS = 200
OPEN_MS = 1000
FAULT_DELAY_MS = 1500
SLACK_MS = 1000
CLIENTS = 30
SECONDS = 8
PAUSE_MS = 200


class MileageBreaker(HeartyTestCase):
    def scenario(self, kind):
        env = {"payment": {"MILEAGE_TIMEOUT_MS": str(MILEAGE_TIMEOUT_MS),
                           "MILEAGE_BREAKER_OPEN_MS": str(OPEN_MS)}}
        with System(service_env=env) as s:
            for i in range(3):
                b = self.assertStatus(s.place_order("mb-warm", price=1000 * (i + 1)), 201, "before the fault")
                self.assertEqual(mileage_of(b), {"points": 10 * (i + 1), "status": "SAVED"}, b)

            if kind == "slow":
                s.kill("mileage")
                s.start_service("mileage", env={"FAULT_DELAY_MS": str(FAULT_DELAY_MS)})
            else:
                s.freeze("mileage")
            try:
                for i in range(5):
                    t0 = time.monotonic()
                    b = self.assertStatus(s.place_order("mb-fault", price=1000), 201, "order while mileage is %s" % kind)
                    took = (time.monotonic() - t0) * 1000
                    self.assertEqual(mileage_of(b), {"points": 0, "status": "PENDING"}, b)
                    self.assertLatency(took, MILEAGE_TIMEOUT_MS + SLACK_MS, "an order waited %.0f ms" % took)

                before = ov.breaker_calls(s, "payment", "mileage")
                lat_file = os.path.join(s.tmp, "latencies.txt")
                r = loadgen(s.url("gateway"), mode="order", requests=ov.MAX_REQUESTS, concurrency=CLIENTS,
                            duration_max=SECONDS, delay_ms=PAUSE_MS, customers=30, seed=11,
                            latency_file=lat_file)
                calls = ov.breaker_calls(s, "payment", "mileage")
                timeouts = int(calls.get("timeout", 0) - before.get("timeout", 0))
                # The orders whose payment did not wait for mileage (its breaker open).
                fast = ov.rejections(r, timeouts, 201, MILEAGE_TIMEOUT_MS)
                info = ov.describe(r) + "; %d mileage calls timed out" % timeouts
                self.assertEqual(set(r["status"]), {"201"}, "every order succeeds while mileage is %s: %s"
                                 % (kind, info))
                self.assertEqual(r["transport_errors"], 0, info)
                lat = r["latency_by_status_ms"]["201"]
                self.assertLatency(lat["max"], MILEAGE_TIMEOUT_MS + SLACK_MS, "an order outlived payment's"
                                     " MILEAGE_TIMEOUT_MS %d ms + %d ms: %s" % (MILEAGE_TIMEOUT_MS, SLACK_MS, info))
                self.assertLatency(ov.pct(fast, 0.99), 100, "orders that did not call mileage are not fast"
                                     " while mileage is %s (p99 of %d): %s" % (kind, len(fast), info))
                self.assertGreater(calls.get("short_circuited", 0), 0, "payment's mileage breaker never"
                                   " short-circuited: %s" % calls)
                self.assertIn(ov.breaker_state(s, "payment", "mileage"), (1, 2), "breaker state")
                opened = [e for e in s.log_events("payment", "circuit breaker changed state")
                          if e.get("dependency") == "mileage" and e.get("to") == "open"]
                self.assertTrue(opened, "no log line for payment's mileage breaker opening")
                # Order's breaker on payment saw nothing wrong.
                self.assertEqual(ov.breaker_state(s, "order", "payment"), 0)
                self.assertEqual(ov.breaker_calls(s, "order", "payment").get("timeout"), 0)
            finally:
                if kind == "frozen":
                    s.thaw("mileage")
            if kind == "slow":
                s.kill("mileage")
                s.start_service("mileage")
            fixed_at = time.monotonic()

            def closed():
                b = self.assertStatus(s.place_order("mb-rec", price=1000), 201, "order after recovery")
                assert ov.breaker_state(s, "payment", "mileage") == 0, "breaker not closed yet"
                return b
            self.eventually(closed, (OPEN_MS + MILEAGE_TIMEOUT_MS) / 1000.0 + 1.5 + 5,
                            "payment's mileage breaker closes", interval=0.02)
            took = time.monotonic() - fixed_at
            self.assertLatency(took, (OPEN_MS + MILEAGE_TIMEOUT_MS) / 1000.0 + 1.5,
                                 "the breaker closed %.2f s after mileage recovered" % took)

            def saved_now():
                b = self.assertStatus(s.place_order("mb-after", price=5000), 201, "order after recovery")
                assert mileage_of(b) == {"points": 50, "status": "SAVED"}, b
            self.eventually(saved_now, 5, "accrual is synchronous again", interval=0.1)

            self.assertQuiet(s, 30)
            pays = s.query("payment", "SELECT id, amount FROM payments WHERE status = 'APPROVED'")
            miles = {m["pay_id"]: m for m in s.query("mileage", "SELECT pay_id, points, status FROM mileages")}
            self.assertEqual(len(miles), len(pays), "one ledger row per payment")
            wrong = [(p["id"], miles.get(p["id"])) for p in pays
                     if miles.get(p["id"], {}).get("points") != p["amount"] // 100]
            self.assertEqual(wrong, [], "payments whose points did not land (once, exactly)")
            saved = s.outbox("mileage", "MileageSaved")
            self.assertEqual(len(saved), len(pays), "one MileageSaved event per payment")
            ov.figure("mileage %s: %d orders during the fault (%d clients, pause 0..%d ms), all 201;"
                      " those that did not wait for mileage (%d): p99 %.1f ms; all: p99 %.1f ms max %.0f ms"
                      " (%d mileage calls timed out); payment's mileage breaker closed %.2f s after"
                      " recovery; %d accruals landed once each"
                      % (kind, r["requests"], CLIENTS, PAUSE_MS, len(fast), ov.pct(fast, 0.99), lat["p99"], lat["max"],
                         timeouts, took, len(pays)))

    def test_mileage_slow(self):
        self.scenario("slow")

    def test_mileage_frozen(self):
        self.scenario("frozen")


if __name__ == "__main__":
    main()
