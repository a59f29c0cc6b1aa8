#!/usr/bin/env python3
"""Herald's benchmarks, side by side, in one run (scripts/bench calls this).

Starts its own redis-server, then measures: drain throughput of (a) a bare redis-rs subscriber,
(b) a hand-written redis-py script, (c) `herald run` with the five example packs and the null
presenter, (d) `herald run` with no rules; publish-to-presenter latency at a steady rate; idle RSS and
CPU; startup and reload latency; and the highest paced rate each consumer survives under Redis's
default pub/sub output-buffer limits. Prints a Markdown table and writes bench/results.md.
Sizes can be shrunk for a quick look: BENCH_COUNT, BENCH_LATENCY_SECONDS, BENCH_IDLE_SECONDS.
"""
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
HERALD = os.path.join(RELEASE, "herald")
BARE = os.path.join(RELEASE, "examples", "bare-subscriber")
PUBLISHER = os.path.join(RELEASE, "examples", "bench-publisher")
PY_SUB = os.path.join(ROOT, "bench", "subscriber.py")
PACKS = ["auto-answer", "quiet-hours", "noisy-channels", "storm-dedup", "priority-routing"]
CLOCK = "2026-12-02T14:00:00+01:00"  # a Wednesday afternoon: quiet hours let messages through
COUNT = int(os.environ.get("BENCH_COUNT", "1000000"))
LATENCY_SECONDS = int(os.environ.get("BENCH_LATENCY_SECONDS", "30"))
IDLE_SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", "60"))
WORK = tempfile.mkdtemp(prefix="herald-bench-")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, unlimited_pubsub):
        self.port = free_port()
        limit = ["--client-output-buffer-limit", "pubsub 0 0 0"] if unlimited_pubsub else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", WORK, "--logfile", ""] + limit,
            stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if "Ready to accept connections" in line:
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.url = f"redis://127.0.0.1:{self.port}/"
        self.client = redis.Redis(port=self.port)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def herald_config(name, channels, packs, presenter, backlog_mb=None):
    path = os.path.join(WORK, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f'[agent]\nhostname = "bench-{name}"\ntimezone = "Europe/Amsterdam"\n')
        if backlog_mb:
            f.write(f"max_backlog_mb = {backlog_mb}\n")
        f.write("\n")
        f.write(f'[presenter]\nkind = "{presenter}"\n\n')
        for c in channels:
            f.write(f'[[subscribe]]\nchannel = "{c}"\n\n')
        if packs:
            listed = ", ".join(f'"{os.path.join(ROOT, "examples", "packs", p)}"' for p in packs)
            f.write(f"[rules]\npacks = [{listed}]\n")
    return path


class Herald:
    """A running `herald run`; its stderr lines are kept with their arrival times."""

    def __init__(self, redis_, config, stdout=subprocess.DEVNULL):
        env = dict(os.environ, XDG_RUNTIME_DIR=WORK, XDG_STATE_HOME=WORK, HERALD_LOG="info")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [HERALD, "run", "--config", config, "--url", redis_.url, "--rules-clock", CLOCK],
            stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append((time.perf_counter(), line))
                self.cond.notify_all()

    def wait_for(self, needle, after=0.0, timeout=30):
        deadline = time.perf_counter() + timeout
        with self.cond:
            while True:
                for at, line in self.lines:
                    if at >= after and needle in line:
                        return at
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"no {needle!r} from herald")
                self.cond.wait(left)

    def saw(self, needle):
        with self.cond:
            return any(needle in line for _, line in self.lines)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def counter(self, name):
        """A counter from the summary line herald logs when it stops."""
        with self.cond:
            for _, line in self.lines:
                if "stopped" in line and f"{name}=" in line:
                    return int(line.split(f"{name}=")[1].split()[0].strip('"'))
        return None


def publish(redis_, *args):
    return subprocess.run([PUBLISHER, redis_.url, "bench", *map(str, args)], check=True,
                          capture_output=True, text=True).stdout


