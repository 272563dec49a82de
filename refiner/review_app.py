"""The review app: every round of a run, its narrowing decisions against the data, overrides, exports.

::

    refiner app [--runs DIR]                  # binds 127.0.0.1
    streamlit run app.py -- --runs DIR        # the same page from a source checkout

The runs folder comes from ``--runs`` (after ``--``), else ``$REFINER_RUNS``, else ``runs/``.
This module only lays the page out; what it shows comes from :mod:`refiner.review`, and overrides
are validated and written by :func:`refiner.overrides.write_overrides`. Text read from a run
reaches the page through tables, ``st.json``/``st.code`` or :func:`refiner.review.md_escape`,
never as HTML.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import streamlit as st

from refiner import console, review
from refiner.errors import RefinerError, ValidationError
from refiner.lock import holder
from refiner.overrides import write_overrides
from refiner.space import Boolean, Fixed, Float, Int, Parameter, discrete_values, parameter_from_dict
from refiner.trial import best_trial

__all__ = ["main", "runs_folder", "LIVE_SECONDS"]

LIVE_SECONDS = 3  # how often an open page looks for new trials while a run is running

esc = review.md_escape


def runs_folder(argv: Sequence[str] | None = None) -> Path:
    """``--runs DIR`` from the script arguments, else ``$REFINER_RUNS``, else ``runs``."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs", type=Path, default=None)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if args.runs is not None:
        return args.runs
    env = os.environ.get("REFINER_RUNS")
    return Path(env) if env else Path("runs")


@st.cache_data(show_spinner=False, max_entries=32)
def _load(runs_dir: str, name: str, signature: tuple) -> review.RunView:
    # `signature` (files' mtimes and sizes) is only a cache key: a changed file means a fresh read.
    return review.load_run(runs_dir, name)


# -- page -------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="refiner review", page_icon="🔎", layout="wide")
    runs_dir = runs_folder()
    names = review.list_runs(runs_dir)
    url_problem = _pick_run(runs_dir, names)
    if url_problem:
        st.error(esc(url_problem))
    if not names:
        st.title("refiner review")
        st.info(f"No runs in {esc(runs_dir)} yet. Start one with `refiner run CONFIG`, or open another "
                f"folder with `refiner app --runs DIR`.")
        return
    name = st.session_state["run"]
    root = review.resolve_run(runs_dir, name)
    signature = review.run_signature(root)
    try:
        view = _load(str(runs_dir), name, signature)
    except RefinerError as exc:
        st.title(f"Run {esc(name)}")
        st.error(f"This run cannot be shown: {esc(exc)}")
        st.caption("Only this run is affected: pick another one in the sidebar.")
        return
    flash = st.session_state.pop("flash", None)
    if flash:
        st.success(esc(flash))
    _page(view)
    if view.status == "running" and st.session_state.get("live", True):
        _watch(root, signature)


def _pick_run(runs_dir: Path, names: list[str]) -> str | None:
    """Sidebar run picker; the URL's ``?run=`` is honoured only if it names a listed run."""
    st.sidebar.title(":material/manage_search: refiner review")
    st.sidebar.caption(f"Runs folder: {esc(runs_dir.resolve())}")
    if not st.get_option("server.address"):
        # Streamlit binds every interface unless told otherwise; say so rather than stay silent.
        st.sidebar.warning("This page may be reachable from other machines: start it with "
                           "`refiner app` or `--server.address 127.0.0.1`.")
    problem = None
    requested = st.query_params.get("run")
    if requested is not None:
        try:
            review.check_run_name(runs_dir, requested)
        except review.RunNameError as exc:
            problem = f"Ignored the run named in the URL: {exc}"
            requested = None
    if not names:
        return problem
    if st.session_state.get("run") not in names:
        st.session_state["run"] = requested if requested is not None else review.latest_run(runs_dir, names)
    st.sidebar.selectbox("Run", names, key="run", on_change=_sync_url)
    _sync_url()
    st.sidebar.toggle("Live updates while running", value=True, key="live",
                      help=f"Re-reads the run every {LIVE_SECONDS} s while its status is 'running'.")
    return problem


def _sync_url() -> None:
    # A shareable URL: the run's name (never a path) in ?run=.
    if st.query_params.get("run") != st.session_state.get("run"):
        st.query_params["run"] = st.session_state["run"]


