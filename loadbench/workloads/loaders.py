"""The real datasets behind the presets, read through Hugging Face ``datasets`` (extra ``datasets``).

* ``FinanceBenchDataset`` (``PatronusAI/financebench``): questions about public filings with the
  evidence pages (``evidence: [{evidence_text, evidence_text_full_page, doc_name,
  evidence_page_num}]``; the older flat ``evidence_text`` is read too) and the answer.
* ``OpenAssistantDataset`` (``OpenAssistant/oasst1``): message trees (``message_id``,
  ``parent_id``, ``role`` "prompter"/"assistant", ``lang``, ``text``, ``rank``, ``deleted``,
  ``review_result``); prompts are prompter turns with the thread above them as history, and
  whole threads give multi-turn conversations.
* ``MathDataset`` (Hendrycks MATH, by default the per-subject configs of
  ``EleutherAI/hendrycks_math``): ``problem``, ``solution`` (final answer in ``\\boxed{}``),
  ``level`` ("Level 1".."Level 5"), ``type`` ("Algebra", "Counting & Probability"...), with
  subject and level filters.

Each reads, in order of preference, the ``path`` given (a JSON, JSONL, Parquet or CSV file, a
folder of them, or a folder written by ``Dataset.save_to_disk``), else the hub, which also works
offline from the Hugging Face cache (``HF_DATASETS_OFFLINE=1``). A dataset that cannot be read
raises ``ConfigError`` naming it and saying how to point at a local copy. Reading happens once
per dataset value and process (``load()`` is cached), before the load starts.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from loadbench.contract.errors import ConfigError
from loadbench.contract.prompt import Message
from loadbench.workloads.check import extract_boxed
from loadbench.workloads.sources import ChatThread, FinanceItem, MathProblem

__all__ = ["FinanceBenchDataset", "MathDataset", "OpenAssistantDataset"]

_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _datasets(name: str) -> Any:
    try:
        import datasets
    except ImportError as e:
        raise ConfigError(
            f"{name} needs the 'datasets' package: pip install 'loadbench[datasets]' "
            "(or use the synthetic default, which needs nothing)"
        ) from e
    return datasets


def _how_to_fix(name: str, cls: str) -> str:
    return (
        f"point at a local copy with {cls}(path='...') (a JSON/JSONL/Parquet/CSV file, or a folder "
        "saved with Dataset.save_to_disk), or download it once while online so the Hugging Face "
        "cache holds it and run with HF_DATASETS_OFFLINE=1"
    )


def _read_local(name: str, cls: str, path: str, split: str, cache_dir: str | None) -> list[dict[str, Any]]:
    ds_lib = _datasets(name)
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{name}: {cls}.path {str(p)!r} does not exist")
    try:
        if p.is_dir() and any((p / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            data = ds_lib.load_from_disk(str(p))
            if isinstance(data, ds_lib.DatasetDict):
                if split not in data:
                    raise ConfigError(f"{name}: {str(p)!r} has splits {sorted(data)}, not {split!r}")
                data = data[split]
            return data.to_list()
        files = sorted(f for f in p.iterdir() if f.suffix in _FORMATS) if p.is_dir() else [p]
        if not files:
            raise ConfigError(f"{name}: {str(p)!r} holds no JSON, JSONL, Parquet or CSV files")
        kinds = {_FORMATS.get(f.suffix) for f in files}
        if None in kinds or len(kinds) != 1:
            raise ConfigError(
                f"{name}: cannot read {str(p)!r}: expected .json, .jsonl, .parquet or .csv files of one kind"
            )
        data = ds_lib.load_dataset(
            kinds.pop(), data_files=[str(f) for f in files], split="train", cache_dir=cache_dir
        )
        return data.to_list()
    except ConfigError:
        raise
    except Exception as e:  # datasets raises many kinds; all mean the same thing to the user
        raise ConfigError(f"{name}: cannot read {str(p)!r}: {type(e).__name__}: {e}") from e


def _read_hub(
    name: str, cls: str, hub_id: str, config: str | None, split: str, revision: str | None, cache_dir: str | None
) -> list[dict[str, Any]]:
    ds_lib = _datasets(name)
    offline = os.environ.get("HF_DATASETS_OFFLINE", "") in ("1", "true", "TRUE", "yes") or os.environ.get(
        "HF_HUB_OFFLINE", ""
    ) in ("1", "true", "TRUE", "yes")
    where = f"{hub_id}" + (f" ({config})" if config else "")
    try:
        data = ds_lib.load_dataset(hub_id, config, split=split, revision=revision, cache_dir=cache_dir)
    except Exception as e:
        state = "offline and not in the Hugging Face cache" if offline else "not reachable on the hub or in the cache"
        raise ConfigError(
            f"{name} ({where}, split {split!r}) is {state} ({type(e).__name__}); "
            + _how_to_fix(name, cls)
        ) from e
    return data.to_list()


def _rows(
    name: str, cls: str, *, path: str | None, hub_id: str, configs: tuple[str | None, ...], split: str,
    revision: str | None, cache_dir: str | None,
) -> list[dict[str, Any]]:
    if path is not None:
        return _read_local(name, cls, path, split, cache_dir)
    rows: list[dict[str, Any]] = []
    for config in configs:
        rows.extend(_read_hub(name, cls, hub_id, config, split, revision, cache_dir))
    return rows


def _check_str(owner: str, name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{owner}.{name} must be a non-empty string, got {value!r}")


# -- FinanceBench ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FinanceBenchDataset:
    """FinanceBench questions with their evidence pages; prompts are padded with pages from
    other questions about the same company (then any company) to reach their target length."""

    path: str | None = None
    hub_id: str = "PatronusAI/financebench"
    split: str = "train"
    revision: str | None = None
    cache_dir: str | None = None
    kind: ClassVar[str] = "finance"

    def __post_init__(self) -> None:
        _check_str("FinanceBenchDataset", "path", self.path, optional=True)
        _check_str("FinanceBenchDataset", "hub_id", self.hub_id)
        _check_str("FinanceBenchDataset", "split", self.split)

    def load(self) -> _FinanceBenchPool:
        return _load_financebench(self)

    def describe(self) -> dict[str, Any]:
        return {"dataset": "financebench", "path": self.path, "hub_id": self.hub_id, "split": self.split,
                "revision": self.revision}


def _evidence(row: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(full pages, short snippets) of a FinanceBench row, in either schema."""
    pages: list[str] = []
    snippets: list[str] = []
    ev = row.get("evidence")
    if isinstance(ev, list):
        for e in ev:
            if isinstance(e, dict):
                snippet = (e.get("evidence_text") or "").strip()
                page = (e.get("evidence_text_full_page") or "").strip() or snippet
                if page:
                    pages.append(page)
                if snippet:
                    snippets.append(snippet)
            elif isinstance(e, str) and e.strip():
                pages.append(e.strip())
                snippets.append(e.strip())
    elif isinstance(ev, str) and ev.strip():
        pages.append(ev.strip())
        snippets.append(ev.strip())
    flat = row.get("evidence_text")
    if isinstance(flat, str) and flat.strip() and not pages:
        pages.append(flat.strip())
        snippets.append(flat.strip())
    return tuple(pages), tuple(snippets)


