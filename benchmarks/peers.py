"""loadbench beside guidellm and aiperf, on the same server, in one run: what each client costs.

For each probe, each tool runs in turn against the same server and the script prints requests/s,
the client's CPU seconds per 1,000 completed requests and its memory:

* ``max``: ``--streams`` (64) streams at once, 64-token prompts, 32-token answers: on a cheap server
  the client is the bottleneck, so requests/s is what the client squeezes out of the host;
* ``rate``: a constant 20 requests/s, 64-token prompts and answers: the cost of a low, steady rate.

The server: ``--url URL`` (any OpenAI-compatible server already running on loopback, such as
guidellm's mock server or llama-server), or by default the embedded simulator (``--sim-profile``).

The peers are found on ``PATH`` or through ``GUIDELLM`` / ``AIPERF`` (the path of the executable).
Both size prompts with a Hugging Face tokenizer: ``--tokenizer DIR`` (or ``LOADBENCH_PEERS_TOKENIZER``).
A peer that is not installed, or that has no tokenizer, is named and skipped.

CPU: each tool's whole process tree (this script makes itself a child subreaper, so worker
processes a tool leaves behind are reaped and counted here), sampled four times a second. ``window``
is the CPU inside the tool's own measurement window (from its report; loadbench's: first intended
send to last end), per 1,000 completed requests; ``total`` includes start-up and report writing.
Memory is the peak of the tree's summed RSS. Everything binds to loopback.

    python benchmarks/peers.py [--probes max,rate] [--duration 20] [--url URL] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TICK_S = os.sysconf("SC_CLK_TCK")
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


# -- process-tree accounting -------------------------------------------------------------------


def _become_subreaper() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _proc_table() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, CPU s including reaped children, RSS MB) for every process."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rpartition(b")")[2].split()
        except OSError:
            continue
        ppid = int(fields[1])
        cpu = sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK_S  # utime stime cutime cstime
        out[int(entry.name)] = (ppid, cpu, int(fields[21]) * _PAGE_MB)
    return out


def _tree(root: int, table: dict[int, tuple[int, float, float]]) -> set[int]:
    members, grew = {root}, True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    return members


class TreeMeter:
    """Runs a command; samples its process tree's CPU and RSS until it and its leftovers are gone."""

    def __init__(self, cmd: list[str], *, cwd: str, env: dict[str, str], log: Path, timeout_s: float) -> None:
        self.timeline: list[tuple[float, float]] = []  # (epoch s, tree CPU s so far)
        self.peak_rss_mb = 0.0
        reaped0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        stop = threading.Event()
        members: set[int] = {proc.pid}

        def reaped_s() -> float:
            r = resource.getrusage(resource.RUSAGE_CHILDREN)
            return (r.ru_utime + r.ru_stime) - (reaped0.ru_utime + reaped0.ru_stime)

        def sample() -> None:
            table = _proc_table()
            members.update(_tree(proc.pid, table) if proc.pid in table else set())
            live = [table[p] for p in members if p in table]
            self.peak_rss_mb = max(self.peak_rss_mb, sum(r for _, _, r in live))
            self.timeline.append((time.time(), sum(c for _, c, _ in live) + reaped_s()))

        def sampler() -> None:
            while not stop.wait(0.25):
                sample()

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        try:
            self.rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.rc = proc.wait()
        # Orphans the tool left (reparented to us, the subreaper): wait for them a little, reap them.
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                alive = [p for p in members if p != proc.pid and os.path.exists(f"/proc/{p}")]
                if not alive:
                    break
                time.sleep(0.1)
        stop.set()
        thread.join()
        self.timeline.append((time.time(), reaped_s()))
        self.cpu_s = self.timeline[-1][1]
        self.wall_s = time.time() - t0

    def cpu_between(self, t0: float, t1: float) -> float | None:
        def at(t: float) -> float:
            pts = self.timeline
            if t <= pts[0][0]:
                return pts[0][1]
            for (a, ca), (b, cb) in itertools.pairwise(pts):
                if a <= t <= b:
                    return ca if b == a else ca + (cb - ca) * (t - a) / (b - a)
            return pts[-1][1]

        if not self.timeline or t1 <= t0:
            return None
        return at(t1) - at(t0)


# -- the tools ---------------------------------------------------------------------------------


def _find(name: str) -> str | None:
    explicit = os.environ.get(name.upper())
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which(name)


def _epoch(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value).timestamp()
    return None


