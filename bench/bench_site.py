"""Benchmark: one gossip round of the site runtime (mutual TLS on) against the gloo executor's, same graph.

Four processes on loopback, one node each, on a ring (or ``--topology``). Each process holds both
communicators at once: the site runtime's :class:`~proxgt.executors.site.communicator.SiteCommunicator` over its
:class:`~proxgt.executors.site.transport.SiteTransport` (every link TLS 1.3 with a client certificate, each end
trusting the pinned certificates of its neighbours only: encryption and authentication on, as in a pilot) and the
gloo executor's
:class:`~proxgt.executors.p2p.DistributedCommunicator`. For each message size (the bytes of one node's row,
float32), the processes alternate a round of one and a round of the other (a barrier before each, outside the
timing), so that machine load drifts hit both alike. A round's time is the slowest process's time for its
``gossip(Z)`` call (send to every neighbour, receive from every neighbour, weighted sum). Printed per size: the
median round time of each over ``--rounds`` rounds and the ratio site / gloo, measured in one run.

Usage::

    python bench/bench_site.py                                # 64K, 1M, 4M, 16M; 4 processes on a ring
    python bench/bench_site.py --sizes 1M,4M --rounds 30 --json runs/bench_site.json
    python bench/bench_site.py --link-only     # one link in one process: what TLS (and CurveZMQ) cost per byte
"""

from __future__ import annotations

import argparse
import atexit
import json
import multiprocessing as mp
import os
import shutil
import statistics
import time
from typing import Any

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    mult = _UNITS.get(text[-1:], 1)
    return int(float(text[:-1] if text[-1:] in _UNITS else text) * mult)


