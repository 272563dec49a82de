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
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import altair as alt
import streamlit as st

from refiner import console, review
from refiner.errors import RefinerError, ValidationError
from refiner.gate import approve, read_approval
from refiner.liveness import ACTIVE_STATUSES, stopped_note
from refiner.lock import holder
from refiner.overrides import write_overrides
from refiner.store import RunStore
from refiner.space import Boolean, Fixed, Float, Int, Parameter, discrete_values, parameter_from_dict
from refiner.trial import Trial, TrialState, best_trial

__all__ = ["main", "runs_folder", "LIVE_SECONDS"]

FIRST_PAINT_PAUSE = 0.3  # seconds between the summary and the rest of the page on a tab's first load
TRIALS_SHOWN = 30  # a round with more trials shows its table on demand
LIVE_SECONDS = 3  # how often an open page looks for new trials while a run is running
FLASH_SECONDS = 10  # how long a confirmation ("Saved", "Approved") stays, from its first drawing, through reruns

esc = review.md_escape


def _script_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--allow-remote", action="store_true")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    return args


def runs_folder(argv: Sequence[str] | None = None) -> Path:
    """``--runs DIR`` from the script arguments, else ``$REFINER_RUNS``, else ``runs``."""
    args = _script_args(argv)
    if args.runs is not None:
        return args.runs
    env = os.environ.get("REFINER_RUNS")
    return Path(env) if env else Path("runs")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _safety(args: argparse.Namespace) -> bool:
    """Serve the page only on loopback unless ``--allow-remote`` was given (then with a banner).

    Streamlit opens its socket before this script runs, so a server started without an address
    (``streamlit run app.py`` outside the repository binds every interface) cannot be re-bound
    from here: it shows nothing but how to restart it safely, so no one reaching it can read runs
    or write overrides. ``refiner app`` and ``python app.py`` bind 127.0.0.1 themselves.
    """
    address = st.get_option("server.address") or ""
    if address in LOOPBACK:
        return True
    where = f"address {address}" if address else "every network interface"
    if not args.allow_remote:
        st.title("refiner review")
        st.error(f"Not served: this server listens on {esc(where)}, so anyone who reaches this machine could read "
                 f"the runs and write overrides. Restart it with 'refiner app' (or 'python app.py', or "
                 f"'streamlit run app.py --server.address 127.0.0.1'); to share it on purpose, give "
                 f"'--allow-remote' after '--' (and '--read-only' to switch overrides off).")
        return False
    st.warning(f"⚠ Shared view: this page listens on {esc(where)} with no login; anyone who reaches it "
               + ("can see the runs (read-only: no overrides or approvals)." if args.read_only else
                  "can save overrides and approve rounds. Start it with --read-only to switch that off."))
    return True


# -- caches: reading and validating a run, and building its figures, happen once per change ------
# `signature` (the files' mtimes and sizes, review.run_signature) is only a cache key: a changed
# file means a fresh read. cache_resource, not cache_data: a 200-trial run's view took 0.14 s to
# unpickle on every rerun, and the page only reads what it is given.
@st.cache_resource(show_spinner=False, max_entries=16)
def _load(runs_dir: str, name: str, signature: tuple) -> review.RunView:
    return dataclasses.replace(review.load_run(runs_dir, name), signature=signature)


@st.cache_data(show_spinner=False, max_entries=64)
def _export_bytes(root: str, signature: tuple, fmt_name: str) -> bytes:
    # Each export re-reads and re-validates refined_space.json (about 50 ms, four per rerun).
    return review.export_bytes(RunStore(root), fmt_name)


@st.cache_resource(show_spinner=False, max_entries=256)
def _figure(root: str, signature: tuple, what: tuple, _build: Callable[[], Any]) -> Any:
    # `what` names the figure (builder, round, parameter, ...); `_build` is not hashed.
    return _build()


def _chart(view: review.RunView, what: tuple, build: Callable[[], Any], key: str) -> bool:
    """Draw the cached chart ``build()``, a Vega-Lite (Altair) chart or a Plotly figure (False,
    drawing nothing, when it is None)."""
    fig = _figure(str(view.root), view.signature, what, build)
    if fig is None:
        return False
    if isinstance(fig, alt.TopLevelMixin):
        st.altair_chart(fig, width="stretch", key=key)
    else:
        st.plotly_chart(fig, key=key)
    return True


