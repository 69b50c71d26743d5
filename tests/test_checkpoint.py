"""Checkpoints: safetensors + JSON round trips, atomic writes, and refusal of every pickle in disguise."""
import json
import os
import pickle
import shutil

import pytest
import torch

import seqdiff_kit as sk
from seqdiff_kit import checkpoint as ck
from seqdiff_kit.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return sk.MLPDenoiser(**{"width": 16, "depth": 2, "time_dim": 8, **kw})


def _probe(model):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(32, model.dim, generator=g)
    t = torch.randint(0, model.T, (32,), generator=g)
    with torch.no_grad():
        return model(x, t)


@pytest.fixture
def saved(tmp_path):
    model, ema = _model(0), _model(1)  # distinct weights, so model vs EMA loading is told apart
    cfg = {"dataset": "ring8", "schedule": sk.Schedule.linear().config(), "step": 7, "seed": 3}
    stem = tmp_path / "run" / "ckpt"
    save_checkpoint(stem, model, cfg, ema=ema,
                    extra_tensors={"rng_state": torch.Generator().manual_seed(5).get_state(),
                                   "scalar": torch.tensor(2.5)})
    return stem, model, ema, cfg


def test_round_trip_same_outputs_from_every_path_form(saved):
    stem, model, ema, cfg = saved
    assert stem.with_name("ckpt.safetensors").is_file() and stem.with_name("ckpt.json").is_file()
    for path in (stem, str(stem) + ".json", str(stem) + ".safetensors"):
        raw, meta = load_checkpoint(path, use_ema=False)
        assert type(raw) is sk.MLPDenoiser and not raw.training
        assert torch.equal(_probe(raw), _probe(model))
        ema_loaded, _ = load_checkpoint(path)  # use_ema=True is the default
        assert torch.equal(_probe(ema_loaded), _probe(ema))
        assert not torch.equal(_probe(ema_loaded), _probe(model))
    assert meta["model"] == {"class": "MLPDenoiser", "args": model.config}
    assert meta["dataset"] == "ring8" and meta["step"] == 7 and meta["seed"] == 3
    assert sk.Schedule.from_config(meta["schedule"]).T == 1000
    assert meta["torch_version"] == torch.__version__ and meta["library_version"] == sk.__version__
    assert meta["has_ema"] is True


def test_extra_tensors_round_trip_bit_exact(saved):
    stem, model, ema, _ = saved
    tensors, meta = read_checkpoint(stem)
    state = tensors["extra.rng_state"]
    assert state.dtype == torch.uint8
    g = torch.Generator()
    g.set_state(state)
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=torch.Generator().manual_seed(5)))
    assert tensors["extra.scalar"].shape == () and float(tensors["extra.scalar"]) == 2.5
    for k, v in model.state_dict().items():
        assert torch.equal(tensors["model." + k], v)


def test_no_temp_files_left_and_overwrite(saved):
    stem, model, ema, cfg = saved
    save_checkpoint(stem, ema, {**cfg, "step": 8})  # overwrite: now without EMA, other weights
    assert sorted(p.name for p in stem.parent.iterdir()) == ["ckpt.json", "ckpt.safetensors"]
    m, meta = load_checkpoint(stem)  # no EMA stored: use_ema falls back to the raw weights
    assert meta["step"] == 8 and meta["has_ema"] is False
    assert torch.equal(_probe(m), _probe(ema))


def test_interrupted_save_keeps_old_files_and_no_temp(saved, monkeypatch):
    stem, model, ema, cfg = saved
    before = {p.name: p.read_bytes() for p in stem.parent.iterdir()}

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(stem, _model(9), {**cfg, "step": 99})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in stem.parent.iterdir()} == before