def _watch(root: Path, signature: tuple) -> None:
    """While the run is running: every few seconds, rerun the page if any of its files changed."""

    @st.fragment(run_every=LIVE_SECONDS)
    def poll() -> None:
        if review.run_signature(root) != signature:
            st.rerun(scope="app")

    poll()


def _page(view: review.RunView) -> None:
    st.title(f"Run {esc(view.name)}")
    _summary(view)
    st.plotly_chart(review.incumbent_figure(view.trials, view.objective), key="incumbent")
    _imported(view)
    _export(view)
    if not view.rounds:
        st.info("No round has started yet.")
        return
    st.divider()
    numbers = [r.k for r in view.rounds]
    latest, seen = numbers[-1], st.session_state.get("round_latest")
    # Follow a running search into its next round, unless the user is looking at an earlier one.
    if st.session_state.get("round") not in numbers or (st.session_state.get("round") == seen != latest):
        st.session_state["round"] = latest
    st.session_state["round_latest"] = latest
    k = st.radio("Round", numbers, key="round", horizontal=True,
                 format_func=lambda n: f"{n} ({view.round(n).kind})")
    _round(view, view.round(k))


def _summary(view: review.RunView) -> None:
    run, settings, state = view.run, view.run["settings"], view.run["state"]
    objective = view.objective
    best = view.best
    done, total = len(view.trials), console.planned_trials(settings)
    failed = sum(1 for t in view.trials if not t.ok)
    c = st.columns(4)
    c[0].metric("Status", state["status"])
    c[1].metric(f"Best {objective.name} ({objective.direction})", "-" if best is None else review.fmt(best.score))
    c[2].metric("Trials", f"{done} / {total}", delta=f"{failed} failed" if failed else None, delta_color="inverse")
    c[3].metric("Round", f"{state['current_round'] + 1} / {settings['rounds']}")
    if state["status"] == "running":
        live = "re-reads it every few seconds as trials finish" if st.session_state.get("live", True) else \
            "live updates are off (sidebar)"
        st.caption(f"The run is in progress; this page {live}.")
    if state.get("message"):
        (st.error if state["status"] == "failed" else st.warning)(esc(state["message"]))
    for problem in view.problems:  # what `refiner validate RUN_DIR` reports, with its repair
        st.warning(esc(f"Run folder problem: {problem}"))
    left, right = st.columns([1, 1])
    with left:
        where = f" (trial {esc(best.trial_id)}, round {best.round})" if best else ""
        st.markdown("**Best hyperparameters**" + where)
        if best is None:
            st.caption("No completed trial yet.")
        else:
            st.dataframe([{"parameter": k, "value": review.fmt(v)} for k, v in best.hyperparameters.items()],
                         hide_index=True, key="best_hps")
    with right:
        st.markdown("**Settings**")
        st.caption(f"{esc(settings['target'])} ({esc(settings['mode'])}); {console.schedule_words(settings)}; "
                   f"seed {esc(settings['seed'])}; started "
                   f"{esc(run['created_at'])}, last update {esc(run['updated_at'])}")
        with st.expander("All settings and versions"):
            st.json({"settings": settings, "versions": run["versions"]}, expanded=1)
        with st.expander(f"Latest events ({len(view.events)})"):
            st.dataframe([{"time": e.get("time"), "event": e.get("event"),
                           "details": json.dumps({k: v for k, v in e.items() if k not in ("time", "event")})}
                          for e in reversed(view.events)], hide_index=True, key="events")


def _imported(view: review.RunView) -> None:
    if not view.imported:
        return
    source = view.run["settings"].get("warm_start", "an earlier run")
    with st.expander(f"Imported from an earlier run: {len(view.imported)} trials (warm start)"):
        st.caption(f"Trials of {esc(source)}, each with where it came from. Those completed inside this run's space "
                   "were evidence for its first surrogate; they show as \"imported\" in the per-parameter plots.")
        st.dataframe(review.trials_frame(list(view.imported)), hide_index=True, key="imported")


