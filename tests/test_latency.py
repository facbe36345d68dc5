"""Latency models: FLOPs counts, timing, LUT profile/lookup, predictor, calibration, check.

Unit tests run on a stand-in space built from ``OpDesc``/``module_from_desc`` (so they do not
depend on the MobileNet space's internals); integration tests use the real MobileNet space.
"""

import json
import math

import pytest
import torch
from torch import nn

from nas_lightning.latency import (
    Calibration,
    FlopsLatency,
    LatencyLUT,
    LatencyPredictor,
    MissingLatencyError,
    architecture_ops,
    commands,
    errors,
    expected_latency,
    fit_calibration,
    latency_tables,
    op_cost,
    op_macs,
    profile_ops,
    run_check,
    sample_choices,
    space_ops,
    time_module,
    training_ops,
)
from nas_lightning.ops import OpDesc, available_ops, describe, module_from_desc

MBCONV_CHOICES = [(k, e) for k in (3, 5, 7) for e in (3, 6)]

FAST = {"warmup": 1, "repeats": 3, "rounds": 1, "threads": 1}


class _Residual(nn.Module):
    def __init__(self, op: nn.Module):
        super().__init__()
        self.op = op

    def forward(self, x):
        return x + self.op(x)


class StandInSpace:
    """A tiny mobilenet-like space offering the latency interface (4 methods)."""

    def __init__(self, in_channels=3, num_classes=5, input_size=(8, 8)):
        h, w = input_size
        self.fixed = [OpDesc("conv", in_channels, 4, (h, w), (h, w), 3, 1)]
        self.blocks, c = {}, 4
        for label, (c_out, s) in zip(["b0", "b1", "b2"], [(8, 2), (8, 1), (8, 1)], strict=True):
            ho, wo = -(-h // s), -(-w // s)
            cands = [
                OpDesc("mbconv", c, c_out, (h, w), (ho, wo), k, s, e) for k, e in MBCONV_CHOICES
            ]
            if s == 1 and c == c_out:
                cands.append(OpDesc("zero", c, c_out, (h, w), (ho, wo)))
            self.blocks[label], c, h, w = cands, c_out, ho, wo
        self.fixed += [
            OpDesc("conv", c, 16, (h, w), (h, w)),
            OpDesc("pool_linear", 16, num_classes, (h, w), (1, 1)),
        ]

    def latency_specs(self):
        return {label: [cands] for label, cands in self.blocks.items()}  # one block per key

    def fixed_specs(self):
        return list(self.fixed)

    def sample_choice(self, generator):
        return [int(torch.randint(len(c), (1,), generator=generator)) for c in self.blocks.values()]

    def single_path(self, choice):
        layers = [module_from_desc(self.fixed[0])]
        for cands, i in zip(self.blocks.values(), choice, strict=True):
            d = cands[i]
            if d.op != "zero":
                m = module_from_desc(d)
                layers.append(
                    _Residual(m) if d.in_channels == d.out_channels and d.stride == 1 else m
                )
        layers += [module_from_desc(d) for d in self.fixed[1:]]
        return nn.Sequential(*layers)


def _hook_macs(desc: OpDesc) -> int:
    """MACs counted from the real module with forward hooks (conv / linear layers)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total += out.numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    m = module_from_desc(desc)
    for sub in m.modules():
        sub.register_forward_hook(hook)
    m.eval()(torch.zeros(1, desc.in_channels, *desc.in_size))
    return total


def test_macs_match_hand_computation_and_module():
    conv = OpDesc("conv", 3, 16, (8, 8), (8, 8), 3, 1)
    assert op_macs(conv) == 8 * 8 * 3 * 16 * 9
    mb = OpDesc("mbconv", 8, 16, (8, 8), (4, 4), 5, 2, 3)  # hidden 24
    assert op_macs(mb) == 8 * 8 * 8 * 24 + 4 * 4 * 24 * 25 + 4 * 4 * 24 * 16
    head = OpDesc("pool_linear", 32, 10, (4, 4), (1, 1))
    for d in (conv, mb, head, OpDesc("mbconv", 8, 8, (8, 8), (8, 8), 3, 1, 1)):
        assert op_macs(d) == _hook_macs(d), d
        params = sum(p.numel() for p in module_from_desc(d).parameters())
        assert op_cost(d).params == params, d
    assert op_macs(OpDesc("zero", 8, 8, (8, 8), (8, 8))) == 0
    flops = FlopsLatency(ms_per_mflop=0.5)
    assert flops.op_latency_ms(conv) == pytest.approx(2 * op_macs(conv) / 1e6 * 0.5)
    with pytest.raises(ValueError, match="ms_per_mflop"):
        FlopsLatency(ms_per_mflop=0)
    with pytest.raises(ValueError, match="unknown op type 'pool'; valid: .*mbconv"):
        op_cost(OpDesc("pool", 1, 1, (1, 1), (1, 1)))


# recurrent-cell ops (role rnn) read packed edge states, not feature maps, and are never priced
RNN_ONLY = set(available_ops("rnn")) - set(available_ops("cell"))
PRICED = [n for n in available_ops() if n not in RNN_ONLY]


@pytest.mark.parametrize("name", PRICED)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_registered_op_costs_what_its_module_computes(name, stride):
    """One registry entry gives the module and the analytic cost: they must agree."""
    c_out = 8 if name in available_ops("cell") else 12
    desc = describe(name, 8, c_out, (7, 7), stride, kernel=3 if name == "mbconv" else None)
    if name == "pool_linear":
        desc = describe(name, 8, 5, (7, 7))
    assert op_macs(desc) == _hook_macs(desc), desc
    assert op_cost(desc).params == sum(p.numel() for p in module_from_desc(desc).parameters())


def test_time_module_statistics_and_thread_restore():
    before = torch.get_num_threads()
    t = time_module(nn.Conv2d(4, 4, 3, padding=1), (1, 4, 8, 8), **{**FAST, "repeats": 5})
    assert 0 < t.p10_ms <= t.median_ms <= t.p90_ms and t.repeats == 5 and t.number >= 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="valid: cpu"):
        time_module(nn.Identity(), (1,), device="tpu")
    with pytest.raises(ValueError, match="threads"):
        time_module(nn.Identity(), (1,), threads=0)


def test_sampling_helpers():
    space = StandInSpace()
    ops = space_ops(space)
    assert len({d.key() for d in ops}) == len(ops) == 3 + 6 + 7  # b1, b2 share their candidates
    choice = sample_choices(space, 1, seed=0)[0]
    assert len(architecture_ops(space, choice)) == 3 + 3
    with pytest.raises(ValueError, match="valid: 0..5"):
        architecture_ops(space, [6, 0, 0])
    train = training_ops(space, 40, seed=0)
    assert len(train) == len({d.key() for d in train}) == 40
    assert all(d.op != "zero" for d in train)
    assert sum(d.key() in {o.key() for o in ops} for d in train) >= 12  # exact ops included


def test_profile_covers_every_key_and_missing_key_is_refused(tmp_path):
    space = StandInSpace()
    needed = space_ops(space)
    lut = LatencyLUT(profile_ops(needed, **FAST), {"device": "cpu", "batch_size": 1})
    assert {d.key() for d in needed} <= set(lut.entries)
    path = tmp_path / "lut.json"
    lut.save(path)
    loaded = LatencyLUT.load(path, device="cpu", batch_size=1)
    for d in needed:
        assert loaded.op_latency_ms(d) == lut.op_latency_ms(d)
        assert (loaded.op_latency_ms(d) == 0.0) == (d.op == "zero")
    loaded.require(needed)
    data = json.loads(path.read_text())
    gone = space.fixed_specs()[0].key()
    del data["entries"][gone]
    path.write_text(json.dumps(data))
    broken = LatencyLUT.load(path)
    with pytest.raises(MissingLatencyError) as err:
        broken.op_latency_ms(space.fixed_specs()[0])
    assert gone in str(err.value) and str(path) in str(err.value) and "profile" in str(err.value)
    with pytest.raises(MissingLatencyError, match=gone.replace("[", r"\[")):
        broken.require(needed)
    with pytest.warns(UserWarning, match="batch_size=1"):
        LatencyLUT.load(path, batch_size=8)
    with pytest.raises(ValueError, match="device='cpu'"):
        LatencyLUT.load(path, device="cuda", on_mismatch="error")
    with pytest.raises(ValueError, match="valid"):
        LatencyLUT.load(path, on_mismatch="loud")
    with pytest.raises(FileNotFoundError, match="profile"):
        LatencyLUT.load(tmp_path / "nope.json")


@pytest.mark.parametrize("model", ["ridge", "mlp"])
def test_predictor_fit_save_load_round_trip(tmp_path, model):
    space = StandInSpace()
    ops = training_ops(space, 60, seed=1)
    y = [0.01 + 0.02 * op_cost(d).layers + 1e-5 * op_macs(d) for d in ops]  # a known law
    pred = LatencyPredictor.fit(ops[:45], y[:45], model, steps=300)
    held = errors(pred.predict_ms(ops[45:]).tolist(), y[45:])
    assert held["mape_pct"] < 25 and held["kendall_tau"] > 0.7, held
    pred.calibration = Calibration(scale=1.5, op_overhead_ms=0.01, offset_ms=0.2)
    pred.save(tmp_path / "p.json")
    again = LatencyPredictor.load(tmp_path / "p.json")
    assert torch.equal(again.predict_ms(ops), pred.predict_ms(ops))
    assert again.op_latency_ms(ops[0]) == pytest.approx(1.5 * pred.raw_ms(ops[0]) + 0.01)
    assert again.offset_ms == 0.2 and again.op_latency_ms(OpDesc("zero", 1, 1, (1, 1), (1, 1))) == 0
    with pytest.raises(ValueError, match="valid"):
        LatencyPredictor.fit(ops, y, "forest")


def test_calibration_recovers_known_law_and_expected_latency():
    raw, counts = [1.0, 2.0, 3.5, 2.2, 5.0], [4, 6, 5, 7, 9]
    measured = [1.3 * r + 0.05 * n + 0.4 for r, n in zip(raw, counts, strict=True)]
    cal = fit_calibration(raw, counts, measured, terms=("scale", "offset", "overhead"))
    assert (cal.scale, cal.op_overhead_ms, cal.offset_ms) == pytest.approx((1.3, 0.05, 0.4))
    cal = fit_calibration(raw, counts, [0.8 * r - 0.1 for r in raw], terms=("scale", "offset"))
    assert (cal.scale, cal.op_overhead_ms, cal.offset_ms) == pytest.approx((0.8, 0.0, -0.1))
    assert fit_calibration(raw, counts, [1.2 * r for r in raw]).scale == pytest.approx(1.2)
    with pytest.raises(ValueError, match="valid: 'scale'"):
        fit_calibration(raw, counts, measured, terms=("offset",))
    flops = FlopsLatency()
    space = StandInSpace()
    tables = latency_tables(flops, space.latency_specs(), space.fixed_specs())
    logits = {k: torch.randn(len(c), requires_grad=True) for k, c in space.blocks.items()}
    probs = {k: torch.softmax(v, -1) for k, v in logits.items()}
    lat = expected_latency(probs, tables)
    want = sum(flops.op_latency_ms(d) for d in space.fixed_specs()) + sum(
        float(p) * flops.op_latency_ms(d)
        for k, cands in space.blocks.items()
        for p, d in zip(probs[k].detach(), cands, strict=True)
    )
    assert lat.item() == pytest.approx(want)
    lat.backward()
    assert all(v.grad is not None for v in logits.values())
    e = errors([1.0, 2.0, 3.0], [1.1, 2.2, 3.3])
    assert e["kendall_tau"] == 1.0 and e["mape_pct"] == pytest.approx(100 / 11)


def test_commands_profile_fit_check_on_stand_in(tmp_path):
    space, shape = StandInSpace(), (3, 8, 8)
    lut, pred, png = tmp_path / "lut.json", tmp_path / "pred.json", tmp_path / "check.png"
    p = commands.profile(space, shape, lut, calibrate_n=4, seed=0, timing=FAST)
    assert p["entries"] == len(space_ops(space)) and lut.is_file()
    f = commands.fit(
        space, shape, pred, samples=30, calibrate_n=4, seed=0, model="ridge", timing=FAST
    )
    assert math.isfinite(f["held_out"]["mape_pct"]) and f["held_out"]["rmse_ms"] >= 0
    assert json.loads(pred.read_text())["meta"]["held_out"]["n"] == 6
    files = {"lut": str(lut), "predictor": str(pred)}
    c = run_check(space, shape, png, architectures=5, seed=7, recalibrate=4, timing=FAST, **files)
    for name in ("lut", "predictor", "flops"):
        assert -1 <= c[name]["kendall_tau"] <= 1 and c[name]["mape_pct"] >= 0
    assert {"uncalibrated", "stored_calibration"} <= set(c["lut"]) and c["recalibrated_on"] >= 1
    assert png.read_bytes()[:4] == b"\x89PNG" and json.loads((tmp_path / "check.json").read_text())


def test_spread_sampling_spans_cheap_to_costly_networks():
    from nas_lightning.latency import op_macs

    space = StandInSpace()
    specs = [cands for (cands,) in space.latency_specs().values()]

    def macs(choice):
        return sum(op_macs(cands[j]) for cands, j in zip(specs, choice, strict=True))

    tilted = [macs(c) for c in sample_choices(space, 40, seed=3, spread=4.0)]
    uniform = [macs(c) for c in sample_choices(space, 40, seed=3)]
    assert tilted[:10] and sum(tilted[:10]) < sum(tilted[-10:])  # cheap first, costly last
    assert max(tilted) - min(tilted) > max(uniform) - min(uniform)
    assert sample_choices(space, 5, seed=3, spread=4.0) == sample_choices(space, 5, 3, 4.0)