def test_torn_pair_falls_back_to_the_complete_tensor_file(saved, monkeypatch):
    stem, model, ema, cfg = saved
    real_replace, calls = os.replace, []

    def replace_once(src, dst):  # the tensor file is renamed, then the "crash" hits before the JSON
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    new = _model(4)
    monkeypatch.setattr(ck.os, "replace", replace_once)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(stem, new, {**cfg, "step": 8})
    monkeypatch.undo()
    assert json.loads(stem.with_name("ckpt.json").read_text())["step"] == 7  # stale JSON
    with pytest.warns(UserWarning, match="stale"):
        m, meta = load_checkpoint(stem, use_ema=False)
    assert meta["step"] == 8 and torch.equal(_probe(m), _probe(new))


def test_corrupt_mismatched_and_missing_files(saved, tmp_path):
    stem, model, ema, cfg = saved
    st, js = ck.checkpoint_paths(stem)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copy(js, str(bad) + ".json")
    shutil.copy(st, str(bad) + ".safetensors")
    data = st.read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="corrupt checkpoint.*bad.safetensors"):
        load_checkpoint(bad)
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # a bit flip inside the tensor data: the structure parses, the hash catches it
    (tmp_path / "bad.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="mismatch"):
        load_checkpoint(bad)
    (tmp_path / "bad.safetensors").write_bytes(data)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_checkpoint(bad)
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a seqdiff_kit checkpoint"):
        load_checkpoint(bad)


def test_only_allowlisted_classes_are_rebuilt(saved, tmp_path):
    stem, *_ = saved
    meta = json.loads(ck.checkpoint_paths(stem)[1].read_text())
    meta["model"] = {"class": "os.system", "args": {"command": "echo hi"}}
    meta.pop("weights_sha256")
    shutil.copy(ck.checkpoint_paths(stem)[0], tmp_path / "x.safetensors")
    (tmp_path / "x.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model class must be one of"):
        load_checkpoint(tmp_path / "x")
    with pytest.raises(TypeError, match="model must be one of"):
        save_checkpoint(tmp_path / "y", torch.nn.Linear(2, 2), {})
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "y", _model(), {"bad": object()})


# ---------------------------------------------------------------------- malicious pickles
class _Evil:
    """Unpickling this runs exec(), which writes a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make every unpickling entry point fail loudly, so the test also proves none of them is called."""
    calls = []

    def trap(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} was called")
        return f

    monkeypatch.setattr(torch, "load", trap("torch.load"))
    monkeypatch.setattr(pickle, "load", trap("pickle.load"))
    monkeypatch.setattr(pickle, "loads", trap("pickle.loads"))
    monkeypatch.setattr(pickle, "Unpickler", trap("pickle.Unpickler"))
    return calls


def test_the_payload_is_live(tmp_path):
    """Control: unpickling the payload really writes its marker (so the refusal tests below mean something)."""
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Evil(control)))
    assert control.read_text() == "pwned"


def test_malicious_pickles_are_refused_in_every_disguise(saved, tmp_path, no_unpickling):
    stem, *_ = saved
    marker = tmp_path / "MARKER"
    good_st, good_js = ck.checkpoint_paths(stem)
    raw_pickle = pickle.dumps(_Evil(marker), protocol=pickle.HIGHEST_PROTOCOL)
    torch.save(_Evil(marker), tmp_path / "evil_zip.pt")  # torch's format: a zip holding data.pkl
    zip_pickle = (tmp_path / "evil_zip.pt").read_bytes()
    assert raw_pickle[:1] == b"\x80" and zip_pickle[:2] == b"PK"

    for name, payload in (("raw", raw_pickle), ("zip", zip_pickle)):
        d = tmp_path / name
        d.mkdir()
        for suffix in (".pt", ".pth", ".pkl", ".ckpt"):
            (d / f"evil{suffix}").write_bytes(payload)
            with pytest.raises(ValueError, match="pickle"):
                load_checkpoint(d / f"evil{suffix}")
        # renamed to .safetensors next to a genuine JSON
        (d / "a.safetensors").write_bytes(payload)
        shutil.copy(good_js, d / "a.json")
        with pytest.raises(ValueError, match=r"refusing .*a\.safetensors.*(pickle|zip)"):
            load_checkpoint(d / "a.safetensors")
        # renamed to .json next to genuine weights
        (d / "b.json").write_bytes(payload)
        shutil.copy(good_st, d / "b.safetensors")
        with pytest.raises(ValueError, match=r"refusing .*b\.json.*(pickle|zip)"):
            load_checkpoint(d / "b")
        with pytest.raises(ValueError, match="pickle"):
            read_checkpoint(d / "b.json")
    zip_msg = pytest.raises(ValueError, match="data.pkl")
    with zip_msg:
        load_checkpoint(tmp_path / "zip" / "a")
    assert not marker.exists(), "a pickle payload ran"
    assert no_unpickling == []