def _export(view: review.RunView) -> None:
    st.subheader("Export the refined space")
    if not view.has_refined_space:
        st.info("The refined space can be exported once the run has finished "
                "(the same files `refiner export RUN --format json|keras-tuner|optuna` writes).")
        return
    cols = st.columns(len(review.EXPORT_FORMATS))
    for col, (fmt_name, label) in zip(cols, review.EXPORT_FORMATS.items(), strict=True):
        try:
            data = review.export_bytes(view.store, fmt_name)
        except RefinerError as exc:
            col.warning(f"{label}: {esc(exc)}")
            continue
        col.download_button(label, data, icon=":material/download:",
                            file_name=review.export_filename(view.name, fmt_name),
                            mime="application/json" if fmt_name == "json" else "text/x-python",
                            key=f"export-{fmt_name}", on_click="ignore")
    st.caption("Exactly what `refiner export` writes, with any overrides of the last round applied.")
    with st.expander("Preview the refined space (JSON)"):
        try:
            st.code(review.export_bytes(view.store, "json").decode("utf-8"), language="json")
        except RefinerError as exc:
            st.warning(esc(exc))


# -- one round --------------------------------------------------------------------------------
def _round(view: review.RunView, r: review.RoundView) -> None:
    objective = view.objective
    ok = [t for t in r.trials if t.ok]
    best = best_trial(ok, objective)
    st.header(f"Round {r.k}: {r.kind} search", anchor=f"round-{r.k}")
    st.caption(f"{len(r.trials)} trials ({len(r.trials) - len(ok)} failed), best this round "
               f"{review.fmt(best.score if best else None)}. Its decisions turn its space into "
               + ("the refined space." if r.k == view.run["settings"]["rounds"] - 1 else f"round {r.k + 1}'s space."))
    if r.surrogate:
        s = r.surrogate
        cv = "-" if s.get("cv_score") is None else f"{s['cv_score']:.2f}"
        st.caption(f"Surrogate: {esc(s.get('model') or 'none')}, cross-validated Spearman {esc(cv)} "
                   f"({'trusted' if s.get('trusted') else 'not trusted: ranges kept'}). {esc(s.get('note', ''))}")

    st.subheader("Trials")
    frame = review.trials_frame(r.trials, r.space)
    st.dataframe(frame, hide_index=True, key=f"trials-{r.k}", height=min(420, 38 + 35 * max(len(frame), 1)),
                 column_config={"duration (s)": st.column_config.NumberColumn(format="%.3f")})
    st.download_button("Trials as CSV", data=frame.to_csv(index=False).encode("utf-8"),
                       file_name=f"{review.safe_stem(view.name)}_round{r.k}_trials.csv",
                       mime="text/csv", key=f"csv-{r.k}", on_click="ignore", icon=":material/download:")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(review.score_distribution_figure(view.rounds, r.k, objective), key=f"dist-{r.k}")
    with right:
        fig = review.importance_figure(r.surrogate)
        if fig is None:
            st.info("No importances yet: the surrogate is fitted when the round's trials have finished.")
        else:
            st.plotly_chart(fig, key=f"importance-{r.k}")

    _decisions(view, r)

    st.subheader("Per hyperparameter")
    if r.space is None:
        st.info("This round's space has not been written yet.")
    else:
        trials_so_far = [*view.imported, *(t for t in view.trials if t.round <= r.k)]
        for i, p in enumerate(r.space):
            _parameter(view, r, i, p, trials_so_far)

    st.subheader("Parallel coordinates", anchor=f"parallel-{r.k}")
    fig = review.parallel_coordinates_figure(r.trials, r.space, objective)
    if fig is None:
        st.info("No completed trial in this round yet.")
    else:
        st.plotly_chart(fig, key=f"parcoords-{r.k}")


def _anchor(k: int, i: int) -> str:
    return f"r{k}-p{i}"  # an index, never the name: names may hold any character


