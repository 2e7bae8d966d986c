"""The machinery of hoopt's tuning sweeper (sweeper.py): what a study is, its jobs, heartbeats and small helpers.

Hydra imports every public module of ``hydra_plugins`` on its own terms (a fresh module object, registered in
``sys.modules`` only after it ran), which dataclasses cannot live with; modules whose names start with ``_`` are
left to Python's ordinary import, so everything but the plugin class lives here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hoopt.runner.errors import HooptError

from ._space import Param

SAMPLERS = ("grid", "cmaes", "tpe", "random")
TUNING_FILE = "tuning.yaml"  # what hoopt-report --best-by reads back: the studies, their parameters, the objective
STUDY_FILE = "study.db"
# The smallest CMA-ES population hoopt sizes a study to: 4 individuals keep 2 parents per generation.
MIN_POPULATION = 4


@dataclass
class StudyPlan:
    name: str  # the study's name in the storage
    outer: list[str]  # the group choices that make this study (``optimizer=adam``); empty for a lone study
    params: list[Param]
    config: dict  # the study's task config, resolved: the other elements of a searched list


@dataclass
class Job:
    trial: Any  # optuna.trial.Trial
    number: int  # the job's folder number: the trial's, or the killed trial's it continues
    overrides: list[str]
    point: list[str] = field(default_factory=list)  # the searched values as overrides
    resumed: bool = False  # continues a killed trial in its run dir (resume=true)


def plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def whole(key: str, value, minimum: int, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HooptError(f"hydra.sweeper.{key}={value} is not a whole number >= {minimum}"
                         f"{' (or null)' if allow_none else ''}; e.g. hydra.sweeper.{key}={max(minimum, 1)}.")
    return value


def population(popsize: int | None, n_trials: int, generations: int | None) -> int | None:
    """CMA-ES's individuals per generation for a study of ``n_trials`` trials.

    ``popsize`` is the population of a study with the budget for ``generations`` generations of it (the LODO paper's
    10 x 32). A smaller budget gets a smaller population, ``n_trials // generations`` (at least MIN_POPULATION, at
    most ``popsize``), so it still evolves over about ``generations`` generations: with the whole budget in one
    generation, CMA-ES is a random sample around the centre of the space. ``generations=None`` keeps ``popsize`` as
    given (None: Optuna's default, 4 + 3 ln(dimensions)). A resumed study goes on with the population it started
    with (Optuna keeps the evolution strategy's state in the study).
    """
    if popsize is None or generations is None:
        return popsize
    return min(int(popsize), max(MIN_POPULATION, int(n_trials) // int(generations)))


def consecutive(jobs: list[Job]) -> list[list[Job]]:
    """Jobs in runs of consecutive folder numbers: a launcher numbers one batch's jobs from its first index."""
    groups: list[list[Job]] = []
    for job in jobs:
        if groups and job.number == groups[-1][-1].number + 1:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def requeue(study, trial, retries: int) -> None:
    """A trial stopped before it finished: failed, and queued again to continue in its own run dir."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    try:
        study.tell(trial, state=TrialState.FAIL)
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        RetryHeartbeatStaleTrialCallback(max_retry=retries)(study, frozen)
    except Exception:  # the process is going down; a trial left running is retried once it goes stale
        pass


def best_of(study, plan: StudyPlan) -> dict:
    try:
        trial = study.best_trial
    except ValueError:
        return {"study": plan.name, "value": None}
    summary = {"study": plan.name, "value": trial.value, "trial": trial.number,
               "overrides": trial.user_attrs.get("overrides"), "run_dir": trial.user_attrs.get("run_dir")}
    print(f"hoopt: study '{plan.name}': best {trial.value:.4g} at trial {trial.number} "
          f"({' '.join(summary['overrides'] or [])}) in {summary['run_dir']}", flush=True)
    return summary


def shown_url(url: str) -> str:
    """The storage URL without its password (it goes into tuning.yaml and onto the terminal)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def grid_sampler_class():
    from optuna.samplers import GridSampler

    class StudyGridSampler(GridSampler):
        """Optuna's grid sampler, except that it never calls ``Study.stop``, which works only inside
        ``Study.optimize``; the sweeper stops by itself once every grid point has a complete trial."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return StudyGridSampler


class Heartbeat:
    """Records the heartbeat of the trials being run, so that a killed sweep's trials are recognised as stale."""

    def __init__(self, storage, trial_ids: list[int], interval: int):
        self._storage, self._ids, self._interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._beat()  # at once: a trial that never had a heartbeat is never taken for stale
        self._thread = threading.Thread(target=self._loop, name="hoopt-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        for trial_id in self._ids:
            try:
                self._storage.record_heartbeat(trial_id)
            except Exception:  # a busy database: the next beat comes within the interval
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
