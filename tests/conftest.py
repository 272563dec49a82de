"""Shared test set-up: quiet TensorFlow, a throw-away PostgreSQL server, the order in which pytest-xdist
hands tests to its workers. Engine tests build rounds with ``engine_kit.round_spec``."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tmp_path on a RAM disk where the machine has one: every record a run writes is fsync'ed and each
# Optuna study is an SQLite file committed per call, which on a busy disk cost the browser test's
# 200-trial run 47 s of its 170. Set PYTEST_DEBUG_TEMPROOT (pytest's own) to put them elsewhere.
if "PYTEST_DEBUG_TEMPROOT" not in os.environ and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    os.environ["PYTEST_DEBUG_TEMPROOT"] = "/dev/shm"

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _refiner_logger_restored():
    """Leave the ``refiner`` logger as each test found it. ``refiner.cli.main`` points it at the
    ``sys.stderr`` of the moment, which under capsys is a stream closed after that test: a later test
    in the same process (pytest-xdist changes which ones share a process) then logged 1667 lines of
    "--- Logging error ---" into the stderr it checks."""
    logger = logging.getLogger("refiner")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL URL: ``REFINER_TEST_POSTGRES`` (``.ci/run`` starts one), else a server this
    session starts with the project's own ``scripts/throwaway-postgres`` and stops at the end."""
    url = os.environ.get("REFINER_TEST_POSTGRES")
    if url:
        yield url
        return
    datadir = tempfile.mkdtemp(prefix="refiner-test-pg-", dir="/tmp")  # the server user must reach it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = subprocess.run([str(ROOT / "scripts" / "throwaway-postgres"), "start", datadir, str(port)],
                             capture_output=True, text=True)
    assert started.returncode == 0, f"could not start PostgreSQL (apt-get install postgresql): {started.stderr}"
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(ROOT / "scripts" / "throwaway-postgres"), "stop", datadir], check=False)


# -- pytest-xdist (`-n 2 --dist loadgroup --no-loadscope-reorder`, the default: pyproject.toml) ----------
# Workers take tests one at a time from a queue in collection order, so the longest go first: a worker
# that picked up a five-minute test last would hold the whole suite up. Seconds measured one at a time
# on a loaded 2-core machine; a test not listed counts 20 s when marked slow, else 1 s. (The tests that
# start `refiner` processes through tests/cli_processes.py no longer pay TensorFlow's import each time.)
EXPECTED_S = {
    "test_crash_resume.py::test_sigkill_at_random_checkpoints_loses_nothing_and_reproduces_the_run": 70,
    "test_scaleout_kills.py::test_sigkill_workers_and_coordinator_at_every_phase_on_postgres_and_resume": 140,
    "test_app_browser.py::test_a_200_trial_8_parameter_run_loads_fast_in_the_browser": 150,
    "test_crash_resume.py::test_sigkill_a_keras_hypermodel_run_loses_and_duplicates_no_trial": 35,
    "test_fail_fast.py::test_a_misspelled_objective_stops_after_one_model_with_exit_2_and_the_logged_metrics": 20,
    "test_bad_run_input.py::test_resume_with_invalid_overrides_exits_2_and_modifies_nothing": 15,
    "test_concurrent_reads.py::test_the_review_apps_loader_never_sees_a_partial_file": 20,
    "test_tuner_calls.py::test_a_kerastuner_script_runs_on_refiner_with_only_the_constructor_changed": 62,
    "test_bad_run_input.py::test_refiner_run_and_validate_subprocesses_exit_2_without_a_traceback": 58,
    "test_concurrent_reads.py::test_polling_reader_never_sees_a_partial_file": 20,
    "test_scaleout.py::test_workers_of_a_sigkilled_coordinator_finish_its_round_stop_with_one_line_and_a_resume_completes": 40,
    "test_crash_resume.py::test_sigterm_stops_cleanly_and_says_how_to_resume": 25,
    "test_scaleout.py::test_workers_join_a_run_on_the_default_sqlite_storage": 25,
    "test_warm_start.py::test_refiner_run_warm_starts_from_the_earlier_runs_refined_space": 44,
    "test_app_browser.py::test_a_person_edits_a_decision_and_approves_a_waiting_run_in_the_browser": 43,
    "test_disk_faults.py::test_a_real_full_tmpfs_mid_run_exits_2_naming_the_file_and_a_read_only_one_refuses_writers_not_readers": 10,
    "test_gate.py::test_an_approval_given_while_no_run_is_going_is_recorded_and_the_resume_goes_on": 12,
    "test_bench.py::test_smoke_writes_the_documented_json": 40,
    "test_bench.py::test_the_keras_suite_runs_real_models_at_hyperbands_epochs_and_resumes": 70,
    "test_gate.py::test_killed_while_waiting_the_run_is_seen_stopped_and_resumes_waiting": 12,
    "test_loop.py::test_two_round_keras_run_on_a_tiny_model": 38,
    "test_scaleout.py::test_coordinator_and_three_workers_on_postgres_survive_a_killed_worker": 45,
    "test_scaleout.py::test_workers_on_postgres_keep_to_the_epoch_budget_and_stop_claiming_once_the_share_is_spent": 25,
    "test_fidelity.py::test_workers_of_a_fidelity_run_call_the_function_with_its_budget_and_stop_lagging_trials": 38,
    "test_bench.py::test_reuse_runs_only_refiner_again_and_keeps_the_competitors_runs": 36,
    "test_lock.py::test_a_lock_left_by_a_sigkilled_run_is_taken_over_and_the_run_completes": 12,
    "test_fidelity.py::test_a_run_killed_inside_a_trial_that_passed_a_rung_resumes_with_nothing_lost": 12,
    "test_lock.py::test_a_second_refiner_run_on_the_same_folder_exits_2_naming_the_holder_and_leaves_the_run_intact": 12,
    "test_loop.py::test_same_seed_same_run": 31,
    "test_fidelity.py::test_keras_trials_train_epoch_by_epoch_and_lagging_ones_stop": 30,
    "test_loop.py::test_resume_after_an_interrupted_round_loses_nothing_and_runs_nothing_twice": 28,
    "test_tuner_calls.py::test_search_from_python_shows_a_line_per_trial_and_round_without_logging_set_up": 27,
    "test_check.py::test_a_sound_run_has_no_problems_even_while_a_writer_holds_its_lock": 23,
}


def _expected_s(item: pytest.Item) -> float:
    name = item.nodeid.split("[")[0]
    name = name[name.rfind("/") + 1:]
    return EXPECTED_S.get(name, 20.0 if item.get_closest_marker("slow") else 1.0)


def _module_fixture_user(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(d.scope in ("module", "package", "class") for defs in info.name2fixturedefs.values()
                                    for d in defs)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist only: the tests of a module that share a module-scoped fixture (a run built once,
    a Streamlit server) stay together on one worker, which builds it once; the units go longest first
    (a worker that picked up a five-minute test last would hold the whole suite up). A plain
    `pytest -n 0` or `-p no:xdist` keeps pytest's own order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    cost: dict[str, float] = {}
    unit: dict[int, str] = {}
    for item in items:
        key = item.nodeid
        if _module_fixture_user(item):
            key = item.nodeid.split("::")[0]  # one unit per module
            item.add_marker(pytest.mark.xdist_group(key.replace("/", "_")))
        unit[id(item)] = key
        cost[key] = cost.get(key, 0.0) + _expected_s(item)
    items.sort(key=lambda item: -cost[unit[id(item)]])  # stable: a unit's tests keep their order