def test_genuine_file_starting_with_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    """The first byte of a safetensors file is the low byte of its header length: 0x80 happens (N = 128 + 256k)."""
    model = _model()
    for pad in range(0, 300):
        save_checkpoint(tmp_path / "c", model, {"pad": "x" * pad})
        if ck.checkpoint_paths(tmp_path / "c")[0].read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    loaded, meta = load_checkpoint(tmp_path / "c")
    assert meta["pad"] == "x" * pad and torch.equal(_probe(loaded), _probe(model))


def test_pickle_names_refused_for_saving_too(tmp_path):
    with pytest.raises(ValueError, match=r"\.pt"):
        save_checkpoint(tmp_path / "model.pt", _model(), {})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- deterministic bytes, binding, schema
def test_identical_saves_give_identical_bytes(tmp_path):
    """The metadata is one key, so safetensors' hash-ordered map cannot reorder it: weights_sha256 is a
    function of the checkpoint's content (before, two metadata keys came out in either order)."""
    model, ema = _model(0), _model(1)
    cfg = {"dataset": "ring8", "schedule": sk.Schedule.linear().config(), "step": 3, "seed": 0}
    blobs, shas = set(), set()
    for i in range(12):
        save_checkpoint(tmp_path / f"c{i}", model, cfg, ema=ema, extra_tensors={"s": torch.arange(3)})
        st, js = ck.checkpoint_paths(tmp_path / f"c{i}")
        blobs.add(st.read_bytes())
        shas.add(json.loads(js.read_text())["weights_sha256"])
    assert len(blobs) == 1 and len(shas) == 1


def _rewrite_json(stem, edit):
    js = ck.checkpoint_paths(stem)[1]
    meta = json.loads(js.read_text())
    edit(meta)
    js.write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, keys", [
    (lambda m: m.update(step=100), "'step'"),
    (lambda m: m["schedule"].update(name="cosine"), "'schedule'"),  # T=500 the schema refuses first
    (lambda m: m.update(dataset="grid25", note="x"), "'dataset', 'note'"),
])
def test_an_edited_json_is_refused_naming_the_keys(saved, edit, keys):
    stem, *_ = saved
    _rewrite_json(stem, edit)
    with pytest.raises(ValueError, match=f"edited after it was saved: key\\(s\\) {keys} differ"):
        load_checkpoint(stem)


def test_a_json_beside_another_runs_weights_is_refused(saved, tmp_path):
    stem, model, ema, cfg = saved
    other = tmp_path / "other"
    save_checkpoint(other, _model(5), {**cfg, "seed": 4, "step": 9})
    st, _ = ck.checkpoint_paths(stem)
    shutil.copy(ck.checkpoint_paths(other)[0], st)  # later step, but another run (seed 4): not a torn save
    with pytest.raises(ValueError, match="pair mismatch"):
        load_checkpoint(stem)
    save_checkpoint(other, _model(5), {**cfg, "step": 5})  # the same run, an EARLIER step: not a torn save either
    shutil.copy(ck.checkpoint_paths(other)[0], st)
    with pytest.raises(ValueError, match="pair mismatch"):
        load_checkpoint(stem)
    _rewrite_json(stem, lambda m: m.pop("weights_sha256"))
    with pytest.raises(ValueError, match="no weights_sha256"):
        load_checkpoint(stem)


