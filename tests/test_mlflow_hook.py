"""The ``mlflow`` hook: a run read back through MLflow's own client holds params, metrics and artifacts."""

from __future__ import annotations

import mlflow.tracking  # the dev extra installs it; det-sdk[mlflow] for users
from conftest import tiny_recipe

from detsdk import Engine


def test_a_run_holds_the_recipe_losses_metrics_and_artifacts(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    work_dir = tmp_path / "runs" / "tiny"
    recipe = tiny_recipe(work_dir, train={"iters": 3, "log_interval": 2, "hooks": [{"type": "mlflow", "experiment": "tests"}]},
                         runtime={"work_dir": str(work_dir), "plot_samples": 1})
    Engine.from_recipe(recipe).fit()

    assert (tmp_path / "runs" / "mlflow.db").is_file()  # the default store: SQLite beside the work dir
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["train.optimizer.lr"] == "0.01" and run.data.params["data.batch_size"] == "4"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [2, 3]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "lr")] == [2, 3]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "bbox_mAP")] == [3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"best.pt", "recipe.toml", "plots"} <= artifacts
    assert "plots/predictions.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert str(tmp_path / "runs" / "mlartifacts") in run.info.artifact_uri


def test_a_folder_tracking_uri_gets_a_sqlite_store_inside_it(tmp_path):
    from detsdk.builtin.hooks.mlflow_tracking import store_locations

    uri, artifacts = store_locations(str(tmp_path / "mlruns"), tmp_path / "runs" / "x")
    assert uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" and artifacts == tmp_path / "mlruns" / "artifacts"
    assert store_locations("http://localhost:5000", tmp_path) == ("http://localhost:5000", None)