# -- page -------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="refiner review", page_icon="🔎", layout="wide")
    args = _script_args()
    if not _safety(args):
        return
    st.session_state["read_only"] = args.read_only
    runs_dir = runs_folder()
    names = review.list_runs(runs_dir)
    url_problem = _choose_run(runs_dir, names)
    if st.session_state.get("view") == "Runs overview" and names:
        _sidebar(runs_dir, names)
        st.title("Runs overview")
        st.dataframe(review.runs_overview_frame(runs_dir, names), hide_index=True, key="overview")
        st.caption("Pick a run in the sidebar and switch the view back to 'One run' to review it.")
        _compare(runs_dir, names)
        return
    if url_problem:
        st.error(esc(url_problem))
    if not names:
        _sidebar(runs_dir, names)
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
        _sidebar(runs_dir, names)
        st.title(f"Run {esc(name)}")
        st.error(f"This run cannot be shown: {esc(exc)}")
        st.caption("Only this run is affected: pick another one in the sidebar.")
        return
    # Always one slot here, filled or not: a message that appears only after a save would shift
    # every element below it, and Streamlit would then reset the widgets it re-identifies.
    slot = st.container()
    flash = st.session_state.get("flash")
    if flash:
        flash.setdefault("until", time.monotonic() + FLASH_SECONDS)  # counted from its first drawing
        if time.monotonic() < flash["until"]:
            slot.success(esc(flash["text"]))
        else:
            st.session_state.pop("flash", None)
    stopped = stopped_note(root, view.run)
    _page(view, stopped, sidebar=lambda: _sidebar(runs_dir, names))
    if view.status in ACTIVE_STATUSES and stopped is None and st.session_state.get("live", True):
        _watch(root, signature)


def _flash(text: str) -> None:
    """Confirm an action on the next drawings of the page. Kept for a few seconds rather than one
    rerun: an approval changes the run's files at once, and the live rerun that follows would wipe
    a one-rerun message before anyone could read it."""
    st.session_state["flash"] = {"text": text}


def _compare(runs_dir: Path, names: list[str]) -> None:
    """Two or more runs' best-so-far curves on one chart (runs with another objective are left out)."""
    st.subheader("Compare runs")
    picked = st.multiselect("Runs to compare", names, key="compare", placeholder="pick two or more runs")
    views = []
    for name in picked:
        try:
            views.append(_load(str(runs_dir), name, review.run_signature(review.resolve_run(runs_dir, name))))
        except RefinerError as exc:
            st.warning(esc(f"{name} left out: {exc}"))
    if not views:
        return
    objective = views[0].objective
    same = [v for v in views if (v.objective.name, v.objective.direction) == (objective.name, objective.direction)]
    for v in views:
        if all(v is not w for w in same):
            st.warning(esc(f"{v.name} left out: it optimises {v.objective.name} ({v.objective.direction}), "
                           f"not {objective.name} ({objective.direction})."))
    st.plotly_chart(review.compare_figure([(v.name, v.trials) for v in same], objective), key="compare-chart")


def _choose_run(runs_dir: Path, names: list[str]) -> str | None:
    """Which run the page shows; the URL's ``?run=`` is honoured only if it names a listed run."""
    problem = None
    requested = st.query_params.get("run")
    if requested is not None:
        try:
            review.check_run_name(runs_dir, requested)
        except review.RunNameError as exc:
            problem = f"Ignored the run named in the URL: {exc}"
            requested = None
    if names and st.session_state.get("run") not in names:
        st.session_state["run"] = requested if requested is not None else review.latest_run(runs_dir, names)
    return problem


def _sidebar(runs_dir: Path, names: list[str]) -> None:
    """The run picker and the page's switches (drawn after a run's summary: see _page)."""
    st.sidebar.title(":material/manage_search: refiner review")
    st.sidebar.caption(f"Runs folder: {esc(runs_dir.resolve())}")
    if st.session_state.get("read_only"):
        st.sidebar.info("Read-only: overrides and approvals are switched off.")
    if not names:
        return
    st.sidebar.radio("View", ["One run", "Runs overview"], key="view", horizontal=True)
    st.sidebar.selectbox("Run", names, key="run", on_change=_sync_url)
    _sync_url()
    st.sidebar.toggle("Live updates while running", value=True, key="live",
                      help=f"Re-reads the run every {LIVE_SECONDS} s while it runs or waits for review.")


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


