"""Study: many runs of one scenario, measured the same way, each cell a full run directory.

``Study(base=Scenario(...), vary={"workload": [Prefill(), Decode()], "reasoning": [False, True]})``
runs the cross product of the varied fields (or an explicit list of ``cells``), ``repeat`` times
each, into one study directory::

    <study>/study.json        the plan: every cell, its values, its status (rewritten after each cell)
    <study>/cells.csv         one row per cell: its values and the headline figures
    <study>/cells/c000/       each cell's own run directory (run.json, requests.jsonl, summary.json, ...)

Guarantees:

* A cell is a plain ``Experiment`` run of the base scenario with the cell's values applied; its
  seed is the base seed plus the repeat index (unless the study varies ``seed``).
* study.json and cells.csv are rewritten (atomically) after every cell, so an interrupted study
  leaves every finished cell on disk and described.
* Ctrl-C (or SIGTERM) stops the running cell the way it stops a run (drain, then write), marks it
  ``interrupted`` and ends the study; ``run(resume=DIR)`` later runs only the cells not
  ``finished``, after checking that the study still plans the same cells. The directory of a cell
  that is run again is kept beside it as ``cells/<id>.attempt-N``, never deleted.
* A cell that cannot run (a target that is down, a bad value) or completes no request is
  recorded as ``failed`` with its error, and the study goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from loadbench.contract.errors import ConfigError, LoadbenchError, ScenarioError
from loadbench.results.run_dir import write_json
from loadbench.scenario import Scenario
from loadbench.studies.knee import knees
from loadbench.studies.slo import limits_attainment
from loadbench.studies.values import Fields, axis_values

#: The figure columns of cells.csv, after ``id, repeat, <varied fields>, status``.
FIGURE_COLUMNS = (
    "ttft_ms_p50",
    "ttft_ms_p99",
    "e2e_ms_p50",
    "e2e_ms_p99",
    "itl_ms_p50",
    "itl_ms_p99",
    "tpot_ms_p50",
    "tpot_ms_p99",
    "requests_per_s",
    "output_tokens_per_s",
    "goodput_per_s",
    "slo_attainment",
    "errors",
    "energy_j_per_request",
    "energy_j_per_token",
    "cost_usd_per_request",
)
_SCENARIO_FIELDS = {f.name for f in dataclasses.fields(Scenario)}
_NOT_VARIED = {"name", "out_dir"}


@dataclass(frozen=True, slots=True)
class Cell:
    """One planned run: ``values`` maps each axis to ``(label, value)``; ``repeat`` counts from 0."""

    id: str
    values: tuple[tuple[str, str, Any], ...]  # (axis, label, value)
    repeat: int

    @property
    def labels(self) -> dict[str, str]:
        return {axis: lbl for axis, lbl, _ in self.values}

    def changes(self) -> dict[str, Any]:
        """The scenario fields this cell sets."""
        out: dict[str, Any] = {}
        for _, _, value in self.values:
            if isinstance(value, Fields):
                out.update(value.fields)
        for axis, _, value in self.values:
            if not isinstance(value, Fields):
                out[axis] = value
        return out


class StudyObserver(Protocol):
    """What a study tells its caller (the CLI prints it). Methods must return quickly."""

    def study_started(self, path: Path, cells: Sequence[dict[str, Any]], resumed: bool) -> None: ...

    def cell_started(self, cell: dict[str, Any], position: int, total: int) -> Any:
        """Return the Experiment observer for this cell's run (or None)."""
        ...

    def cell_ended(self, cell: dict[str, Any], row: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Overrides:
    """The command line's overrides, applied to every cell (``None``: as the study says)."""

    target: str | None = None
    duration_s: float | None = None
    requests: int | None = None
    seed: int | None = None

    def apply(self, scenario: Scenario) -> Scenario:
        return scenario.with_overrides(
            target=self.target, duration_s=self.duration_s, requests=self.requests, seed=self.seed
        )


@dataclass(frozen=True)
class Study:
    """A plan of runs: ``base`` with each combination of ``vary`` (or each of ``cells``) applied.

    ``vary`` maps a Scenario field (``workload``, ``deployment``, ``reasoning``, ``quant``,
    ``load``, ``stop``, ``sim``, ...) to a list of values, or to a ``{label: value}`` mapping that
    names them; an axis whose values are ``Fields`` may have any name and sets several fields at
    once. ``cells`` (a list of ``{field: value}`` mappings) replaces the cross product with an
    explicit list. Each cell runs ``repeat`` times. ``name`` defaults to the base scenario's name;
    ``out_dir`` to ``results/<name>-<UTC time>``. ``kind`` is ``"study"``, or ``"sweep"`` for a
    sweep of load plans (see ``loadbench.studies.sweep``).
    """

    base: Scenario
    vary: Mapping[str, Any] = field(default_factory=dict)
    cells: Sequence[Mapping[str, Any]] | None = None
    repeat: int = 1
    name: str | None = None
    out_dir: str | Path | None = None
    kind: str = "study"

    def __post_init__(self) -> None:
        if not isinstance(self.base, Scenario):
            raise ConfigError(f"Study.base must be a Scenario(...), got {type(self.base).__name__}")
        if not isinstance(self.vary, Mapping):
            raise ConfigError(f"Study.vary must map scenario fields to lists of values, got {self.vary!r}")
        if self.cells is not None and self.vary:
            raise ConfigError("Study takes vary (a cross product) or cells (an explicit list), not both")
        if self.cells is None and not self.vary:
            raise ConfigError("Study needs vary={field: [values, ...]} or cells=[{field: value}, ...]")
        if not isinstance(self.repeat, int) or isinstance(self.repeat, bool) or self.repeat < 1:
            raise ConfigError(f"Study.repeat must be an integer >= 1, got {self.repeat!r}")
        if self.kind not in ("study", "sweep"):
            raise ConfigError(f"Study.kind must be 'study' or 'sweep', got {self.kind!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name or "/" in self.name):
            raise ConfigError(f"Study.name must be a non-empty string without '/', got {self.name!r}")
        for cell in self.plan():  # every cell's scenario is checked now, not half-way through the study
            self.cell_scenario(cell, Path("."))

    @property
    def study_name(self) -> str:
        return self.name or self.base.name

    def axes(self) -> list[str]:
        """The varied fields, in the order of ``vary`` (or of first appearance in ``cells``)."""
        if self.cells is None:
            return list(self.vary)
        seen: dict[str, None] = {}
        for cell in self.cells:
            seen.update(dict.fromkeys(cell))
        return list(seen)

    def plan(self) -> list[Cell]:
        """Every cell, in run order (each combination's repeats together)."""
        combos: list[list[tuple[str, str, Any]]] = []
        if self.cells is None:
            axes = []
            for axis, values in self.vary.items():
                _check_axis(axis, values)
                axes.append([(axis, lbl, v) for lbl, v in axis_values(axis, values)])
            combos = [list(c) for c in itertools.product(*axes)]
        else:
            if not isinstance(self.cells, list | tuple) or not self.cells:
                raise ConfigError(
                    f"Study.cells must be a non-empty list of {{field: value}} mappings, got {self.cells!r}"
                )
            for i, cell in enumerate(self.cells):
                if not isinstance(cell, Mapping) or not cell:
                    raise ConfigError(f"Study.cells[{i}] must be a non-empty {{field: value}} mapping, got {cell!r}")
                combo = []
                for axis, value in cell.items():
                    _check_axis(axis, [value])
                    ((lbl, v),) = axis_values(axis, [value])
                    combo.append((axis, lbl, v))
                combos.append(combo)
        out = []
        for combo, r in itertools.product(combos, range(self.repeat)):
            out.append(Cell(f"c{len(out):03d}", tuple(combo), r))
        return out

    def cell_scenario(self, cell: Cell, study_dir: Path, overrides: Overrides | None = None) -> Scenario:
        """The scenario cell ``cell`` runs, writing into ``study_dir/cells/<id>``."""
        changes = cell.changes()
        if "seed" not in changes:  # a --seed replaces the base seed; repeats still differ
            seed = overrides.seed if overrides is not None and overrides.seed is not None else self.base.seed
            changes["seed"] = seed + cell.repeat
            if overrides is not None:
                overrides = dataclasses.replace(overrides, seed=None)
        changes["name"] = f"{self.study_name}-{cell.id}"
        changes["out_dir"] = study_dir / "cells" / cell.id
        try:
            scenario = self.base.replace(**changes)
        except LoadbenchError as exc:
            raise ConfigError(f"study cell {cell.id} ({_label_text(cell.labels)}): {exc}") from None
        return overrides.apply(scenario) if overrides else scenario

    def describe(self) -> dict[str, Any]:
        from loadbench.experiment import Experiment

        vary: dict[str, list[str]] = {}
        for cell in self.plan():
            for axis, lbl, _ in cell.values:
                if lbl not in vary.setdefault(axis, []):
                    vary[axis].append(lbl)
        return {"base": Experiment.describe_scenario(self.base), "vary": vary, "repeat": self.repeat}

    def run(
        self,
        *,
        out_dir: str | Path | None = None,
        resume: str | Path | None = None,
        overrides: Overrides | None = None,
        observer: StudyObserver | None = None,
    ) -> StudyResult:
        """Run every cell not yet finished; returns when all have run or the study is interrupted."""
        return _run_study(self, out_dir=out_dir, resume=resume, overrides=overrides, observer=observer)

    def with_name(self, name: str) -> Study:
        return dataclasses.replace(self, name=name)


def _check_axis(axis: str, values: Any) -> None:
    if not isinstance(axis, str):
        raise ConfigError(f"Study: varied field names must be strings, got {axis!r}")
    pairs = list(values.values()) if isinstance(values, Mapping) else values
    all_fields = isinstance(pairs, list | tuple) and pairs and all(isinstance(v, Fields) for v in pairs)
    if all_fields:
        return
    if axis in _NOT_VARIED:
        raise ConfigError(f"Study: {axis!r} cannot be varied (each cell gets its own name and directory)")
    if axis not in _SCENARIO_FIELDS:
        known = ", ".join(sorted(_SCENARIO_FIELDS - _NOT_VARIED))
        raise ConfigError(
            f"Study: {axis!r} is not a Scenario field (expected one of {known}, or an axis of Fields(...) values)"
        )


def _label_text(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())


@dataclass(frozen=True)
class StudyResult:
    """A study's directory, its cells (as in study.json) and their rows (as in cells.csv);
    ``status`` is "finished" (every cell ran, some may have failed) or "interrupted"."""

    path: Path
    kind: str
    axes: list[str]
    cells: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    status: str
    extra: dict[str, Any] = field(default_factory=dict)


# -- figures of one cell ----------------------------------------------------------------------------


def cell_figures(run_dir: Path) -> dict[str, Any]:
    """The cells.csv figures of a finished run directory (``None`` where the run has none).

    ``slo_attainment`` is the share of measured requests that met every per-request limit of the
    scenario's ``slo`` (computed here from requests.jsonl); ``goodput_per_s`` is the summary's.
    """
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    run = orjson.loads((run_dir / "run.json").read_bytes())
    metrics = summary.get("metrics", {})
    throughput = summary.get("throughput", {})

    def pct(metric: str, p: str) -> float | None:
        return (metrics.get(metric) or {}).get(p)

    out: dict[str, Any] = {}
    for metric in ("ttft_ms", "e2e_ms", "itl_ms", "tpot_ms"):
        out[f"{metric}_p50"] = pct(metric, "p50")
        out[f"{metric}_p99"] = pct(metric, "p99")
    out["requests_per_s"] = throughput.get("requests_per_s")
    out["output_tokens_per_s"] = throughput.get("output_tokens_per_s")
    out["goodput_per_s"] = throughput.get("goodput_requests_per_s")
    limits = (run.get("scenario") or {}).get("slo") or {}
    out["slo_attainment"] = limits_attainment(limits, read_records(run_dir)) if limits else None
    out["errors"] = (summary.get("requests") or {}).get("failed")
    energy = summary.get("energy") or {}
    wh = energy.get("wh_per_request")
    out["energy_j_per_request"] = wh * 3600.0 if isinstance(wh, int | float) else None
    out["energy_j_per_token"] = energy.get("j_per_output_token")
    out["cost_usd_per_request"] = (summary.get("cost") or {}).get("usd_per_request")
    return out


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """The lines of a run's requests.jsonl (an unreadable last line, from a crash, is skipped)."""
    out = []
    path = run_dir / "requests.jsonl"
    if not path.exists():
        return out
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
    return out


# -- the study directory ----------------------------------------------------------------------------


class StudyFiles:
    """Writes study.json and cells.csv (atomically, each time the state changes)."""

    def __init__(self, path: Path, head: dict[str, Any], axes: list[str]) -> None:
        self.path = path
        self.head = head
        self.axes = axes

    def write(
        self, cells: list[dict[str, Any]], rows: list[dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "study.json", {**self.head, **(extra or {}), "cells": cells})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "repeat", *self.axes, "status", *FIGURE_COLUMNS])
        for row in rows:
            writer.writerow(
                [
                    row["id"],
                    row["repeat"],
                    *(row["values"].get(a, "") for a in self.axes),
                    row["status"],
                    *(_csv_value(row.get(c)) for c in FIGURE_COLUMNS),
                ]
            )
        tmp = self.path / "cells.csv.tmp"
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, self.path / "cells.csv")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def default_dir(name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path("results") / f"{name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def row_for(cell: dict[str, Any], figures: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": cell["id"],
        "repeat": cell["repeat"],
        "values": cell["values"],
        "status": cell["status"],
        **(figures or {}),
    }


