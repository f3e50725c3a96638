#!/usr/bin/env python3
"""Configuration and process lifecycle: a bad environment value stops a service at start
with exit status 2 and a JSON log line naming the variable; SIGTERM drains and exits 0."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SERVICES, HeartyTestCase, System, main  # noqa: E402

BAD = (
    ("order", "PORT", "abc"),
    ("payment", "PORT", "70000"),
    ("mileage", "MILEAGE_RATE_BP", "10001"),
    ("mileage", "MILEAGE_RATE_BP", "-1"),
    ("mileage-view", "FEED_WAIT_MS", "soon"),
    ("order", "PAYMENT_TIMEOUT_MS", "-5"),
    ("gateway", "UPSTREAM_TIMEOUT_MS", "12abc"),
    ("payment", "LOG_LEVEL", "loud"),
    ("order", "MAX_BODY_BYTES", "99999999999999999999999"),
    ("gateway", "ROUTES_FILE", "/nonexistent/routes.conf"),
)


class Config(HeartyTestCase):
    def test_bad_values_exit_2(self):
        s = System()
        try:
            for name, var, value in BAD:
                s.start_service(name, env={var: value}, wait=False)
                p = s.procs[name]
                try:
                    rc = p.wait(5)
                except subprocess.TimeoutExpired:
                    s.kill(name)
                    self.fail("%s with %s=%r did not exit" % (name, var, value))
                self.assertEqual(rc, 2, "%s with %s=%r: exit status" % (name, var, value))
                s.forget(name)
                with open(s.log_path(name)) as f:
                    lines = [l for l in f.read().splitlines() if var in l and not l.startswith("--- harness")]
                self.assertTrue(lines, "%s with %s=%r: no log line names the variable\n%s"
                                % (name, var, value, s.log_tail(name, 5)))
                try:
                    json.loads(lines[-1])
                except ValueError:
                    self.fail("%s: log line is not JSON: %r" % (name, lines[-1]))
        finally:
            s.close()

    def test_sigterm_exits_0(self):
        with System() as s:
            self.assertStatus(s.place_order("cf-1"), 201, "order")
            for name in reversed(SERVICES):
                t0 = time.monotonic()
                rc = s.stop_service(name)
                took = time.monotonic() - t0
                self.assertEqual(rc, 0, "%s exit status after SIGTERM" % name)
                self.assertLess(took, 6, "%s took %.1f s to stop" % (name, took))
            # and everything comes back with its data
            s.start()
            st, _, b = s.call("order", "GET", "/orders?customerId=cf-1")
            self.assertEqual((st, len(b["items"])), (200, 1), b)
            self.assertQuiet(s, 5)

    def test_rss_and_ready_time(self):
        with System() as s:
            for name in SERVICES:
                self.assertLess(s.ready_seconds[name], 10)
                rss = s.rss_kb(name)
                self.assertIsInstance(rss, int)
                self.assertGreater(rss, 0)


if __name__ == "__main__":
    main()
