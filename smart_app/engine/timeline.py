"""The therapy timeline (CONTRACT §4): the order, prior exposure, first dose, baseline IgG.

Pure functions over PatientFacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from fhir_mappings.facts import IgExposure, IgOrder, Lab, PatientFacts

ORDER_STATUSES = ("active", "draft", "on-hold")  # preference order when several exist
PRIOR_STATEMENT_STATUSES = {"active", "completed"}


@dataclass(frozen=True)
class Timeline:
    as_of: date
    order: IgOrder | None
    status: str  # new-start | continuation | none
    first_dose: date | None
    first_dose_ref: str | None
    exposure_refs: tuple[str, ...]  # what shows prior exposure, for the report
    # Dated immune globulin exposure as (start, end, stop documented) periods: an
    # administration or dispense is one day and documents no stop; a statement runs to its
    # end date (to as-of while active), and a stopped/completed statement or one with an end
    # date documents that therapy stopped.
    periods: tuple[tuple[date, date, bool], ...] = ()

    @property
    def on_therapy_unknown_start(self) -> bool:
        return self.status == "continuation" and self.first_dose is None

    def off_therapy_at(self, day: date, gap_days: int) -> bool:
        """The record shows the patient was not on immune globulin on ``day`` and had not
        received any for ``gap_days`` before it.

        True before the first dose, and for a patient never exposed. After the first dose
        it needs positive evidence of a pause: every dated exposure ended at least
        ``gap_days`` before ``day``, and nothing open-ended (an active statement) covers it.
        A continuation without a first-dose date can never be shown off therapy.
        """
        if self.status != "continuation":
            return True
        if self.first_dose is None:
            return False
        if day < self.first_dose:
            return True
        window_start = day - timedelta(days=gap_days)
        before = [(end, stop) for start, end, stop in self.periods if start <= day]
        if not before or any(end > window_start for end, _ in before):
            return False
        last_dose = max(end for end, stop in before)
        return any(stop and end >= last_dose for end, stop in before)


def choose_order(facts: PatientFacts) -> IgOrder | None:
    """The IVIG/SCIG order being evaluated: active before draft before on-hold, newest first."""
    candidates = [o for o in facts.ig_orders if o.status in ORDER_STATUSES]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda o: (ORDER_STATUSES.index(o.status), -(o.authored or date.min).toordinal(), o.ref),
    )


def _dated_exposures(facts: PatientFacts) -> list[IgExposure]:
    return [e for e in facts.ig_exposures if e.date is not None]


def build_timeline(facts: PatientFacts, as_of: date) -> Timeline:
    order = choose_order(facts)
    # Exposure after the evaluation date has not happened yet as far as "as of" is concerned.
    exposures = [e for e in facts.ig_exposures if e.date is None or e.date <= as_of]
    dated = sorted((e for e in exposures if e.date is not None), key=lambda e: (e.date, e.ref))
    first = dated[0] if dated else None

    evidence: list[str] = []
    for e in exposures:
        if e.kind in {"administration", "dispense"}:
            evidence.append(e.ref)
        elif e.kind == "statement" and e.status in PRIOR_STATEMENT_STATUSES:
            evidence.append(e.ref)
    # An earlier IVIG request (other than the order itself) is prior exposure.
    for other in facts.ig_orders:
        if order is not None and other.ref == order.ref:
            continue
        if other.status in {"active", "completed", "stopped", "on-hold"}:
            if order is None or other.authored is None or order.authored is None or (
                other.authored <= order.authored
            ):
                evidence.append(other.ref)
    if order is not None and order.prior_prescription:
        evidence.append(order.ref)

    if evidence:
        status = "continuation"
    elif order is not None:
        status = "new-start"
    else:
        status = "none"
    periods = []
    for e in dated:
        end, stop = e.date, False
        if e.kind == "statement":
            stop = e.end is not None or e.status in {"stopped", "completed"}
            end = e.end or (as_of if e.status in {"active", "on-hold"} else e.date)
        periods.append((e.date, max(end, e.date), stop))
    return Timeline(
        as_of=as_of,
        order=order,
        status=status,
        first_dose=first.date if first else None,
        first_dose_ref=first.ref if first else None,
        exposure_refs=tuple(dict.fromkeys(evidence)),
        periods=tuple(periods),
    )


def igg_results(facts: PatientFacts, as_of: date) -> list[Lab]:
    """Total IgG results on or before the evaluation date, oldest first."""
    return [lab for lab in facts.lab("igg_total") if lab.date is None or lab.date <= as_of]


def pretreatment_igg(facts: PatientFacts, tl: Timeline) -> list[Lab] | None:
    """IgG results that can be shown to precede therapy; ``None`` when that cannot be known.

    New start (or no order): every IgG counts. Continuation with a first-dose date: the
    results dated strictly before it. Continuation without one: unknowable (``None``).
    """
    results = igg_results(facts, tl.as_of)
    if tl.status in {"new-start", "none"}:
        return results
    if tl.first_dose is None:
        return None
    return [lab for lab in results if lab.date is not None and lab.date < tl.first_dose]


def latest_weight(facts: PatientFacts, as_of: date, within_days: int) -> tuple[Lab | None, Lab | None]:
    """(recent weight within the window, latest weight at all) on or before as_of."""
    weights = [w for w in facts.lab("body_weight") if w.date is not None and w.date <= as_of]
    latest = weights[-1] if weights else None
    if latest is not None and (as_of - latest.date).days <= within_days:
        return latest, latest
    return None, latest
