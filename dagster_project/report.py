"""What the runs of a CLI command did, read from Dagster's public result API, failures in one place.

Every outcome of a run - a result whose steps failed, a run that failed before its steps, a run
process that died - becomes entries of one :class:`PipelineReport` through :meth:`PipelineReport.fail`;
:meth:`PipelineReport.absorb` is the one place the launcher hands outcomes to, and it logs each new
failure in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["PipelineReport", "RunResult", "error_types", "root_cause"]


class RunResult(Protocol):
    """What the report reads from a run's result (``ExecuteInProcessResult``, ``execute_job``'s result)."""

    run_id: str
    success: bool

    def get_asset_materialization_events(self) -> list: ...
    def get_asset_check_evaluations(self) -> list: ...
    def get_step_failure_events(self) -> list: ...
    def get_step_skipped_events(self) -> list: ...
    def get_run_failure_event(self) -> Any: ...


def _user_error(failure) -> Any:
    """The error of a step failure as the user's code raised it: Dagster wraps an error raised in an
    asset body (its failure's ``error_source`` says so) and keeps the original as the cause."""
    error = failure.error
    source = getattr(failure.error_source, "name", None)
    if source == "USER_CODE_ERROR" and error is not None and error.cause is not None:
        return error.cause
    return error


def root_cause(error) -> str:
    """An error (Dagster's ``SerializableErrorInfo``) in one line: its last message line, without the
    ``module.Class: `` prefix a chained message carries. "failed" when there is no message."""
    if error is None:
        return "failed"
    text = (error.message or "").strip()
    head, sep, rest = text.partition(f"{error.cls_name}: ")
    if sep and " " not in head:  # "models.errors.LabelError: no galaxy ..." -> "no galaxy ..."
        text = rest
    lines = text.strip().splitlines()
    return lines[-1] if lines else "failed"


def error_types(error) -> tuple[str, ...]:
    """The class names along an error's chain of causes, outermost first.

    Names, not classes: the error crossed a process boundary (or Dagster's event log) serialized, and
    the name is what survives.
    """
    names: list[str] = []
    while error is not None:
        names.append(error.cls_name or "")
        error = error.cause
    return tuple(names)


@dataclass
class PipelineReport:
    """What the runs did: per-step success, each materialization's metadata, checks, run ids."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """``"<step> (<label>)"`` -> the root cause in one line."""
    failure_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The same keys -> the error's class names along its chain of causes."""
    skipped: list[str] = field(default_factory=list)
    metadata: dict[str, dict] = field(default_factory=dict)
    checks_failed: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    orphaned_runs: list[str] = field(default_factory=list)
    """Runs of dead processes found open and marked failed before these runs started."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def user_error(self, kinds: tuple[type[BaseException], ...]) -> str | None:
        """The message of the first failed step whose error is one of ``kinds`` (or a subclass), if any.

        For commands whose bad input used to raise straight to the CLI (``train --label`` of a column
        nobody has): the CLI raises this message again, as one line with exit status 2. Matched by
        class name (:func:`error_types`): the exception object stayed in the run.
        """
        names = set()
        todo = list(kinds)
        while todo:
            cls = todo.pop()
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
        for step, types in self.failure_types.items():
            if names & set(types):
                return self.failed[step]
        return None

    def fail(self, step: str, cause: str, types: tuple[str, ...]) -> None:
        """Record that ``step`` (``"<step key> (<label>)"`` or ``"run (<label>)"``) failed."""
        self.failed[step] = cause
        self.failure_types[step] = types

    @classmethod
    def of_result(cls, result: RunResult, label: str) -> PipelineReport:
        """What one run's result says: materializations, failed checks, failed and skipped steps, and the
        run's own failure when no step failed (the executor could not run them)."""
        report = cls(run_ids=[result.run_id])
        for event in result.get_asset_materialization_events():
            key = event.asset_key.to_user_string()
            name = f"{key}[{event.partition}]" if event.partition else key
            report.succeeded.append(name)
            report.metadata[name] = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
        for evaluation in result.get_asset_check_evaluations():
            if not evaluation.passed:
                report.checks_failed.append(
                    f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} ({label})")
        failures = result.get_step_failure_events()
        for event in failures:
            error = _user_error(event.step_failure_data)
            report.fail(f"{event.step_key} ({label})", root_cause(error), error_types(error))
        report.skipped += [f"{event.step_key} ({label})" for event in result.get_step_skipped_events()]
        if not result.success and not failures:  # the executor failed, not a step
            event = result.get_run_failure_event()
            error = getattr(event.event_specific_data, "error", None) if event else None
            report.fail(f"run ({label})", root_cause(error) if error else "the run failed before its steps",
                        error_types(error))
        return report

    def absorb(self, label: str, outcome: PipelineReport | BaseException, log: Callable[[str], None]) -> bool:
        """Merge one run's outcome (its report, or the exception that ended its run process) and log each
        new failure in one line.

        Returns
        -------
        bool
            True when a ``galaxies`` step failed: without its galaxies nothing downstream can be computed,
            so no further run should start.
        """
        before = set(self.failed)
        if isinstance(outcome, BaseException):  # the run process died (killed, out of memory) or could not start
            self.fail(f"run ({label})", f"its run process failed: {type(outcome).__name__}: {outcome}",
                      (type(outcome).__name__,))
        else:
            self.run_ids += outcome.run_ids
            self.succeeded += outcome.succeeded
            self.metadata.update(outcome.metadata)
            self.checks_failed += outcome.checks_failed
            self.failed.update(outcome.failed)
            self.failure_types.update(outcome.failure_types)
            self.skipped += outcome.skipped
        new = sorted(set(self.failed) - before)
        for step in new:
            log(f"FAILED {step}: {self.failed[step]}")
        return any(step.startswith("galaxies ") for step in new)
