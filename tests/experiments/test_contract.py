"""The checks every registered experiment passes, in the spirit of scikit-learn's common
estimator checks: an experiment gets them by being registered (with its `tiny` overrides)."""

import json
import pickle

import pytest
import torch

from bindbench.cli import main
from bindbench.core.claims import HELD, NOT_HELD, NOT_MEASURED
from bindbench.core.config import build_spec, run_id
from bindbench.core.executor import execute
from bindbench.core.plan import Job
from bindbench.core.registry import EXPERIMENTS
from bindbench.core.report import COLUMN_INCHES, DPI, build_report, experiment_plots
from bindbench.core.store import Store

NAMES = sorted(EXPERIMENTS)


def tiny_job(name: str) -> Job:
    experiment = EXPERIMENTS[name]
    spec = build_spec(experiment.spec, {}, experiment.tiny)
    if experiment.check is not None:
        experiment.check(spec)
    return Job(experiment, spec, run_id(name, spec), 0)


def timeless(run: dict) -> dict:
    """What a run computed, without what the clock measured."""
    metrics = {k: v for k, v in run["metrics"].items() if "second" not in k}
    curve = [{k: v for k, v in point.items() if k != "seconds"} for point in run["curve"]]
    return {"metrics": metrics, "curve": curve, "extra": run["extra"]}


def stored_run(store: Store, job: Job) -> dict:
    (run,) = store.runs()
    return {**run, "curve": store.curve(job.run_id)}


@pytest.fixture(scope="module", params=NAMES)
def ran(request, tmp_path_factory):
    """An experiment's tiny run, executed twice in two stores: (job, first folder, both runs)."""
    job = tiny_job(request.param)
    runs, folders = [], []
    for attempt in ("first", "second"):
        folder = tmp_path_factory.mktemp(f"{request.param}-{attempt}")
        with Store(folder) as store:
            assert execute([job], store) == [job]
            runs.append(stored_run(store, job))
        folders.append(folder)
    return job, folders[0], runs


def test_there_is_an_experiment_for_every_claim_family():
    assert {"composition", "scaling", "neurons", "scan", "segregation", "structure"} <= set(NAMES)
    assert {"binding_codes", "binding_images", "slot_probe"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_has_a_tiny_spec_and_profiles(name):
    experiment = EXPERIMENTS[name]
    assert experiment.tiny, f"{name} has no tiny overrides for these checks"
    assert "quick" in experiment.profiles and experiment.metrics


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_says_what_it_claims_and_against_which_figure(name):
    claims = EXPERIMENTS[name].claims
    pickle.dumps(EXPERIMENTS[name])  # a job carries its experiment to pool workers: no lambdas
    assert claims, f"{name} declares no claim"
    assert len({c.name for c in claims}) == len(claims)
    assert all(c.sentence and c.anchor for c in claims)


def test_the_tiny_run_finishes_with_its_headline_metric(ran):
    job, _, (run, _) = ran
    assert run["status"] == "done", run.get("error")
    assert job.experiment.metrics[0] in run["metrics"]


def test_the_same_spec_and_seed_give_the_same_numbers(ran):
    _, _, (first, second) = ran
    assert timeless(first) == timeless(second)


def test_a_rerun_resumes_from_the_store_and_runs_nothing(ran):
    job, folder, (first, _) = ran
    with Store(folder) as store:
        assert execute([job], store) == []
        assert timeless(stored_run(store, job)) == timeless(first)


def test_the_report_builds_from_the_stored_resolved_spec(ran):
    job, folder, _ = ran
    html, json_path = build_report(folder)
    assert job.experiment.title in html.read_text() and json_path.exists()
    # every claim is judged on the stored run, whatever a tiny run can show
    report = json.loads(json_path.read_text())
    assert [c["claim"] for c in report["claims"]] == [c.name for c in job.experiment.claims]
    assert {c["verdict"] for c in report["claims"]} <= {HELD, NOT_HELD, NOT_MEASURED}


def test_every_figure_of_the_section_fits_the_page_column(ran):
    job, folder, _ = ran
    with Store(folder) as store:
        runs = [stored_run(store, job)]
    metrics = list(job.experiment.metrics)
    plots = experiment_plots(job.experiment.name, runs, [], metrics)
    for plot in plots:
        width, _ = plot.figure.get_size_inches() * DPI
        assert width <= COLUMN_INCHES * DPI + 0.5, f"{plot.title}: {width:.0f} px"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "override, words",
    [("no_such_key=1", ["unknown key 'no_such_key'", "allowed are"]), ("seed=abc", ["seed", "abc"])],
)
def test_bad_keys_and_types_exit_2_with_one_line_and_write_nothing(name, override, words, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", name, "--out", str(out), "--quiet", "--set", override])
    error = capsys.readouterr().err
    assert code == 2
    assert len(error.strip().splitlines()) == 1, error
    assert all(word in error for word in words), error
    assert not out.exists()


def test_a_run_keeps_its_trained_model_and_the_same_seed_gives_the_same_weights(ran):
    from bindbench.api import load_model
    from bindbench.core import checkpoints

    job, first, _ = ran
    files = [checkpoints.path(first, job.run_id), checkpoints.path(_second(first), job.run_id)]
    if job.experiment.make_model is None:  # runs that train many models, or none
        assert not any(f.exists() for f in files)
        return
    (first_weights, first_meta), (second_weights, second_meta) = map(checkpoints.read, files)
    assert first_meta == second_meta and first_weights.keys() == second_weights.keys()
    for name, tensor in first_weights.items():  # reproducible to the bit
        assert torch.equal(tensor, second_weights[name]), name
    model = load_model(first, job.run_id)
    assert not model.training and sum(p.numel() for p in model.parameters()) > 0


def _second(first):
    return first.parent / first.name.replace("-first", "-second")
