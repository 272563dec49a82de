"""A person's edits of narrowing decisions (``rounds/<k>/overrides.json``) and how they apply.

An override either rejects a decision (the parameter keeps the range round k searched) or
replaces its outcome with an edited parameter. Regions narrowing proposed (``regions`` in the
decisions) stay in ``next_space`` unless an override sets the range of a parameter they bound. Applying overrides to a decisions document keeps
both sides: ``proposed`` holds what refiner proposed, ``after`` what the person chose, and
``override`` the edit itself; ``next_space`` is rebuilt from the ``after`` fields and must be a
valid space. The loop applies them before the next round starts; ``refined_space`` applies the
last round's to the exported result. One implementation serves the loop, the CLI and the app.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from refiner import schemas
from refiner.errors import RefinerError, ValidationError
from refiner.lock import RunLock, RunLockedError, overrides_lock
from refiner.space import SearchSpace, parameter_from_dict
from refiner.jsonio import now_iso, read_json, write_json
from refiner.store import RunStore

__all__ = ["override_problems", "apply_overrides", "read_overrides", "write_overrides", "decisions_with_overrides",
           "stored_override_problems", "refined_space"]


def override_problems(decisions: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Every reason ``overrides`` cannot apply to ``decisions``, as ``"<json path>: <rule>"`` lines."""
    found = schemas.problems(overrides, "overrides")
    if found:
        return found
    if overrides["round"] != decisions["round"]:
        return [f"round: must be {decisions['round']}, the round of the decisions it edits, got {overrides['round']}"]
    names = {d["name"] for d in decisions["decisions"]}
    seen: set[str] = set()
    for i, o in enumerate(overrides["overrides"]):
        where = f"overrides[{i}]"
        if o["name"] not in names:
            found.append(f"{where}.name: must name a parameter of round {decisions['round']}, got {o['name']!r}")
        if o["name"] in seen:
            found.append(f"{where}.name: each parameter may be overridden once, {o['name']!r} appears twice")
        seen.add(o["name"])
        if o["action"] == "edit":
            if o["after"]["name"] != o["name"]:
                found.append(f"{where}.after.name: must be {o['name']!r}, the parameter being edited, got {o['after']['name']!r}")
            try:
                parameter_from_dict(o["after"])
            except (ValueError, OverflowError) as exc:  # OverflowError: an integer too large for a float
                found.append(f"{where}.after: {exc}")
    if found:
        return found
    try:
        _apply(decisions, overrides)
    except ValidationError as exc:
        found.extend(f"next space: {p}" for p in exc.problems)
    return found