def _page(view: review.RunView, stopped: str | None, sidebar: Callable[[], None]) -> None:
    st.title(f"Run {esc(view.name)}")
    spend = _epoch_spend(view)
    switches = _summary(view, stopped, spend)
    if not st.session_state.get("painted"):
        # A tab's first load: let the browser draw the title and the summary (text and metrics
        # only) before anything else arrives. Every other kind of element is code the browser
        # loads on first use (Plotly's 4.7 MB, the grid's 1.2 MB, each widget's), and sent at once
        # the metrics wait behind all of it. Later reruns keep what is drawn, so they do not pause.
        st.session_state["painted"] = True
        time.sleep(FIRST_PAINT_PAUSE)
    sidebar()
    _switches(view, switches)
    _chart(view, ("incumbent",), lambda: review.incumbent_chart(view.trials, view.objective), key="incumbent")
    _across_rounds(view)
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
    engine = view.run["settings"].get("engine", "keras-tuner")
    k = st.radio("Round", numbers, key="round", horizontal=True,
                 format_func=lambda n: f"{n} ({review.round_label(engine, n)})")
    _round(view, view.round(k), spend)


def _summary(view: review.RunView, stopped: str | None, spend: console.EpochSpend | None) -> Any:
    """Status, metrics, best hyperparameters and settings: text only (see _page); returns the
    column that _switches fills once the summary is drawn."""
    run, settings, state = view.run, view.run["settings"], view.run["state"]
    objective = view.objective
    best = view.best
    done, total = len(view.trials), console.planned_trials(settings)
    failed, _ = _ended_early(view.trials)
    # Room for "stopped (writer gone)" and "keras-tuner" untruncated; the round is one or two digits.
    c = st.columns([2.3, 1, 1.05, 0.55, 1.4])
    status = "stopped (writer gone)" if stopped else state["status"]
    c[0].metric("Status", status)
    c[1].metric(f"Best {objective.name} ({objective.direction})", "-" if best is None else review.fmt(best.score))
    # With an epoch budget the trial counts are only caps: the epochs end the run (the last metric).
    c[2].metric("Trials", f"{done}" if spend else f"{done} / {total}", delta=_ended_early_words(view.trials) or None,
                delta_color="inverse" if failed else "off",
                help=f"at most {total}: with fidelity.total the epochs end the run first" if spend else None)
    # Rounds are numbered from 0 everywhere (picker, headers, files, `refiner show`).
    c[3].metric("Round", f"{state['current_round']}", help=f"rounds are numbered 0 to {settings['rounds'] - 1}")
    if not spend:
        c[4].metric("Engine", settings.get("engine", "keras-tuner"))
    else:  # what such a run pays in; the engine is in the settings below and in each round's title
        c[4].metric("Epochs", f"{spend.spent} / {spend.total}",
                    help="epochs trained by every recorded trial (executions and retries included) against "
                         "fidelity.total; the run starts no trial once it would go past its share")
    if stopped:
        st.error(esc(f"This run is not running any more: {stopped}."))
    elif state["status"] in ACTIVE_STATUSES:
        live = ("this page re-reads it every few seconds" if st.session_state.get("live", True) else
                "live updates are off (sidebar), so this page shows it as it was when loaded")
        doing = "waits for your review" if state["status"] == "awaiting_review" else "is in progress"
        st.caption(f"The run {doing}; {live}.")
    if state["status"] == "awaiting_review" and not stopped:
        st.warning(f"Round {state['current_round']} waits for review: check its decisions below, save any "
                   f"overrides, then press 'Approve and continue' (or run 'refiner approve RUN_DIR').")
    elif state.get("message") and state["status"] != "awaiting_review":
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
            # A Markdown table, not st.dataframe: the summary is drawn before the pause in _page, and a
            # grid there makes the browser load its 1.2 MB of code before it shows the metrics above.
            st.markdown("| parameter | value |\n| --- | --- |\n" + "\n".join(
                f"| {esc(k)} | {esc(review.fmt(v))} |" for k, v in best.hyperparameters.items()))
    with right:
        st.markdown("**Settings**")
        st.caption(f"{esc(settings['target'])} ({esc(settings['mode'])}); engine {esc(settings.get('engine', 'keras-tuner'))}; "
                   f"{console.schedule_words(settings)}; review {esc(settings.get('review', 'off'))}; seed {esc(settings['seed'])}; "
                   f"started {esc(run['created_at'])}, last update {esc(run['updated_at'])}")
    return right