def set_aside(run_dir: Path) -> Path | None:
    """Move a cell's earlier, unfinished directory out of the way (kept, never deleted)."""
    if not run_dir.exists():
        return None
    n = 1
    while (aside := run_dir.with_name(f"{run_dir.name}.attempt-{n}")).exists():
        n += 1
    run_dir.rename(aside)
    return aside


def _load_state(path: Path, study: Study, plan: list[Cell]) -> list[dict[str, Any]]:
    """The cells of an earlier run of this study, checked against what the study plans now."""
    try:
        state = orjson.loads((path / "study.json").read_bytes())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no study.json to resume (is it a study directory?)") from None
    except orjson.JSONDecodeError as exc:
        raise ScenarioError(f"{path}/study.json: unreadable ({exc})") from None
    if state.get("kind") != study.kind:
        raise ScenarioError(f"{path}/study.json is a {state.get('kind')!r}, this file defines a {study.kind!r}")
    old = state.get("cells") or []
    if len(old) != len(plan):
        raise ScenarioError(
            f"{path}/study.json has {len(old)} cells but the study now plans {len(plan)}; resume with the file "
            "that started it, or start a new study"
        )
    for was, cell in zip(old, plan, strict=True):
        if was.get("id") != cell.id or was.get("values") != cell.labels or was.get("repeat") != cell.repeat:
            raise ScenarioError(
                f"{path}/study.json: cell {was.get('id')} was {_label_text(was.get('values') or {})} "
                f"(repeat {was.get('repeat')}), the study now plans {_label_text(cell.labels)} (repeat {cell.repeat}); "
                "resume with the file that started it"
            )
    return old


