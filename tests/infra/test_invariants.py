"""The deployment's invariants hold on terraform/ (see invariants.py for each rule)."""

import pytest

import invariants
import structure


@pytest.mark.parametrize("check", invariants.ALL_CHECKS, ids=lambda c: c.__name__)
def test_invariant(tree, check):
    assert check(tree) == []


@pytest.mark.parametrize("check", structure.ALL_CHECKS, ids=lambda c: c.__name__)
def test_structure(tree, check):
    assert check(tree) == []


def test_every_reference_alarm_exists_by_name(tree):
    names = {n.removeprefix(invariants.ALARM_PREFIX) for n in invariants.alarm_names(tree)}
    missing = [a for a in invariants.REFERENCE_ALARMS if a not in names]
    assert missing == []


def test_service_module_is_instantiated_once_per_binary(tree):
    services = sorted(b.body["service_name"] for _, b in tree.callers("modules/service"))
    assert services == ["order-grpc", "order-projector", "order-worker"]