def _ended_early(trials: Sequence[Trial]) -> tuple[int, int]:
    """How many trials failed (no usable score), and how many a fidelity rung stopped (evidence, not failures)."""
    stopped = sum(1 for t in trials if t.status is TrialState.STOPPED)
    return sum(1 for t in trials if not t.ok) - stopped, stopped


def _ended_early_words(trials: Sequence[Trial]) -> str:
    """``"2 failed, 12 stopped early"``, or ``""`` when every trial completed."""
    failed, stopped = _ended_early(trials)
    return ", ".join(w for w in (f"{failed} failed" if failed else "", f"{stopped} stopped early" if stopped else "") if w)


def _epoch_spend(view: review.RunView) -> console.EpochSpend | None:
    return console.epoch_spend(view.run["settings"], {r.k: r.trials for r in view.rounds})


def _switches(view: review.RunView, column: Any) -> None:
    """The summary's details, on demand: all settings and versions, the latest events."""
    run, settings = view.run, view.run["settings"]
    with column:
        # Toggles, not expanders: an expander's content is drawn (hidden) on every load, and the
        # JSON viewer and the grid are among the heaviest parts of the page for the browser.
        if st.toggle("All settings and versions", key="settings-on"):
            st.json({"settings": settings, "versions": run["versions"]}, expanded=1)
        if st.toggle(f"Latest events ({len(view.events)})", key="events-on"):
            st.dataframe([{"time": e.get("time"), "event": e.get("event"),
                           "details": json.dumps({k: v for k, v in e.items() if k not in ("time", "event")})}
                          for e in reversed(view.events)], hide_index=True, key="events")


_ACROSS = ("Ranges", "Contour", "Parallel coordinates")


def _across_rounds(view: review.RunView) -> None:
    """How the ranges narrowed over the whole run: one table, and one chart at a time (picked)."""
    if not any(r.decisions for r in view.rounds):
        return
    st.subheader("Across rounds")
    # Toggles and one chart at a time: whatever is on the page, even hidden in a collapsed
    # expander, is drawn by the browser on every load (issue 14, defect 12).
    if st.toggle("Before → after, every round", key="before-after-on"):
        st.dataframe(review.before_after_frame(view.rounds), hide_index=True, key="before-after")
    first = next((r.space for r in view.rounds if r.space is not None), None)
    if first is None:
        return
    # None until picked: drawn on demand, like the per-parameter plots. Charts are the largest part
    # of the browser's work on a first load (three took 0.8 s of its main thread's 2.3 s, measured
    # in Chromium on a 200-trial run), and this one was drawn there by default.
    shown = st.radio("Chart", _ACROSS, index=None, key="across", horizontal=True, label_visibility="collapsed",
                     captions=["one parameter's range, round by round", "the two most important parameters",
                               "every trial of every round"])
    if shown is None:
        st.caption("Pick a chart above to draw it.")
    elif shown == "Ranges":
        tunable = [p.name for p in first.tunable()]
        if tunable:
            name = st.selectbox("Range of one parameter across all rounds", tunable, key="history-param")
            _chart(view, ("history", name), lambda: review.range_history_figure(name, view.rounds, view.objective),
                   key="history")
    elif shown == "Contour":
        latest = next((r for r in reversed(view.rounds) if r.surrogate), None)
        with_regions = next((r.space for r in reversed(view.rounds) if r.space is not None and r.space.regions), None)
        fig, note = _figure(str(view.root), view.signature, ("contour",), lambda: review.contour_figure(
            [*view.imported, *view.trials], first, latest.surrogate if latest else None, view.objective,
            regions=with_regions))
        if fig is None:
            st.info(esc(f"No contour: {note}"))
        else:
            st.plotly_chart(fig, key="contour")
            st.caption(esc(f"{note} Between and beyond the trials (white dots) the colours are interpolated, "
                           "not predicted: trust them only where dots are dense. Other parameters vary freely."))
    else:
        _chart(view, ("parcoords-all",), lambda: review.parallel_all_rounds_figure(view.trials, first, view.objective),
               key="parcoords-all-chart")


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
            data = _export_bytes(str(view.root), view.signature, fmt_name)
        except RefinerError as exc:
            col.warning(f"{label}: {esc(exc)}")
            continue
        col.download_button(label, data, icon=":material/download:",
                            file_name=review.export_filename(view.name, fmt_name),
                            mime="application/json" if fmt_name == "json" else "text/x-python",
                            key=f"export-{fmt_name}", on_click="ignore")
    st.caption("Exactly what `refiner export` writes, with any overrides of the last round applied.")
    # On demand: st.code loads a 1.5 MB syntax highlighter, about a tenth of the browser's work on load.
    if st.toggle("Preview the refined space (JSON)", key="export-preview"):
        try:
            st.code(_export_bytes(str(view.root), view.signature, "json").decode("utf-8"), language="json")
        except RefinerError as exc:
            st.warning(esc(exc))