def _craft(stem, edit, tensors=None):
    """Rewrite a pair consistently (embedded config and SHA-256 agree) after ``edit(meta)``: only the schema
    can refuse it. ``tensors``: what the tensor file holds afterwards (default: what it held)."""
    from safetensors.torch import load, save

    st, js = ck.checkpoint_paths(stem)
    meta = json.loads(js.read_text())
    tensors = load(st.read_bytes()) if tensors is None else tensors
    meta = {k: v for k, v in meta.items() if k not in ("weights_file", "weights_sha256")}
    edit(meta)
    blob = save(tensors, metadata={"config": json.dumps(meta, sort_keys=True)})
    st.write_bytes(blob)
    import hashlib
    js.write_text(json.dumps({**meta, "weights_sha256": hashlib.sha256(blob).hexdigest()}))


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(schedule={}), r"key 'schedule.name' must be one of"),
    (lambda m: m.update(schedule=[1000]), r"key 'schedule' must be a dict"),
    (lambda m: m["schedule"].pop("T"), r"key 'schedule.T' must be an integer in \[1, 1000000\], got None"),
    (lambda m: m["schedule"].update(T=10**12), r"key 'schedule.T' .* got 1000000000000"),
    (lambda m: m["schedule"].update(T="1000"), r"key 'schedule.T'"),
    (lambda m: m.update(schedule={"name": "custom"}), r"key 'schedule.betas' must be a list"),
    (lambda m: m.update(schedule={"name": "custom", "betas": [0.5, 1.0]}), r"key 'schedule.betas' .* \(0, 1\)"),
    (lambda m: m.pop("model"), r"key 'model' is missing"),
    (lambda m: m["model"].pop("args"), r"key 'model.args' must be a dict"),
    (lambda m: m["model"]["args"].update(width=60000), r"key 'model.args.width' must be an integer in \[1, 16384\]"),
    (lambda m: m["model"]["args"].update(depth=True), r"key 'model.args.depth'"),
    (lambda m: m["model"]["args"].update(command="rm -rf"), r"key 'model.args.command' is not an argument"),
    (lambda m: m.update(step=-1), r"key 'step' must be an integer >= 0"),
    (lambda m: m.update(step="7"), r"key 'step'"),
    (lambda m: m.update(format_version=2), r"key 'format_version' must be an integer in \[1, 1\]"),
    (lambda m: m.update(has_ema="yes"), r"key 'has_ema'"),
    (lambda m: m["schedule"].update(T=500), r"key 'schedule' has T=500 but the network was built for T=1000"),
    (lambda m: m.update(schedule={"name": "custom", "betas": [0.1] * 3}), r"key 'schedule' has T=3 but .* T=1000"),
    (lambda m: m["model"]["args"].update(T=999), r"key 'schedule' has T=1000 but the network was built for T=999"),
])
def test_the_schema_names_the_bad_key(saved, edit, match):
    stem, *_ = saved
    _craft(stem, edit)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(stem)


def test_schedule_names_are_the_ones_schedule_builds():
    for name in ck.SCHEDULE_NAMES:
        assert sk.Schedule.from_config({"name": name, "T": 10}).T == 10
        assert ck.check_schedule_config({"name": name, "T": 10})


def test_deep_nesting_is_a_value_error(saved):
    stem, *_ = saved
    depth = 200_000
    ck.checkpoint_paths(stem)[1].write_text('{"format": "seqdiff_kit-checkpoint", "x": ' + "[" * depth
                                            + "]" * depth + "}")
    with pytest.raises(ValueError, match="nested too deeply"):
        load_checkpoint(stem)


