#!/usr/bin/env python3
"""Gateway: prefix routing from the routes file, pass-through of path, query, headers
and bodies, request ids, deadlines, and JSON errors for unknown routes, dead and slow
upstreams."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, Upstream, free_ports, main  # noqa: E402


class Gateway(HeartyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.echo = Upstream("echo")
        cls.deep = Upstream("deep")
        cls.slow = Upstream("slow", delay=2.0)
        dead = free_ports(1)[0]
        cls.s = System(routes=[("/echo", cls.echo.url), ("/echo/deep", cls.deep.url),
                               ("/slow", cls.slow.url), ("/dead", "http://127.0.0.1:%d" % dead)],
                       service_env={"gateway": {"UPSTREAM_TIMEOUT_MS": "300"}})
        try:
            cls.s.start()
        except BaseException:
            cls.s.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        for u in (cls.echo, cls.deep, cls.slow):
            u.close()

    def gw(self, method, path, **kw):
        return self.s.call("gateway", method, path, **kw)

    def test_unknown_prefix(self):
        for method, path in (("GET", "/nothing"), ("GET", "/"), ("GET", "/ordersx"), ("GET", "/echox/1"),
                             ("POST", "/nothing/1"), ("GET", "/events"), ("GET", "/deadLetters")):
            self.assertError(self.gw(method, path), 404, "not_found", "%s %s" % (method, path))

    def test_pass_through(self):
        st, hd, b = self.gw("GET", "/echo/a/b?x=1&y=%20z&y=2", headers={"X-Custom": "v1", "Accept": "application/json"})
        self.assertEqual(st, 200, b)
        self.assertEqual((b["name"], b["method"], b["path"]), ("echo", "GET", "/echo/a/b?x=1&y=%20z&y=2"))
        self.assertEqual(b["headers"].get("x-custom"), "v1", b)
        self.assertEqual(hd.get("x-upstream"), "echo", "upstream response header not passed back: %s" % hd)
        for path in ("/echo", "/echo?q=1", "/echo/"):
            st, _, b = self.gw("GET", path)
            self.assertEqual((st, b["name"], b["path"]), (200, "echo", path))
        payload = {"k": "v", "n": [1, 2, 3]}
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            st, _, b = self.gw(method, "/echo/items/7", body=payload)
            self.assertEqual((st, b["method"], b["path"]), (200, method, "/echo/items/7"), b)
            self.assertEqual(json.loads(b["body"]), payload, method)
            self.assertEqual(b["headers"].get("content-type"), "application/json")
        st, hd, b = self.gw("GET", "/echo/status/418")
        self.assertEqual((st, b["name"]), (418, "echo"), "upstream status passes through")

    def test_longest_prefix(self):
        for path, name in (("/echo/deep", "deep"), ("/echo/deep/x?y=1", "deep"), ("/echo/deeper", "echo"),
                           ("/echo/x/deep", "echo")):
            st, _, b = self.gw("GET", path)
            self.assertEqual((st, b["name"], b["path"]), (200, name, path), path)

    def test_request_id(self):
        st, hd, b = self.gw("GET", "/echo/rid")
        rid = hd.get("x-request-id")
        self.assertTrue(rid, "no X-Request-Id in the answer: %s" % hd)
        self.assertEqual(b["headers"].get("x-request-id"), rid, "upstream did not get the same request id")
        st, hd2, _ = self.gw("GET", "/echo/rid")
        self.assertNotEqual(hd2.get("x-request-id"), rid, "two requests, one id")
        st, hd3, b3 = self.gw("GET", "/echo/rid", headers={"X-Request-Id": "req-abc-123"})
        self.assertEqual(hd3.get("x-request-id"), "req-abc-123", "given request id not kept")
        self.assertEqual(b3["headers"].get("x-request-id"), "req-abc-123")
        # errors carry one too
        st, hd4, _ = self.gw("GET", "/nothing")
        self.assertTrue(hd4.get("x-request-id"), "no X-Request-Id on a 404")

    def test_dead_upstream(self):
        t0 = time.monotonic()
        st, hd, b = self.gw("GET", "/dead/x")
        self.assertError((st, hd, b), 502, None, "GET /dead/x (nothing listens)")
        self.assertLess(time.monotonic() - t0, 1.5)

    def test_service_down_and_back(self):
        s = self.s
        o = self.assertStatus(s.place_order("gw-1"), 201, "order through the gateway")
        s.stop_service("order")
        try:
            self.assertError(self.gw("GET", "/orders/%d" % o["orderId"]), 502, None, "order down")
            st, hd, b = self.gw("GET", "/orders/%d" % o["orderId"])
            self.assertIn(st, (502, 503), b)
            if st == 503:
                self.assertIn("retry-after", hd)
        finally:
            s.start_service("order")

        def back():
            st, _, b = self.gw("GET", "/orders/%d" % o["orderId"])
            assert st == 200 and b["orderId"] == o["orderId"], (st, b)
        self.eventually(back, 10, "gateway reaches order again", interval=0.2)

    def test_slow_upstream(self):
        t0 = time.monotonic()
        st, hd, b = self.gw("GET", "/slow/x", timeout=10)
        took = time.monotonic() - t0
        self.assertError((st, hd, b), 504, None, "slow upstream with UPSTREAM_TIMEOUT_MS=300")
        self.assertLess(took, 1.5, "504 took %.2f s" % took)
        self.assertEqual(len(self.slow.requests) >= 1, True)

    def test_own_probes(self):
        for path in ("/healthz", "/readyz"):
            st, _, b = self.gw("GET", path)
            self.assertEqual(st, 200, b)
        self.assertEqual([r for r in self.echo.requests if r["path"] in ("/healthz", "/readyz")], [])


if __name__ == "__main__":
    main()
