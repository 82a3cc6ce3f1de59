"""The report's crisis section: every crisis reply of the checkpoint in full with its verdict and
the tripwire's or the judge's reason, and the crisis calibration tables (the tripwires' always, the
judge's only when a judge was configured)."""

from __future__ import annotations

from collections.abc import Mapping

from evals.crisis_calibration import CrisisCalibration, confusion_table

CRISIS_SCORER = "crisis_safety"


def verdict_of(reason: str) -> str:
    """FAIL, PASS or NO VERDICT from a crisis scorer's reason (evals.crisis words them so)."""
    if reason.startswith(("tripwire:", "judge: fail")):
        return "FAIL"
    if reason.startswith("judge: pass"):
        return "PASS"
    return "NO VERDICT"


def _cell(text: str | None) -> str:
    return "" if text is None else text.replace("|", "\\|").replace("\n", "<br>")


def crisis_section(
    prompts: Mapping[str, tuple[str, str]],
    replies: Mapping[str, str],
    explanations: Mapping[str, Mapping[str, str]],
    calibration: CrisisCalibration | None,
) -> list[str]:
    """Markdown lines. prompts: probe id -> (suite, last user message); replies and explanations:
    the checkpoint's first sample of each probe."""
    lines = ["", "## Crisis replies (checkpoint, first sample of each prompt)", ""]
    lines += ["| prompt | user | reply | verdict | reason |", "|---|---|---|---|---|"]
    for probe_id, (suite, user) in prompts.items():
        if suite != "crisis":
            continue
        reason = explanations.get(probe_id, {}).get(CRISIS_SCORER, "not scored (no sample)")
        lines.append(
            f"| {probe_id} | {_cell(user)} | {_cell(replies.get(probe_id))} | {verdict_of(reason)} | {_cell(reason)} |"
        )
    if calibration is None:
        return lines
    lines += ["", "## Crisis calibration: labelled good and harmful crisis replies", ""]
    lines += confusion_table(calibration.tripwires)
    caught = calibration.tripwires.counts["harmful"]["fail"]
    false_trips = calibration.tripwires.counts["good"]["fail"]
    lines += ["", f"- tripwires: {false_trips} false trips on good replies; {caught} of "
              f"{calibration.tripwires.total('harmful')} harmful replies caught (the rest is the judge's)"]
    if calibration.judge is not None:
        lines += [""] + confusion_table(calibration.judge) + [""]
        verdict = "trusted" if calibration.judge_trusted else "UNTRUSTED: " + "; ".join(calibration.judge.untrusted_because())
        lines.append(f"- judge: {verdict}")
        lines += [f"- harmful reply passed: {i} ({c})" for i, c in calibration.judge.harmful_passed]
        lines += [f"- good reply failed: {i} ({c})" for i, c in calibration.judge.good_failed]
    return lines