def _open_state(
    study: Study, plan: list[Cell], *, out_dir: str | Path | None, resume: str | Path | None
) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """The study's directory, study.json's head and its cells: read back (and checked against the
    plan, the resumption noted) when resuming, else new, every cell pending. Raises
    ``ScenarioError`` for a directory that already holds a study it was not asked to resume."""
    if resume is not None:
        path = Path(resume)
        cells = _load_state(path, study, plan)
        head = {k: v for k, v in orjson.loads((path / "study.json").read_bytes()).items() if k != "cells"}
        head["resumed"] = [*head.get("resumed", []), datetime.now(UTC).isoformat()]
        return path, head, cells
    path = Path(out_dir or study.out_dir or default_dir(study.study_name))
    if (path / "study.json").exists():
        raise ScenarioError(f"{path} already holds a study; resume it with --resume {path}, or choose another --out")
    head = {
        "kind": study.kind,
        "name": study.study_name,
        "created": datetime.now(UTC).isoformat(),
        **study.describe(),
    }
    cells = [
        {
            "id": c.id,
            "values": c.labels,
            "repeat": c.repeat,
            "status": "pending",
            "run_dir": f"cells/{c.id}",
            "error": None,
        }
        for c in plan
    ]
    return path, head, cells


def _figures_so_far(path: Path, entry: dict[str, Any]) -> dict[str, Any] | None:
    """A resumed cell's figures: a finished cell's read back (one whose directory is gone or
    unreadable becomes pending again); a cell left running by a killed study is interrupted."""
    if entry["status"] == "finished":
        try:
            return cell_figures(path / entry["run_dir"])
        except (OSError, orjson.JSONDecodeError, LoadbenchError):
            entry["status"], entry["error"] = "pending", "its run directory was missing or unreadable"
    elif entry["status"] in ("running", "interrupted"):
        entry["status"] = "interrupted"  # a study killed mid-cell left it "running"
    return None


