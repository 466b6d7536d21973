"""Pure: which rows of OpenCompass' summary a threshold's dataset name means.

Users name datasets as they list them (``mmlu``, ``ARC_c``, ``gsm8k_gen``, ``mmlu_gen_4d595a``);
OpenCompass 0.5.4 names summary rows by each dataset config's ``abbr`` (``lukaemon_mmlu_<subject>``
for the 57 MMLU subjects, ``ARC-c``, ``gsm8k``, ``ceval-<subject>``, ``openai_humaneval``) and
prints no group row such as ``mmlu`` unless a summarizer defines one. A threshold is matched at
the first of these levels that finds anything:

1. exact: a row named as the threshold;
2. normalised: equal ignoring case, ``-`` versus ``_`` and the vendor prefixes OpenCompass puts
   on some abbreviations (``lukaemon_``, ``openai_``);
3. config name: the same after dropping a config-name suffix (``_gen``, ``_ppl``, ``_clp``,
   ``_ll``, each optionally followed by OpenCompass' 6-hex-digit variant hash);
4. group: the mean of the subject rows ``<name>_*`` / ``<name>-*``, as OpenCompass' own summary
   groups (``naive_average``) compute ``mmlu`` from ``lukaemon_mmlu_*``. A row belongs to the
   longest listed family that prefixes it, so ``mmlu`` never averages ``mmlu_pro_*`` rows when
   ``mmlu_pro`` is a dataset of the run too.

Metric: OpenCompass orders each dataset's metrics by its METRIC_WHITELIST and, where a dataset
is listed without a metric, shows the first; a threshold names its metric explicitly (the API
defaults it to ``accuracy``), and a dataset without that metric fails with the metrics it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

VENDOR_PREFIXES = ("lukaemon_", "openai_")
_CONFIG_SUFFIX = re.compile(r"_(?:gen|ppl|clp|ll)(?:_[0-9a-f]{6})?$")


@dataclass(frozen=True)
class Row:
    dataset: str
    metric: str
    value: float


@dataclass(frozen=True)
class Match:
    """A threshold's value (None when it has none), the rows it came from and how."""

    threshold: str
    metric: str
    value: float | None
    rows: tuple[Row, ...] = ()
    how: str = ""  # exact | normalised | config-name | group
    problem: str = ""  # why there is no value: nothing matched, ambiguous, metric absent

    @property
    def averaged(self) -> bool:
        return self.how == "group"


def normalise(name: str) -> str:
    s = name.lower().replace("-", "_")
    for p in VENDOR_PREFIXES:
        if s.startswith(p) and len(s) > len(p):
            s = s[len(p) :]
    return s


def base_name(name: str) -> str:
    """The normalised name without a config-name suffix: ``mmlu_gen_4d595a`` -> ``mmlu``."""
    return _CONFIG_SUFFIX.sub("", normalise(name))


def _family(dataset: str, families: Iterable[str]) -> str | None:
    """The longest family whose ``<family>_`` prefixes the normalised row name."""
    n = normalise(dataset)
    best = None
    for f in families:
        if n.startswith(f + "_") and (best is None or len(f) > len(best)):
            best = f
    return best


def _names(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r.dataset for r in rows))


def _available(rows: Sequence[Row], limit: int = 12) -> str:
    names = _names(rows)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def match(threshold: str, metric: str, rows: Sequence[Row], families: Iterable[str] = ()) -> Match:
    """Match one threshold name and metric to the summary ``rows``. ``families``: the base
    names of the run's datasets (``mmlu``, ``mmlu_pro``...), which decide group membership."""
    levels: list[tuple[str, list[Row]]] = [
        ("exact", [r for r in rows if r.dataset == threshold]),
        ("normalised", [r for r in rows if normalise(r.dataset) == normalise(threshold)]),
        ("config-name", [r for r in rows if base_name(r.dataset) == base_name(threshold)]),
    ]
    for how, hits in levels:
        if not hits:
            continue
        names = _names(hits)
        if len(names) > 1:
            return Match(
                threshold,
                metric,
                None,
                tuple(hits),
                how,
                f"{threshold} is ambiguous: it matches {', '.join(names)} ({how}); "
                "name one of them exactly",
            )
        return _one(threshold, metric, names[0], hits, how)
    key = base_name(threshold)
    fams = {base_name(f) for f in families} | {key}
    members = [r for r in rows if _family(r.dataset, fams) == key]
    if not members:
        return Match(
            threshold,
            metric,
            None,
            problem=f"no score matches {threshold}; the summary has: {_available(rows)}",
        )
    picked = [r for r in members if r.metric == metric]
    subjects = _names(members)
    missing = [n for n in subjects if n not in {r.dataset for r in picked}]
    if missing:
        return Match(
            threshold,
            metric,
            None,
            tuple(members),
            "group",
            f"{threshold} averages {len(subjects)} rows but {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''} have no {metric} (metrics: "
            f"{', '.join(sorted({r.metric for r in members}))})",
        )
    value = sum(r.value for r in picked) / len(picked)
    return Match(threshold, metric, value, tuple(picked), "group")


def _one(threshold: str, metric: str, name: str, hits: list[Row], how: str) -> Match:
    picked = [r for r in hits if r.metric == metric]
    if not picked:
        have = ", ".join(r.metric for r in hits)
        return Match(
            threshold,
            metric,
            None,
            tuple(hits),
            how,
            f"{name} (matched by {threshold}) has no {metric} score; its metrics: {have}",
        )
    return Match(threshold, metric, picked[0].value, (picked[0],), how)


def describe(m: Match) -> str:
    """One line for status messages: the value a threshold got and which rows it came from."""
    if m.value is None:
        return m.problem
    if m.averaged:
        names = [r.dataset for r in m.rows]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"{m.threshold} {m.metric} {m.value:.4g} (mean of {len(names)} rows: {shown})"
    r = m.rows[0]
    named = m.threshold if r.dataset == m.threshold else f"{m.threshold} ({r.dataset})"
    return f"{named} {m.metric} {r.value:g}"
