"""Clinician attestations in the evaluation: what an answer may change, and when it counts.

A leaf the ruleset marks ``attestable`` (a qualifier the policy leaves to clinical
judgement, never a record fact: ``model.record_fact_reason``) may be answered by the
clinician. The answer only fills what the record leaves open:

* the record's own result wins: a leaf the record shows ``met`` or ``not-met`` is never
  changed by an attestation;
* a ``missing`` leaf becomes ``met`` on an attested Yes (with its justification) and
  ``not-met`` on an attested No, with the attestation as its evidence, labelled
  ``origin: attested``;
* an infection-severity qualifier ("one severe bacterial infection", "a single life
  threatening infection") qualifies infections the record holds: without them in the
  record (diagnoses, dates, the count) the answer changes nothing;
* an attestation counts only for the indication and ruleset version it was given for
  (the caller passes only those), not after the evaluation date, and within the
  criterion's recency window where it has one.

Pure functions; the QuestionnaireResponse that carries the answers is read in
``smart_app/attestation.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from . import model as m
from .checks import MET, MISSING, NOT_MET, Context, Evidence, Result


@dataclass(frozen=True)
class Attestation:
    """One answer: the attestable item, Yes/No, the justification, who and when, and the
    resource that holds it (``QuestionnaireResponse/<id>``)."""

    item: str
    answer: bool
    justification: str
    author: str  # the author's reference or name; "" when not known
    on: date
    reference: str

    def summary(self) -> str:
        who = self.author or "an unidentified user"
        text = f"attested by {who} on {self.on.isoformat()}"
        return f"{text}: {self.justification}" if self.justification else text

    def evidence(self) -> Evidence:
        return Evidence(self.reference, self.summary(), origin="attested")


def window_days(leaf: m.Leaf) -> int | None:
    """How long an attestation of this leaf counts: its own window, else the leaf's."""
    assert leaf.attestable is not None
    return leaf.attestable.within_days or getattr(leaf, "within_days", None)


def why_not_counted(att: Attestation, leaf: m.Leaf, as_of: date) -> str:
    """Why this attestation does not count for the leaf as of ``as_of`` ("" when it does)."""
    if att.on > as_of:
        return f"it is dated {att.on.isoformat()}, after the evaluation date"
    days = window_days(leaf)
    if days is not None and (as_of - att.on).days > days:
        return f"it was given on {att.on.isoformat()}, more than {days} days before {as_of.isoformat()}"
    if att.answer and not att.justification.strip():
        return "a Yes needs a justification"
    return ""


def record_base(leaf: m.Leaf, ctx: Context) -> Result | None:
    """For an infection-severity qualifier: the record's infections without the severity
    (they must be in the record for the answer to count). None for other leaves."""
    if not isinstance(leaf, m.InfectionsCheck):
        return None
    from .checks import evaluate_check

    return evaluate_check(leaf.model_copy(update={"severity": "any", "attestable": None}), ctx)


def apply_attestation(leaf: m.Leaf, result: Result, ctx: Context) -> Result:
    """The leaf's result with the clinician's answer applied (see the module docstring)."""
    assert leaf.attestable is not None
    att = ctx.attestations.get(leaf.attestable.id)
    if att is None or result.status != MISSING:
        return result
    if why := why_not_counted(att, leaf, ctx.as_of):
        ctx.warn(f"An attestation ({leaf.attestable.question}) does not count: {why}.")
        return result
    base = record_base(leaf, ctx)
    if base is not None and base.status != MET:
        ctx.warn(f"An attestation ({leaf.attestable.question}) does not count: the infections it "
                 "qualifies are not in the record.")
        return result
    evidence = [*(base.evidence if base is not None else []), att.evidence()]
    if att.answer:
        return Result(MET, evidence, detail=f"attested: {leaf.attestable.question} Yes")
    return Result(NOT_MET, evidence, detail=f"attested: {leaf.attestable.question} No")


@dataclass(frozen=True)
class AttestableItem:
    """An attestable leaf of a criterion as this evaluation leaves it: ``open`` (missing, and
    an answer could change the criterion), ``yes`` or ``no`` (an attestation decided it)."""

    criterion: m.Criterion
    leaf: m.Leaf
    state: str
    attestation: Attestation | None = None


def attestable_items(criterion: m.Criterion, result: Result, ctx: Context) -> list[AttestableItem]:
    """The criterion's attestable leaves an answer decides or could decide. A leaf under a
    group already met or not-met by other parts is not offered (its answer changes nothing);
    nor is an infection qualifier whose infections the record does not hold."""
    out: list[AttestableItem] = []

    def walk(check: m.Check, res: Result, open_path: bool) -> None:
        if isinstance(check, (m.AnyOf, m.AllOf)):
            for sub, part in zip(check.of, res.components, strict=False):
                walk(sub, part, open_path and res.status == MISSING)
            return
        att_def = getattr(check, "attestable", None)
        if att_def is None:
            return
        att = ctx.attestations.get(att_def.id)
        if att is not None and any(e.origin == "attested" for e in res.evidence):
            out.append(AttestableItem(criterion, check, "yes" if att.answer else "no", att))
        elif res.status == MISSING and open_path:
            base = record_base(check, ctx)
            if base is None or base.status == MET:
                out.append(AttestableItem(criterion, check, "open"))

    walk(criterion.check, result, True)
    return out