# -- one round --------------------------------------------------------------------------------
def _round(view: review.RunView, r: review.RoundView, spend: console.EpochSpend | None) -> None:
    objective = view.objective
    ok = [t for t in r.trials if t.ok]
    best = best_trial(ok, objective)
    engine = view.run["settings"].get("engine", "keras-tuner")
    st.header(f"Round {r.k}: {review.round_label(engine, r.k)}", anchor=f"round-{r.k}")
    last = r.k == view.run["settings"]["rounds"] - 1
    st.caption(f"{len(r.trials)} trials ({_ended_early_words(r.trials) or '0 failed'}), best this round "
               f"{review.fmt(best.score if best else None)}. Its decisions turn its space into "
               + ("the refined space (this is the last round)." if last else f"round {r.k + 1}'s space."))
    by_round = {k: (spent, share) for k, spent, share in spend.rounds} if spend else {}
    if r.k in by_round:  # an epoch budget; a round folder beyond the settings' rounds has no share
        spent, share = by_round[r.k]
        st.caption(f"Epochs: {spent} trained in this round, whose share of fidelity.total = {spend.total} is {share}.")
    if r.surrogate:
        s = r.surrogate
        cv = "-" if s.get("cv_score") is None else f"{s['cv_score']:.2f}"
        st.caption(f"Surrogate: {esc(s.get('model') or 'none')}, cross-validated Spearman {esc(cv)} "
                   f"({'trusted' if s.get('trusted') else 'not trusted: ranges kept'}). {esc(s.get('note', ''))}")

    _decisions(view, r)
    _approval(view, r)

    st.subheader("Trials")
    frame = review.trials_frame(r.trials, r.space)
    # A big grid is heavy for the browser: shown at once only for a small round (or on demand).
    if st.toggle(f"Show the round's {len(frame)} trials", value=len(frame) <= TRIALS_SHOWN, key=f"trials-{r.k}-on"):
        st.dataframe(frame, hide_index=True, key=f"trials-{r.k}", height=min(420, 38 + 35 * max(len(frame), 1)),
                     column_config={"duration (s)": st.column_config.NumberColumn(format="%.3f")})
    st.download_button("Trials as CSV", data=frame.to_csv(index=False).encode("utf-8"),
                       file_name=f"{review.safe_stem(view.name)}_round{r.k}_trials.csv",
                       mime="text/csv", key=f"csv-{r.k}", on_click="ignore", icon=":material/download:")
    left, right = st.columns(2)
    with left:
        _chart(view, ("dist", r.k), lambda: review.score_distribution_chart(view.rounds, r.k, objective),
               key=f"dist-{r.k}")
    with right:
        if not _chart(view, ("importance", r.k), lambda: review.importance_chart(r.surrogate),
                      key=f"importance-{r.k}"):
            st.info("No importances yet: the surrogate is fitted when the round's trials have finished.")

    if any(t.curve for t in r.trials):  # a fidelity run: how the trials trained, and which ones stopped
        _chart(view, ("curves", r.k), lambda: review.learning_curves_chart(r, objective), key=f"curves-{r.k}")

    st.subheader("Per hyperparameter")
    if r.space is None:
        st.info("This round's space has not been written yet.")
    else:
        # One section per parameter, built only while it is open (see _parameter).
        sections = [_section_key(r.k, i) for i in range(len(r.space))]
        st.toggle("Open every parameter's section", key=f"plots-all-{r.k}", on_change=_open_all,
                  args=(f"plots-all-{r.k}", sections))
        trials_so_far = [*view.imported, *(t for t in view.trials if t.round <= r.k)]
        for i, p in enumerate(r.space):
            _parameter(view, r, i, p, trials_so_far)

    st.subheader("Parallel coordinates", anchor=f"parallel-{r.k}")
    if st.toggle("Show this round's parallel coordinates", key=f"parcoords-{r.k}-on"):
        if not _chart(view, ("parcoords", r.k), lambda: review.parallel_coordinates_figure(r.trials, r.space, objective),
                      key=f"parcoords-{r.k}"):
            st.info("No completed trial in this round yet.")


