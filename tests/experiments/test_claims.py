"""Every experiment's claims, checked both ways on built runs: held where the runs satisfy the
claim, not held where they do not (segregation's are in objects/test_segregation.py)."""

import pytest

import bindbench.experiments  # noqa: F401  (registers the experiments)
from bindbench.core.claims import HELD, NOT_HELD, NOT_MEASURED, judge
from bindbench.core.registry import EXPERIMENTS


def runs_of(*rows):
    """Finished runs from (spec, metrics) pairs."""
    return [{"spec": spec, "metrics": metrics, "status": "done"} for spec, metrics in rows]


def hyper(width, ood, frac=0.5, support="random", seed=0, **metrics):
    spec = {"model": {"width": width}, "task": {"frac_ood": frac, "support": support}, "seed": seed}
    return spec, {"ood_r2": ood, **metrics}


def prefs(width, ood, frac=0.25, support="random", seed=0, **metrics):
    spec, _ = hyper(width, ood, frac, support, seed)
    return spec, {"ood_acc_all": ood, **metrics}


def controls(support, random_ood, control_ood):
    """Three seeds at two widths of the random support and of a control, at one coverage."""
    return runs_of(
        *[prefs(w, random_ood + s / 100, seed=s) for w in (32, 128) for s in range(3)],
        *[prefs(w, control_ood + s / 100, support=support, seed=s) for w in (32, 128) for s in range(3)],
    )


def neurons(widths):
    return runs_of(
        *[
            ({"task": {"num_modules": m}, "seed": 0}, {"min_width": w, "reached": float(w is not None)})
            for m, w in widths.items()
        ]
    )


def code(kind, readout, role_dim=8, objects=3, **metrics):
    spec = {
        "code": {"kind": kind, "readout": readout, "role_dim": role_dim},
        "sets": {"min_objects": objects, "max_objects": objects},
        "seed": 0,
    }
    return spec, metrics


def image(model, swap, seed=0):
    return {"image": {"model": model}, "seed": seed}, {"swap_held_out": swap}


def scan(split, exact, seed=0):
    return {"split": split, "model": {"kind": "lstm"}, "seed": seed}, {"exact_match": exact}


def structure(init, sub, abl, random_abl, seed=0):
    metrics = {
        f"{k}_{n}": v for k, v in (("sub", sub), ("abl", abl), ("random_abl", random_abl)) for n in (1, 2)
    }
    return {"model": {"init": init}, "task": {"name": "and"}, "seed": seed}, metrics


def modular(objective, sub, abl, seed=0, task="and", accuracy=1.0):
    """A finished structure run whose mask seeds have these Sub and Abl, for both subroutines."""
    spec = {
        "model": {"init": "trained"},
        "task": {"name": task},
        "seed": seed,
        "mask": {"method": "continuous"},
    }
    if objective != "none":
        spec["pretrain"] = {"objective": objective, "steps": 3000}
    seeds = {"sub": sub, "abl": abl, "random_sub": [0.0] * len(sub), "random_abl": [0.0] * len(sub)}
    extra = {"subroutines": ["A", "B"], "subroutine": {"A": {"seeds": seeds}, "B": {"seeds": seeds}}}
    metrics = {"base_accuracy_1": accuracy, "base_accuracy_2": accuracy}
    return {"spec": spec, "metrics": metrics, "extra": extra, "status": "done"}


def generated(held_out, seen, held, decodability=0.9, judge=0.99, seed=0):
    spec = {"generator": {"width": 16}, "prompts": {"held_out": held_out}, "seed": seed}
    metrics = {"success_seen": seen, "success_held_out": held, "decodability_f1": decodability}
    return spec, {**metrics, "judge_accuracy": judge, "coverage": 1 - held_out}


def bound(accuracy=1.0, seed=0, control=0.0, **scores):
    """A binding_ids run: every test at 0.9 (control 0) unless given."""
    from bindbench.core.patching import TESTS

    spec = {"model": {"depth": 2, "d_model": 64}, "task": {"bindings": 3}, "seed": seed}
    metrics = {"accuracy": accuracy, "position_read": scores.pop("position_read", 0.9)}
    metrics["binding_id_score"] = scores.pop("binding_id_score", 0.5)
    for test in TESTS:
        metrics[test], metrics[f"{test}_control"] = scores.get(test, 0.9), control
    return spec, metrics