def run_loadbench(
    url: str, model: str, probe: dict, art: Path, duration_s: float, tree: Path = ROOT
) -> tuple[list[str], dict, callable]:
    load = f"Constant({probe['rate']})" if probe["mode"] == "rate" else f"Concurrency({probe['streams']})"
    (art / "probe.py").write_text(
        "from loadbench import Balanced, Concurrency, Constant, Fixed, Remote, Scenario, Stop\n"
        "scenario = Scenario(\n"
        f"    workload=Balanced(input_tokens=Fixed({probe['prompt']}), output_tokens=Fixed({probe['output']}),"
        " ignore_eos=True),\n"
        f"    deployment=Remote.compatible(base_url={url!r}, model={model!r}),\n"
        f"    load={load},\n"
        f"    stop=Stop(duration_s={duration_s}, drain_s=10),\n"
        "    energy=False,\n"
        ")\n"
    )
    cmd = [sys.executable, "-m", "loadbench", str(art / "probe.py"), "--quiet", "--out", str(art / "run")]
    env = {"PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}

    def parse() -> dict:
        run = art / "run"
        summary = json.loads((run / "summary.json").read_text())
        clock = json.loads((run / "run.json").read_text())["clock"]
        rows = [json.loads(line) for line in (run / "requests.jsonl").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("phase") == "measured"]

        def epoch(ns: int) -> float:
            return clock["epoch_s"] + (ns - clock["perf_counter_ns"]) / 1e9

        return {
            "rps": summary["throughput"]["requests_per_s"],
            "completed": summary["requests"]["measured_completed"],
            "failed": summary["requests"]["failed"],
            "window": (epoch(min(r["intended_ns"] for r in rows)), epoch(max(r["end_ns"] for r in rows))),
        }

    return cmd, env, parse


def run_guidellm(exe: str, url: str, model: str, probe: dict, art: Path, duration_s: float, tokenizer: str):
    profile = (
        f"kind=constant,rate={probe['rate']}" if probe["mode"] == "rate"
        else f"kind=throughput,max_concurrency={probe['streams']}"
    )
    cmd = [
        exe, "run", "--backend", f"kind=openai_http,target={url},model={model}", "--profile", profile,
        "--constraint", f"kind=max_duration,seconds={duration_s:g}",
        "--data", f"kind=synthetic_text,prompt_tokens={probe['prompt']},output_tokens={probe['output']}",
        "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
        "--output", f"kind=json,path={art / 'guidellm.json'}", "--disable-console-interactive",
    ]

    def parse() -> dict:
        doc = json.loads((art / "guidellm.json").read_text())
        bench = doc["benchmarks"][-1]
        metrics, sched = bench["metrics"], bench["scheduler_metrics"]
        totals = metrics["request_totals"]
        return {
            "rps": metrics["requests_per_second"]["successful"]["mean"],
            "completed": totals["successful"],
            "failed": totals["errored"],
            "window": (_epoch(sched["measure_start_time"]), _epoch(sched["measure_end_time"])),
            "version": doc.get("metadata", {}).get("guidellm_version"),
        }

    return cmd, {"HF_HUB_OFFLINE": "1"}, parse


def run_aiperf(exe: str, url: str, model: str, probe: dict, art: Path, duration_s: float, tokenizer: str):
    load = (
        ["--request-rate", str(probe["rate"]), "--arrival-pattern", "constant"] if probe["mode"] == "rate"
        else ["--concurrency", str(probe["streams"])]
    )
    cmd = [
        exe, "profile", "--model", model, "--url", url, "--endpoint-type", "chat", "--streaming", *load,
        "--benchmark-duration", f"{duration_s:g}", "--benchmark-grace-period", "10",
        "--tokenizer", tokenizer, "--isl", str(probe["prompt"]), "--isl-stddev", "0",
        "--osl", str(probe["output"]), "--osl-stddev", "0", "--extra-inputs", "ignore_eos:true",
        "--use-server-token-count", "--ui-type", "none", "--no-gpu-telemetry", "--no-server-metrics",
        "--artifact-dir", str(art / "aiperf"),
    ]

    def parse() -> dict:
        doc = json.loads((art / "aiperf" / "profile_export_aiperf.json").read_text())

        def avg(name: str) -> float | None:
            value = doc.get(name)
            return value.get("avg") if isinstance(value, dict) else None

        return {
            "rps": avg("request_throughput"),
            "completed": int(avg("request_count") or 0),
            "failed": int(avg("error_request_count") or 0),
            "window": (_epoch(doc.get("start_time")), _epoch(doc.get("end_time"))),
            "version": doc.get("aiperf_version"),
        }

    # aiperf 0.13 will not load a local tokenizer directory with HF_HUB_OFFLINE set.
    return cmd, {}, parse


# -- the run -----------------------------------------------------------------------------------

PROBES = {
    "max": {"mode": "max", "streams": 64, "prompt": 64, "output": 32},
    "rate": {"mode": "rate", "rate": 20, "prompt": 64, "output": 64},
}


def _model_of(url: str) -> str:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=10) as resp:
            return json.load(resp)["data"][0]["id"]
    except Exception:
        return "model"


