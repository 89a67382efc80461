"""A stand-in for `proxgt site` with its command line, for tests of the rehearsal's orchestration only: it binds
a CURVE server that admits its neighbours' keys, sends ROUNDS numbered messages to each neighbour (retrying
until each is answered), and writes summary.json with the counters a site reports."""

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class CountingAuth(ThreadAuthenticator):
    pass


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("pilot")
    p.add_argument("--site")
    p.add_argument("--key")
    p.add_argument("--data")
    p.add_argument("--out")
    p.add_argument("--peer-address", action="append", default=[])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--fail", action="store_true")
    p.add_argument("--seconds", type=float, default=1.0)
    a = p.parse_args()
    if a.fail:
        print("proxgt: error: stub site failed on purpose", file=sys.stderr)
        return 2
    pilot = tomllib.loads(Path(a.pilot).read_text())
    sites = {s["name"]: s for s in pilot["site"]}
    me = sites[a.site]
    nbrs = [v if u == a.site else u for u, v in pilot["links"]["edges"] if a.site in (u, v)]
    over = dict(x.split("=", 1) for x in a.peer_address)
    pub, sec = zmq.auth.load_certificate(a.key)
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=zmq.auth.base.CURVE_ALLOW_ANY)
    allowed = {sites[n]["public_key"].encode() for n in nbrs}
    refused = [0]

    class Keys:
        def callback(self, domain, key):
            ok = key in allowed
            refused[0] += not ok
            return ok

    auth.configure_curve_callback(domain="*", credentials_provider=Keys())
    server = ctx.socket(zmq.ROUTER)
    server.curve_server = True
    server.curve_publickey, server.curve_secretkey = pub, sec
    server.bind(me["address"])
    outs = {}
    for n in nbrs:
        s = ctx.socket(zmq.DEALER)
        s.curve_publickey, s.curve_secretkey = pub, sec
        s.curve_serverkey = sites[n]["public_key"].encode()
        s.connect(over.get(n, sites[n]["address"]))
        outs[n] = s
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "metrics.csv").write_text("iter,objective\n0,1.0\n")  # a site logs iteration 0 as it starts
    t0 = time.monotonic()
    got = {n: set() for n in nbrs}
    sent = 0
    last_send = 0.0
    data = bytes(range(256)) * 4
    while any(len(v) < a.rounds for v in got.values()) or time.monotonic() - t0 < a.seconds:
        if time.monotonic() - last_send > 0.2:
            for s in outs.values():
                for r in range(a.rounds):
                    try:
                        s.send_multipart([json.dumps({"from": a.site, "round": r}).encode(), data], zmq.NOBLOCK)
                        sent += len(data)
                    except zmq.Again:
                        pass
            last_send = time.monotonic()
        if server.poll(50):
            ident, head, body = server.recv_multipart()
            h = json.loads(head)
            got.setdefault(h["from"], set()).add(h["round"])
        if time.monotonic() - t0 > 60:
            return 3
    time.sleep(1.0)  # let neighbours finish
    while server.poll(100):
        server.recv_multipart()
    (Path(a.out) / "summary.json").write_text(json.dumps({
        "status": "ok", "final": {"objective": 1.0},
        "site": {"iterations": a.rounds, "bytes_sent": sent, "seconds_waiting": time.monotonic() - t0,
                 "messages_late": 0, "messages_lost": 0, "refused_connections": refused[0]}}))
    auth.stop()
    ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