CASES = {  # (experiment, claim): (runs that satisfy it, runs that do not)
    ("composition", "width"): (
        runs_of(hyper(32, 0.2), hyper(64, 0.4), hyper(32, 0.1, frac=0.9), hyper(64, 0.3, frac=0.9)),
        runs_of(hyper(32, 0.2), hyper(64, 0.4), hyper(32, 0.3, frac=0.9), hyper(64, 0.3, frac=0.9)),
    ),
    ("scaling", "width"): (
        runs_of(hyper(32, 0.2), hyper(64, 0.4), hyper(64, -0.5, support="non_compositional")),
        runs_of(hyper(32, 0.4), hyper(64, 0.2), hyper(32, -0.5, support="non_compositional")),
    ),
    ("scaling", "non_compositional_fails"): (
        runs_of(hyper(32, 0.2, support="non_compositional"), hyper(64, 0.4, support="non_compositional")),
        runs_of(hyper(32, 0.2, support="non_compositional"), hyper(64, 0.6, support="non_compositional")),
    ),
    ("scaling", "disconnected_fails"): (
        runs_of(hyper(256, 0.49, support="pseudo_random_disconnected")),
        runs_of(hyper(256, 0.54, support="pseudo_random_disconnected")),
    ),
    ("scaling", "decodability"): (
        runs_of(
            *[
                hyper(w, o, decodability_r2=d)
                for w, o, d in ((16, 0.0, 0.1), (32, 0.3, 0.5), (64, 0.5, 0.6), (128, 0.8, 0.9))
            ]
        ),
        runs_of(
            *[
                hyper(w, o, decodability_r2=d)
                for w, o, d in ((16, 0.0, 0.9), (32, 0.3, 0.6), (64, 0.5, 0.5), (128, 0.8, 0.1))
            ]
        ),
    ),
    ("preferences", "width"): (
        runs_of(prefs(32, 0.2), prefs(128, 0.4), prefs(32, 0.1, frac=0.75), prefs(128, 0.3, frac=0.75)),
        runs_of(prefs(32, 0.2), prefs(128, 0.1), prefs(32, 0.1, frac=0.75), prefs(128, 0.3, frac=0.75)),
    ),
    ("preferences", "non_compositional_fails"): (
        controls("non_compositional", 0.5, 0.2),
        controls("non_compositional", 0.5, 0.5),  # as high as random support
    ),
    ("preferences", "disconnected_fails"): (
        controls("pseudo_random_disconnected", 0.5, 0.2),
        controls("pseudo_random_disconnected", 0.5, 0.6),
    ),
    ("preferences", "decodability"): (
        runs_of(
            *[
                prefs(w, o, decodability_r2=d)
                for w, o, d in ((16, 0.0, 0.1), (32, 0.3, 0.5), (64, 0.5, 0.6), (128, 0.8, 0.9))
            ]
        ),
        runs_of(
            *[
                prefs(w, o, decodability_r2=d)
                for w, o, d in ((16, 0.0, 0.9), (32, 0.3, 0.6), (64, 0.5, 0.5), (128, 0.8, 0.1))
            ]
        ),
    ),
    ("neurons", "linear_in_modules"): (
        neurons({4: 100, 8: 130, 16: 190, 32: 320}),  # about 65 + 8 M
        neurons({4: 16, 8: 64, 16: 512}),  # width ~ M^3
    ),
    ("binding_codes", "bag_loses_binding"): (
        runs_of(code("bag", "mlp", swap_seen=0.5, swap_held_out=0.5)),
        runs_of(code("bag", "mlp", swap_seen=0.5, swap_held_out=0.52)),
    ),
    ("binding_codes", "orthonormal_roles_keep_it"): (
        runs_of(code("tpr_orthonormal", "unbind", accuracy_held_out=1.0, swap_held_out=1.0)),
        runs_of(code("tpr_orthonormal", "unbind", accuracy_held_out=0.99, swap_held_out=1.0)),
    ),
    ("binding_codes", "random_roles_crosstalk"): (
        runs_of(
            *[
                code("tpr_random", "unbind", d, n, accuracy_seen=a)
                for d, n, a in ((4, 2, 0.2), (16, 2, 0.9), (4, 8, 0.1), (16, 8, 0.8))
            ]
        ),
        runs_of(
            *[
                code("tpr_random", "unbind", d, n, accuracy_seen=a)
                for d, n, a in ((4, 2, 0.2), (16, 2, 0.9), (4, 8, 0.8), (16, 8, 0.8))
            ]
        ),
    ),
    ("binding_images", "slots_bind_held_out_pairs"): (
        runs_of(
            image("cnn", 0.55),
            image("cnn", 0.56, 1),
            image("slot_attention", 0.9),
            image("slot_attention", 0.92, 1),
        ),
        runs_of(
            image("cnn", 0.55),
            image("cnn", 0.56, 1),
            image("slot_attention", 0.52),
            image("slot_attention", 0.9, 1),
        ),
    ),
    ("slot_probe", "slots_hold_colour"): (
        runs_of(({"seed": 0}, {"probe_colour_held_out": 0.84})),
        runs_of(({"seed": 0}, {"probe_colour_held_out": 0.5})),  # halfway from 1/8 is 0.5625
    ),
    ("slot_probe", "slots_hold_shape"): (
        runs_of(({"seed": 0}, {"probe_shape_held_out": 0.7})),
        runs_of(({"seed": 0}, {"probe_shape_held_out": 0.093})),
    ),
    ("scan", "random_split"): (
        runs_of(scan("simple", 0.97), scan("length", 0.1)),
        runs_of(scan("simple", 0.83), scan("length", 0.1)),
    ),
    ("scan", "systematic_splits"): (
        runs_of(scan("addprim_jump", 0.001), scan("length", 0.05)),
        runs_of(scan("addprim_jump", 0.001), scan("length", 0.6)),
    ),
    ("generation", "judge_reliable"): (
        runs_of(generated(0.3, 0.5, 0.4, judge=0.96), generated(0.7, 0.5, 0.4, judge=0.99)),
        runs_of(generated(0.3, 0.5, 0.4, judge=0.94), generated(0.7, 0.5, 0.4, judge=0.999)),
    ),
    ("generation", "held_out_below_seen"): (  # read at the smallest coverage, 0.3
        runs_of(
            generated(0.7, 0.6, 0.4, seed=0), generated(0.7, 0.62, 0.41, seed=1), generated(0.3, 0.5, 0.6)
        ),
        runs_of(
            generated(0.7, 0.6, 0.6, seed=0), generated(0.7, 0.62, 0.61, seed=1), generated(0.3, 0.6, 0.3)
        ),
    ),
    ("generation", "decodability_predicts_success"): (
        runs_of(
            *[
                generated(0.3, 0.5, s, decodability=0.5 + s / 2, seed=i)
                for i, s in enumerate((0.1, 0.3, 0.5, 0.6, 0.7, 0.9))
            ]
        ),
        runs_of(
            *[
                generated(0.3, 0.5, s, decodability=1 - s / 2, seed=i)
                for i, s in enumerate((0.1, 0.3, 0.5, 0.6, 0.7, 0.9))
            ]
        ),
    ),
    ("binding_ids", "learns_binding"): (
        runs_of(bound(0.995, seed=0), bound(0.999, seed=1)),
        runs_of(bound(0.995, seed=0), bound(0.95, seed=1)),
    ),
    ("binding_ids", "factorizability"): (
        runs_of(bound(seed=0, control=0.3), bound(seed=1, control=0.3)),  # 0.9 is 0.6 above the floor
        runs_of(bound(seed=0, control=0.7), bound(seed=1, control=0.7)),  # 0.9, but the floor is 0.7
    ),
    ("binding_ids", "position_independence"): (
        runs_of(bound(position=0.8)),
        runs_of(bound(position=0.8, position_read=0.1)),  # unchanged where nothing is read: empty
    ),
    ("binding_ids", "additivity"): (
        runs_of(bound(additivity_entity=0.6, additivity_attribute=0.7)),
        runs_of(bound(additivity_entity=0.6, additivity_attribute=0.1)),
    ),
    ("binding_ids", "binding_ids"): (
        runs_of(bound(seed=0, binding_id_score=0.6), bound(seed=1, binding_id_score=0.4)),
        runs_of(bound(seed=0, binding_id_score=0.6), bound(seed=1, binding_id_score=-0.2)),
    ),
    ("structure", "subnetworks"): (
        runs_of(structure("trained", 0.48, -0.39, 0.0), structure("random", 0.0, 0.0, 0.0)),
        runs_of(structure("trained", 0.48, 0.0, 0.0), structure("random", 0.0, 0.0, 0.0)),
    ),
    ("structure", "pretraining"): (  # modular pairs: from scratch 1 of 3, pretrained 2 of 3
        [
            modular("none", [0.5, 0.5, 0.5], [-0.3, 0.0, 0.0]),
            modular("related_task", [0.5] * 3, [-0.3, -0.3, 0.0]),
        ],
        [
            modular("none", [0.5, 0.5, 0.5], [-0.3, 0.0, 0.0]),
            modular("related_task", [0.5, 0.1, 0.1], [-0.3] * 3),
        ],
    ),
    ("structure", "addmul_base"): (
        [modular("none", [0.9], [-0.2], task="addmul", accuracy=0.95)],
        [
            modular("none", [0.9], [-0.2], task="addmul", accuracy=0.85),
            modular("none", [0.9], [-0.2], task="and"),
        ],
    ),
}


def claim(experiment, name):
    (found,) = [c for c in EXPERIMENTS[experiment].claims if c.name == name]
    return found


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_a_claim_holds_on_runs_that_satisfy_it_and_not_on_runs_that_do_not(key):
    good, bad = CASES[key]
    held, failed = judge(claim(*key), good), judge(claim(*key), bad)
    assert held["verdict"] == HELD, held["detail"]
    assert failed["verdict"] == NOT_HELD, failed["detail"]
    assert failed["numbers"] and failed["detail"]


def test_every_claim_outside_segregation_is_checked_here():
    declared = {(name, c.name) for name, e in EXPERIMENTS.items() if name != "segregation" for c in e.claims}
    assert declared == set(CASES)


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_a_claim_without_its_runs_is_not_measured(key):
    assert judge(claim(*key), [])["verdict"] == NOT_MEASURED


def test_a_control_s_widths_are_listed_by_number():
    runs = runs_of(*[hyper(w, -0.1, support="non_compositional") for w in (256, 16, 64)])
    detail = judge(claim("scaling", "non_compositional_fails"), runs)["detail"]
    assert detail.index("width 16 ") < detail.index("width 64 ") < detail.index("width 256 ")
