"""The command line: the only module that parses argv, prints and exits.

    loadbench SCENARIO.py [--target sim|URL] [--duration S] [--requests N] [--rate R]
                          [--arrivals poisson|constant|gamma:CV] [--concurrency N]
                          [--max-concurrency N] [--out DIR [--force]] [--seed N] [--quiet] [--json]
                          [--gate EXPR ...] [--junit FILE] [--resume DIR]
                          [--workers N] [--ray ADDRESS]
    loadbench sim [--port N] [knobs]              run the embedded simulator by hand
    loadbench verify RUN_DIR [--trace FILE|URL]   compare a run with the simulator's ground truth
    loadbench report RUN_DIR                      print a finished run's summary
    loadbench report PATH... --html [FILE] [--png DIR]   HTML report / figures: run, study, runs
    loadbench engine build|path|serve             build / locate / serve llama.cpp's llama-server
    loadbench compare BASELINE_RUN... NEW_RUN     is the new run slower? bootstrap CIs, a verdict

``python -m loadbench ...`` is the same command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadbench.contract.errors import LoadbenchError, RunAborted
from loadbench.display import LiveProgress, RunProgress, RunTarget, console, live_progress
from loadbench.exit_codes import EXIT_GATES_FAILED, EXIT_INTERRUPTED, EXIT_NO_COMPLETED, EXIT_USAGE

if TYPE_CHECKING:
    from rich.console import Console

    from loadbench.results.run import RunResult

DESCRIPTION = """\
Run a load scenario against a language-model deployment and measure TTFT, latency,
throughput and energy.

A scenario is a Python file that assigns `scenario = Scenario(...)`: the workload (Prefill,
Balanced, Decode), the deployment (Local, Remote), reasoning, quant, the load plan
(Concurrency, Constant, Poisson, Gamma, Burst, Ramp), the stop rule and the target.
Shipped scenarios target the embedded simulator, so they run with no model server.
A file may instead assign `study = Study(...)` (many runs: a matrix or a load sweep, one
directory with study.json and cells.csv; --resume DIR finishes an interrupted one) or
`search = CapacitySearch(...)` (the highest load meeting the SLOs; capacity.json).

Other commands (`python -m loadbench ...` is the same):
  loadbench sim [--port N] [...]              run the embedded simulator by hand (see `sim --help`)
  loadbench verify RUN_DIR [--trace FILE|URL] client stamps against the simulator's ground truth
  loadbench report RUN_DIR                    print the summary of a finished run
  loadbench report PATH... --html [FILE]      one-file HTML report (run, study, or runs side by side)
  loadbench engine build|path|serve           build, locate or serve llama.cpp's llama-server
  loadbench compare BASE_RUN... NEW_RUN       per-metric change with bootstrap CIs; exit 99 on a regression

Results go to results/<scenario>-<UTC time>/ (or --out, which must be new or empty unless
--force): run.json, requests.jsonl, metrics.hlog, summary.json, harness.jsonl, energy.csv.

Gates (CI): --gate 'ttft_ms.p99 < 500' --gate 'error_rate < 1%' (or Scenario(gates=[...])).
A gate is PATH OP NUMBER: PATH a dotted path into summary.json (a metric's name stands alone:
ttft_ms.p99), or error_rate; OP one of < <= > >= == !=. Drift and the harness's own use are
figures too: drift.ttft_ms.p99 < 1.2, harness.rss_growth_mb < 50. A bad gate exits 2 before
any request is sent. --junit FILE writes a JUnit report; $GITHUB_STEP_SUMMARY, when set, gets a
Markdown summary.