def drain_external(redis_, cmd, expected):
    proc = subprocess.Popen(cmd + [redis_.url, "bench", str(expected)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    publish(redis_, "flood", COUNT)
    got = int(proc.stdout.readline())
    elapsed = time.perf_counter() - t0
    proc.wait()
    return got, elapsed


def drain_herald(redis_, name, packs):
    replies = redis_.client.pubsub()
    replies.subscribe("replies:bench")
    replies.get_message(timeout=1)
    # Like the output-buffer limit, Herald's own backlog bound is lifted: this measures speed alone.
    agent = Herald(redis_, herald_config(name, ["bench"], packs, "null", backlog_mb=4096))
    agent.wait_for("subscribed")
    t0 = time.perf_counter()
    publish(redis_, "flood", COUNT)
    while True:
        msg = replies.get_message(timeout=120)
        if msg is None:
            raise TimeoutError("herald never answered the sentinel")
        if msg["type"] == "message":
            break
    elapsed = time.perf_counter() - t0
    agent.stop()
    replies.close()
    return elapsed


def latency(redis_):
    config = herald_config("latency", ["bench"], PACKS, "console")
    agent = Herald(redis_, config, stdout=subprocess.PIPE)
    agent.wait_for("subscribed")
    samples = []

    def read():
        for line in agent.proc.stdout:
            now = time.time_ns()
            i = line.find("sent_at=")
            if i >= 0:
                sent = int(line[i + 8:].split('"')[0])
                samples.append((now - sent) / 1e6)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    publish(redis_, "paced", 1000, LATENCY_SECONDS)
    time.sleep(0.5)  # the last few messages are still on their way to stdout
    agent.stop()
    reader.join(timeout=5)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    return len(samples), pick(0.5), pick(0.99), samples[-1]


def idle_and_startup(redis_):
    channels = [f"idle:{i}" for i in range(20)]
    config = herald_config("idle", channels, PACKS, "console")
    startups = []
    for _ in range(5):
        agent = Herald(redis_, config)
        startups.append(agent.wait_for("subscribed") - agent.started)
        agent.stop()
    agent = Herald(redis_, config)
    agent.wait_for("subscribed")
    time.sleep(2)
    hz = os.sysconf("SC_CLK_TCK")

    def cpu_ticks():
        with open(f"/proc/{agent.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def rss_kib():
        with open(f"/proc/{agent.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    before, t0 = cpu_ticks(), time.perf_counter()
    peak = rss_kib()
    for _ in range(IDLE_SECONDS):
        time.sleep(1)
        peak = max(peak, rss_kib())
    cpu = (cpu_ticks() - before) / hz / (time.perf_counter() - t0) * 100
    # Reload latency: save → the new generation is in effect (its log line).
    reloads = []
    for i in range(10):
        with open(config) as f:
            text = f.read()
        t = time.perf_counter()
        with open(config + ".tmp", "w") as f:
            f.write(text + f'\n[[subscribe]]\nchannel = "reload:{i}"\n')
        os.rename(config + ".tmp", config)
        reloads.append(agent.wait_for(f"reloaded generation={i + 2} ", after=t) - t)
    agent.stop()
    return statistics.median(startups), max(startups), peak, cpu, statistics.median(reloads), max(reloads)


def sustained(rates):
    """The highest paced rate each consumer survives for 10 s under Redis's default limits."""
    results = {}
    for rate in rates:
        r = Redis(unlimited_pubsub=False)
        expected = (rate // 100) * 100 * 10 + 1
        row = {}
        for name, cmd in [("a", [BARE]), ("b", ["/usr/bin/python3", PY_SUB])]:
            proc = subprocess.Popen(cmd + [r.url, "bench", str(expected)], stdout=subprocess.PIPE, text=True,
                                    stderr=subprocess.DEVNULL)
            proc.stdout.readline()
            publish(r, "rate", rate, 10)
            try:
                out, _ = proc.communicate(timeout=120)
                row[name] = out.strip() == str(expected)
            except subprocess.TimeoutExpired:
                proc.kill()
                row[name] = False
        agent = Herald(r, herald_config(f"sustained{rate}", ["bench"], PACKS, "null"))
        agent.wait_for("subscribed")
        replies = r.client.pubsub()
        replies.subscribe("replies:bench")
        replies.get_message(timeout=1)
        publish(r, "rate", rate, 10)
        answered = False
        deadline = time.time() + 120
        while time.time() < deadline:
            msg = replies.get_message(timeout=1)
            if msg and msg["type"] == "message":
                answered = True
                break
        disconnected = agent.saw("lost the Redis connection")
        agent.stop()
        row["c_disconnected"] = disconnected
        row["c_dropped"] = agent.counter("overflowed")
        row["c"] = answered and not disconnected and row["c_dropped"] == 0
        r.stop()
        results[rate] = row
    return results


def main():
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    r = Redis(unlimited_pubsub=True)
    redis_version = "Redis " + r.client.info()["redis_version"]
    print(f"drain: {COUNT} notifications per consumer", file=sys.stderr)
    got_a, t_a = drain_external(r, [BARE], COUNT + 1)
    got_b, t_b = drain_external(r, ["/usr/bin/python3", PY_SUB], COUNT + 1)
    t_c = drain_herald(r, "packs", PACKS)
    t_d = drain_herald(r, "norules", [])
    rate = lambda t: (COUNT + 1) / t
    a, b, c, d = rate(t_a), rate(t_b), rate(t_c), rate(t_d)
    print("latency", file=sys.stderr)
    n_lat, p50, p99, worst = latency(r)
    print("idle, startup, reload", file=sys.stderr)
    start_med, start_max, rss, cpu, reload_med, reload_max = idle_and_startup(r)
    r.stop()
    print("sustained", file=sys.stderr)
    sus = sustained([50_000, 100_000, 200_000])
    best = lambda k: max([rt for rt, row in sus.items() if row[k]], default=0)

    rows = [
        "| measurement | result |",
        "|---|---|",
        f"| drain (a) bare redis-rs subscriber | {a:,.0f} msg/s |",
        f"| drain (b) redis-py script (parse + 3 ifs) | {b:,.0f} msg/s |",
        f"| drain (c) herald, 5 example packs, null presenter | {c:,.0f} msg/s |",
        f"| drain (d) herald, no rules, null presenter | {d:,.0f} msg/s |",
        f"| c / a (aim ≥ 0.5) | {c / a:.2f} |",
        f"| c / b (required ≥ 3) | {c / b:.2f} |",
        f"| latency publish → presenter at 1,000 msg/s, {n_lat:,} msgs: p50 / p99 / max | {p50:.2f} / {p99:.2f} / {worst:.2f} ms |",
        f"| idle, 20 channels + 5 packs, {IDLE_SECONDS} s: RSS peak / CPU | {rss / 1024:.1f} MiB / {cpu:.3f} % |",
        f"| startup → all subscriptions active (median / max of 5) | {start_med * 1000:.0f} / {start_max * 1000:.0f} ms |",
        f"| reload: save → new generation live (median / max of 10) | {reload_med * 1000:.0f} / {reload_max * 1000:.0f} ms |",
        f"| highest paced rate for 10 s with default limits, never disconnected and nothing dropped (of 50k/100k/200k): a / b / c | "
        f"{best('a'):,} / {best('b'):,} / {best('c'):,} msg/s |",
    ]
    table = "\n".join(rows)
    print(table)
    with open(os.path.join(ROOT, "bench", "results.md"), "w") as f:
        f.write(f"# Benchmark results\n\nMachine: {machine}; {redis_version}, started by the script. "
                f"{COUNT:,} notifications per drain run.\n\n{table}\n\n"
                f"Sustained runs (rate: survived? per consumer; c_disconnected: did Redis cut herald off; c_dropped: "
                f"messages herald dropped beyond its default 64 MB backlog, and reported): {sus}\n")


if __name__ == "__main__":
    main()