def _anchor(k: int, i: int) -> str:
    return f"r{k}-p{i}"  # an index, never the name: names may hold any character


def _approval(view: review.RunView, r: review.RoundView) -> None:
    """The gate: 'Approve and continue' while the run waits for this round's review."""
    approval = read_approval(view.store, r.k)
    if approval is not None:
        who = f" by {approval['user']}" if approval.get("user") else ""
        st.caption(esc(f"Approved ({approval['by']}{who}, {approval['approved_at']})"
                       + (f" with overrides of {', '.join(approval['overrides'])}." if approval.get("overrides") else ".")))
        return
    if view.run["settings"].get("review", "off") == "off" or r.decisions is None or r.next_started \
            or r.k == view.run["settings"]["rounds"] - 1:
        return
    with st.container(border=True):
        names = [o["name"] for o in (r.overrides or {}).get("overrides", [])]
        st.markdown(f"**Round {r.k} waits for review.** Round {r.k + 1} starts from the 'after' column above"
                    + (f" (your overrides of {esc(', '.join(names))} included)." if names else
                       " (refiner's proposals; edit a decision below to change one)."))
        if st.session_state.get("read_only"):
            st.caption("Read-only view: approve with 'refiner approve RUN_DIR' in a terminal.")
            return
        if st.button("Approve and continue", key=f"approve-{r.k}", type="primary", icon=":material/check:"):
            try:
                document = approve(view.store, r.k, by="app")
            except RefinerError as exc:
                st.error(esc(review.plain_message(str(exc))))
                return
            _flash(f"Approved round {r.k}: the run goes on to round {r.k + 1}" + (
                f" with your overrides of {', '.join(document['overrides'])}." if document.get("overrides") else "."))
            st.rerun()


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
    shown["reason"] = [review.md_message(reason) for reason in frame["reason"]]  # quoted names as code
    shown["parameter"] = [
        f"[{esc(n)}](#{_anchor(r.k, names.index(n))})" if n in names else esc(n) for n in frame["parameter"]]
    flags = list(frame["flag"])
    styled = shown.style.apply(
        lambda row: ["background-color: #fff3cd; color: #7a4a00" if flags[row.name] else "" for _ in row], axis=1)
    st.table(styled, hide_index=True)
    st.caption("Each parameter links to its section below. 'after' is what the next round searches "
               "(a person's override where there is one)." + (
                   " 'audit' is how the latest audit, with every trial since, judges what the cut removed: "
                   "safe, doubtful or wrong (re-opened: the next space took it back)." if frame["audit"].any() else ""))
    if r.overrides and r.overrides.get("overrides"):
        st.markdown("**Overrides saved for this round**")
        st.dataframe(review.overrides_frame(r.overrides), hide_index=True, key=f"overrides-{r.k}")


