"""TensorBoard's HParams dashboard over a mixed sweep, read back through TensorBoard's own hparams backend (the code
behind the dashboard) from the runs' event files: every optimizer's hyperparameters are columns, typed as they
are, with readable trial names and final and best metrics."""

import pytest

from conftest import read_metrics, train


def dashboard(logdir):
    """(experiment, session groups) as the HParams dashboard receives them for ``tensorboard --logdir logdir``."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), data_provider=provider,
                                                            multiplexer=multiplexer))
    request = context.RequestContext()
    experiment = get_experiment.Handler(request, backend, "", api_pb2.GetExperimentRequest()).run()
    every_status = [api_pb2.Status.Value(s) for s in api_pb2.Status.keys()]
    groups = list_session_groups.Handler(request, backend, "", api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, allowed_statuses=every_status)).run()
    return experiment, list(groups.session_groups)


@pytest.fixture(scope="module")
def mixed_sweep(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("hparams")
    for optimizer in ("adam", "newton_summary", "lodo"):
        train(["dataset=digits", "trainer.steps=24", "+model.kwargs.hidden=[16]", f"optimizer={optimizer}", "seed=3"],
              logdir / optimizer)
    return logdir


def test_columns_are_the_union_of_every_optimizers_hyperparameters(mixed_sweep):
    from tensorboard.plugins.hparams import api_pb2

    experiment, _ = dashboard(mixed_sweep)
    columns = {h.name: api_pb2.DataType.Name(h.type) for h in experiment.hparam_infos}
    # Adam's, NewtonSummary's and LODO's own hyperparameters side by side, whichever run TensorBoard reads first
    assert {"optimizer.betas", "optimizer.eps", "optimizer.damping", "optimizer.lambda_int", "optimizer.period",
            "optimizer.partition", "optimizer.meta_lr", "optimizer.block_size"} <= set(columns)
    assert columns["optimizer.name"] == "DATA_TYPE_STRING" and columns["seed"] == "DATA_TYPE_FLOAT64"
    assert columns["optimizer.diagonal"] == "DATA_TYPE_BOOL"  # a boolean, not 0/1
    assert columns["optimizer.partition"] == "DATA_TYPE_STRING"
    assert columns["optimizer.lr"] == "DATA_TYPE_FLOAT64"
    assert "optimizer.seed" not in columns  # it repeats the seed column
    assert not any(name.startswith(("trainer.device", "trainer.num_threads", "logger")) for name in columns)
    names = {h.name: sorted(h.domain_discrete) for h in experiment.hparam_infos if h.domain_discrete}
    assert sorted(names["optimizer.name"]) == ["adam", "lodo", "newton_summary"]


def test_trials_have_readable_names_and_final_and_best_metrics(mixed_sweep):
    experiment, groups = dashboard(mixed_sweep)
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"test/acc", "val/acc", "train/epoch_loss", "best/val_acc", "best/train_loss", "best/val_loss"} <= metrics
    by_name = {g.name: g for g in groups}
    assert sorted(by_name) == ["adam seed=3 · adam", "lodo seed=3 · lodo", "newton_summary seed=3 · newton_summary"]
    group = by_name["newton_summary seed=3 · newton_summary"]
    assert group.hparams["optimizer.name"].string_value == "newton_summary"
    assert group.hparams["status"].string_value == "completed"
    values = {m.name.tag: m.value for m in group.metric_values}
    epochs = [r for r in read_metrics(mixed_sweep / "newton_summary") if "val/acc" in r]
    assert values["best/val_acc"] == pytest.approx(max(r["val/acc"] for r in epochs))
    assert values["best/train_loss"] == pytest.approx(min(r["train/epoch_loss"] for r in epochs))
    assert values["test/acc"] == pytest.approx(epochs[-1]["test/acc"])


def test_no_run_declares_an_experiment_that_would_hide_the_others_columns(mixed_sweep):
    from conftest import tensorboard_tags

    for optimizer in ("adam", "newton_summary", "lodo"):
        content = tensorboard_tags(str(mixed_sweep / optimizer)).PluginTagToContent("hparams")
        assert set(content) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}


def test_synthetic_runs_report_the_papers_measure(tmp_path):
    train(["model=rosenbrock", "optimizer=adam", "logger.log_every=1"], tmp_path / "rosenbrock")
    experiment, groups = dashboard(tmp_path)
    (group,) = groups
    values = {m.name.tag: m.value for m in group.metric_values}
    losses = [r["train/loss"] for r in read_metrics(tmp_path / "rosenbrock") if "train/loss" in r and r["step"] > 180]
    assert len(losses) == 20
    assert values["final/last10pct_loss"] == pytest.approx(sum(losses) / 20, rel=1e-6)
    assert "best/eval_loss" in values
