"""What the command line shows while it runs: a console that wraps right, and the live progress line.

Shared by the single run (``loadbench.cli``) and the studies (``loadbench.studies.cli``), and
importing neither. ``RunTarget`` and ``RunProgress`` are what the display reads of an
experiment's observer events: the experiment's ``TargetInfo`` and ``Progress`` satisfy them.
rich is imported only when a console is made, so ``--help`` stays instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


class RunTarget(Protocol):
    """Where a run's requests go: ``kind`` is "sim", "url" or "deployment"; ``model`` the name sent."""

    @property
    def kind(self) -> str: ...

    @property
    def dialect(self) -> str: ...

    @property
    def model(self) -> str: ...

    def describe(self) -> Mapping[str, Any]:
        """At least ``base_url``, with any credentials taken out."""
        ...


class ProgressSnapshot(Protocol):
    """The recorder's running figures."""

    @property
    def elapsed_s(self) -> float: ...

    @property
    def completed(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def output_tokens_per_s(self) -> float: ...

    @property
    def ttft_p50_ms(self) -> float | None: ...

    @property
    def ttft_p99_ms(self) -> float | None: ...


class RunProgress(Protocol):
    """One progress event: the figures, what the scheduler has sent, and the stop rule's limits."""

    @property
    def snapshot(self) -> ProgressSnapshot: ...

    @property
    def scheduled(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def duration_s(self) -> float | None: ...

    @property
    def requests(self) -> int | None: ...

    @property
    def stopping(self) -> bool: ...


def console(*, stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width, and not at all when piped to a file."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, width=200, soft_wrap=True)
    return out


def live_progress(quiet: bool) -> LiveProgress | None:
    """A live line on stderr, or None when ``quiet`` or stderr is not a terminal."""
    err = console(stderr=True)
    return None if quiet or not err.is_terminal else LiveProgress(err)


class LiveProgress:
    """A rich Live panel refreshed on rich's own thread from the latest progress event."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self._latest: RunProgress | None = None
        self._live = Live(console=console, refresh_per_second=4, transient=True, get_renderable=self._render)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._live.start()
            self._started = True

    def update(self, progress: RunProgress) -> None:
        self._latest = progress  # a reference swap; rich's thread renders it

    def _render(self) -> Text:
        from rich.text import Text

        p = self._latest
        if p is None:
            return Text("starting…")
        s = p.snapshot
        parts = [f"{s.elapsed_s:6.1f} s"]
        if p.duration_s:
            parts.append(f"remaining {max(0.0, p.duration_s - s.elapsed_s):5.1f} s")
        if p.requests:
            parts.append(f"scheduled {p.scheduled}/{p.requests}")
        else:
            parts.append(f"scheduled {p.scheduled}")
        parts += [
            f"in flight {p.in_flight}",
            f"completed {s.completed}",
            f"failed {s.failed}",
            f"{s.output_tokens_per_s:,.0f} tok/s",
            "TTFT p50/p99 "
            + ("-" if s.ttft_p50_ms is None else f"{s.ttft_p50_ms:.1f}/{s.ttft_p99_ms:.1f} ms"),
        ]
        if p.stopping:
            parts.append("stopping…")
        return Text(" · ".join(parts))

    def close(self) -> None:
        if self._started:
            self._live.stop()
            self._started = False