@functools.lru_cache(maxsize=8)
def _load_financebench(ds: FinanceBenchDataset) -> _FinanceBenchPool:
    rows = _rows("FinanceBench", "FinanceBenchDataset", path=ds.path, hub_id=ds.hub_id, configs=(None,),
                 split=ds.split, revision=ds.revision, cache_dir=ds.cache_dir)
    items = []
    for row in rows:
        question = (row.get("question") or "").strip()
        pages, snippets = _evidence(row)
        if not question or not pages:
            continue
        answer = row.get("answer")
        items.append(FinanceItem(
            company=str(row.get("company") or ""),
            doc_name=str(row.get("doc_name") or ""),
            question=question,
            evidence=pages,
            reference=str(answer).strip() if answer not in (None, "") else None,
            snippets=snippets,
        ))
    if not items:
        raise ConfigError(
            "FinanceBench: no usable rows (each needs 'question' and evidence: 'evidence' "
            "[{evidence_text, evidence_text_full_page}] or 'evidence_text')"
        )
    return _FinanceBenchPool(tuple(items))


class _FinanceBenchPool:
    source = "financebench"

    def __init__(self, items: tuple[FinanceItem, ...]) -> None:
        self.items = items
        self._pages = tuple(p for it in items for p in it.evidence)
        by_company: dict[str, list[str]] = defaultdict(list)
        for it in items:
            by_company[it.company].extend(it.evidence)
        self._by_company = {k: tuple(v) for k, v in by_company.items()}

    def draw(self, rng: np.random.Generator) -> FinanceItem:
        return self.items[int(rng.integers(len(self.items)))]

    def filler(self, rng: np.random.Generator, about: str | None = None) -> str:
        pages = self._by_company.get(about or "", ())
        # Mostly the same company's other pages, like a real filing; others once those repeat.
        if len(pages) < 2 or rng.random() < 0.5:
            pages = self._pages
        return pages[int(rng.integers(len(pages)))]


