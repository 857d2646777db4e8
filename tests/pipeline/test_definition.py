"""Pipeline definitions: validation and rendering, no database needed."""

from __future__ import annotations

import pytest

from crmkit import Pipeline, Stage, StageKind, Transition


def dealer() -> Pipeline:
    return Pipeline(
        "dealer",
        "party",
        label="Dealers",
        stages=[
            Stage("lead", "Lead"),
            Stage("firm", "Firm"),
            Stage("account", "Account", requires_documents=("contract",)),
            Stage("client", "Client", kind=StageKind.SUCCESS),
            Stage("refused", "Refused", kind=StageKind.DEAD_END),
        ],
        transitions=[
            Transition("lead", "firm"),
            Transition("firm", "account"),
            Transition("account", "client"),
            Transition("account", "refused", backward=True, requires_comment=True),
            Transition("*", "refused", roles=("admin",)),
        ],
    )


def test_lookups():
    p = dealer()
    assert p.initial_stage.name == "lead"
    assert p.transition("lead", "firm") is not None
    assert p.transition("lead", "client") is None
    assert [s.name for s in p.targets_from("account")] == ["client", "refused"]
    assert p.stage("client").terminal and not p.stage("firm").terminal
    with pytest.raises(KeyError, match="pipeline 'dealer' has no stage 'moon'"):
        p.stage("moon")


def test_unknown_stage_in_transition_is_refused():
    with pytest.raises(ValueError, match="unknown stage 'firm'"):
        Pipeline("p", "party", [Stage("lead")], [Transition("lead", "firm")])


def test_duplicate_stage_names_refused():
    with pytest.raises(ValueError, match="duplicate stage names"):
        Pipeline("p", "party", [Stage("a"), Stage("a")], [])


def test_text_rendering_lists_stages_and_moves():
    text = dealer().to_text()
    assert "lead             Lead  [initial; open]" in text
    assert "account          Account  [open; needs documents: contract]" in text
    assert "account -> refused  (backward; needs a comment)" in text
    assert "firm -> refused  (roles: admin)" in text


def test_mermaid_rendering():
    mermaid = dealer().to_mermaid()
    assert mermaid.splitlines()[0] == "stateDiagram-v2"
    assert "[*] --> lead" in mermaid
    assert "client --> [*]" in mermaid
    assert "account --> refused : back" in mermaid
    assert "class refused deadEnd" in mermaid