def measure(tool: str, cmd: list[str], env: dict, parse, art: Path, timeout_s: float) -> dict:
    full_env = {**os.environ, **env}
    if tool == "aiperf":
        full_env.pop("HF_HUB_OFFLINE", None)
    meter = TreeMeter(cmd, cwd=str(art), env=full_env, log=art / "tool.log", timeout_s=timeout_s)
    row: dict = {"tool": tool, "rc": meter.rc, "cpu_s": meter.cpu_s, "rss_mb": meter.peak_rss_mb}
    try:
        row.update(parse())
    except Exception as exc:  # the tool failed: say so, with the end of its log
        tail = (art / "tool.log").read_text(errors="replace").strip().splitlines()[-3:]
        row["error"] = f"{type(exc).__name__}: {exc}; log: {' | '.join(tail)}"
        return row
    window = row.get("window") or (None, None)
    row["window_cpu_s"] = meter.cpu_between(*window) if None not in window else None
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probes", default="max,rate")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--url", help="a running OpenAI-compatible server on loopback (default: the embedded simulator)")
    p.add_argument("--sim-profile", default="instant", help="simulator profile when no --url is given")
    p.add_argument("--tokenizer", default=os.environ.get("LOADBENCH_PEERS_TOKENIZER"),
                   help="a Hugging Face tokenizer directory for the peers' prompts")
    p.add_argument("--tools", default="loadbench,guidellm,aiperf")
    p.add_argument("--keep", metavar="DIR", help="keep each tool's files under DIR")
    p.add_argument("--baseline-tree", metavar="DIR",
                   help="also run loadbench from this checkout (e.g. the previous release), labelled 'baseline'")
    ns = p.parse_args()
    _become_subreaper()

    tools = ns.tools.split(",")
    if ns.baseline_tree:
        tools.insert(tools.index("loadbench") + 1 if "loadbench" in tools else 0, "baseline")
    found = {"guidellm": _find("guidellm"), "aiperf": _find("aiperf")}
    for peer in ("guidellm", "aiperf"):
        if peer not in tools:
            continue
        if found[peer] is None:
            print(f"{peer}: not found on PATH (or ${peer.upper()}): skipped", file=sys.stderr)
            tools.remove(peer)
        elif not ns.tokenizer:
            print(f"{peer}: no tokenizer (--tokenizer or LOADBENCH_PEERS_TOKENIZER): skipped", file=sys.stderr)
            tools.remove(peer)

    base = Path(ns.keep) if ns.keep else Path(tempfile.mkdtemp(prefix="peers-"))
    rows: list[tuple[str, dict]] = []
    with contextlib.ExitStack() as stack:
        url = ns.url
        server = f"server at {url}"
        if url is None:
            from loadbench.sim import SimConfig, SimProcess

            sim = stack.enter_context(SimProcess(SimConfig(profile=ns.sim_profile, trace=False)))
            url, server = sim.base_url, f"embedded simulator ({ns.sim_profile})"
        if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            raise SystemExit(f"--url must be a loopback address, got {url}")
        model = _model_of(url)
        print(f"{server}, model {model!r}; {ns.duration:g} s per run; tools: {', '.join(tools)}", flush=True)
        for probe_name in ns.probes.split(","):
            probe = dict(PROBES[probe_name])
            if probe["mode"] == "max":
                probe["streams"] = ns.streams
            for tool in tools:
                art = base / f"{probe_name}-{tool}"
                art.mkdir(parents=True, exist_ok=True)
                if tool == "loadbench":
                    cmd, env, parse = run_loadbench(url, model, probe, art, ns.duration)
                elif tool == "baseline":
                    cmd, env, parse = run_loadbench(url, model, probe, art, ns.duration, Path(ns.baseline_tree))
                else:
                    runner = run_guidellm if tool == "guidellm" else run_aiperf
                    cmd, env, parse = runner(found[tool], url, model, probe, art, ns.duration, ns.tokenizer)
                row = measure(tool, cmd, env, parse, art, timeout_s=3 * ns.duration + 180)
                rows.append((probe_name, row))
                print(f"  {probe_name} {tool}: done (rc {row['rc']})", file=sys.stderr, flush=True)
    label = {"max": f"{ns.streams} streams, 32-token answers", "rate": "20 req/s, 64 in / 64 out"}
    print()
    print("| probe | tool | requests/s | completed | failed | client CPU s / 1,000 req (window) | (whole run) "
          "| peak client RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for probe_name, r in rows:
        name = "loadbench (baseline)" if r["tool"] == "baseline" else r["tool"]
        name += f" {r['version']}" if r.get("version") else ""
        if "error" in r:
            print(f"| {label[probe_name]} | {name} | failed: {r['error'][:160]} | | | | | |")
            continue
        done = max(r["completed"], 1)
        window = "-" if r.get("window_cpu_s") is None else f"{1000 * r['window_cpu_s'] / done:.2f}"
        print(f"| {label[probe_name]} | {name} | {r['rps']:.1f} | {r['completed']} | {r['failed']} | {window} "
              f"| {1000 * r['cpu_s'] / done:.2f} | {r['rss_mb']:.0f} |")
    if not ns.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
