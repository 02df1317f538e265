"""``python -m loadbench.sim`` / ``loadbench sim``: run the simulator in the foreground.

Every ``SimConfig`` knob has a flag; ``--config-json`` gives a whole config (what ``SimProcess``
uses) and the other flags then change it. ``main(argv)`` returns the exit status: 0 after a clean
stop (Ctrl-C or SIGTERM), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import replace
from typing import Any

from loadbench.contract.errors import ConfigError, LoadbenchError
from loadbench.sim.config import FAULT_KINDS, PROFILES, FaultPlan, FaultWindow, Responder, SimConfig

__all__ = ["build_config", "main", "parser"]

_PROFILE_FLAGS = {
    "slots": int,
    "kv_cache_tokens": int,
    "step_base_ms": float,
    "step_per_seq_ms": float,
    "prefill_per_token_ms": float,
    "prefill_chunk_tokens": int,
    "default_output_tokens": int,
    "eos_after_tokens": int,
    "overhead_ms": float,
    "jitter_frac": float,
    "fixed_ttft_ms": float,
    "fixed_itl_ms": float,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser (the main CLI reuses it for ``loadbench sim``)."""
    p = argparse.ArgumentParser(
        prog="loadbench sim",
        description="Run the embedded inference simulator: OpenAI, Anthropic and Ollama dialects on "
                    "one loopback server, backed by a continuous-batching capacity model.",
    )
    p.add_argument("--port", type=int, default=None, help="port to listen on (0: any free port; default 8000)")
    p.add_argument("--host", default=None, help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="engine profile to start from (default: instant)")
    engine = p.add_argument_group("engine model (override the profile)")
    for name, kind in _PROFILE_FLAGS.items():
        engine.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None)
    engine.add_argument("--output-tokens", dest="default_output_tokens", type=int, default=None,
                        help="alias of --default-output-tokens")
    engine.add_argument("--itl-ms", type=float, default=None,
                        help="shorthand: step base time (ms), with no per-sequence cost")
    engine.add_argument("--ttft-ms", type=float, default=None,
                        help="shorthand: unloaded TTFT for a short prompt (sets overhead_ms to this minus "
                             "one base step)")
    engine.add_argument("--jitter", action="store_true", default=None, help="seeded step-time noise")
    engine.add_argument("--seed", type=int, default=None)
    engine.add_argument("--reasoning-tokens", type=int, default=None)
    engine.add_argument("--json-null-rate", type=float, default=None,
                        help="share of nullable fields left null in a structured (JSON schema) answer")
    engine.add_argument("--json-malformed-rate", type=float, default=None,
                        help="share of structured (JSON schema) answers sent as broken JSON")
    faults = p.add_argument_group("faults")
    faults.add_argument("--fault", action="append", default=[], metavar="KIND:RATE",
                        help=f"inject KIND in a share RATE of requests; kinds: {', '.join(FAULT_KINDS)}")
    faults.add_argument("--fault-window", action="append", default=[], metavar="START:END:KIND[:RATE]",
                        help="inject KIND into requests arriving START..END seconds after start-up")
    faults.add_argument("--fault-after-tokens", type=int, default=None,
                        help="tokens sent before a mid-stream fault strikes (default 5)")
    faults.add_argument("--stall-s", type=float, default=None)
    faults.add_argument("--retry-after-s", type=float, default=None)
    faults.add_argument("--slow-headers-s", type=float, default=None)
    other = p.add_argument_group("other")
    other.add_argument("--models", default=None, help="comma-separated model list for /api/tags")
    other.add_argument("--responder", action="append", default=[], metavar="REGEX=>TEMPLATE",
                       help="canned answer: when the last user message matches REGEX, answer TEMPLATE")
    other.add_argument("--responder-json", action="append", default=[], metavar="REGEX=>JSON",
                       help="canned JSON answer")
    other.add_argument("--trace", default=None, metavar="PATH", help="write ground truth JSONL to PATH")
    other.add_argument("--no-trace", action="store_true", help="keep no ground truth")
    other.add_argument("--no-tokenize", action="store_true",
                       help="serve no POST /tokenize (like an OpenAI-compatible server without one)")
    other.add_argument("--piece-chars", type=int, default=None,
                       help="the tokenizer's longest word piece, in characters (default 4)")
    other.add_argument("--chat-template-tokens", default=None, metavar="REQUEST[,MESSAGE]",
                       help="tokens a chat template adds per request and per message (default 0,0)")
    other.add_argument("--config-json", default=None, help="a whole SimConfig as JSON (flags override it)")
    other.add_argument("--cpus", default=None, metavar="LIST",
                       help="pin the simulator to these CPU ids (comma-separated; Linux)")
    other.add_argument("--ready-line", action="store_true", help=argparse.SUPPRESS)
    other.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    return p


def _split_pair(text: str, flag: str) -> tuple[str, str]:
    if "=>" not in text:
        raise ConfigError(f"{flag} expects REGEX=>ANSWER, got {text!r}")
    left, right = text.split("=>", 1)
    return left, right


def parse_cpus(text: str) -> set[int]:
    """CPU ids from ``--cpus`` ("3" or "2,3"); raises ``ConfigError`` for anything else."""
    try:
        cpus = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        cpus = set()
    if not cpus or min(cpus) < 0:
        raise ConfigError(f"--cpus expects comma-separated CPU ids like 3 or 2,3, got {text!r}")
    return cpus