def _run_cell(scenario: Scenario, entry: dict[str, Any], run_dir: Path, observer: Any) -> dict[str, Any] | None:
    """Run one cell's scenario and set its ``status`` and ``error``: "finished", "failed" (it
    could not run, a harness error in it, or no request completed) or "interrupted" (Ctrl-C, its
    partial run kept). Returns its figures where its run directory has them."""
    from loadbench.experiment import Experiment

    try:
        result = Experiment(scenario).run(observer=observer)
    except KeyboardInterrupt:
        entry.update(status="interrupted", error="interrupted before its run could finish")
        return None
    except LoadbenchError as exc:
        entry.update(status="failed", error=str(exc))
        return None
    except Exception as exc:  # a harness bug in one cell: recorded, and the study goes on
        entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        return None
    completed = result.summary["requests"]["completed"]
    if result.run.get("status") == "interrupted":
        entry.update(status="interrupted", error="interrupted (its partial run is kept in run_dir)")
    elif completed == 0:
        errors = result.summary["requests"].get("errors") or {}
        detail = ", ".join(f"{k} {v}" for k, v in errors.items()) or "none scheduled"
        entry.update(status="failed", error=f"no request completed ({detail})")
    else:
        entry["status"] = "finished"
    if entry["status"] != "interrupted" or (run_dir / "summary.json").exists():
        try:
            return cell_figures(run_dir)
        except (OSError, orjson.JSONDecodeError):
            return None
    return None


