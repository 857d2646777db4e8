"""Pipelines: state machines of stages declared as code, and the engine that moves records."""

from crmkit.pipeline.definition import GuardResult, Pipeline, Stage, StageKind, Transition

__all__ = ["GuardResult", "Pipeline", "Stage", "StageKind", "Transition"]