def _decisions(view: review.RunView, r: review.RoundView) -> None:
    st.subheader("Decisions", anchor=f"decisions-{r.k}")
    if r.decisions is None:
        st.info(f"Round {r.k} has no decisions yet: refiner makes them when the round's trials have finished.")
        return
    frame = review.decision_frame(r.decisions, r.audit)
    flagged = [row["parameter"] for _, row in frame.iterrows() if row["flag"]]
    if flagged:
        st.warning(f"⚠ The good region reaches a bound you set for {esc(', '.join(flagged))}: the optimum may lie "
                   f"beyond it. Consider widening that bound (edit the decision below).")
    names = r.space.names if r.space is not None else []
    shown = frame.drop(columns=[c for c in ("flag", "refiner proposed", "override", "audit") if not frame[c].any()])
    shown = shown.map(esc)  # every cell is text from the run folder: Markdown-inert
    shown["parameter"] = [
        f"[{esc(n)}](#{_anchor(r.k, names.index(n))})" if n in names else esc(n) for n in frame["parameter"]]
    flags = list(frame["flag"])
    styled = shown.style.apply(
        lambda row: ["background-color: #fff3cd; color: #7a4a00" if flags[row.name] else "" for _ in row], axis=1)
    st.table(styled, hide_index=True)
    st.caption("Each parameter links to its plots below. 'after' is what the next round searches "
               "(a person's override where there is one)." + (
                   " 'audit' is how the latest audit, with every trial since, judges what the cut removed: "
                   "safe, doubtful or wrong (re-opened: the next space took it back)." if frame["audit"].any() else ""))
    if r.overrides and r.overrides.get("overrides"):
        st.markdown("**Overrides saved for this round**")
        st.dataframe(review.overrides_frame(r.overrides), hide_index=True, key=f"overrides-{r.k}")


def _parameter(view: review.RunView, r: review.RoundView, i: int, p: Parameter, trials: list) -> None:
    d = r.decision(p.name)
    evidence = d.get("evidence") if d else None
    flag = review.beyond_text(evidence)
    with st.container(border=True):
        st.subheader(f"{esc(p.name)}{' ⚠' if flag else ''}", anchor=_anchor(r.k, i))
        importance = (r.surrogate or {}).get("importances", {}).get(p.name)
        parts = [esc(f"{p.type_name}, searched {p.describe()}")]
        if d:
            parts.append(f"decision **{esc(d['action'])}** → {esc(review.describe(d['after']))}")
        if importance is not None:
            parts.append(esc(f"importance {importance:.2f}"))
        st.markdown(" · ".join(parts))
        if d:
            st.caption(esc(d["reason"]))
        if flag:
            st.warning(esc(f"{flag} of {p.name} {p.describe()}"))
        for j in r.audit.get(p.name, []):
            show = st.error if j["verdict"] == "wrong" else st.warning if j["verdict"] == "doubtful" else st.caption
            show(esc(f"Audit ({j['piece']} piece): {j['reason']}"))
        if d and "proposed" in d:
            o = d.get("override") or {}
            who = "rejected" if o.get("action") == "reject" else "edited"
            note = f" Note: {o['note']}" if o.get("note") else ""
            st.info(esc(f"A person {who} this decision: refiner proposed {review.describe(d['proposed'])}, "
                        f"the next round uses {review.describe(d['after'])}.{note}"))
        if isinstance(p, Fixed):
            st.caption(f"Fixed at {esc(review.fmt(p.value))}: nothing to plot.")
        else:
            left, right = st.columns(2)
            with left:
                st.plotly_chart(review.param_scatter_figure(p, trials, view.objective, d, r.k),
                                key=f"scatter-{r.k}-{i}")
            with right:
                fig = review.partial_dependence_figure(p, r.surrogate, d)
                if fig is None:
                    note = (r.surrogate or {}).get("note") or "no surrogate for this round yet."
                    st.info("No partial dependence: " + esc(note))
                else:
                    st.plotly_chart(fig, key=f"pd-{r.k}-{i}")
        if d:
            _override(view, r, i, p, d)


# -- overrides --------------------------------------------------------------------------------
_ACTIONS = ("keep", "reject", "edit", "json")


