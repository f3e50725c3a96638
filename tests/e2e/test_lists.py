#!/usr/bin/env python3
"""Bounded lists: limit default 50, at most 500; the after cursor pages through every
item once, in ascending id order; next is null on the last page."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HeartyTestCase, System, main  # noqa: E402

N = 57
CID = "li-1"
LISTS = (  # (service, path, id field)
    ("order", "/orders?customerId=" + CID, "orderId"),
    ("mileage", "/mileages?customerId=" + CID, "payId"),
    ("mileage-view", "/mileageViews?customerId=" + CID, "payId"),
)


class Lists(HeartyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = System()
        try:
            cls.s.start()
            cls.orders = []
            lock = threading.Lock()
            errors = []

            def worker(k):
                for j in range(k, N, 4):
                    st, _, b = cls.s.place_order(CID, qty=1, price=100 * (j + 1), via="order")
                    with lock:
                        if st == 201:
                            cls.orders.append(b)
                        else:
                            errors.append((st, b))
            ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            if errors or len(cls.orders) != N:
                raise AssertionError("setup: %d orders, errors %s" % (len(cls.orders), errors[:3]))
            v = cls.s.wait_quiet(10)
            if v:
                raise AssertionError("setup: not quiet: %s" % v[:5])
        except BaseException:
            cls.s.dump_logs()
            cls.s.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def ids(self, field):
        return sorted(o[{"orderId": "orderId", "payId": "payId"}[field]] for o in self.orders)

    def get(self, name, path):
        return self.s.call(name, "GET", path)

    def test_default_limit_and_last_page(self):
        for name, path, field in LISTS:
            b = self.assertStatus(self.get(name, path), 200, name)
            self.assertEqual(len(b["items"]), 50, "%s default limit" % path)
            self.assertIsNotNone(b["next"], "%s: next on a full first page" % path)
            ids = [i[field] for i in b["items"]]
            self.assertEqual(ids, sorted(ids), "%s ascending" % path)
            b2 = self.assertStatus(self.get(name, path + "&after=%s" % b["next"]), 200, name)
            self.assertEqual(len(b2["items"]), N - 50, "%s second page" % path)
            self.assertIsNone(b2["next"], "%s: next on the last page" % path)
            self.assertEqual(ids + [i[field] for i in b2["items"]], self.ids(field), path)

    def test_paging_small_limit(self):
        for name, path, field in LISTS:
            seen, after, pages = [], None, 0
            for _ in range(N):
                q = path + "&limit=7" + ("&after=%s" % after if after is not None else "")
                b = self.assertStatus(self.get(name, q), 200, q)
                pages += 1
                self.assertLessEqual(len(b["items"]), 7, q)
                seen.extend(i[field] for i in b["items"])
                after = b["next"]
                if after is None:
                    self.assertEqual(len(b["items"]), N % 7, "%s: last page size" % q)
                    break
                self.assertEqual(len(b["items"]), 7, "%s: a page with a next cursor is full" % q)
            self.assertIsNone(after, "%s never ended" % path)
            self.assertEqual(pages, N // 7 + 1, path)
            self.assertEqual(len(seen), len(set(seen)), "%s: duplicates while paging" % path)
            self.assertEqual(seen, self.ids(field), path)

    def test_limit_bounds(self):
        for name, path, field in LISTS:
            b = self.assertStatus(self.get(name, path + "&limit=500"), 200, name)
            self.assertEqual((len(b["items"]), b["next"]), (N, None), path + " limit=500")
            b = self.assertStatus(self.get(name, path + "&limit=1"), 200, name)
            self.assertEqual(len(b["items"]), 1)
            for bad in ("limit=501", "limit=0", "limit=-1", "limit=abc", "limit=", "limit=1.5",
                        "limit=99999999999999999999", "after=abc", "after=-1", "after=1.5"):
                self.assertError(self.get(name, path + "&" + bad), 400, "invalid_argument",
                                 "GET %s&%s" % (path, bad))

    def test_exact_fit_and_other_customers(self):
        for name, path, field in LISTS:
            # a page that holds exactly the rest: next is null, or leads to an empty last page
            b = self.assertStatus(self.get(name, path + "&limit=%d" % N), 200, name)
            self.assertEqual(len(b["items"]), N, path)
            if b["next"] is not None:
                b = self.assertStatus(self.get(name, path + "&after=%s" % b["next"]), 200, name)
                self.assertEqual((b["items"], b["next"]), ([], None), path + " after the exact fit")
            # a customer without rows: empty list (the view's summary is 404)
            other = path.replace(CID, "li-nobody")
            b = self.assertStatus(self.get(name, other), 200, other)
            self.assertEqual((b["items"], b["next"]), ([], None), other)
        self.assertError(self.get("mileage-view", "/mileageViews/customers/li-nobody"), 404, "not_found")
        o = self.orders[0]
        b = self.assertStatus(self.get("payment", "/pays?orderId=%d" % o["orderId"]), 200, "pays by order")
        self.assertEqual(([i["payId"] for i in b["items"]], b["next"]), ([o["payId"]], None))
        b = self.assertStatus(self.get("payment", "/pays?orderId=987654321"), 200, "pays by unknown order")
        self.assertEqual((b["items"], b["next"]), ([], None))


if __name__ == "__main__":
    main()