# -- OpenAssistant ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenAssistantDataset:
    """OpenAssistant (oasst1) conversations: prompter turns with the thread above them as
    history, in the languages of ``langs`` (``None``: all); deleted messages and those that
    failed review are left out."""

    path: str | None = None
    hub_id: str = "OpenAssistant/oasst1"
    split: str = "train"
    langs: tuple[str, ...] | None = ("en",)
    revision: str | None = None
    cache_dir: str | None = None
    kind: ClassVar[str] = "chat"

    def __post_init__(self) -> None:
        _check_str("OpenAssistantDataset", "path", self.path, optional=True)
        _check_str("OpenAssistantDataset", "hub_id", self.hub_id)
        if isinstance(self.langs, str):
            object.__setattr__(self, "langs", (self.langs,))
        elif self.langs is not None:
            object.__setattr__(self, "langs", tuple(self.langs))

    def load(self) -> _ChatDataPool:
        return _load_oasst(self)

    def describe(self) -> dict[str, Any]:
        return {"dataset": "oasst1", "path": self.path, "hub_id": self.hub_id, "split": self.split,
                "langs": list(self.langs) if self.langs else None, "revision": self.revision}


@functools.lru_cache(maxsize=4)
def _load_oasst(ds: OpenAssistantDataset) -> _ChatDataPool:
    rows = _rows("OpenAssistant", "OpenAssistantDataset", path=ds.path, hub_id=ds.hub_id, configs=(None,),
                 split=ds.split, revision=ds.revision, cache_dir=ds.cache_dir)
    langs = set(ds.langs) if ds.langs else None
    msgs: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("deleted") or r.get("review_result") is False:
            continue
        if langs is not None and r.get("lang") not in langs:
            continue
        if r.get("role") not in ("prompter", "assistant") or not (r.get("text") or "").strip():
            continue
        if not r.get("message_id"):
            continue
        msgs[r["message_id"]] = r
    if not any(m["role"] == "prompter" for m in msgs.values()):
        raise ConfigError(
            f"OpenAssistant: no prompter turns left after filtering (langs={sorted(langs) if langs else 'all'}); "
            "rows need message_id, parent_id, role ('prompter'/'assistant'), lang and text"
        )
    return _ChatDataPool(msgs)


def _role(r: dict[str, Any]) -> str:
    return "user" if r["role"] == "prompter" else "assistant"


