"""``mlflow``: track a training run with MLflow (``pip install 'det-sdk[mlflow]'``).

What goes to the run: the resolved recipe as params (``train.optimizer.lr``
...), every loss term and ``lr`` at each logged iteration (``train.log_interval``)
and every metric of each evaluation as metrics (step = iteration), and at the end
``best.pt``, ``recipe.toml`` and ``plots/`` as artifacts. Only rank 0 of a
distributed run writes. ``--resume`` continues the same MLflow run.

The default store is a SQLite file beside the work dir, ``<work_dir>/../mlflow.db``,
with artifacts in ``<work_dir>/../mlartifacts``: MLflow 3 refuses plain-folder
stores unless ``MLFLOW_ALLOW_FILE_STORE`` is set. Read it with
``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from detsdk.errors import RecipeError

_NOT_IN_KEYS = re.compile(r"[^A-Za-z0-9_\-. /]")  # what MLflow accepts in param and metric names


class MlflowTracking:
    """Log the run to MLflow.

    Args:
        tracking_uri: an MLflow tracking URI (``sqlite:///runs/mlflow.db``, ``http://host:5000``),
            or a path: a ``.db`` file, else a folder that gets ``mlflow.db`` and ``artifacts/``.
            Empty: ``mlflow.db`` beside the work dir.
        experiment: the experiment's name (created when missing).
        run_name: the run's name; empty: the work dir's name.
    """

    def __init__(self, tracking_uri: str = "", experiment: str = "det-sdk", run_name: str = ""):
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.client = None
        self.run_id: str | None = None

    # -- events -----------------------------------------------------------
    def before_train(self, engine) -> None:
        """Open (or, on ``--resume``, reopen) the run; log the resolved recipe as params."""
        if not _main_process():
            return
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise RecipeError(
                "train.hooks: the mlflow hook needs the mlflow package: pip install 'det-sdk[mlflow]'"
            ) from None
        uri, artifacts = store_locations(self.tracking_uri, Path(engine.work_dir))
        self.client = MlflowClient(tracking_uri=uri)
        if self.run_id is not None:  # resumed: the params are logged already
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(
            self.experiment, artifact_location=artifacts.resolve().as_uri() if artifacts else None
        )
        run = self.client.create_run(experiment_id, run_name=self.run_name or Path(engine.work_dir).name)
        self.run_id = run.info.run_id
        self._log_params(recipe_params(engine.config))

    def after_iter(self, engine, iteration: int, losses: dict[str, float]) -> None:
        """Every loss term and the learning rate, at each logged iteration."""
        every = max(1, int(engine.config["train"]["log_interval"]))
        if self.run_id is None or (iteration % every and iteration < engine.total_iters):
            return
        self._log_metrics({**losses, "lr": engine.optimizer.param_groups[0]["lr"]}, iteration)

    def after_eval(self, engine, metrics: dict[str, float]) -> None:
        """Every metric of the evaluation, at the current iteration."""
        if self.run_id is not None:
            self._log_metrics(metrics, engine.iteration)

    def after_train(self, engine) -> None:
        """``best.pt``, ``recipe.toml`` and the plots as artifacts; the run is finished."""
        if self.run_id is None:
            return
        work_dir = Path(engine.work_dir)
        for name in ("best.pt", "recipe.toml"):
            if (work_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(work_dir / name))
        if (work_dir / "plots").is_dir():
            self.client.log_artifacts(self.run_id, str(work_dir / "plots"), artifact_path="plots")
        self.client.set_terminated(self.run_id, status="FINISHED")

    # -- resume -----------------------------------------------------------
    def state_dict(self) -> dict:
        """The MLflow run's id, so that ``--resume`` logs into the same run."""
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict) -> None:
        """Continue the run a checkpoint names."""
        self.run_id = state.get("run_id")

    # -- writing ----------------------------------------------------------
    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_key(name), float(value), now, step) for name, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)


def store_locations(tracking_uri: str, work_dir: Path) -> tuple[str, Path | None]:
    """The tracking URI to use and the artifact folder for a new experiment (None: MLflow's choice)."""
    if "://" in tracking_uri:
        return tracking_uri, None
    if not tracking_uri:
        folder, database = work_dir.resolve().parent, "mlflow.db"
        artifacts = folder / "mlartifacts"
    elif tracking_uri.endswith(".db"):
        path = Path(tracking_uri).resolve()
        folder, database, artifacts = path.parent, path.name, path.parent / "mlartifacts"
    else:
        folder, database = Path(tracking_uri).resolve(), "mlflow.db"
        artifacts = folder / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / database}", artifacts


def recipe_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved recipe flattened to ``{"train.optimizer.lr": "0.02", ...}``; arrays as JSON text."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            params.update(recipe_params(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            params[_key(name)] = text[:MAX_PARAM_VAL_LENGTH]
    return params


def _key(name: str) -> str:
    return _NOT_IN_KEYS.sub("_", name)


def _main_process() -> bool:
    from detsdk.engine import distributed

    return distributed.is_main_process()
