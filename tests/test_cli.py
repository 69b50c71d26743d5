"""The ``seqdiff`` command: help on every subcommand, demo/train/sample/compare end to end (small), and bad input
ending in one line on stderr with a non-zero status and no traceback."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import seqdiff_kit as sk
from seqdiff_kit import cli
from seqdiff_kit.checkpoint import load_checkpoint
from seqdiff_kit.solvers import sample

SUBCOMMANDS = ("demo", "train", "sample", "compare", "experiment")


def run(argv, capsys):
    """``main(argv)`` as the console script runs it: (exit status, stdout, stderr)."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse's --help and usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("seqdiff: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny ring8 runs (a few steps each) written by `seqdiff train`."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in (("a", ["--loss", "simple"]), ("b", ["--loss", "sa", "--K", "2", "--lam", "1"])):
        rc = cli.main(["train", "--dataset", "ring8", "--model", "mlp", *extra, "--steps", "4", "--seed", "0",
                       "--batch-size", "32", "--out", str(root / name), "--quiet", "--threads", "1"])
        assert rc == 0
    return root


# ---------------------------------------------------------------------- help
@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    rc, out, err = run([command, "--help"], capsys)
    assert rc == 0 and err == ""
    assert out.startswith(f"usage: seqdiff {command}")
    assert "--out" in out


def test_top_level_help_lists_the_commands(capsys):
    rc, out, _ = run(["--help"], capsys)
    assert rc == 0
    for c in SUBCOMMANDS:
        assert c in out
    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"seqdiff_kit {sk.__version__}"


