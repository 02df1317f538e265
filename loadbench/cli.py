"""The command line: the only module that parses argv, prints and exits.

    python -m loadbench SCENARIO.py [--target sim|URL] [--duration S] [--requests N]
                                    [--out DIR] [--seed N] [--workers N] [--ray ADDRESS]
                                    [--quiet] [--json]
    python -m loadbench sim [--port N] [knobs]        run the embedded simulator by hand
    python -m loadbench verify RUN_DIR [--trace T]    compare a run with the simulator's ground truth
    python -m loadbench report RUN_DIR                print a finished run's summary
    python -m loadbench engine build|path|serve       build / locate / serve llama.cpp's llama-server
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from loadbench.errors import LoadbenchError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Run a load scenario against a language-model deployment and measure TTFT, latency,
throughput and energy.

A scenario is a Python file that assigns `scenario = Scenario(...)`: the workload (Prefill,
Balanced, Decode), the deployment (Local, Remote), reasoning, quant, the load plan
(Concurrency, Constant, Poisson, Gamma, Burst, Ramp), the stop rule and the target.
Shipped scenarios target the embedded simulator, so they run with no model server.

Other commands:
  loadbench sim [--port N] [...]         run the embedded simulator by hand (see `sim --help`)
  loadbench verify RUN_DIR [--trace T]   client stamps against the simulator's ground truth
  loadbench report RUN_DIR               print the summary of a finished run
  loadbench engine build|path|serve      build, locate or serve llama.cpp's llama-server

Results go to results/<scenario>-<UTC time>/ (or --out): run.json, requests.jsonl,
metrics.hlog, summary.json, energy.csv. Exit codes: 0 done, 2 bad input or target,
130 interrupted (results are still written).
"""


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadbench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("scenario", metavar="SCENARIO.py", help="the scenario file to run")
    p.add_argument(
        "--target",
        metavar="sim|URL",
        help="where requests go: 'sim' for the embedded simulator, or a server's base URL "
        "(e.g. http://127.0.0.1:8080); default: the scenario's target",
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop scheduling after S seconds")
    p.add_argument("--requests", type=int, metavar="N", help="stop after N requests")
    p.add_argument("--out", metavar="DIR", help="the run directory (default results/<scenario>-<UTC time>)")
    p.add_argument("--seed", type=int, metavar="N", help="seed for prompts and arrival times")
    p.add_argument(
        "--workers", type=int, metavar="N", help="run the load on N event loops in N processes (default 1)"
    )
    p.add_argument(
        "--ray", metavar="ADDRESS", help="run the workers as actors on the Ray cluster at ADDRESS (e.g. 10.0.0.5:6379; "
        "'auto' joins the local one); needs the 'ray' extra"
    )
    p.add_argument("--quiet", action="store_true", help="no live progress and no summary table")
    p.add_argument("--json", action="store_true", help="print summary.json to stdout (progress goes to stderr)")
    return p


# Subcommands: name -> "module:function" taking the remaining argv and returning an exit code.
# Each lives in its own module and is imported only when asked for, so `--help` stays instant.
COMMANDS: dict[str, str] = {
    "sim": "loadbench.sim.cli:main",
    "engine": "loadbench.engines.llamacpp:main",
    "verify": "loadbench.results.verify:main",
    "report": "loadbench.cli:_report",
}


def _command(name: str) -> Callable[[list[str]], int]:
    import importlib

    module, _, func = COMMANDS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    try:
        if command in COMMANDS:
            return _command(command)(args[1:])
        return _run(args)
    except LoadbenchError as exc:
        print(f"loadbench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("loadbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(argv: list[str]) -> int:
    parser = _run_parser()
    ns = parser.parse_args(argv)
    if ns.duration is not None and ns.duration <= 0:
        parser.error(f"--duration must be > 0 seconds, got {ns.duration}")
    if ns.requests is not None and ns.requests <= 0:
        parser.error(f"--requests must be > 0, got {ns.requests}")
    if ns.workers is not None and ns.workers <= 0:
        parser.error(f"--workers must be >= 1, got {ns.workers}")
    # Imported after parsing, so --help and usage errors answer at once.
    from loadbench.experiment import Experiment
    from loadbench.results.report import summary_renderable
    from loadbench.scenario import load_scenario
    executor = None
    if ns.ray:
        from loadbench.load.ray_executor import Ray

        executor = Ray(ns.ray, workers=ns.workers or 1)
    scenario = load_scenario(ns.scenario).with_overrides(
        target=ns.target, duration_s=ns.duration, requests=ns.requests, out_dir=ns.out, seed=ns.seed,
        workers=ns.workers, executor=executor,
    )
    out = _console(stderr=ns.json)
    err = _console(stderr=True)
    live = None if ns.quiet or not err.is_terminal else _LiveProgress(err)
    observer = _Observer(out, live, quiet=ns.quiet)
    try:
        result = Experiment(scenario).run(observer=observer)
    finally:
        if live is not None:
            live.close()
    if ns.json:
        import orjson

        sys.stdout.write(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif not ns.quiet:
        out.print(summary_renderable(result.summary))
        out.print(f"results: {result.path}")
    return EXIT_INTERRUPTED if result.run.get("status") == "interrupted" else 0


def _console(*, stderr: bool = False) -> object:
    """A console that wraps at the terminal's width, and not at all when piped to a file."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=200, soft_wrap=True)
    return console


class _Observer:
    """Prints the target line, feeds the live display, and reports a stop request."""

    def __init__(self, console: object, live: _LiveProgress | None, *, quiet: bool) -> None:
        self._console = console
        self._live = live
        self._quiet = quiet

    def target_ready(self, target: object, out_dir: Path) -> None:
        kind = target.kind  # type: ignore[attr-defined]
        url = target.describe()["base_url"]  # type: ignore[attr-defined]
        if kind == "sim":
            where = f"embedded simulator at {url} (no model server needed; --target URL measures a real one)"
        elif kind == "url":
            where = f"{url} ({target.dialect} dialect, model {target.model})"  # type: ignore[attr-defined]
        else:
            where = f"the deployment's own endpoint {url} ({target.dialect} dialect, model {target.model})"  # type: ignore[attr-defined]
        self._console.print(f"loadbench: target: {where}; results in {out_dir}")  # type: ignore[attr-defined]
        if self._live is not None:
            self._live.start()

    def progress(self, progress: object) -> None:
        if self._live is not None:
            self._live.update(progress)

    def stopping(self, reason: str) -> None:
        print(f"loadbench: {reason}: stopping, draining in-flight requests (again to cancel them)", file=sys.stderr)


class _LiveProgress:
    """A rich Live panel refreshed on rich's own thread from the latest snapshot."""

    def __init__(self, console: object) -> None:
        from rich.live import Live

        self._latest: object | None = None
        self._live = Live(console=console, refresh_per_second=4, transient=True, get_renderable=self._render)  # type: ignore[arg-type]
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._live.start()
            self._started = True

    def update(self, progress: object) -> None:
        self._latest = progress  # a reference swap; rich's thread renders it

    def _render(self) -> object:
        from rich.text import Text

        p = self._latest
        if p is None:
            return Text("starting…")
        s = p.snapshot  # type: ignore[attr-defined]
        parts = [f"{s.elapsed_s:6.1f} s"]
        if p.duration_s:  # type: ignore[attr-defined]
            parts.append(f"remaining {max(0.0, p.duration_s - s.elapsed_s):5.1f} s")  # type: ignore[attr-defined]
        if p.requests:  # type: ignore[attr-defined]
            parts.append(f"scheduled {p.scheduled}/{p.requests}")  # type: ignore[attr-defined]
        else:
            parts.append(f"scheduled {p.scheduled}")  # type: ignore[attr-defined]
        parts += [
            f"in flight {p.in_flight}",  # type: ignore[attr-defined]
            f"completed {s.completed}",
            f"failed {s.failed}",
            f"{s.output_tokens_per_s:,.0f} tok/s",
            "TTFT p50/p99 "
            + ("-" if s.ttft_p50_ms is None else f"{s.ttft_p50_ms:.1f}/{s.ttft_p99_ms:.1f} ms"),
        ]
        if p.stopping:  # type: ignore[attr-defined]
            parts.append("stopping…")
        return Text(" · ".join(parts))

    def close(self) -> None:
        if self._started:
            self._live.stop()
            self._started = False


def _report(argv: list[str]) -> int:

    from loadbench.results.report import summary_renderable
    from loadbench.results.run import RunResult

    p = argparse.ArgumentParser(prog="python -m loadbench report", description="Print a finished run's summary.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    ns = p.parse_args(argv)
    _console().print(summary_renderable(RunResult.load(ns.run_dir).summary))  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
