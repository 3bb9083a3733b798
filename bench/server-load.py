#!/usr/bin/env python3
"""server-load.py: N concurrent clients x M requests against effort-server on loopback.

Starts the server itself (so it can read its memory), alternates streaming and plain requests
on /v1/completions and /v1/chat/completions, and reports requests/s, p50/p99 latency, errors
(which must be 0: the exit code is 1 otherwise) and the server's resident memory after the first
round, at the end, and at its peak. Bounded: every request has a timeout and the whole run a
deadline (--deadline seconds).

  bench/server-load.py [--server build/bin/effort-server] [-m MODEL] [--clients 4]
                       [--requests 25] [--max-tokens 32] [--deadline 300] [-- SERVER_ARGS...]
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", default=os.path.join(root, "build", "bin", "effort-server"))
    p.add_argument("-m", "--model", default=os.path.join(root, "models", "stories260K"))
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=25, help="per client")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--deadline", type=float, default=300, help="seconds for the whole run")
    p.add_argument("server_args", nargs="*", help="after --: more effort-server options")
    a = p.parse_args()
    if a.clients < 1 or a.requests < 1 or a.max_tokens < 0 or a.deadline <= 0:
        p.error("--clients and --requests must be >= 1, --max-tokens >= 0, --deadline > 0")
    return a


def memory_mb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def one_request(port, i, max_tokens, timeout):
    """Returns (ok, seconds, error text)."""
    stream = i % 2 == 1
    chat = (i // 2) % 2 == 1
    body = {"max_tokens": max_tokens, "seed": i, "stream": stream}
    if chat:
        path = "/v1/chat/completions"
        body["messages"] = [{"role": "user", "content": f"Tell me story number {i}."}]
    else:
        path = "/v1/completions"
        body["prompt"] = f"Once upon a time, story {i}"
    start = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read().decode()
        c.close()
    except Exception as e:  # noqa: BLE001 - every failure is an error to count
        return False, time.monotonic() - start, f"{path}: {e}"
    seconds = time.monotonic() - start
    if r.status != 200:
        return False, seconds, f"{path}: HTTP {r.status} {data[:200]}"
    if stream:
        if not data.endswith("data: [DONE]\n\n"):
            return False, seconds, f"{path}: stream without [DONE]"
    else:
        answer = json.loads(data)
        if answer["usage"]["completion_tokens"] > max_tokens:
            return False, seconds, f"{path}: more tokens than max_tokens"
    return True, seconds, ""


def main():
    a = parse_args()
    cmd = [a.server, "-m", a.model, "--port", "0"] + a.server_args
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    port = None
    for line in server.stderr:
        sys.stderr.write(line)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        sys.exit("server-load: the server did not start: " + " ".join(cmd))
    # Drain the server's stderr so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

    deadline = time.monotonic() + a.deadline
    ok, _, err = one_request(port, 0, a.max_tokens, a.deadline)  # warm-up: RSS after one answer
    rss_first = memory_mb(server.pid, "VmRSS")
    latencies, errors, lock = [], ([] if ok else [err]), threading.Lock()
    # RSS half-way too: growth between the middle and the end would be a leak, not warm-up
    # (each session's buffers, the allocator's pools).
    rss_half = []

    def client(k):
        for j in range(a.requests):
            left = deadline - time.monotonic()
            if left <= 0:
                with lock:
                    errors.append("deadline reached")
                return
            good, seconds, e = one_request(port, 1 + k * a.requests + j, a.max_tokens, left)
            with lock:
                latencies.append(seconds)
                if not good:
                    errors.append(e)
                if len(latencies) == a.clients * a.requests // 2:
                    rss_half.append(memory_mb(server.pid, "VmRSS"))

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    rss_end = memory_mb(server.pid, "VmRSS")
    rss_peak = memory_mb(server.pid, "VmHWM")
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)

    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))] if lat else 0
    print(f"clients {a.clients} x requests {a.requests} (max_tokens {a.max_tokens}, half streaming): "
          f"{len(lat)} requests in {wall:.2f} s, {len(lat) / wall:.1f} requests/s")
    print(f"latency p50 {1e3 * statistics.median(lat):.1f} ms, p99 {1e3 * p99:.1f} ms" if lat else "no requests")
    print(f"errors {len(errors)}" + "".join("\n  " + e for e in errors[:10]))
    half = f"{rss_half[0]:.1f} MB half-way, " if rss_half else ""
    print(f"server RSS: {rss_first:.1f} MB after the first request, {half}{rss_end:.1f} MB at the end, peak {rss_peak:.1f} MB; "
          f"exit code {code}")
    sys.exit(1 if errors or code != 0 else 0)


if __name__ == "__main__":
    main()
