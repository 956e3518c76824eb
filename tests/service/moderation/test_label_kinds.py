"""What a label says about a verdict: one definition, in Python and in SQL, with one answer."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import String, create_engine, literal, select

from classifier import Decision
from service.moderation.labels import classify, kind_in_sql
from service.tables import LabelKind, LabelValue


def test_classify_labels_against_verdicts() -> None:
    assert classify("ham", LabelValue.SPAM) == LabelKind.MISSED_SPAM
    assert classify("ham", LabelValue.HAM) == LabelKind.CONFIRMATION
    assert classify("spam", LabelValue.HAM) == LabelKind.FALSE_POSITIVE
    assert classify("discard", LabelValue.HAM) == LabelKind.FALSE_POSITIVE
    assert classify("discard", LabelValue.SPAM) == LabelKind.CONFIRMATION
    assert classify(None, LabelValue.SPAM) == LabelKind.UNSCORED


@pytest.mark.parametrize("label", list(LabelValue))
def test_classify_a_label_on_an_unsure_verdict_as_a_resolution(label: LabelValue) -> None:
    # Unsure comments are held for a moderator: deciding them, either way, is no mistake of ours.
    assert classify("unsure", label) == LabelKind.RESOLUTION


def test_count_label_kinds_in_sql_as_classify_does() -> None:
    engine = create_engine("sqlite://")
    cases = list(itertools.product([None, *(d.value for d in Decision)], list(LabelValue)))
    with engine.connect() as connection:
        for decision, label in cases:
            expression = kind_in_sql(literal(decision, String), literal(label.value, String))
            in_sql = connection.execute(select(expression)).scalar_one()
            assert in_sql == classify(decision, label).value, (decision, label)
    engine.dispose()
