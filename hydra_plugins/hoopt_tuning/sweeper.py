"""``TuningSweeper``: a Hydra sweeper that runs Optuna studies through the configured launcher.

Each trial is one ``hoopt-train`` job in the sweep dir (``<num>_<overrides>``, the number being the trial's);
its objective is what the job returns, or, when it returns nothing, ``objective_value`` read back from its run
dir (runner/training/objective.py). Trials are asked ``n_jobs`` at a time and launched together, so the joblib
launcher runs them in parallel and submitit as one array job.

Studies live in a real database (SQLite in the sweep dir unless ``storage`` names another RDB URL):

- a study continues where it stopped: rerunning the same command with the same ``hydra.sweep.dir`` loads it, and
  it runs until ``n_trials`` trials are complete (trials that failed to finish do not count);
- every running trial has a heartbeat; a trial whose process was killed goes stale after ``grace_period`` seconds,
  is marked failed, and is queued again (``retries`` times) to continue in its own run dir from its checkpoint;
  Ctrl-C queues the running trials at once;
- parallel workers (several ``hoopt-train -m`` processes, SLURM jobs) share a study through the same storage.

CMA-ES sizes its population to the budget (``generations``, _study.population): a study of fewer trials than
``generations`` x ``sampler.popsize`` evolves ``n_trials // generations`` individuals per generation (at least 4).

Several studies in one command: a sweep over a config group (``optimizer=adam,sgd``) gives one study per choice,
because each optimizer has its own search space (``spaces.<group>.<choice>``, added to ``params``).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import warnings
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hoopt.runner.errors import HooptError

from ._space import Param, lookup, mark_list_elements, override_key, parse_param, point_overrides
from ._study import (SAMPLERS, STUDY_FILE, TUNING_FILE, Heartbeat, Job, StudyPlan, best_of,
                     consecutive, grid_sampler_class, plain, population, requeue, shown_url, whole)


class TuningSweeper(Sweeper):
    def __init__(self, sampler=None, n_trials=None, n_jobs=1, storage=None, study_name=None, heartbeat_interval=10,
                 grace_period=None, retries=2, digits=4, params=None, spaces=None, generations=None):
        super().__init__()
        self.sampler = dict(plain(sampler) or {"name": "tpe"})
        self.n_trials = plain(n_trials)
        self.n_jobs = plain(n_jobs)
        self.storage = plain(storage)
        self.study_name = plain(study_name)
        self.heartbeat_interval = plain(heartbeat_interval)
        self.grace_period = plain(grace_period)
        self.retries = plain(retries)
        self.digits = plain(digits)
        self.params = dict(plain(params) or {})
        self.spaces = dict(plain(spaces) or {})
        self.generations = plain(generations)
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self._sweep(list(arguments))
        except HooptError as error:  # Hydra would print a traceback; hoopt's errors are one sentence and exit 2
            print(f"hoopt: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    # -- the plan ---------------------------------------------------------------------------------------------------

    def _check_settings(self) -> None:
        name = self.sampler.get("name")
        if name not in SAMPLERS:
            raise HooptError(f"hydra.sweeper.sampler.name={name} is not a sampler hoopt's sweeper knows; give one of: "
                             f"{', '.join(SAMPLERS)}.")
        whole("n_trials", self.n_trials, 1, allow_none=True)
        whole("n_jobs", self.n_jobs, 1)
        whole("heartbeat_interval", self.heartbeat_interval, 1)
        whole("grace_period", self.grace_period, 1, allow_none=True)
        whole("retries", self.retries, 0)
        whole("digits", self.digits, 1, allow_none=True)
        whole("generations", self.generations, 1, allow_none=True)
        if name == "cmaes":
            whole("sampler.popsize", self.sampler.get("popsize"), 2, allow_none=True)
        if self.storage is not None and not isinstance(self.storage, str):
            raise HooptError(f"hydra.sweeper.storage={self.storage} is not a database URL; give one such as "
                             f"sqlite:///study.db, or null for study.db in the sweep dir.")
        if self.n_trials is None and name != "grid":
            raise HooptError(f"the {name} sampler needs a number of trials; set hydra.sweeper.n_trials (e.g. "
                             f"hydra.sweeper.n_trials=100).")

    def _is_group(self, key: str) -> bool:
        try:
            return bool(self.hydra_context.config_loader.get_group_options(key.lstrip("+~")))
        except Exception:
            return False

    def _plan(self, arguments: list[str]) -> tuple[list[str], list[StudyPlan]]:
        """The overrides every trial gets, and one study per combination of the swept group choices."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = [f"{k}={v}" for k, v in self.params.items()] + arguments
        by_key: dict[str, Any] = {}
        for override in parser.parse_overrides(given):  # the command line beats the config's params, key by key
            by_key[override.key_or_group] = override
        fixed, outer_dims, common = [], [], {}
        for key, override in by_key.items():
            if key == "resume":  # the sweeper itself continues the trials a killed study left (see the docstring)
                continue
            if not override.is_sweep_override():
                fixed.append(override.input_line
                             or f"{override.get_key_element()}={override.get_value_element_as_str()}")
            elif self._is_group(key):
                outer_dims.append([f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()])
            elif key == "seed":
                raise HooptError("a tuning study scores each point with one seed, so seed cannot be swept; give "
                                 "seed=<one value> (hoopt-report --best-by writes the command for the final seeds).")
            else:
                common[key] = parse_param(override)
        choices_now = self.config.hydra.runtime.choices
        plans = []
        for combo in itertools.product(*outer_dims):
            chosen = {item.split("=", 1)[0].lstrip("+"): item.split("=", 1)[1] for item in combo}
            params: dict[str, Param] = {}
            for group, options in self.spaces.items():
                choice = chosen.get(group, choices_now.get(group))
                if not isinstance(options, dict) or choice not in options:
                    known = ", ".join(sorted(options)) if isinstance(options, dict) else "none"
                    raise HooptError(f"hydra.sweeper.spaces.{group} has no search space for {group}={choice}; add "
                                     f"hydra.sweeper.spaces.{group}.{choice}, or choose one of: {known}.")
                for name, spec in (options[choice] or {}).items():
                    params[name] = parse_param(parser.parse_overrides([f"{name}={spec}"])[0])
            params.update(common)
            config = self._study_config([*fixed, *combo])
            plan_params = list(params.values())
            mark_list_elements(plan_params, config)
            # A value given on the command line pins that key: it leaves the search (optimizer.betas=[...] pins
            # both betas).
            pinned = {item.split("=", 1)[0].lstrip("+~") for item in fixed}
            plan_params = [p for p in plan_params
                           if p.name not in pinned and not (p.list_element and override_key(p.name) in pinned)]
            if not plan_params:
                raise HooptError("there is nothing to search; give hydra.sweeper.params or a sweep such as "
                                 "'optimizer.lr=tag(log, interval(1e-4, 1))'.")
            for param in plan_params:
                if not param.key.startswith("+"):
                    try:
                        lookup(config, param.name)
                    except KeyError:
                        whose = f" of {', '.join(combo)}" if combo else ""
                        raise HooptError(f"{param.name} is not a key of the config{whose}, so it cannot be searched; "
                                         f"check the spelling, or add it with +{param.name}=... if it is an entry of a "
                                         f"free-form mapping.") from None
            label = ",".join(combo)
            base = self.study_name or "hoopt"
            plans.append(StudyPlan(f"{base} {label}" if label else base, list(combo), plan_params, config))
        return fixed, plans

    def _study_config(self, overrides: list[str]) -> dict:
        """The task config a study's trials start from (before the searched values), resolved."""
        composed = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        task = {k: composed[k] for k in composed if k != "hydra"}
        try:
            return OmegaConf.to_container(OmegaConf.create(task), resolve=True)
        except Exception:
            return OmegaConf.to_container(OmegaConf.create(task), resolve=False)

    def _target_trials(self, plan: StudyPlan) -> int:
        if self.sampler.get("name") != "grid":
            return int(self.n_trials)
        size = math.prod(len(p.grid_values()) for p in plan.params)
        if self.n_trials is not None and self.n_trials < size:
            return int(self.n_trials)
        if self.n_trials is not None and self.n_trials > size:
            print(f"hoopt: the grid of study '{plan.name}' has {size} points, so it runs {size} trials, not "
                  f"{self.n_trials}.", flush=True)
        return size

    # -- Optuna ---------------------------------------------------------------------------------------------------

    def _storage(self, url: str):
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None  # workers wait for the lock
        try:
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=int(self.heartbeat_interval),
                              grace_period=self.grace_period,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=self.retries))
        except Exception as error:
            raise HooptError(f"the study storage {shown_url(url)} cannot be opened ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}); give an RDB URL such as "
                             f"sqlite:///<path>.db or postgresql://<user>@<host>/<db> in "
                             f"hydra.sweeper.storage.") from None

    def _sampler(self, plan: StudyPlan, target: int | None = None):
        import optuna

        options = {k: v for k, v in self.sampler.items() if k != "name"}
        if self.sampler["name"] == "cmaes" and target is not None:
            options["popsize"] = population(options.get("popsize"), target, self.generations)
        name = self.sampler["name"]
        if name == "grid":
            cls = grid_sampler_class()
            options["search_space"] = {p.search_name: p.grid_values() for p in plan.params}
        elif name == "cmaes":
            cls = optuna.samplers.CmaEsSampler
            options.setdefault("warn_independent_sampling", False)
        elif name == "tpe":
            cls = optuna.samplers.TPESampler
        else:
            cls = optuna.samplers.RandomSampler
        try:
            return cls(**options)
        except TypeError as error:
            raise HooptError(f"hydra.sweeper.sampler has an option the {name} sampler does not take ({error}); "
                             f"docs/tuning.md lists each sampler's options.") from None

    def _sweep(self, arguments: list[str]) -> dict:
        try:
            import optuna
        except ImportError:
            raise HooptError("hoopt's tuning sweeper needs Optuna; install it with: pip install optuna "
                             "cmaes.") from None
        from hoopt.runner.training.objective import tune_settings

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self._check_settings()
        settings = tune_settings(self.config)
        fixed, plans = self._plan(arguments)
        targets = {plan.name: self._target_trials(plan) for plan in plans}
        sweep_dir = os.path.abspath(str(self.config.hydra.sweep.dir))
        os.makedirs(sweep_dir, exist_ok=True)
        OmegaConf.save(self.config, os.path.join(sweep_dir, "multirun.yaml"))
        url = self.storage or f"sqlite:///{os.path.join(sweep_dir, STUDY_FILE)}"
        self._write_tuning_file(sweep_dir, url, settings, plans)
        storage = self._storage(url)
        best = {}
        for plan in plans:
            best[plan.name] = self._run_study(plan, fixed, storage, url, settings, targets[plan.name])
        print(f"hoopt: tuning done; the chosen values and the command for the final seeds: hoopt-report --best-by "
              f"{settings.metric} {sweep_dir}", flush=True)
        return best

    def _write_tuning_file(self, sweep_dir: str, url: str, settings, plans: list[StudyPlan]) -> None:
        path = os.path.join(sweep_dir, TUNING_FILE)
        studies = {}
        if os.path.exists(path):  # a study run earlier into this sweep dir with other group choices stays listed
            earlier = OmegaConf.to_container(OmegaConf.load(path))
            studies = {s["study"]: s for s in earlier.get("studies", []) if isinstance(s, dict) and "study" in s}
        for plan in plans:
            studies[plan.name] = {"study": plan.name, "outer": plan.outer,
                                  "params": [p.describe() for p in plan.params]}
        record = {"storage": shown_url(url), "sampler": self.sampler, "n_trials": self.n_trials,
                  "generations": self.generations,
                  "objective": {"metric": settings.metric, "mode": settings.mode, "reduce": settings.reduce,
                                "fraction": settings.fraction},
                  "studies": list(studies.values())}
        OmegaConf.save(OmegaConf.create(record), path)

    def _run_study(self, plan: StudyPlan, fixed: list[str], storage, url: str, settings, target: int) -> dict:
        import optuna
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        direction = "minimize" if settings.mode == "min" else "maximize"
        try:
            study = optuna.create_study(storage=storage, sampler=self._sampler(plan, target), study_name=plan.name,
                                        direction=direction, load_if_exists=True)
        except ValueError as error:
            raise HooptError(f"the study '{plan.name}' in {shown_url(url)} cannot be continued ({error}); choose "
                             f"another hydra.sweep.dir or hydra.sweeper.study_name.") from None
        if study.direction.name.lower() != direction:
            raise HooptError(f"the study '{plan.name}' in {shown_url(url)} was started to "
                             f"{study.direction.name.lower()} its objective, not to {direction} it; keep tune.mode as "
                             f"it was, or choose another hydra.sweep.dir.")
        distributions = {p.search_name: p.distribution() for p in plan.params}
        done = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
        popsize = population(self.sampler.get("popsize"), target, self.generations)
        each = f", {popsize} per generation" if self.sampler["name"] == "cmaes" and popsize else ""
        if each and popsize < (self.sampler.get("popsize") or 0):
            print(f"hoopt: {target} trials are fewer than {self.generations} generations of "
                  f"{self.sampler['popsize']}, so study '{plan.name}' evolves {popsize} individuals per generation "
                  f"(hydra.sweeper.generations=null keeps {self.sampler['popsize']}).", flush=True)
        print(f"hoopt: study '{plan.name}' ({self.sampler['name']}{each}, {settings.mode} {settings.metric} "
              f"({settings.reduce})): {done} of {target} trials complete; study in {shown_url(url)}; searching "
              f"{', '.join(f'{p.name}={p.spec}' for p in plan.params)}", flush=True)
        waiting = False
        while True:
            fail_stale_trials(study)  # killed trials: failed, and queued again by the storage's retry callback
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if done >= target:
                break
            room = target - done - running
            if room <= 0:  # the rest are running elsewhere, or were left running by a killed process
                if not waiting:
                    grace = self.grace_period or 2 * self.heartbeat_interval
                    print(f"hoopt: waiting for {running} running trial(s) of study '{plan.name}': another worker's, "
                          f"or a killed process's, which go back to the queue once their heartbeat is {grace} s old.",
                          flush=True)
                    waiting = True
                time.sleep(min(5.0, float(self.heartbeat_interval)))
                continue
            waiting = False
            with warnings.catch_warnings():  # Optuna expects heartbeats from Study.optimize; ours come from Heartbeat
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                asked = [study.ask(distributions) for _ in range(min(int(self.n_jobs), room))]
            self._evaluate(study, storage, asked, plan, fixed, settings)
        return best_of(study, plan)

    def _evaluate(self, study, storage, asked: list, plan: StudyPlan, fixed: list[str], settings) -> None:
        jobs = []
        for trial in asked:
            values = {p.name: p.value(trial.params[p.search_name], self.digits) for p in plan.params}
            point = point_overrides(plan.params, values, plan.config)
            number = trial.user_attrs.get("job_num")  # set when this trial continues a killed one: same dir
            resumed = number is not None
            overrides = [*fixed, *plan.outer, *point] + (["resume=true"] if resumed else [])
            if number is None:
                number = trial.number
                trial.set_user_attr("job_num", number)
            trial.set_user_attr("overrides", point)
            jobs.append(Job(trial, int(number), overrides, point, resumed=resumed))
        pending = {job.trial.number: job.trial for job in jobs}
        heartbeat = Heartbeat(storage, [t._trial_id for t in asked], int(self.heartbeat_interval))
        try:
            for group in consecutive(sorted(jobs, key=lambda j: j.number)):
                batch = [job.overrides for job in group]
                self.validate_batch_is_legal(batch)
                returns = self.launcher.launch(batch, initial_job_idx=group[0].number)
                for job, result in zip(group, returns):
                    self._tell(study, job, result, settings)
                    pending.pop(job.trial.number)
        except BaseException:  # Ctrl-C, a kill signal turned into an exception, a launcher error, a wrong metric
            for trial in pending.values():
                requeue(study, trial, self.retries)
            raise
        finally:
            heartbeat.stop()

    def _tell(self, study, job: Job, result, settings) -> None:
        from hydra.core.utils import JobStatus

        from hoopt.runner.training.objective import missing_metric, objective_value

        run_dir = None
        if result.hydra_cfg is not None:
            run_dir = str(OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir"))
        returned = getattr(result, "_return_value", None)
        if result.status == JobStatus.FAILED:
            text = str(returned).splitlines()[0] if str(returned) else ""
            print(f"hoopt: trial {job.trial.number} failed ({type(returned).__name__}: {text}); it ranks last.",
                  file=sys.stderr, flush=True)
            value, source = settings.worst, "failed"
        elif isinstance(returned, (int, float)) and not isinstance(returned, bool):
            value, source = float(returned), "returned"
        else:  # a task function that returns nothing: the run dir says how the run went
            value = objective_value(result.cfg, run_dir, None) if run_dir else settings.worst
            source = "run_dir"
        if math.isnan(value):
            value = settings.worst
        job.trial.set_user_attr("objective_from", source)  # returned by the job, read from its run dir, or failed
        if run_dir:
            job.trial.set_user_attr("run_dir", run_dir)
        study.tell(job.trial, value)
        if value == settings.worst and run_dir and result.cfg is not None:
            problem = missing_metric(result.cfg, run_dir)
            if problem:
                raise HooptError(problem)
        try:
            best = study.best_trial
            best_text = f"best {best.value:.4g} at trial {best.number}"
        except ValueError:
            best_text = "no best yet"
        again = f" (continues the killed trial of job {job.number})" if job.resumed else ""
        print(f"hoopt: trial {job.trial.number}{again} -> {value:.4g} ({best_text}): {' '.join(job.point)}",
              flush=True)