def _section_key(k: int, i: int) -> str:
    return f"param-{k}-{i}"


def _open_all(toggle: str, sections: list[str]) -> None:
    # Before the rerun builds the page: every section opens (or closes) with the switch.
    for key in sections:
        st.session_state[key] = st.session_state[toggle]


def _parameter(view: review.RunView, r: review.RoundView, i: int, p: Parameter, trials: list) -> None:
    """One parameter: its heading (the decision table's links point here), its decision in one line,
    and a section holding the decision's evidence, its two charts and the override controls.

    The section is a stateful expander (``on_change="rerun"``): while it is closed its content is
    neither built nor sent, so a closed parameter is three light elements instead of a bordered box
    of six to nine with two switches (an ordinary expander sends its content, and the browser builds
    it, hidden, on every load). Keyed, it stays open through a Save's rerun, like the "Review"
    switch inside it (issue 14, defect 1).
    """
    d = r.decision(p.name)
    evidence = d.get("evidence") if d else None
    flag = review.beyond_text(evidence)
    last = r.k == view.run["settings"]["rounds"] - 1
    st.subheader(f"{esc(p.name)}{' ⚠' if flag else ''}", anchor=_anchor(r.k, i))
    importance = (r.surrogate or {}).get("importances", {}).get(p.name)
    parts = [esc(f"{p.type_name}, searched {p.describe()}")]
    if d:
        parts.append(f"decision **{esc(review.action_text(d))}** → {esc(review.describe(d['after']))}")
    if importance is not None:
        parts.append(esc(f"importance {importance:.2f}"))
    st.markdown(" · ".join(parts))
    # The label is part of the section's identity in Streamlit: it must not change when a Save
    # changes the decision, or the open section would close (so the decision is in the line above).
    key = _section_key(r.k, i)
    remembered = st.session_state.setdefault("open_sections", set())
    mine = (view.name, key)  # per run: another run's parameter at the same index is another parameter
    if key not in st.session_state and mine in remembered:
        # Streamlit forgets a keyed element's state on a rerun that does not draw it (another round
        # picked): open again what the person left open when they come back.
        st.session_state[key] = True
    section = st.expander("Evidence, charts and review", key=key, on_change="rerun")
    (remembered.add if section.open else remembered.discard)(mine)
    if not section.open:
        return
    with section:
        if d:
            st.caption(review.md_message(d["reason"]))
        if flag:
            st.warning(esc(f"{flag} of {p.name} {p.describe()}"))
        for j in r.audit.get(p.name, []):
            show = st.error if j["verdict"] == "wrong" else st.warning if j["verdict"] == "doubtful" else st.caption
            show(review.md_message(f"Audit ({j['piece']} piece): {j['reason']}"))
        if d and "proposed" in d:
            o = d.get("override") or {}
            who = "rejected" if o.get("action") == "reject" else "edited"
            note = f" Note: {o['note']}" if o.get("note") else ""
            uses = "the refined space uses" if last else f"round {r.k + 1} uses"
            st.info(esc(f"A person {who} this decision: refiner proposed {review.describe(d['proposed'])}, "
                        f"{uses} {review.describe(d['after'])}.{note}"))
        if isinstance(p, Fixed):
            st.caption(f"Fixed at {esc(review.fmt(p.value))}: nothing to plot.")
        else:
            left, right = st.columns(2)
            with left:
                _chart(view, ("scatter", r.k, i), lambda: review.param_scatter_figure(p, trials, view.objective, d, r.k),
                       key=f"scatter-{r.k}-{i}")
            with right:
                if not _chart(view, ("pd", r.k, i), lambda: review.partial_dependence_figure(p, r.surrogate, d),
                              key=f"pd-{r.k}-{i}"):
                    note = (r.surrogate or {}).get("note") or "no surrogate for this round yet."
                    st.info("No partial dependence: " + esc(note))
        if d:
            _override(view, r, i, p, d)


# -- overrides --------------------------------------------------------------------------------
_ACTIONS = ("keep", "reject", "edit", "json")


def _declared(view: review.RunView, name: str) -> Parameter | None:
    space = view.rounds[0].space if view.rounds else None
    return next((q for q in space if q.name == name), None) if space is not None else None