def apply_overrides(decisions: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``decisions`` with ``overrides`` applied (a new document); raises :class:`ValidationError` if they can't be."""
    if overrides is None:
        return copy.deepcopy(dict(decisions))
    found = override_problems(decisions, overrides)
    if found:
        raise ValidationError(found)
    return _apply(decisions, overrides)


def _apply(decisions: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(decisions))
    by_name = {o["name"]: o for o in overrides["overrides"]}
    for d in out["decisions"]:
        o = by_name.get(d["name"])
        if o is None:
            continue
        proposed = d.get("proposed", d["after"])  # re-applying keeps refiner's original proposal
        d["proposed"] = proposed
        d["after"] = copy.deepcopy(d["before"] if o["action"] == "reject" else o["after"])
        d["override"] = {k: v for k, v in o.items() if k != "name"}
    out["next_space"] = _next_space(out, set(by_name)).to_dict()
    return out


def _next_space(decisions: Mapping[str, Any], overridden: set[str]) -> SearchSpace:
    """The space the decisions' ``after`` give, with the proposed regions unless a person's
    override set the range of a parameter they bound (that range is then meant as given)."""
    params = [parameter_from_dict(d["after"]) for d in decisions["decisions"]]
    record = decisions.get("regions")
    boxes = None if record is None else record["regions"]
    if boxes and any(name in box for box in boxes for name in overridden):
        return SearchSpace(params)
    return SearchSpace(params, boxes)


def read_overrides(store: RunStore, k: int) -> dict[str, Any] | None:
    path = store.round_dir(k) / "overrides.json"
    return read_json(path, "overrides") if path.exists() else None


def write_overrides(store: RunStore, k: int, overrides: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Validate ``overrides`` against round ``k``'s decisions and write them; returns the document.

    Allowed while a run holds the folder's writer lock, as long as round k+1 has not started
    (the rule in :mod:`refiner.lock`): the save and the run's building of round k+1 take turns
    under the overrides lock, so a save is either applied or refused, never silently ignored.
    """
    writer = RunLock(store.root, command="review app: save overrides")
    try:
        writer.acquire(wait_s=0)  # no run is going: this save is the writer for a moment
    except RunLockedError:
        pass  # a run is going: write overrides.json only, the run records their use
    try:
        with overrides_lock(store.root):
            return _write_overrides(store, k, overrides, log_event=writer.held)
    finally:
        writer.release()


def _write_overrides(store: RunStore, k: int, overrides: Sequence[Mapping[str, Any]], log_event: bool) -> dict[str, Any]:
    decisions = store.read_decisions(k)
    if decisions is None:
        raise RefinerError(f"round {k} has no decisions yet, so there is nothing to override")
    if store.has_space(k + 1):
        raise RefinerError(f"round {k + 1} has already started with round {k}'s decisions, so an override of "
                           f"round {k} can no longer change it")
    stamped = [{**o, "timestamp": o.get("timestamp") or now_iso()} for o in overrides]
    document = {"format_version": 1, "round": k, "overrides": stamped}
    found = override_problems(_proposal(decisions), document)
    if found:
        raise ValidationError(found, source=str(store.round_dir(k) / "overrides.json"))
    write_json(store.round_dir(k) / "overrides.json", document, "overrides")
    if log_event:
        store.event("overrides_written", round=k, names=[o["name"] for o in overrides])
        if k == store.read_run()["settings"]["rounds"] - 1 and store.refined_space_file.exists():
            _apply_to_result(store, k)
    return document


def _apply_to_result(store: RunStore, k: int) -> None:
    """A finished run's last round edited: its decisions and ``refined_space.json`` take the edits
    at once (as the run does when it finishes), so the file on disk, ``show``, ``export`` and the
    app agree."""
    decisions = decisions_with_overrides(store, k)
    assert decisions is not None
    store.write_decisions(k, decisions)
    store.write_refined_space(SearchSpace.from_dict(decisions["next_space"]))
    store.event("overrides_applied", round=k, names=[d["name"] for d in decisions["decisions"] if "override" in d])


def _proposal(decisions: Mapping[str, Any]) -> dict[str, Any]:
    """The decisions as refiner proposed them (undoing an earlier application of overrides)."""
    out = copy.deepcopy(dict(decisions))
    for d in out["decisions"]:
        if "proposed" in d:
            d["after"] = d.pop("proposed")
            d.pop("override", None)
    out["next_space"] = _next_space(out, set()).to_dict()
    return out


def decisions_with_overrides(store: RunStore, k: int) -> dict[str, Any] | None:
    """Round ``k``'s decisions as they stand: refiner's proposal with any overrides applied.

    Raises:
        ValidationError: the overrides cannot apply; ``source`` names ``overrides.json``.
    """
    decisions = store.read_decisions(k)
    if decisions is None:
        return None
    try:
        return apply_overrides(_proposal(decisions), read_overrides(store, k))
    except ValidationError as exc:
        raise ValidationError(exc.problems, source=str(store.round_dir(k) / "overrides.json")) from None


def stored_override_problems(store: RunStore, k: int, overrides: Mapping[str, Any]) -> list[str]:
    """Why ``overrides`` (schema-valid) cannot apply to round ``k``'s recorded decisions; empty when
    they can, or when the round has no decisions to check them against (yet, or deleted for a recompute)."""
    decisions = store.read_decisions(k)
    if decisions is None:
        return []
    return override_problems(_proposal(decisions), overrides)


def refined_space(store: RunStore) -> SearchSpace:
    """The run's result: ``refined_space.json``, with overrides of the last round applied if any."""
    run = store.read_run()
    last = run["settings"]["rounds"] - 1
    space = store.read_refined_space()
    if read_overrides(store, last) is not None:
        decisions = decisions_with_overrides(store, last)
        assert decisions is not None
        space = SearchSpace.from_dict(decisions["next_space"])
    return space
