"""Threshold names as users write them -> OpenCompass 0.5.4 summary rows. The row names come
from OpenCompass itself (tests/unit/data/opencompass_summary_names.json, written by
tests/workloads/helpers/opencompass_summary_names.py in the eval venv and checked against it in
tests/workloads/test_eval.py), not invented here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from internlm_operator.status import results
from internlm_operator.status.score_match import Row, base_name, describe, match, normalise

REAL = json.loads((Path(__file__).parent / "data" / "opencompass_summary_names.json").read_text())
ABBRS: dict[str, list[str]] = REAL["abbrs"]


def summary(*configs: str, metric: str = "accuracy") -> list[Row]:
    """Summary rows a run of these config names prints, each subject scoring its index."""
    return [Row(n, metric, float(i)) for c in configs for i, n in enumerate(ABBRS[c])]


def test_real_names_are_what_the_matcher_is_about() -> None:
    assert ABBRS["ARC_c_gen"] == ["ARC-c"]
    assert ABBRS["gsm8k_gen"] == ["gsm8k"]
    assert len(ABBRS["mmlu_gen"]) == 57
    assert all(n.startswith("lukaemon_mmlu_") for n in ABBRS["mmlu_gen"])
    assert "mmlu" not in ABBRS["mmlu_gen"]
    # OpenCompass' own mmlu summary group averages exactly the rows mmlu_gen prints
    assert sorted(ABBRS["mmlu_gen"]) == REAL["mmlu_group"]


@pytest.mark.parametrize(
    ("threshold", "row", "how"),
    [
        ("gsm8k", "gsm8k", "exact"),
        ("gsm8k_gen", "gsm8k", "config-name"),
        ("gsm8k_gen_1d7fe4", "gsm8k", "config-name"),
        ("ARC-c", "ARC-c", "exact"),
        ("ARC_c", "ARC-c", "normalised"),
        ("arc_c", "ARC-c", "normalised"),
        ("ARC_c_gen", "ARC-c", "config-name"),
        ("ARC_c_ppl_a450bd", "ARC-c", "config-name"),
        ("humaneval", "openai_humaneval", "normalised"),
        ("ifeval", "IFEval", "normalised"),
        ("lukaemon_mmlu_anatomy", "lukaemon_mmlu_anatomy", "exact"),
        ("mmlu_anatomy", "lukaemon_mmlu_anatomy", "normalised"),
        ("ceval-operating_system", "ceval-operating_system", "exact"),
    ],
)
def test_single_rows(threshold: str, row: str, how: str) -> None:
    rows = summary(
        "gsm8k_gen",
        "ARC_c_gen",
        "ARC_e_gen",
        "humaneval_gen",
        "IFEval_gen",
        "mmlu_gen",
        "ceval_gen",
    )
    m = match(threshold, "accuracy", rows)
    assert m.problem == ""
    assert [r.dataset for r in m.rows] == [row]
    assert m.how == how
    assert m.value == next(r.value for r in rows if r.dataset == row)


@pytest.mark.parametrize(
    ("threshold", "config"),
    [
        ("mmlu", "mmlu_gen"),
        ("mmlu_gen", "mmlu_gen"),
        ("mmlu_gen_4d595a", "mmlu_gen"),
        ("MMLU", "mmlu_ppl"),
        ("ceval", "ceval_gen"),
        ("cmmlu_gen", "cmmlu_gen"),
        ("bbh", "bbh_gen"),
        ("mmlu_pro", "mmlu_pro_gen"),
        ("race", "race_gen"),
    ],
)
def test_groups_average_every_subject_row(threshold: str, config: str) -> None:
    rows = summary("gsm8k_gen", config)
    m = match(threshold, "accuracy", rows, families=[config])
    assert m.how == "group" and m.problem == ""
    assert sorted(r.dataset for r in m.rows) == sorted(ABBRS[config])
    n = len(ABBRS[config])
    assert m.value == pytest.approx(sum(range(n)) / n)
    assert f"mean of {n} rows" in describe(m)


def test_mmlu_never_averages_mmlu_pro_when_both_run() -> None:
    rows = summary("mmlu_gen", "mmlu_pro_gen")
    families = ["mmlu_gen", "mmlu_pro_gen"]
    mmlu = match("mmlu", "accuracy", rows, families)
    assert sorted(r.dataset for r in mmlu.rows) == REAL["mmlu_group"]
    pro = match("mmlu_pro", "accuracy", rows, families)
    assert sorted(r.dataset for r in pro.rows) == sorted(ABBRS["mmlu_pro_gen"])


def test_a_summary_group_row_wins_over_averaging() -> None:
    """A summarizer with OpenCompass' mmlu group prints an mmlu row: that is the score."""
    rows = [*summary("mmlu_gen"), Row("mmlu", "naive_average", 61.5)]
    m = match("mmlu", "naive_average", rows, ["mmlu_gen"])
    assert (m.how, m.value) == ("exact", 61.5)


def test_nothing_matched_lists_the_available_names() -> None:
    m = match("arc_e", "accuracy", summary("gsm8k_gen", "ARC_c_gen"))
    assert m.value is None
    assert m.problem == "no score matches arc_e; the summary has: gsm8k, ARC-c"


def test_long_summaries_are_abridged_in_the_reason() -> None:
    m = match("gsm8k", "accuracy", summary("mmlu_gen"))
    assert m.value is None and "and 45 more" in m.problem


def test_two_datasets_that_normalise_alike_are_ambiguous() -> None:
    rows = [Row("ARC-c", "accuracy", 40.0), Row("arc_c", "accuracy", 90.0)]
    m = match("Arc_C", "accuracy", rows)
    assert m.value is None
    assert "ambiguous" in m.problem and "ARC-c, arc_c" in m.problem
    # an exact name is not ambiguous
    assert match("arc_c", "accuracy", rows).value == 90.0


