#!/usr/bin/env python3
"""Runs the data-driven bad-input catalogue, tests/cases/<service>/<case>.json.

    run_cases.py                      every case
    run_cases.py --service order      the cases of one service folder (repeatable)
    run_cases.py tests/cases/order/x.json ...

A case file:
    {"method": "POST", "path": "/orders", "headers": {...},
     "body": <JSON value, or null for no body>,
     "raw": "<sent verbatim instead of body>",            (optional)
     "raw_hex": "<hex bytes sent verbatim>",              (optional, for invalid UTF-8)
     "repeat_body_bytes": N,                               (optional: a JSON body of N bytes)
     "expect_status": 400, "expect_code": "invalid_argument",   (code optional; a list
                                                           means any one of them)
     "expect_message_contains": "qty",                     (optional)
     "expect_headers": {"allow": null},                    (optional: null = present)
     "service": "order",                                   (optional, default: the folder)
     "note": "..."}                                        (optional)
Every answer with status >= 400 must have the shape {"error":{"code","message"}} and a
JSON content type; a 405 must carry Allow and a 503 Retry-After; afterwards the service
must still answer GET /healthz with 200. One line per case, then 'N passed, N failed'.
"""
import argparse
import glob
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import SERVICES, System, is_error_shape, request  # noqa: E402

CASES_DIR = os.path.join(os.path.dirname(HERE), "cases")


def load_cases(services, files):
    if files:
        paths = [os.path.abspath(f) for f in files]
    else:
        names = services or sorted(d for d in os.listdir(CASES_DIR) if os.path.isdir(os.path.join(CASES_DIR, d)))
        paths = []
        for n in names:
            if not os.path.isdir(os.path.join(CASES_DIR, n)):
                raise SystemExit("no case folder %s" % os.path.join(CASES_DIR, n))
            paths.extend(sorted(glob.glob(os.path.join(CASES_DIR, n, "*.json"))))
    cases = []
    for p in paths:
        with open(p) as f:
            c = json.load(f)
        c.setdefault("service", os.path.basename(os.path.dirname(p)))
        c["_name"] = "%s/%s" % (os.path.basename(os.path.dirname(p)), os.path.splitext(os.path.basename(p))[0])
        if c["service"] not in SERVICES:
            raise SystemExit("%s: unknown service %r" % (p, c["service"]))
        for k in ("method", "path", "expect_status"):
            if k not in c:
                raise SystemExit("%s: missing %r" % (p, k))
        cases.append(c)
    return cases


def body_of(case):
    """(body, raw) for request()."""
    if case.get("raw_hex") is not None:
        return None, bytes.fromhex(case["raw_hex"])
    if case.get("raw") is not None:
        return None, case["raw"]
    n = case.get("repeat_body_bytes")
    if n:
        pad = max(0, n - len('{"pad":""}'))
        return None, '{"pad":"' + "a" * pad + '"}'
    return case.get("body"), None


def run_case(s, case):
    """Returns None when the case passed, else a reason."""
    url = s.url(case["service"]) + case["path"]
    headers = dict(case.get("headers") or {})
    body, raw = body_of(case)
    if raw is not None and case.get("repeat_body_bytes") and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    try:
        st, hd, got = request(case["method"], url, body=body, headers=headers, raw=raw, timeout=10)
    except Exception as e:  # noqa: BLE001
        return "request failed: %r" % e
    problems = []
    show = json.dumps(got)[:300] if not isinstance(got, str) else repr(got[:300])
    if st != case["expect_status"]:
        problems.append("status %d, want %d" % (st, case["expect_status"]))
    if st >= 400:
        if not is_error_shape(got):
            problems.append("not the error shape")
        else:
            code = case.get("expect_code")
            codes = code if isinstance(code, list) else [code]
            if code and got["error"]["code"] not in codes:
                problems.append("code %r, want %r" % (got["error"]["code"], code))
            want_msg = case.get("expect_message_contains")
            if want_msg and want_msg.lower() not in got["error"]["message"].lower():
                problems.append("message does not name %r" % want_msg)
        if "json" not in hd.get("content-type", ""):
            problems.append("content-type %r" % hd.get("content-type"))
    if st == 405 and "allow" not in hd:
        problems.append("405 without Allow")
    if st == 503 and "retry-after" not in hd:
        problems.append("503 without Retry-After")
    for k, v in (case.get("expect_headers") or {}).items():
        if k.lower() not in hd:
            problems.append("no %s header" % k)
        elif v is not None and hd[k.lower()] != v:
            problems.append("%s: %r, want %r" % (k, hd[k.lower()], v))
    try:
        hst, _, hb = request("GET", s.url(case["service"]) + "/healthz", timeout=5)
        if hst != 200:
            problems.append("then /healthz %d %r" % (hst, hb))
    except Exception as e:  # noqa: BLE001
        problems.append("then /healthz failed: %r" % e)
    if problems:
        return "; ".join(problems) + " -- got %d %s" % (st, show)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--service", action="append", help="a folder of tests/cases (repeatable)")
    ap.add_argument("--bin-dir", default=None)
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    cases = load_cases(args.service, args.files)
    if not cases:
        print("no cases")
        return 1
    passed = failed = 0
    t0 = time.monotonic()
    with System(args.bin_dir) as s:
        for c in cases:
            reason = run_case(s, c)
            if reason is None:
                passed += 1
                print("PASS %s" % c["_name"], flush=True)
            else:
                failed += 1
                print("FAIL %s: %s %s -> %s" % (c["_name"], c["method"], c["path"], reason), flush=True)
        dead = [n for n in s.services if not s.running(n)]
        if dead:
            print("FAIL services exited during the run: %s" % dead)
            s.dump_logs(out=sys.stdout)
            failed += 1
    print("(%.1f s)" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