def test_sizes_that_cannot_fit_are_refused_before_allocation(saved, monkeypatch):
    """The parameter count comes from the meta device (nothing allocated); the budget is patched so the test
    does not depend on this machine's memory."""
    import seqdiff_kit._limits as limits

    stem, model, *_ = saved
    n_params = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(limits, "available_memory", lambda: 3 * 4 * n_params - 1)
    with pytest.raises(ValueError, match=r"model.args .* needs about .* more than the .* available"):
        load_checkpoint(stem)
    size = ck.checkpoint_paths(stem)[0].stat().st_size
    assert 2 * size - 1 >= 3 * 4 * n_params  # the file holds the model, its EMA and extras: more than one model
    monkeypatch.setattr(limits, "available_memory", lambda: 2 * size - 1)  # the model fits, reading the file not
    with pytest.raises(ValueError, match="too large to read"):
        load_checkpoint(stem)
    monkeypatch.setattr(limits, "available_memory", lambda: 10**12)
    assert load_checkpoint(stem)[1]["step"] == 7


def test_save_refuses_a_config_that_could_not_be_loaded(tmp_path):
    with pytest.raises(ValueError, match="key 'schedule.T'"):
        save_checkpoint(tmp_path / "c", _model(), {"schedule": {"name": "linear", "T": 0}})
    assert not any(tmp_path.iterdir())


def _craft_tensors(stem, edit):
    """Rewrite a pair consistently after ``edit(tensors)``: neither the hash nor the schema can refuse it."""
    from safetensors.torch import load

    tensors = load(ck.checkpoint_paths(stem)[0].read_bytes())
    edit(tensors)
    _craft(stem, lambda meta: None, tensors=tensors)


def _every(fn):
    def edit(tensors, p):
        for k in [k for k in tensors if k.startswith(p + ".")]:
            tensors[k] = fn(tensors[k])
    return edit


def _poke(name, value):
    def edit(tensors, p):
        tensors[f"{p}.{name}"] = tensors[f"{p}.{name}"].clone()
        tensors[f"{p}.{name}"].view(-1)[0] = value
    return edit


@pytest.mark.parametrize("use_ema", [True, False])
@pytest.mark.parametrize("edit, match", [
    (_poke("out.bias", float("nan")), r"tensor '{p}.out.bias' holds 1 NaN or infinite value\(s\); weights must be "
                                      r"finite"),
    (_poke("inp.weight", float("-inf")), r"tensor '{p}.inp.weight' holds 1 NaN or infinite"),
    (_every(lambda t: t.to(torch.int8)), r"tensor '{p}\.[^']*' has dtype torch.int8; weights must be floating point "
                                         r"\(float16, bfloat16, float32 or float64\)"),
    (_every(lambda t: t > 0), r"tensor '{p}\.[^']*' has dtype torch.bool; weights must be floating point"),
    (_every(lambda t: t.to(torch.int64)), r"tensor '{p}\.[^']*' has dtype torch.int64"),
])
def test_weights_that_are_not_finite_floating_point_numbers_are_refused(saved, edit, match, use_ema):
    """Such weights once loaded (an int8 or bool network sampled happily, a NaN one failed at its first step)."""
    stem, *_ = saved
    p = "ema" if use_ema else "model"
    _craft_tensors(stem, lambda tensors: edit(tensors, p))
    with pytest.raises(ValueError, match="checkpoint '.*ckpt': " + match.replace("{p}", p)):
        load_checkpoint(stem, use_ema=use_ema)


def test_float64_weights_load_as_the_model_s_float32(saved):
    """A cast between floating dtypes is a choice a user may make; only a resume insists on the saved dtype."""
    stem, model, ema, _ = saved
    _craft_tensors(stem, lambda tensors: _every(lambda t: t.double())(tensors, "ema"))
    loaded, _ = load_checkpoint(stem)
    assert torch.equal(_probe(loaded), _probe(ema))


def test_save_refuses_a_schedule_of_another_T_than_the_network(tmp_path):
    with pytest.raises(ValueError, match=r"key 'schedule' has T=500 but the network was built for T=1000"):
        save_checkpoint(tmp_path / "c", _model(), {"schedule": {"name": "linear", "T": 500}})
    assert not any(tmp_path.iterdir())
