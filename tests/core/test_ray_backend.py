from bindbench.api import run
from bindbench.core.store import Store


def test_a_sweep_on_a_local_ray_instance_equals_the_local_executor(tmp_path, tiny):
    sets = [*tiny, "seed=[0,1]", "model.width=[4,8]"]
    local = run("composition", sets=sets, out=tmp_path / "local")
    ray = run("composition", sets=sets, out=tmp_path / "ray", backend="ray")
    with Store(local) as a, Store(ray) as b:
        local_runs = {r["id"]: r for r in a.runs()}
        ray_runs = {r["id"]: r for r in b.runs()}
    assert set(local_runs) == set(ray_runs) and len(ray_runs) == 4
    for rid, r in ray_runs.items():
        assert r["status"] == "done"
        assert r["metrics"]["ood_r2"] == local_runs[rid]["metrics"]["ood_r2"]
        assert r["metrics"]["id_r2"] == local_runs[rid]["metrics"]["id_r2"]