class _ChatDataPool:
    source = "oasst1"

    def __init__(self, msgs: dict[str, dict[str, Any]]) -> None:
        self._msgs = msgs
        children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for m in msgs.values():
            if m.get("parent_id") in msgs:
                children[m["parent_id"]].append(m)
        # Best reply first: rank 0 is the crowd's favourite; unranked after ranked, then by id.
        for v in children.values():
            v.sort(key=lambda m: (m.get("rank") is None, m.get("rank") or 0, m["message_id"]))
        self._children = dict(children)
        ids = sorted(msgs)
        self._prompters = tuple(i for i in ids if msgs[i]["role"] == "prompter")
        self._roots = tuple(i for i in self._prompters if msgs[i].get("parent_id") not in msgs)
        self._pairs = tuple(
            (msgs[msgs[i]["parent_id"]]["text"], msgs[i]["text"])
            for i in ids
            if msgs[i]["role"] == "assistant" and msgs.get(msgs[i].get("parent_id") or "", {}).get("role") == "prompter"
        )
        self._replies = tuple(msgs[i]["text"] for i in ids if msgs[i]["role"] == "assistant")

    def _path(self, message_id: str) -> list[dict[str, Any]]:
        path = []
        cur: dict[str, Any] | None = self._msgs[message_id]
        while cur is not None:
            path.append(cur)
            cur = self._msgs.get(cur.get("parent_id") or "")
        path.reverse()
        # History must alternate and open with a user turn; cut at any break (a filtered parent).
        start = 0
        for i in range(1, len(path)):
            if path[i]["role"] == path[i - 1]["role"]:
                start = i
        while start < len(path) and path[start]["role"] != "prompter":
            start += 1
        return path[start:]

    def draw(self, rng: np.random.Generator) -> ChatThread:
        mid = self._prompters[int(rng.integers(len(self._prompters)))]
        path = self._path(mid)
        return ChatThread(turns=tuple(Message(_role(m), m["text"]) for m in path))  # type: ignore[arg-type]

    def conversation(self, rng: np.random.Generator, user_turns: int) -> ChatThread:
        roots = self._roots or self._prompters
        cur = self._msgs[roots[int(rng.integers(len(roots)))]]
        first = cur["text"]
        follow: list[tuple[str, str]] = []
        while len(follow) < user_turns - 1:
            replies = self._children.get(cur["message_id"], [])
            replies = [r for r in replies if r["role"] == "assistant"]
            if not replies:
                break
            reply = replies[0]
            asks = [a for a in self._children.get(reply["message_id"], []) if a["role"] == "prompter"]
            if not asks:
                break
            cur = asks[int(rng.integers(len(asks)))]
            follow.append((reply["text"], cur["text"]))
        return ChatThread(turns=(Message("user", first),), follow_ups=tuple(follow))

    def exchange(self, rng: np.random.Generator) -> tuple[str, str]:
        if not self._pairs:
            return "", ""
        return self._pairs[int(rng.integers(len(self._pairs)))]

    def reply(self, rng: np.random.Generator) -> str:
        if not self._replies:
            return ""
        return self._replies[int(rng.integers(len(self._replies)))]

    def filler(self, rng: np.random.Generator, about: str | None = None) -> str:
        user, assistant = self.exchange(rng)
        return f"{user}\n\n{assistant}".strip()


# -- MATH ------------------------------------------------------------------------------------------

MATH_SUBJECTS = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
    "prealgebra", "precalculus",
)


def _subject_key(name: str) -> str:
    """"Counting & Probability" and "counting_and_probability" are the same subject."""
    return re.sub(r"[^a-z]+", "_", name.lower().replace("&", "and")).strip("_")