def _override(view: review.RunView, r: review.RoundView, i: int, p: Parameter, d: Mapping[str, Any]) -> None:
    """Reject or edit this decision; validated and written by refiner.overrides.write_overrides."""
    existing = next((o for o in (r.overrides or {}).get("overrides", []) if o["name"] == p.name), None)
    last = r.k == view.run["settings"]["rounds"] - 1
    target = "the exported refined space" if last else f"round {r.k + 1}"
    with st.expander("Review: reject or edit this decision", expanded=existing is not None):
        if r.next_started:
            st.caption(f"Round {r.k + 1} has already started with this space, so an override of round {r.k} "
                       f"can no longer change it.")
            return
        key = f"ov-{view.name}-{r.k}-{i}"
        before = parameter_from_dict(d["before"])
        after = parameter_from_dict(d["after"])
        labels = {"keep": "accept refiner's proposal" + (" (remove my override)" if existing else ""),
                  "reject": f"reject: {target} searches this round's range {before.describe()}",
                  "edit": "edit the range or values", "json": "edit the parameter as JSON"}
        base = _editable(before, after)
        actions = [a for a in _ACTIONS if a != "edit" or base is not None]
        wanted = "keep" if existing is None else existing["action"]
        default = actions.index(wanted if wanted in actions else "json")
        action = st.radio("Your decision", actions, index=default, key=f"{key}-action",
                          format_func=lambda a: esc(labels[a]))
        edited: dict[str, Any] | None = None
        problem = None
        if action == "edit":
            assert base is not None
            edited, problem = _edit_fields(key, before, base)
        elif action == "json":
            text = st.text_area("Parameter (JSON)", value=json.dumps(d["after"], indent=1), key=f"{key}-json",
                                height=140)
            try:
                edited = json.loads(text)
            except json.JSONDecodeError as exc:
                problem = f"after: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        note = st.text_input("Note (why)", value=(existing or {}).get("note", ""), key=f"{key}-note", max_chars=2000)
        if st.button("Save", key=f"{key}-save", type="primary"):
            if problem:
                st.error(esc(f"Not saved: {problem}"))
                return
            entry = None if action == "keep" else review.build_override(
                p.name, "reject" if action == "reject" else "edit", edited, note)
            overrides = review.merge_overrides(r.overrides, entry, p.name)
            try:
                write_overrides(view.store, r.k, overrides)
            except ValidationError as exc:
                for line in exc.problems:
                    st.error(esc(f"Not saved: {line}"))
                return
            except RefinerError as exc:
                st.error(esc(f"Not saved: {exc}"))
                return
            running = holder(view.store.root)  # a run going on applies it when it builds the next round
            st.session_state["flash"] = (f"Saved: {p.name} " + (
                "follows refiner's proposal" if entry is None else
                "rejected" if entry["action"] == "reject" else "edited") + f" for {target}." + (
                f" The run in progress (pid {running.pid} on {running.host}) applies it when {target} starts."
                if running is not None and not last else ""))
            st.rerun()


def _editable(before: Parameter, after: Parameter) -> Parameter | None:
    """The parameter whose range the edit fields start from: 'after', or 'before' if narrowing fixed it."""
    if not isinstance(after, Fixed):
        return after
    return None if isinstance(before, Fixed) else before


def _edit_fields(key: str, before: Parameter, base: Parameter) -> tuple[dict[str, Any] | None, str | None]:
    """Inputs for a new range (numbers) or value set (choices), seeded with ``base``."""
    doc = base.to_dict()
    if isinstance(base, (Float, Int)):
        c1, c2 = st.columns(2)
        integer = isinstance(base, Int)
        step = 1 if integer else _input_step(base)
        low = c1.number_input("low", value=base.low, step=step, key=f"{key}-low",
                              format=None if integer else "%g")
        high = c2.number_input("high", value=base.high, step=step, key=f"{key}-high",
                               format=None if integer else "%g")
        doc.update(low=low, high=high)
        return doc, None
    options = list(dict.fromkeys([*discrete_values(before), *discrete_values(base)]))
    chosen = st.multiselect("values", options, default=discrete_values(base), key=f"{key}-values", format_func=review.fmt)
    if not chosen:
        return None, "after.values: choose at least one value"
    if isinstance(base, Boolean) and len(chosen) == 2:
        return doc, None
    values = [v for v in options if v in chosen]  # the searched order matters for ordered choices
    new: dict[str, Any] = {"name": base.name, "type": "choice", "values": values}
    if getattr(base, "ordered", False):
        new["ordered"] = True
    if "conditions" in doc:
        new["conditions"] = doc["conditions"]
    return new, None


def _input_step(p: Float) -> float:
    # A +/- click moves a twentieth of the range, rounded to one significant digit.
    width = (p.high - p.low) or abs(p.high) or 1.0
    raw = width / 20
    return float(f"{raw:.0e}")


if __name__ == "__main__":  # `streamlit run refiner/review_app.py` (what `refiner app` does)
    main()