Exit codes: 0 done (all gates passed), 1 crash (a loadbench bug), 2 bad input or target, or a
run stopped early (its simulator died, its disk filled), 3 no measured request completed, 99 a
gate failed (also when abort_on_fail stopped the run early), 130 interrupted (results are still
written either way). Metric definitions: docs/metrics.md.
"""


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loadbench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
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
    load = p.add_argument_group("load (replaces the scenario's load plan)")
    load.add_argument("--rate", type=float, metavar="R", help="open loop at R requests/s (Poisson unless --arrivals)")
    load.add_argument(
        "--arrivals",
        metavar="poisson|constant|gamma:CV",
        help="the arrival process for --rate: Poisson (default), evenly spaced, or gamma gaps with "
        "coefficient of variation CV (above 1 burstier)",
    )
    load.add_argument("--concurrency", type=int, metavar="N", help="closed loop: N users, each sending when answered")
    load.add_argument(
        "--max-concurrency",
        type=int,
        metavar="N",
        help="cap requests in flight (open loop; waiting for a slot shows as dispatch lag)",
    )
    p.add_argument(
        "--out", metavar="DIR",
        help="the run directory (default results/<scenario>-<UTC time>); refused if it holds anything",
    )
    p.add_argument("--force", action="store_true", help="reuse a non-empty --out, replacing the run files in it")
    p.add_argument("--seed", type=int, metavar="N", help="seed for prompts and arrival times")
    p.add_argument(
        "--workers", type=int, metavar="N", help="run the load on N event loops in N processes (default 1)"
    )
    p.add_argument(
        "--ray", metavar="ADDRESS", help="run the workers as actors on the Ray cluster at ADDRESS (e.g. HOST:6379; "
        "'auto' joins the local one); needs the 'ray' extra"
    )
    p.add_argument("--quiet", action="store_true", help="no live progress and no summary table")
    p.add_argument("--json", action="store_true", help="print summary.json to stdout (progress goes to stderr)")
    p.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="EXPR",
        help="a pass/fail condition such as 'ttft_ms.p99 < 500' (repeatable; added to the scenario's gates); "
        "a failed gate exits 99",
    )
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report: one test case per gate")
    p.add_argument(
        "--resume", metavar="DIR", help="a study: finish the interrupted study in DIR (finished cells are kept)"
    )
    return p


# Subcommands: name -> "module:function" taking the remaining argv and returning an exit code.
# Each lives in its own module and is imported only when asked for, so `--help` stays instant.
COMMANDS: dict[str, str] = {
    "sim": "loadbench.sim.cli:main",
    "engine": "loadbench.engines.llamacpp:main",
    "verify": "loadbench.results.verify:main",
    "report": "loadbench.cli:_report",
    "compare": "loadbench.results.compare:main",
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
    if not Path(ns.scenario).is_file():  # before importing the harness, so the answer is instant
        from loadbench.contract.errors import ScenarioError

        raise ScenarioError(f"{ns.scenario}: scenario file not found")
    try:
        return _run_scenario(ns)
    except LoadbenchError as exc:
        _ci_reports(ns, Path(ns.scenario).stem, None, error=("bad_input", str(exc)))
        raise
    except KeyboardInterrupt:
        _ci_reports(ns, Path(ns.scenario).stem, None, error=("interrupted", "interrupted"))
        raise
    except Exception as exc:
        _ci_reports(ns, Path(ns.scenario).stem, None, error=("crash", f"{type(exc).__name__}: {exc}"))
        raise


def _run_scenario(ns: argparse.Namespace) -> int:
    # Imported after parsing, so --help and usage errors answer at once.
    from loadbench.experiment import Experiment
    from loadbench.load.overrides import Arrivals, override_load
    from loadbench.loader import load_definition
    from loadbench.results.report import summary_renderable
    from loadbench.results.run import RunResult
    from loadbench.scenario import Scenario

    executor = None
    if ns.ray:
        from loadbench.load.ray_executor import Ray

        executor = Ray(ns.ray, workers=ns.workers or 1)
    arrivals = Arrivals.parse(ns.arrivals) if ns.arrivals is not None else None
    definition = load_definition(ns.scenario)
    if not isinstance(definition, Scenario):
        from loadbench.studies.cli import run_definition

        return run_definition(definition, ns, console(stderr=ns.json))
    if ns.resume is not None:
        from loadbench.contract.errors import ConfigError

        raise ConfigError(f"--resume is for studies; {ns.scenario} defines a single scenario")
    scenario = definition.with_overrides(
        target=ns.target, duration_s=ns.duration, requests=ns.requests, out_dir=ns.out, seed=ns.seed,
        overwrite=ns.force or None, gates=ns.gate, workers=ns.workers, executor=executor,
    )
    load = override_load(
        scenario.load,
        rate_per_s=ns.rate,
        arrivals=arrivals,
        concurrency=ns.concurrency,
        max_concurrency=ns.max_concurrency,
    )
    if load is not scenario.load:
        scenario = scenario.replace(load=load)
    out = console(stderr=ns.json)
    live = live_progress(ns.quiet)
    observer = _Observer(out, live, quiet=ns.quiet)
    try:
        result = Experiment(scenario).run(observer=observer)
    except RunAborted as exc:  # stopped early: still show what was measured, then say why
        if live is not None:
            live.close()
        partial = exc.result if isinstance(exc.result, RunResult) else None
        if partial is not None and ns.json:
            import orjson

            sys.stdout.write(orjson.dumps(partial.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif partial is not None and not ns.quiet:
            out.print(summary_renderable(partial.summary))
        raise
    finally:
        if live is not None:
            live.close()
    if ns.json:
        import orjson

        sys.stdout.write(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif not ns.quiet:
        out.print(summary_renderable(result.summary, gates=False))  # gates go to stderr below
        out.print(f"results: {result.path}")
    code, error = _outcome(result.summary, result.run)
    gates = result.summary.get("gates") or []
    if gates:
        from loadbench.gates import describe_result

        for g in gates:  # on stderr, so --json output stays parseable
            print(f"loadbench: gate {describe_result(g)}", file=sys.stderr)
        failed = sum(not g["passed"] for g in gates)
        if failed:
            print(f"loadbench: {failed} of {len(gates)} gates failed (exit {EXIT_GATES_FAILED})", file=sys.stderr)
    if code == EXIT_NO_COMPLETED and error is not None:
        print(f"loadbench: {error[1]}; results in {result.path}", file=sys.stderr)
    _ci_reports(ns, scenario.name, result, error=error)
    return code


def _outcome(summary: dict[str, Any], run: dict[str, Any]) -> tuple[int, tuple[str, str] | None]:
    """The exit code of a finished run, and the run error the CI reports show (None: it ran)."""
    if run.get("status") == "interrupted":
        return EXIT_INTERRUPTED, ("interrupted", "the run was interrupted (results up to then are written)")
    requests = summary.get("requests", {})
    if not requests.get("measured_completed"):
        errors = ", ".join(f"{k}={v}" for k, v in requests.get("errors", {}).items()) or "none"
        measured = sum(requests.get("by_phase", {}).get("measured", {}).values())
        outside = requests.get("scheduled", 0) - measured
        aside = f"; {outside} in the warm-up or cool-down, not measured" if outside else ""
        why = (
            f"no measured request completed ({requests.get('failed', 0)} failed, "
            f"{requests.get('cancelled', 0)} cancelled; errors: {errors}{aside})"
        )
        return EXIT_NO_COMPLETED, ("no_completed", why)
    if any(not g["passed"] for g in summary.get("gates") or []):
        return EXIT_GATES_FAILED, None
    return 0, None


def _ci_reports(
    ns: argparse.Namespace, scenario: str, result: RunResult | None, *, error: tuple[str, str] | None
) -> None:
    """Write --junit and append to $GITHUB_STEP_SUMMARY, whatever the outcome."""
    import os

    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not ns.junit and not step_summary:
        return
    from loadbench.results.ci import RunOutcome, append_step_summary, write_junit

    outcome = RunOutcome(
        scenario=scenario,
        summary=result.summary if result is not None else None,
        run=result.run if result is not None else None,
        run_dir=str(result.path) if result is not None else None,
        error_kind=error[0] if error else None,
        error=error[1] if error else None,
    )
    if ns.junit:
        write_junit(ns.junit, outcome)
    if step_summary:
        append_step_summary(step_summary, outcome)


class _Observer:
    """Prints the target line, feeds the live display, and reports a stop request."""

    def __init__(self, out: Console, live: LiveProgress | None, *, quiet: bool) -> None:
        self._console = out
        self._live = live
        self._quiet = quiet

    def target_ready(self, target: RunTarget, out_dir: Path) -> None:
        """Called once the target has passed its checks and the run directory exists; ``target``
        names the model actually sent (after presets, quant and reasoning, or the server's own)."""
        kind = target.kind
        url = target.describe()["base_url"]
        sent = f"{target.dialect} dialect, model {target.model}"
        if kind == "sim":
            where = f"embedded simulator at {url} ({sent}; no model server needed, --target URL measures a real one)"
        elif kind == "url":
            where = f"{url} ({sent})"
        else:
            where = f"the deployment's own endpoint {url} ({sent})"
        self._console.print(f"loadbench: target: {where}; results in {out_dir}")
        if self._live is not None:
            self._live.start()

    def progress(self, progress: RunProgress) -> None:
        if self._live is not None:
            self._live.update(progress)

    def note(self, text: str) -> None:
        print(f"loadbench: {text}", file=sys.stderr)

    def stopping(self, reason: str) -> None:
        print(f"loadbench: {reason}", file=sys.stderr)


def _report(argv: list[str]) -> int:
    from loadbench.results.html.cli import main as figures_main
    from loadbench.results.html.cli import wants_figures

    if wants_figures(argv):  # --html / --png, a study, or several runs: the report with charts
        return figures_main(argv)
    from loadbench.results.rebuild import load_or_rebuild
    from loadbench.results.report import summary_renderable

    p = argparse.ArgumentParser(
        prog="loadbench report",
        description="Print a finished run's summary (rebuilt from requests.jsonl if summary.json is missing).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    ns = p.parse_args(argv)
    result, rebuilt = load_or_rebuild(ns.run_dir)
    if rebuilt:
        n = result.summary["rebuilt"]["records"]
        print(f"loadbench: {ns.run_dir}: no summary.json; rebuilt it from requests.jsonl ({n} records)",
              file=sys.stderr)
    console().print(summary_renderable(result.summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