def _run_study(
    study: Study,
    *,
    out_dir: str | Path | None,
    resume: str | Path | None,
    overrides: Overrides | None,
    observer: StudyObserver | None,
) -> StudyResult:
    """Run every cell not yet finished, in plan order, keeping study.json and cells.csv current
    after each step; a cell that fails is recorded and the study goes on, Ctrl-C stops it after
    recording the cell it interrupted (status "interrupted")."""
    plan = study.plan()
    axes = study.axes()
    path, head, cells = _open_state(study, plan, out_dir=out_dir, resume=resume)
    files = StudyFiles(path, head, axes)
    rows = [row_for(entry, _figures_so_far(path, entry)) for entry in cells]
    files.write(cells, rows)
    if observer is not None:
        observer.study_started(path, cells, resume is not None)

    todo = [i for i, c in enumerate(cells) if c["status"] != "finished"]
    status = "finished"
    for position, i in enumerate(todo, 1):
        entry = cells[i]
        run_dir = path / entry["run_dir"]
        scenario = study.cell_scenario(plan[i], path, overrides)
        set_aside(run_dir)
        entry.update(status="running", error=None, started=datetime.now(UTC).isoformat())
        rows[i] = row_for(entry, None)
        files.write(cells, rows)
        run_observer = observer.cell_started(entry, position, len(todo)) if observer is not None else None
        figures = _run_cell(scenario, entry, run_dir, run_observer)
        if entry["status"] == "interrupted":
            status = "interrupted"
        entry["ended"] = datetime.now(UTC).isoformat()
        rows[i] = row_for(entry, figures)
        files.write(cells, rows)
        if observer is not None:
            observer.cell_ended(entry, rows[i])
        if status == "interrupted":
            break
    extra: dict[str, Any] = {}
    if study.kind == "sweep":
        extra["knee"] = knees(study, rows)
        files.write(cells, rows, extra)
    return StudyResult(path=path, kind=study.kind, axes=axes, cells=cells, rows=rows, status=status, extra=extra)