def test_console_entry_point_runs_as_a_process():
    """The installed `seqdiff` script (or `python -m seqdiff_kit.cli`) exits with main's status."""
    exe = os.path.join(os.path.dirname(sys.executable), "seqdiff")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "seqdiff_kit.cli"]
    ok = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "usage: seqdiff" in ok.stdout and "experiment" in ok.stdout
    bad = subprocess.run(cmd + ["train", "--dataset", "moons", "--steps", "1"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "seqdiff: error: dataset must be one of ['grid25', 'ring8', 'two_moons', 'digits', 'gauss1d'], got 'moons'"]


def test_help_and_version_import_no_torch():
    """The top-level help and the version need no torch (seconds to import): the package root and the parser load
    a command's modules only when that command runs."""
    code = ("import sys\nfrom seqdiff_kit.cli import main\n"
            "for argv in (['--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "NO TORCH", out.stdout + out.stderr
    assert "seqdiff_kit 0.1.0" in out.stdout
    # a command's options are filled in only for it, and all of them for a parser built without `only`
    lone = cli.build_parser(only="sample")
    actions = {a.dest: a for a in lone._subparsers._group_actions[0].choices["sample"]._actions}
    assert "solver" in actions
    assert len(lone._subparsers._group_actions[0].choices["demo"]._actions) == 1  # only -h
    full = cli.build_parser()
    assert all(len(p._actions) > 1 for p in full._subparsers._group_actions[0].choices.values())


# ---------------------------------------------------------------------- demo
def test_demo_writes_report_and_prints_table(tmp_path, capsys):
    rc, out, err = run(["demo", "--out", str(tmp_path / "demo"), "--points", "40", "--quiet", "--threads", "1"],
                       capsys)
    assert rc == 0, err
    assert not (tmp_path / "demo" / ".seqdiff.lock").exists()  # the report's folder holds no lock file
    html = (tmp_path / "demo" / "report.html").read_text()
    assert html.count("<script type=\"text/javascript\">") == 1  # plotly.js once, no per-figure copies
    assert '"sliders"' in html
    rows = json.loads((tmp_path / "demo" / "metrics.json").read_text())["rows"]
    header = out.splitlines()[0].split()
    assert header[:2] == ["model", "steps"] and "MMD^2" in header
    from seqdiff_kit._format import format_number
    for r in rows:
        assert format_number(r["sw"]) in out and f">{format_number(r['sw'])}<" in html


@pytest.mark.slow
def test_demo_retrain_runs_from_the_command_line(tmp_path):
    """`seqdiff demo --retrain` as a user types it (a process; few steps): both models trained and saved, the
    report written, the checkpoints loadable and trained for the steps asked."""
    exe = os.path.join(os.path.dirname(sys.executable), "seqdiff")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "seqdiff_kit.cli"]
    out = tmp_path / "demo"
    done = subprocess.run(cmd + ["demo", "--retrain", "--train-steps", "3", "--points", "40", "--out", str(out),
                                 "--quiet", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    from seqdiff_kit.demo import DEMO_MODELS
    for stem in DEMO_MODELS.values():
        model, meta = load_checkpoint(out / "checkpoints" / stem)
        assert isinstance(model, sk.MLPDenoiser) and meta["step"] == 3, stem
    assert (out / "report.html").is_file()
    assert "retrained (seed 0)" in (out / "report.html").read_text()
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert {r["model"] for r in rows} >= set(DEMO_MODELS), rows


# ---------------------------------------------------------------------- train
def test_train_writes_a_loadable_checkpoint(trained):
    model, meta = load_checkpoint(trained / "b" / "model")
    assert isinstance(model, sk.MLPDenoiser)
    assert meta["dataset"] == "ring8" and meta["step"] == 4 and meta["seed"] == 0
    assert meta["loss"] == {"name": "sa", "K": 2, "lam": 1.0}
    assert meta["train"]["batch_size"] == 32
    hist = json.loads((trained / "b" / "history.json").read_text())["history"]
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    assert all(h["sa"] > 0 for h in hist)
    simple = json.loads((trained / "a" / "history.json").read_text())["history"]
    assert all(h["sa"] == 0 and h["loss"] == h["simple"] for h in simple)


def test_train_is_reproducible_from_its_seed(trained, tmp_path, capsys):
    rc, _, err = run(["train", "--dataset", "ring8", "--loss", "simple", "--steps", "4", "--seed", "0",
                      "--batch-size", "32", "--out", str(tmp_path / "again"), "--quiet", "--threads", "1"], capsys)
    assert rc == 0, err
    a, _ = load_checkpoint(trained / "a" / "model")
    b, _ = load_checkpoint(tmp_path / "again" / "model")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ---------------------------------------------------------------------- sample
def test_sample_writes_npz_of_the_right_shape_and_values(trained, tmp_path, capsys):
    out = tmp_path / "s.npz"
    rc, stdout, err = run(["sample", "--checkpoint", str(trained / "a"), "--steps", "7", "--eta", "0", "--n", "33",
                           "--seed", "5", "--out", str(out)], capsys)
    assert rc == 0, err
    with np.load(out, allow_pickle=False) as f:
        samples, x_T, ts = f["samples"], f["x_T"], f["timesteps"]
        config = json.loads(str(f["config"]))
    assert samples.shape == (33, 2) and samples.dtype == np.float32 and x_T.shape == (33, 2)
    assert ts.tolist() == sk.Schedule.linear().timesteps(7).tolist()
    assert config["steps"] == 7 and config["dataset"] == "ring8"
    # brute force: the same x_T from the seed, the same sampler, the same result
    model, _ = load_checkpoint(trained / "a" / "model")
    x_T_again = torch.randn(33, 2, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(x_T, x_T_again.numpy())
    again = sample(model, x_T_again, sk.Schedule.linear(), 7).final
    assert np.allclose(samples, again.numpy(), atol=1e-6)


def test_sample_with_eta_is_seeded(trained, tmp_path, capsys):
    paths = [tmp_path / f"{k}.npz" for k in "xyz"]
    for p, seed in zip(paths, (1, 1, 2)):
        rc, _, err = run(["sample", "--checkpoint", str(trained / "b" / "model.json"), "--steps", "4", "--eta", "1",
                          "--n", "8", "--seed", str(seed), "--out", str(p)], capsys)
        assert rc == 0, err
    x, y, z = (np.load(p, allow_pickle=False)["samples"] for p in paths)
    assert np.array_equal(x, y) and not np.array_equal(x, z)


# ---------------------------------------------------------------------- compare
def test_compare_two_checkpoints(trained, tmp_path, capsys):
    rc, out, err = run(["compare", str(trained / "a"), str(trained / "b"), "--steps", "2", "4", "--points", "24",
                        "--out", str(tmp_path / "cmp")], capsys)
    assert rc == 0, err
    assert not (tmp_path / "cmp" / ".seqdiff.lock").exists()
    rows = json.loads((tmp_path / "cmp" / "metrics.json").read_text())["rows"]
    models = [r["model"] for r in rows]
    assert models[0] == "data (own)" and len(rows) == 1 + 3 * 2
    assert {"a [simple]", "b [SA K=2, lam=1.0]", "ideal"} == set(models[1:])  # the folders' names
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "Drift from the ideal path" in html and "b [SA K=2, lam=1.0]" in html
    assert "a [simple]" in out


def test_compare_names_rows_by_folder_and_keeps_them_unique(trained, tmp_path, capsys):
    """Two folders of one name (other parents), or one run given as its folder and as its checkpoint, are told
    apart by the paths as given."""
    (tmp_path / "x").mkdir()
    shutil.copytree(trained / "a", tmp_path / "x" / "a")
    rc, _, err = run(["compare", str(trained / "a"), str(tmp_path / "x" / "a"), str(trained / "b" / "model"),
                      str(trained / "b"), "--steps", "2", "--points", "16", "--out", str(tmp_path / "cmp")], capsys)
    assert rc == 0, err
    models = [r["model"] for r in json.loads((tmp_path / "cmp" / "metrics.json").read_text())["rows"]]
    assert set(models) == {"data (own)", "ideal", f"{trained / 'a'} [simple]", f"{tmp_path / 'x' / 'a'} [simple]",
                           f"{trained / 'b' / 'model'} [SA K=2, lam=1.0]", f"{trained / 'b'} [SA K=2, lam=1.0]"}, models


def test_compare_refuses_checkpoints_of_different_datasets(trained, tmp_path, capsys):
    rc, _, err = run(["train", "--dataset", "grid25", "--steps", "1", "--batch-size", "8", "--out",
                      str(tmp_path / "g"), "--quiet", "--threads", "1"], capsys)
    assert rc == 0, err
    rc, _, err = run(["compare", str(trained / "a"), str(tmp_path / "g"), "--steps", "2", "--points", "8",
                      "--out", str(tmp_path / "c")], capsys)
    assert_one_line_error(rc, err, "one dataset", "grid25", "ring8")


# ---------------------------------------------------------------------- bad input
def test_sample_with_a_solver_is_that_solver(trained, tmp_path, capsys):
    """--solver heun / analytic_dpm: the samples are the library's run of that solver from the seeded x_T (and, for
    analytic_dpm, Gamma from the seeded draws of the checkpoint's dataset)."""
    from seqdiff_kit import solvers

    model, _ = load_checkpoint(trained / "a" / "model")
    sch = sk.Schedule.linear()
    for solver in ("heun", "analytic_dpm"):
        out = tmp_path / f"{solver}.npz"
        rc, stdout, err = run(["sample", "--checkpoint", str(trained / "a"), "--steps", "6", "--solver", solver,
                               "--spacing", "karras", "--n", "16", "--seed", "3", "--out", str(out)], capsys)
        assert rc == 0, err
        assert f"solver {solver}" in stdout
        with np.load(out, allow_pickle=False) as f:
            samples, config = f["samples"], json.loads(str(f["config"]))
        assert config["solver"] == solver and config["spacing"] == "karras"
        gen = torch.Generator().manual_seed(3)
        x_T = torch.randn(16, 2, generator=gen)
        ts = sch.timesteps(6, "karras")
        opts = solvers.options_from_data(solver, model, sk.ring8(), sch, ts,
                                         generator=torch.Generator().manual_seed(3))
        again = solvers.sample(model, x_T, sch, 6, solver=solver, spacing="karras", generator=gen, **opts).final
        assert np.allclose(samples, again.numpy(), atol=1e-6)


def test_compare_with_a_solver(trained, tmp_path, capsys):
    rc, _, err = run(["compare", str(trained / "a"), "--steps", "3", "--points", "24", "--solver", "dpmpp_2m",
                      "--out", str(tmp_path / "cmp")], capsys)
    assert rc == 0, err
    metrics = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert metrics["settings"]["sampler"] == "dpmpp_2m"


@pytest.mark.parametrize("argv, needles", [
    (["sample", "--solver", "heun", "--eta", "1"], ["--eta belongs to --solver ddim", "--solver heun"]),
    (["compare", "--solver", "dpmpp_2m", "--eta", "0.5"], ["--eta belongs to --solver ddim"]),
    (["sample", "--solver", "rk4"], ["invalid choice", "'rk4'"]),
])
def test_bad_solver_arguments(trained, tmp_path, argv, needles, capsys):
    where = ["--checkpoint", str(trained / "a"), "--out", str(tmp_path / "s.npz")] if argv[0] == "sample" else \
        [str(trained / "a"), "--out", str(tmp_path / "c")]
    rc, _, err = run(argv[:1] + where + argv[1:], capsys)
    assert_one_line_error(rc, err, *needles)
    assert not (tmp_path / "s.npz").exists()


def test_experiment_preset_solvers_runs_the_few_step_study(tmp_path, monkeypatch, capsys):
    from seqdiff_kit import few_step

    calls = []

    def fake_study(out, log=None):
        calls.append(out)
        return None, {"results": tmp_path / "r" / "results.md"}

    monkeypatch.setattr(few_step, "run_study", fake_study)
    rc, out, err = run(["experiment", "--preset", "solvers", "--out", str(tmp_path / "r"), "--quiet"], capsys)
    assert rc == 0, err
    assert calls == [str(tmp_path / "r")] and "results.md" in out
    rc, out, _ = run(["experiment", "--help"], capsys)
    assert "solvers" in out


def test_exact_cov_needs_a_mixture_dataset(tmp_path, capsys):
    rc, _, err = run(["train", "--dataset", "digits", "--steps", "1", "--batch-size", "4", "--out",
                      str(tmp_path / "d"), "--quiet", "--threads", "1"], capsys)
    assert rc == 0, err
    rc, _, err = run(["sample", "--checkpoint", str(tmp_path / "d"), "--steps", "2", "--n", "2", "--solver",
                      "exact_cov", "--out", str(tmp_path / "s.npz")], capsys)
    assert_one_line_error(rc, err, "solver 'exact_cov' needs", "GaussianMixture")


def test_unknown_dataset(tmp_path, capsys):
    rc, _, err = run(["train", "--dataset", "moons", "--out", str(tmp_path / "x")], capsys)
    assert_one_line_error(rc, err, "dataset must be one of", "'moons'")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv, needles", [
    (["train", "--loss", "sa", "--K", "0", "--steps", "1"], ["--K must be an integer >= 1", "got 0"]),
    (["train", "--loss", "sa", "--K", "-3", "--steps", "1"], ["--K must be an integer >= 1", "got -3"]),
    (["train", "--loss", "sa", "--K", "1001", "--steps", "1"], ["--K must be in [1, 1000]", "got 1001"]),
    (["train", "--loss", "sa", "--lam", "-0.5", "--steps", "1"], ["lam must be in [0.0", "got -0.5"]),
    (["train", "--steps", "-5"], ["steps must be", "got -5"]),
    (["train", "--loss", "simple", "--K", "2", "--steps", "1"], ["simple loss takes no K or lam"]),
    (["train", "--dataset", "digits", "--model", "mlp", "--steps", "1"], ["model must be 'unet' for digits"]),
    (["train", "--model", "cnn"], ["invalid choice", "'cnn'"]),
    (["train", "--steps", "many"], ["--steps must be an integer", "'many'"]),
    (["demo", "--points", "0"], ["--points must be an integer >= 1", "got 0"]),
    (["demo", "--points", "-10"], ["--points must be an integer >= 1", "got -10"]),
    (["frobnicate"], ["invalid choice", "'frobnicate'"]),
])
def test_bad_arguments_give_one_line(argv, needles, tmp_path, capsys):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "t"), "--quiet", "--threads", "1"]
    rc, _, err = run(argv, capsys)
    assert_one_line_error(rc, err, *needles)


