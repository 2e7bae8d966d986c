"""hoopt's Hydra sweeper over current Optuna (``hydra/sweeper=tune_cmaes``, ``tune_tpe``, ``tune_grid``).

Hydra instantiates sweepers only from the ``hydra_plugins`` namespace package, so the plugin lives here, beside
the ``hoopt`` package, and pyproject.toml installs both. Hydra's own Optuna sweeper (hydra-optuna-sweeper 1.3)
pins optuna < 3, which does not install with our stack. docs/tuning.md describes the sweeper.

Hydra imports every module of ``hydra_plugins`` whenever any Hydra app starts, so these modules import Optuna and
hoopt only inside the functions that need them.
"""
