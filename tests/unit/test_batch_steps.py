"""The batch pass as an ordered list of steps (``status.batch_decide.STEPS``): the module's
docstring lists them in order, each is importable by its name, and the last always answers."""

from __future__ import annotations

import re
from typing import Any

from internlm_operator.status import batch, batch_decide
from internlm_operator.status.batch import STEPS, BatchContext, BatchObservation, decide

from tests.unit.test_batch_status import obs as batch_obs


def obs(**kw: Any) -> BatchObservation:
    """test_batch_status's observation, one node with a Job unless told otherwise."""
    base: dict[str, Any] = {"nodes": 1, "job": {"metadata": {"name": "j"}, "spec": {}}}
    return batch_obs(**{**base, **kw})


def test_the_docstring_lists_every_step_in_order() -> None:
    doc = batch_decide.__doc__ or ""
    listed = re.findall(r"^\s*(\d+)\. ``(\w+)``:", doc, re.MULTILINE)
    assert [int(n) for n, _ in listed] == list(range(1, len(STEPS) + 1))
    assert [name for _, name in listed] == [s.__name__ for s in STEPS]


def test_every_step_is_importable_by_its_name() -> None:
    assert len({s.__name__ for s in STEPS}) == len(STEPS)
    for step in STEPS:
        assert getattr(batch_decide, step.__name__) is step
    assert batch.decide is decide is batch_decide.decide


def test_decide_is_the_first_step_that_answers() -> None:
    o = obs()
    ctx = BatchContext.of(o)
    first = next(s for s in STEPS if s(ctx) is not None)
    assert first.__name__ == "pods_starting"  # a Job with no pods yet
    assert decide(o) == first(BatchContext.of(o))
    assert decide(o).status["phase"] == "Pending"


def test_the_last_step_always_answers() -> None:
    for o in (obs(), obs(status={"phase": "Succeeded"}), obs(job=None)):
        assert STEPS[-1](BatchContext.of(o)) is not None