def _label(n: int) -> str:
    for unit in ("G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]} {unit}B"
    return f"{n} B"


def _worker(rank: int, world: int, topology: str, store_port: int, site_ports: list[int],
            key_dir: str, sizes: list[int], rounds: int, warmup: int, queue: Any) -> None:
    os.environ.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    import datetime

    import torch
    import torch.distributed as dist

    from proxgt.executors.p2p import DistributedCommunicator, partition_nodes
    from proxgt.executors.site.communicator import SiteCommunicator
    from proxgt.executors.site.transport import SiteTransport, load_site_key, read_public_key
    from proxgt.topology import make_topology

    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", store_port, world, is_master=rank == 0,
                          timeout=datetime.timedelta(seconds=120))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    topo = make_topology(topology, world)
    gloo = DistributedCommunicator(topo, partition_nodes(world, world), rank, timeout_s=120)
    names = [f"s{i}" for i in range(world)]
    address = [f"tcp://127.0.0.1:{p}" for p in site_ports]
    neighbours = {names[j]: (address[j], read_public_key(f"{key_dir}/{names[j]}.key"))
                  for j in sorted(topo.neighbors(rank))}
    transport = SiteTransport(names[rank], neighbours, load_site_key(f"{key_dir}/{names[rank]}.key_secret"),
                              address[rank], site_timeout_s=120.0)
    W = topo.W.to_dense() if topo.W.layout == torch.sparse_csr else topo.W
    site = SiteCommunicator(transport, W, topo.degrees, (rank,), names, round_deadline_s=120.0,
                            site_timeout_s=120.0)
    times: dict[str, dict[int, list[float]]] = {"site": {}, "gloo": {}}
    comms = {"site": site, "gloo": gloo}
    for size in sizes:
        Z = torch.randn(1, size // 4, generator=torch.Generator().manual_seed(rank))
        for rep in range(warmup + rounds):
            order = ("site", "gloo") if rep % 2 == 0 else ("gloo", "site")
            for name in order:
                dist.barrier()
                t0 = time.perf_counter()
                comms[name].gossip(Z)
                dt = time.perf_counter() - t0
                if rep >= warmup:
                    times[name].setdefault(size, []).append(dt)
    dist.barrier()
    queue.put((rank, times, {"bytes_sent": transport.stats.bytes_sent,
                             "refused": transport.stats.refused_connections}))
    dist.barrier()  # every site has read its last messages before any closes its sockets
    transport.close(linger_ms=0)
    dist.destroy_process_group()


def _tls_pair(key_dir: str) -> tuple[Any, Any]:
    """Two ends of one loopback TLS link, as the site transport makes them (TLS 1.3, client certificate, each end
    trusting the other's certificate only)."""
    import socket
    import threading

    from proxgt.executors.site.transport import _tls_context, certificate_der, load_site_key

    a, b = load_site_key(f"{key_dir}/s0.key_secret"), load_site_key(f"{key_dir}/s1.key_secret")
    server_ctx = _tls_context(True, b, [certificate_der(a.public_key)])
    client_ctx = _tls_context(False, a, [certificate_der(b.public_key)])
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[Any] = []
    accept = threading.Thread(target=lambda: got.append(server_ctx.wrap_socket(listener.accept()[0],
                                                                               server_side=True)))
    accept.start()
    client = client_ctx.wrap_socket(socket.create_connection(listener.getsockname()), server_hostname=None)
    accept.join()
    listener.close()
    return client, got[0]


def link_throughput(kind: str, key_dir: str, part: int = 256 * 1024, total: int = 256 << 20) -> float:
    """MB/s of one loopback link in one process, ``part`` bytes at a time: ``plain`` TCP, ``tls`` as the site
    transport's links (a thread receives and decrypts while the caller encrypts and sends), or ``curve``
    (CurveZMQ, which the site runtime used first; pyzmq needed): what encryption costs per byte here."""
    import socket
    import threading

    buf = os.urandom(part)
    if kind == "curve":
        import zmq

        ctx = zmq.Context()
        server, client = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        spub, ssec = zmq.curve_keypair()
        cpub, csec = zmq.curve_keypair()
        server.curve_server, server.curve_publickey, server.curve_secretkey = True, spub, ssec
        client.curve_serverkey, client.curve_publickey, client.curve_secretkey = spub, cpub, csec
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"x")
        server.recv()
        t0 = time.perf_counter()
        for _ in range(total // part):
            client.send(buf, copy=False)
            server.recv(copy=False)
        dt = time.perf_counter() - t0
        for sock in (server, client):
            sock.close(linger=0)
        ctx.term()
        return total / dt / 1e6
    if kind == "tls":
        sender, receiver = _tls_pair(key_dir)
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        sender = socket.create_connection(listener.getsockname())
        receiver = listener.accept()[0]
        listener.close()
    sink = memoryview(bytearray(part))

    def drain() -> None:
        left = total
        while left:
            left -= receiver.recv_into(sink, min(part, left))

    reader = threading.Thread(target=drain)
    t0 = time.perf_counter()
    reader.start()
    for _ in range(total // part):
        sender.sendall(buf)
    reader.join()
    dt = time.perf_counter() - t0
    sender.close()
    receiver.close()
    return total / dt / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64K,1M,4M,16M", help="message sizes (bytes of one node's row)")
    p.add_argument("--rounds", type=int, default=20, help="timed rounds per size and communicator")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (connections, buffers)")
    p.add_argument("--nprocs", type=int, default=4)
    p.add_argument("--topology", default="ring")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--link-only", action="store_true", help="only measure one link's throughput: plain TCP, "
                   "TLS, and CurveZMQ where pyzmq is installed (one process)")
    args = p.parse_args(argv)
    import tempfile

    from proxgt.executors._sockets import free_ports
    from proxgt.executors.site.transport import new_site_keys

    key_dir = tempfile.mkdtemp(prefix="proxgt-bench-keys-")
    atexit.register(shutil.rmtree, key_dir, ignore_errors=True)
    for r in range(max(2, args.nprocs)):
        new_site_keys(f"s{r}", key_dir)
    if args.link_only:
        speeds = {"plain": link_throughput("plain", key_dir), "tls": link_throughput("tls", key_dir)}
        try:
            speeds["curve"] = link_throughput("curve", key_dir)
        except ImportError:
            pass
        print(f"one loopback link, 256 KB at a time: {speeds['plain']:.0f} MB/s plaintext, {speeds['tls']:.0f} MB/s "
              f"with TLS (encryption + decryption cost {1e3 / speeds['tls'] - 1e3 / speeds['plain']:.2f} ms per MB)")
        if "curve" in speeds:
            print(f"CurveZMQ (what the site runtime used first): {speeds['curve']:.0f} MB/s")
        return 0
    sizes = [_size(s) for s in args.sizes.split(",")]
    world = args.nprocs
    ports = free_ports(world + 1)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, world, args.topology, ports[0], ports[1:], key_dir, sizes,
                                               args.rounds, args.warmup, queue)) for r in range(world)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    per_rank = {rank: times for rank, times, _ in results}
    refused = sum(extra["refused"] for _, _, extra in results)
    rows = []
    print(f"one gossip round, {world} processes on a {args.topology}, loopback; median over {args.rounds} rounds "
          "of the slowest process's gossip() time")
    print(f"{'message':>10}  {'gloo ms':>9}  {'site (TLS) ms':>15}  {'site / gloo':>11}")
    for size in sizes:
        med = {}
        for name in ("gloo", "site"):
            slowest = [max(per_rank[r][name][size][i] for r in per_rank) for i in range(args.rounds)]
            med[name] = statistics.median(slowest)
        ratio = med["site"] / med["gloo"]
        rows.append({"bytes": size, "gloo_s": med["gloo"], "site_s": med["site"], "ratio": ratio})
        print(f"{_label(size):>10}  {med['gloo'] * 1e3:9.2f}  {med['site'] * 1e3:15.2f}  {ratio:11.2f}")
    print(f"refused connection attempts during the benchmark: {refused}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"nprocs": world, "topology": args.topology, "rounds": args.rounds, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