@pytest.mark.parametrize("steps", ["-1", "0"])
def test_bad_step_counts_for_sample_and_compare(trained, tmp_path, steps, capsys):
    rc, _, err = run(["sample", "--checkpoint", str(trained / "a"), "--steps", steps, "--out",
                      str(tmp_path / "s.npz")], capsys)
    assert_one_line_error(rc, err, "steps must be a positive step count", f"got {steps}")
    rc, _, err = run(["compare", str(trained / "a"), "--steps", "5", steps, "--out", str(tmp_path / "c")], capsys)
    assert_one_line_error(rc, err, "steps must be a positive step count", f"got {steps}")
    assert not (tmp_path / "s.npz").exists()


def test_missing_checkpoint(tmp_path, capsys):
    rc, _, err = run(["sample", "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s.npz")], capsys)
    assert_one_line_error(rc, err, "checkpoint not found", "nowhere")
    rc, _, err = run(["compare", str(tmp_path / "nowhere"), str(tmp_path / "nor_here"), "--out",
                      str(tmp_path / "c")], capsys)
    assert_one_line_error(rc, err, "checkpoint not found")


@pytest.mark.parametrize("damage", ["garbage_weights", "truncated_weights", "bad_json", "pickle"])
def test_corrupt_checkpoint(trained, tmp_path, damage, capsys):
    import shutil

    stem = tmp_path / "model"
    for suffix in (".json", ".safetensors"):
        shutil.copy(trained / "a" / f"model{suffix}", stem.with_suffix(suffix))
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if damage == "garbage_weights":
        st.write_bytes(b"this is not a safetensors file at all")
    elif damage == "truncated_weights":
        st.write_bytes(st.read_bytes()[:1000])
    elif damage == "bad_json":
        js.write_text("{not json")
    else:
        st.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle's protocol marker
    rc, _, err = run(["sample", "--checkpoint", str(stem), "--out", str(tmp_path / "s.npz")], capsys)
    assert_one_line_error(rc, err)
    assert any(w in err for w in ("corrupt", "refusing", "mismatch", "not valid")), err