def test_metric_follows_the_threshold_and_a_missing_one_says_which_exist() -> None:
    rows = [Row("IFEval", "Prompt-level-strict-accuracy", 30.0), Row("IFEval", "score", 20.0)]
    assert match("ifeval", "score", rows).value == 20.0
    m = match("IFEval_gen", "accuracy", rows)
    assert m.value is None
    assert m.problem == (
        "IFEval (matched by IFEval_gen) has no accuracy score; its metrics: "
        "Prompt-level-strict-accuracy, score"
    )


def test_a_group_whose_subjects_lack_the_metric_fails() -> None:
    rows = [*summary("bbh_gen")[:-1], Row(ABBRS["bbh_gen"][-1], "score", 1.0)]
    m = match("bbh", "accuracy", rows, ["bbh_gen"])
    assert m.value is None and "have no accuracy" in m.problem


@pytest.mark.parametrize(
    ("name", "norm", "base"),
    [
        ("ARC-c", "arc_c", "arc_c"),
        ("mmlu_gen_4d595a", "mmlu_gen_4d595a", "mmlu"),
        ("lukaemon_mmlu_anatomy", "mmlu_anatomy", "mmlu_anatomy"),
        ("hellaswag_10shot_gen_e42710", "hellaswag_10shot_gen_e42710", "hellaswag_10shot"),
        ("ARC_c_clp", "arc_c_clp", "arc_c"),
        ("openai_humaneval", "humaneval", "humaneval"),
        ("gen", "gen", "gen"),
    ],
)
def test_normalise_and_base_name(name: str, norm: str, base: str) -> None:
    assert (normalise(name), base_name(name)) == (norm, base)


# ---- results.scores: the EvalRun gate over the termination message's scores


def reported(rows: list[Row], **extra: Any) -> dict[str, Any]:
    return {
        "ok": True,
        "scores": [{"dataset": r.dataset, "metric": r.metric, "value": r.value} for r in rows],
        **extra,
    }


def test_gate_passes_user_style_names_and_says_what_was_averaged() -> None:
    res = reported(summary("mmlu_gen", "ARC_c_gen", "gsm8k_gen"))
    th = [
        {"dataset": "mmlu", "metric": "accuracy", "min": 20},
        {"dataset": "ARC_c", "metric": "accuracy", "min": 0},
        {"dataset": "gsm8k", "metric": "accuracy", "min": 0},
    ]
    rows, passed, missed = results.scores(res, th, ["mmlu_gen", "ARC_c_gen", "gsm8k_gen"])
    assert (passed, missed) == (True, [])
    mmlu = rows[-1]
    assert mmlu["dataset"] == "mmlu" and mmlu["value"] == 28.0 and mmlu["passed"] is True
    assert sorted(mmlu["averagedOver"]) == REAL["mmlu_group"]
    arc = next(r for r in rows if r["dataset"] == "ARC-c")
    assert arc["threshold"] == 0.0 and arc["passed"] is True
    assert len(rows) == 57 + 2 + 1


def test_gate_fails_a_threshold_that_matches_nothing() -> None:
    res = reported(summary("gsm8k_gen"))
    th = [{"dataset": "mmlu", "metric": "accuracy", "min": 0}]
    _, passed, missed = results.scores(res, th, ["gsm8k_gen", "mmlu_gen"])
    assert passed is False
    assert missed == ["no score matches mmlu; the summary has: gsm8k"]


def test_gate_reports_a_low_score_with_its_row() -> None:
    res = reported([Row("ARC-c", "accuracy", 41.0)])
    th = [{"dataset": "ARC_c_gen", "metric": "accuracy", "min": 60}]
    _, passed, missed = results.scores(res, th, ["ARC_c_gen"])
    assert (passed, missed) == (False, ["ARC_c_gen (ARC-c) accuracy 41 < 60"])


def test_gate_keeps_the_old_message_for_exact_names() -> None:
    res = reported([Row("gsm8k", "accuracy", 41.0)])
    th = [{"dataset": "gsm8k", "metric": "accuracy", "min": 60}]
    assert results.scores(res, th, ["gsm8k_gen"])[2] == ["gsm8k accuracy 41 < 60"]


def test_gate_never_averages_truncated_scores() -> None:
    res = reported(summary("mmlu_gen")[:20], scoresTruncated=True)
    th = [{"dataset": "mmlu", "metric": "accuracy", "min": 0}]
    _, passed, missed = results.scores(res, th, ["mmlu_gen"])
    assert passed is False and "only the first 20 scores fit" in missed[0]


def test_compact_termination_message_keeps_every_mmlu_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workload drops the default metric when the 57 rows would not fit in 4096 bytes;
    the gate reads them back as accuracy."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2] / "images" / "workloads" / "src"))
    from internlm_workloads import report

    monkeypatch.setenv("INTERNLM_TERMINATION_LOG", str(tmp_path / "term"))
    rows = [Row(n, "accuracy", 43.589743589) for n in ABBRS["mmlu_gen"]]
    report.write_termination({**reported(rows), "outputs": {"results": "/out/results"}})
    back = json.loads((tmp_path / "term").read_text())
    assert "scoresTruncated" not in back and len(back["scores"]) == 57
    th = [{"dataset": "mmlu_gen", "metric": "accuracy", "min": 43}]
    got, passed, _ = results.scores(back, th, ["mmlu_gen"])
    assert passed is True and got[-1]["value"] == pytest.approx(43.59)