def _override(view: review.RunView, r: review.RoundView, i: int, p: Parameter, d: Mapping[str, Any]) -> None:
    """Reject or edit this decision; validated and written by refiner.overrides.write_overrides."""
    existing = next((o for o in (r.overrides or {}).get("overrides", []) if o["name"] == p.name), None)
    last = r.k == view.run["settings"]["rounds"] - 1
    target = "the exported refined space" if last else f"round {r.k + 1}"
    key = f"ov-{view.name}-{r.k}-{i}"
    if st.session_state.get("read_only"):
        return
    if r.next_started:
        st.caption(f"Round {r.k + 1} has already started with this space, so an override of round {r.k} "
                   f"can no longer change it.")
        return
    # A keyed toggle, not an expander: its state survives a save's rerun (issue 14, defect 1).
    if not st.toggle("Review: reject or edit this decision", value=existing is not None, key=f"{key}-open"):
        return
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
    problems: list[str] = []
    declared = _declared(view, p.name)
    beyond = False
    if action in ("edit", "json") and isinstance(declared, (Float, Int)):
        beyond = st.checkbox(f"go beyond the declared range {declared.describe()}", key=f"{key}-beyond")
    if action == "edit":
        assert base is not None
        edited, problems = _edit_fields(key, before, base, declared, beyond)
    elif action == "json":
        text = st.text_area("Parameter (JSON)", value=json.dumps(d["after"], indent=1), key=f"{key}-json",
                            height=140)
        try:
            edited = json.loads(text)
            problems = review.check_json_edit(declared, edited, beyond)
        except json.JSONDecodeError as exc:
            problems = [f"{p.name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]
    note = st.text_input("Note (why)", value=(existing or {}).get("note", ""), key=f"{key}-note", max_chars=2000)
    if st.button("Save", key=f"{key}-save", type="primary"):
        if problems:
            for line in problems:
                st.error(esc(f"Not saved: {review.plain_message(line)}"))
            return
        entry = None if action == "keep" else review.build_override(
            p.name, "reject" if action == "reject" else "edit", edited, note)
        overrides = review.merge_overrides(r.overrides, entry, p.name)
        try:
            write_overrides(view.store, r.k, overrides)
        except ValidationError as exc:
            names = [o["name"] for o in overrides]
            for line in exc.problems:
                st.error(esc(f"Not saved: {review.plain_message(line, names)}"))
            return
        except RefinerError as exc:
            st.error(esc(f"Not saved: {review.plain_message(str(exc))}"))
            return
        running = holder(view.store.root)  # a run going on applies it when it builds the next round
        _flash(f"Saved: {p.name} " + (
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


def _edit_fields(key: str, before: Parameter, base: Parameter, declared: Parameter | None,
                 beyond: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """Inputs for a new range (numbers) or value set (choices), seeded with ``base``."""
    doc = base.to_dict()
    if isinstance(base, (Float, Int)):
        # Text fields, checked here: a number field would round "0.001" to 0 for an int silently.
        c1, c2 = st.columns(2)
        low = c1.text_input("low", value=review.fmt(base.low) if isinstance(base, Float) else str(base.low),
                            key=f"{key}-low")
        high = c2.text_input("high", value=review.fmt(base.high) if isinstance(base, Float) else str(base.high),
                             key=f"{key}-high")
        return review.check_edit(declared, base, low, high, beyond)
    options = list(dict.fromkeys([*discrete_values(before), *discrete_values(base)]))
    chosen = st.multiselect("values", options, default=discrete_values(base), key=f"{key}-values", format_func=review.fmt)
    if not chosen:
        return None, [f"{base.name}: choose at least one value"]
    if isinstance(base, Boolean) and len(chosen) == 2:
        return doc, []
    values = [v for v in options if v in chosen]  # the searched order matters for ordered choices
    new: dict[str, Any] = {"name": base.name, "type": "choice", "values": values}
    if getattr(base, "ordered", False):
        new["ordered"] = True
    if "conditions" in doc:
        new["conditions"] = doc["conditions"]
    return new, []


if __name__ == "__main__":  # `streamlit run refiner/review/page.py` (what `refiner app` does)
    main()