def test_sample_out_must_be_npz(trained, tmp_path, capsys):
    rc, _, err = run(["sample", "--checkpoint", str(trained / "a"), "--out", str(tmp_path / "s.pkl")], capsys)
    assert_one_line_error(rc, err, "out must be a .npz file")


def test_train_and_sample_digits_with_the_tinyunet(tmp_path, capsys):
    rc, _, err = run(["train", "--dataset", "digits", "--steps", "1", "--batch-size", "4", "--out",
                      str(tmp_path / "d"), "--quiet", "--threads", "1"], capsys)
    assert rc == 0, err
    model, meta = load_checkpoint(tmp_path / "d" / "model")
    assert isinstance(model, sk.TinyUNet) and meta["dataset"] == "digits"
    assert meta["train"]["lr"] == 2e-3 and meta["train"]["warmup"] == 200  # the shipped digits recipe
    rc, _, err = run(["sample", "--checkpoint", str(tmp_path / "d"), "--steps", "2", "--n", "3", "--out",
                      str(tmp_path / "d.npz")], capsys)
    assert rc == 0, err
    assert np.load(tmp_path / "d.npz", allow_pickle=False)["samples"].shape == (3, 1, 8, 8)


def test_sample_with_eps_scale_is_epsilon_scaling(trained, tmp_path, capsys):
    """--eps-scale C: the library's sample with eps_scale=C from the seeded x_T (Gamma of analytic_dpm from the
    scaled network too), recorded in the config; C <= 0 is one line before any work."""
    from seqdiff_kit import solvers

    model, _ = load_checkpoint(trained / "a" / "model")
    sch = sk.Schedule.linear()
    for solver in ("ddim", "analytic_dpm"):
        out = tmp_path / f"es_{solver}.npz"
        rc, _, err = run(["sample", "--checkpoint", str(trained / "a"), "--steps", "5", "--solver", solver,
                          "--eps-scale", "0.95", "--n", "16", "--seed", "2", "--out", str(out)], capsys)
        assert rc == 0, err
        with np.load(out, allow_pickle=False) as f:
            samples, config = f["samples"], json.loads(str(f["config"]))
        assert config["eps_scale"] == 0.95
        gen = torch.Generator().manual_seed(2)
        x_T = torch.randn(16, 2, generator=gen)
        opts = solvers.options_from_data(solver, solvers.scaled_model(model, 0.95), sk.ring8(), sch,
                                         sch.timesteps(5), generator=torch.Generator().manual_seed(2))
        again = solvers.sample(model, x_T, sch, 5, solver=solver, generator=gen, eps_scale=0.95, **opts).final
        assert np.array_equal(samples, again.numpy())
        plain = solvers.sample(model, x_T, sch, 5, solver=solver, generator=torch.Generator().manual_seed(2), **opts)
        assert not np.array_equal(samples, plain.final.numpy())
    for bad in ("0", "-1", "nan"):
        rc, _, err = run(["sample", "--checkpoint", str(trained / "a"), "--eps-scale", bad, "--out",
                          str(tmp_path / "bad.npz")], capsys)
        assert_one_line_error(rc, err, "--eps-scale")
        assert not (tmp_path / "bad.npz").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch, capsys):
    """`seqdiff demo | head -1`: the next print finds the pipe closed; no "error: Broken pipe", status 141 (what a
    shell shows for a writer ended by SIGPIPE), and the interpreter's last flush has nowhere to fail."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    out = os.fdopen(write_end, "w", buffering=1)

    def job(args):
        print("a line nobody reads")  # line-buffered: written at once, into the broken pipe
        return 0

    monkeypatch.setitem(cli.COMMANDS, "demo", job)
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert cli.main(["demo"]) == cli.SIGPIPE_STATUS
        print("after the pipe broke")  # stdout now leads to /dev/null
        out.flush()
    finally:
        monkeypatch.undo()
        out.close()
    assert capsys.readouterr().err == ""