def build_config(args: argparse.Namespace) -> SimConfig:
    """The ``SimConfig`` the parsed flags describe; raises ``ConfigError`` naming a bad flag."""
    base = SimConfig.from_json(args.config_json) if args.config_json else SimConfig(port=8000)
    changes: dict[str, Any] = {}
    profile = PROFILES[args.profile] if args.profile else base.profile
    profile_changes = {name: getattr(args, name) for name in _PROFILE_FLAGS if getattr(args, name) is not None}
    if args.itl_ms is not None:
        profile_changes.update(step_base_ms=args.itl_ms, step_per_seq_ms=0.0)
    if args.ttft_ms is not None:
        step_ms = profile_changes.get("step_base_ms", profile.step_base_ms)
        profile_changes["overhead_ms"] = max(0.0, args.ttft_ms - step_ms)
    if profile_changes or args.profile:
        changes["profile"] = replace(profile, **profile_changes) if profile_changes else profile
    for name in ("port", "host", "seed", "reasoning_tokens", "json_null_rate", "json_malformed_rate"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.jitter:
        changes["jitter"] = True
    if args.models:
        changes["models"] = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if args.trace:
        changes.update(trace=True, trace_path=args.trace)
    if args.no_trace:
        changes.update(trace=False, trace_path=None)
    if args.no_tokenize:
        changes["tokenize"] = False
    if args.piece_chars is not None:
        changes["piece_chars"] = args.piece_chars
    if args.chat_template_tokens is not None:
        parts = args.chat_template_tokens.split(",")
        try:
            values = [int(x) for x in parts]
        except ValueError:
            values = []
        if len(values) not in (1, 2):
            raise ConfigError(
                f"--chat-template-tokens expects REQUEST[,MESSAGE] integers, got {args.chat_template_tokens!r}"
            )
        changes["chat_template_tokens"] = values[0]
        changes["message_template_tokens"] = values[1] if len(values) == 2 else 0
    rates = dict(base.faults.rates)
    for spec in args.fault:
        kind, sep, rate = spec.rpartition(":")
        if not sep:
            raise ConfigError(f"--fault expects KIND:RATE, got {spec!r}")
        try:
            rates[kind] = float(rate)
        except ValueError:
            raise ConfigError(f"--fault {spec!r}: rate must be a number") from None
    windows = list(base.faults.schedule)
    for spec in args.fault_window:
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ConfigError(f"--fault-window expects START:END:KIND[:RATE], got {spec!r}")
        try:
            start, end = float(parts[0]), float(parts[1])
            rate = float(parts[3]) if len(parts) == 4 else 1.0
        except ValueError:
            raise ConfigError(f"--fault-window {spec!r}: START, END and RATE must be numbers") from None
        windows.append(FaultWindow(start, end, parts[2], rate))
    fault_changes: dict[str, Any] = {}
    if args.fault or args.fault_window:
        fault_changes.update(rates=rates, schedule=tuple(windows))
    for flag, name in (("fault_after_tokens", "after_tokens"), ("stall_s", "stall_s"),
                       ("retry_after_s", "retry_after_s"), ("slow_headers_s", "slow_headers_s")):
        if getattr(args, flag) is not None:
            fault_changes[name] = getattr(args, flag)
    if fault_changes:
        changes["faults"] = replace(base.faults, **fault_changes) if fault_changes else FaultPlan()
    responders = list(base.responders)
    for spec in args.responder:
        pattern, template = _split_pair(spec, "--responder")
        responders.append(Responder(pattern, template=template))
    for spec in args.responder_json:
        pattern, text = _split_pair(spec, "--responder-json")
        try:
            responders.append(Responder(pattern, json=json.loads(text)))
        except ValueError:
            raise ConfigError(f"--responder-json {spec!r}: the answer is not valid JSON") from None
    if args.responder or args.responder_json:
        changes["responders"] = tuple(responders)
    return replace(base, **changes) if changes else base


async def serve(config: SimConfig, *, ready_line: bool = False, exit_on_stdin_eof: bool = False) -> None:
    """Serve until SIGINT/SIGTERM (or stdin EOF when asked), then close cleanly."""
    from loadbench.sim.server import SimServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-POSIX loops
            loop.add_signal_handler(sig, stop.set)
    if exit_on_stdin_eof:
        def watch_stdin() -> None:
            # Raw reads on fd 0: a thread blocked inside sys.stdin's buffered reader would hold its
            # lock and stall interpreter shutdown.
            try:
                while os.read(0, 65536):
                    pass
            except (OSError, ValueError):
                pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="sim-stdin-watch", daemon=True).start()
    async with SimServer(config) as server:
        if ready_line:
            sys.stdout.write(json.dumps({"ready": True, "port": server.port, "pid": os.getpid(),
                                         "trace_path": config.trace_path if config.trace else None}) + "\n")
        else:
            sys.stdout.write(f"loadbench sim: serving on {server.base_url} "
                             f"(profile {config.profile.name}); Ctrl-C stops\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until stopped; 0 on a clean stop, 2 on a bad argument."""
    args = parser().parse_args(argv)
    try:
        config = build_config(args)
        cpus = parse_cpus(args.cpus) if args.cpus is not None else None
    except LoadbenchError as exc:
        print(f"loadbench sim: {exc}", file=sys.stderr)
        return 2
    if cpus is not None:
        # Before the loop and any thread start, so all of them inherit it.
        try:
            os.sched_setaffinity(0, cpus)
        except (AttributeError, OSError, ValueError) as exc:
            print(f"loadbench sim: cannot pin to CPUs {sorted(cpus)}: {exc}", file=sys.stderr)
            return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional on non-Linux
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config, ready_line=args.ready_line, exit_on_stdin_eof=args.exit_on_stdin_eof))
    except OSError as exc:
        print(f"loadbench sim: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