@dataclass(frozen=True, slots=True)
class MathDataset:
    """Hendrycks MATH competition problems; the reference is the solution's last ``\\boxed{}``.

    ``subjects`` (``None``: all) takes config names or ``type`` values ("algebra", "Number
    Theory"); ``levels`` (``None``: all) takes 1 to 5."""

    path: str | None = None
    hub_id: str = "EleutherAI/hendrycks_math"
    split: str = "test"
    subjects: tuple[str, ...] | None = None
    levels: tuple[int, ...] | None = None
    revision: str | None = None
    cache_dir: str | None = None
    kind: ClassVar[str] = "math"

    def __post_init__(self) -> None:
        _check_str("MathDataset", "path", self.path, optional=True)
        _check_str("MathDataset", "hub_id", self.hub_id)
        if isinstance(self.subjects, str):
            object.__setattr__(self, "subjects", (self.subjects,))
        if self.subjects is not None:
            keys = tuple(_subject_key(s) for s in self.subjects)
            unknown = [s for s, k in zip(self.subjects, keys, strict=True) if k not in MATH_SUBJECTS]
            if unknown:
                raise ConfigError(f"MathDataset.subjects: unknown {unknown}; expected some of {list(MATH_SUBJECTS)}")
            object.__setattr__(self, "subjects", keys)
        if isinstance(self.levels, int):
            object.__setattr__(self, "levels", (self.levels,))
        if self.levels is not None:
            levels = tuple(self.levels)
            if not levels or any(not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= 5 for x in levels):
                raise ConfigError(f"MathDataset.levels must be integers from 1 to 5, got {self.levels!r}")
            object.__setattr__(self, "levels", levels)

    def load(self) -> _MathDataPool:
        return _load_math(self)

    def describe(self) -> dict[str, Any]:
        return {"dataset": "math", "path": self.path, "hub_id": self.hub_id, "split": self.split,
                "subjects": list(self.subjects) if self.subjects else None,
                "levels": list(self.levels) if self.levels else None, "revision": self.revision}


def _level(value: object) -> int | None:
    m = re.search(r"\d", str(value or ""))
    return int(m.group()) if m else None


@functools.lru_cache(maxsize=8)
def _load_math(ds: MathDataset) -> _MathDataPool:
    # EleutherAI's copy has one config per subject; another hub copy is read whole and filtered.
    per_subject = ds.hub_id == "EleutherAI/hendrycks_math"
    configs: tuple[str | None, ...] = tuple(ds.subjects or MATH_SUBJECTS) if per_subject else (None,)
    rows = _rows("MATH", "MathDataset", path=ds.path, hub_id=ds.hub_id, configs=configs, split=ds.split,
                 revision=ds.revision, cache_dir=ds.cache_dir)
    wanted_subjects = set(ds.subjects) if ds.subjects else None
    wanted_levels = set(ds.levels) if ds.levels else None
    items = []
    for r in rows:
        problem = (r.get("problem") or "").strip()
        solution = r.get("solution") or ""
        if not problem:
            continue
        subject = _subject_key(str(r.get("type") or r.get("subject") or ""))
        level = _level(r.get("level"))
        if wanted_subjects is not None and subject not in wanted_subjects:
            continue
        if wanted_levels is not None and level not in wanted_levels:
            continue
        answer = r.get("answer") or extract_boxed(solution)
        items.append(
            MathProblem(problem=problem, answer=answer, solution=solution or None, subject=subject, level=level)
        )
    if not items:
        raise ConfigError(
            f"MATH: no problems match subjects={list(ds.subjects) if ds.subjects else 'all'} "
            f"levels={list(ds.levels) if ds.levels else 'all'} (rows need problem, solution, level, type)"
        )
    return _MathDataPool(tuple(items))


class _MathDataPool:
    source = "math"

    def __init__(self, items: tuple[MathProblem, ...]) -> None:
        self.items = items

    def draw(self, rng: np.random.Generator) -> MathProblem:
        return self.items[int(rng.integers(len(self.items)))]

    def filler(self, rng: np.random.Generator, about: str | None = None) -> str:
        item = self.draw(rng)
        return f"Problem: {item.problem}\nSolution: {item.solution or item.answer or ''}"
