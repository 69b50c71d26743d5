"""Safe checkpoints: tensors in a ``.safetensors`` file, everything else in a ``.json`` file beside it.

A checkpoint is a pair ``<stem>.safetensors`` + ``<stem>.json``. The JSON holds the model's class name and
constructor arguments (every network has a ``.config`` dict), the schedule, the loss, the dataset, the step,
the seed and the library/torch versions. The two files are bound both ways: the JSON records the SHA-256 of
the ``.safetensors`` bytes, and the ``.safetensors`` metadata embeds the whole config. A pair whose files come
from different runs, or whose JSON was edited, is refused instead of silently loaded; the one mismatch that is
accepted (with a warning) is a save interrupted between its two renames, where the tensor file holds a later
step of the same run. The JSON is checked against its schema (``check_config``) before anything is built from
it, and sizes that cannot fit in memory are refused before they are allocated.

Pickle is never used: ``torch.load`` and ``pickle`` are never called, files named ``.pt``/``.pkl``/``.pth``/
``.ckpt`` are refused, and so is any file whose bytes look like a pickle (a ``0x80`` protocol marker) or a zip
archive (``torch.save``'s format, which holds a ``data.pkl``). Models are rebuilt only from an allowlist of
class names in :mod:`seqdiff_kit.denoisers`. Both files are written atomically (``_io.atomic_write``).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import struct
import warnings
import zipfile
from io import BytesIO
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from ._runtime import __version__
from ._io import atomic_write
from ._validate import FLOATING
from . import denoisers
from .denoisers import ARG_LIMITS
from .schedule import MAX_T
from . import _limits

FORMAT = "seqdiff_kit-checkpoint"
FORMAT_VERSION = 1
ALLOWED_MODELS = ("MLPDenoiser", "TinyUNet")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
MODEL_PREFIX, EMA_PREFIX, EXTRA_PREFIX = "model.", "ema.", "extra."
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
MAX_JSON_BYTES = 256 * 1024 * 1024  # a custom schedule of MAX_T betas is about 25 MB of JSON
SCHEDULE_NAMES = ("linear", "cosine", "quadratic", "sigmoid")  # the named schedules Schedule.from_config builds
MODEL_ARG_LIMITS = ARG_LIMITS  # the bounds on a checkpoint's constructor arguments: the constructors' own
_UNBOUND_KEYS = ("weights_file", "weights_sha256")  # the JSON's own keys, not part of the config bound to the weights
_RUN_KEYS = ("dataset", "schedule", "loss", "seed", "model", "train")  # what makes two checkpoints one run


# ---------------------------------------------------------------------- paths
def checkpoint_paths(path) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` for a stem, a ``.json`` or a ``.safetensors`` path.

    Pickle-style names (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, ...) are refused with a ValueError."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ValueError(f"refusing {str(p)!r}: {suffix} files are pickles, which can run arbitrary code when "
                         f"loaded; seqdiff_kit checkpoints are a <stem>.safetensors + <stem>.json pair")
    if suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    # append (not with_suffix) so that a stem like "runs/ring8.v2" keeps its dot
    return p.parent / (p.name + ".safetensors"), p.parent / (p.name + ".json")


def checkpoint_exists(path) -> bool:
    """True when both files of the checkpoint pair exist."""
    st, js = checkpoint_paths(path)
    return st.is_file() and js.is_file()


# ---------------------------------------------------------------------- writing
def _jsonable(value, where: str = "config"):
    """Check that ``value`` survives a JSON round trip (tuples become lists); raise naming the bad key."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where} must be JSON-serialisable (str, numbers, bools, None, lists, dicts; "
                        f"no NaN): {err}") from None


def model_spec(model: nn.Module) -> dict:
    """``{"class": name, "args": {...}}`` of a network the checkpoint can rebuild (``build_model``'s input)."""
    cls = type(model).__name__
    if cls not in ALLOWED_MODELS:
        raise TypeError(f"model must be one of {list(ALLOWED_MODELS)} (classes a checkpoint can rebuild), "
                        f"got {cls}")
    args = getattr(model, "config", None)
    if not isinstance(args, dict):
        raise TypeError(f"model ({cls}) must have a .config dict of its constructor arguments")
    return {"class": cls, "args": _jsonable(dict(args), "model.config")}


def _cpu_tensors(prefix: str, tensors: dict) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{prefix}{name} must be a torch.Tensor, got {type(t).__name__}")
        # clone: safetensors refuses tensors that share storage (tied weights, views)
        out[prefix + name] = t.detach().to("cpu").contiguous().clone()
    return out


def save_checkpoint(path, model: nn.Module, config: dict, ema: nn.Module | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``<stem>.safetensors`` and then ``<stem>.json`` (the module docstring): the tensors as
    ``model.<name>`` (the state dict), ``ema.<name>`` and ``extra.<name>`` (e.g. the optimizer moments and the
    generator state, a uint8 tensor); the JSON is ``config`` plus the model spec, format, versions and hash."""
    spec = model_spec(model)  # a network a checkpoint can rebuild, else a TypeError naming model
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    st_path, js_path = checkpoint_paths(path)
    meta = {**_jsonable(dict(config), "config"), "model": spec}
    tensors = _cpu_tensors(MODEL_PREFIX, model.state_dict())
    if ema is not None:
        if type(ema) is not type(model):
            raise TypeError(f"ema must be a copy of the model ({type(model).__name__}), got {type(ema).__name__}")
        tensors.update(_cpu_tensors(EMA_PREFIX, ema.state_dict()))
    if extra_tensors:
        if not isinstance(extra_tensors, dict):
            raise TypeError(f"extra_tensors must be a dict of name -> Tensor, got {type(extra_tensors).__name__}")
        tensors.update(_cpu_tensors(EXTRA_PREFIX, extra_tensors))
    meta.update({"format": FORMAT, "format_version": FORMAT_VERSION, "has_ema": ema is not None,
                 "library": "seqdiff_kit", "library_version": __version__, "torch_version": torch.__version__})
    check_config(meta, str(js_path))  # what cannot be loaded back is refused now, not at the next load
    # the tensor file carries its own copy of the config: it binds the JSON to the weights, and it makes the
    # tensor file a complete checkpoint by itself (a crash between the two os.replace calls leaves a stale
    # JSON that read_checkpoint recognises). One metadata key only: safetensors writes the metadata map in hash
    # order, so two keys would make the bytes, and weights_sha256, differ between identical saves.
    blob = _st_save(tensors, metadata={"config": json.dumps(meta, sort_keys=True)})
    meta.update({"weights_file": st_path.name, "weights_sha256": hashlib.sha256(blob).hexdigest()})
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(st_path, blob)
    atomic_write(js_path, text.encode("utf-8"))


# ---------------------------------------------------------------------- safe reading
def _refuse_if_pickle(path: Path, data: bytes) -> None:
    """Raise if the bytes look like a pickle or a torch.save zip (without ever unpickling them)."""
    if data[:1] == b"\x80":
        raise ValueError(f"refusing {str(path)!r}: its bytes start with the pickle protocol marker 0x80; "
                         f"pickles can run arbitrary code and are never loaded")
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            names = zipfile.ZipFile(BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            names = []
        pkl = [n for n in names if n.endswith(".pkl")]
        what = f"a zip archive holding {pkl[0]!r} (torch.save's pickle format)" if pkl else "a zip archive"
        raise ValueError(f"refusing {str(path)!r}: it is {what}, not a safetensors/JSON checkpoint; "
                         f"pickles can run arbitrary code and are never loaded")


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"checkpoint file {str(path)!r} is not a regular file (a folder?)")
    size = path.stat().st_size
    if limit is not None and size > limit:
        raise ValueError(f"checkpoint file {str(path)!r} is {size} bytes, more than a checkpoint config can be "
                         f"({limit} bytes)")
    avail = _limits.available_memory()
    if 2 * size > avail:  # the bytes and the tensors parsed from them
        raise ValueError(f"checkpoint file {str(path)!r} is {_limits.format_bytes(size)}, too large to read in the "
                         f"{_limits.format_bytes(avail)} of memory available")
    return path.read_bytes()


def _loads(text, what: str):
    """``json.loads`` whose failures (including nesting deep enough to exhaust the stack) are a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"corrupt checkpoint {what}: JSON nested too deeply to be a checkpoint config") from None


def _parse_safetensors(path: Path, data: bytes) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(tensors, embedded config or None) of a safetensors file, checked before safetensors reads it."""
    # safetensors layout: u64 little-endian header length N, N bytes of JSON header, then raw tensor bytes.
    # The structure is checked first: the first byte is the low byte of N, so a genuine file may start with
    # 0x80 (N = 128 + 256 k) and must not be mistaken for a pickle.
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else None
    if n is None or n > _MAX_HEADER or 8 + n > len(data) or data[8:9] != b"{":
        _refuse_if_pickle(path, data)
        if n is None:
            raise ValueError(f"corrupt checkpoint {str(path)!r}: {len(data)} bytes is too short for a "
                             f"safetensors file")
        raise ValueError(f"corrupt checkpoint {str(path)!r}: not a safetensors file (bad header length {n} "
                         f"for a file of {len(data)} bytes)")
    try:
        tensors = _st_load(data)
        header = _loads(data[8:8 + n].decode("utf-8"), repr(str(path)))
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"corrupt checkpoint {str(path)!r}: safetensors could not read it ({err})") from None
    embedded = (header.get("__metadata__") or {}).get("config") if isinstance(header, dict) else None
    try:
        embedded = _loads(embedded, repr(str(path))) if isinstance(embedded, str) else None
    except ValueError:
        embedded = None
    return tensors, embedded if isinstance(embedded, dict) else None


def read_json_file(path):
    """The JSON value of a config file beside a tensor file, read as a checkpoint's JSON is: at most
    ``MAX_JSON_BYTES``, a pickle refused, bad UTF-8, bad JSON or nesting that exhausts the stack a ValueError
    naming the file (FileNotFoundError when it is missing). The caller checks what the value holds."""
    path = Path(path)
    data = _read_bytes(path, MAX_JSON_BYTES)
    _refuse_if_pickle(path, data)
    try:
        return _loads(data.decode("utf-8"), f"config {str(path)!r}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt checkpoint config {str(path)!r}: not valid UTF-8 JSON ({err})") from None


def read_tensor_file(path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, read as a checkpoint's are: refused when it cannot fit in memory,
    when it is a pickle or a zip archive in disguise, and when safetensors cannot parse it (a ValueError naming
    the file; FileNotFoundError when it is missing)."""
    path = Path(path)
    return _parse_safetensors(path, _read_bytes(path))[0]


# ---------------------------------------------------------------------- the schema
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bad(where: str, key: str, message: str) -> ValueError:
    return ValueError(f"checkpoint config {where}: key {key!r} {message}")


def check_model_spec(spec, where: str = "model spec") -> dict:
    """Raise ValueError naming the key unless ``spec`` is ``{"class": <allowed class>, "args": {...}}`` whose
    arguments are integers the class takes, within ``MODEL_ARG_LIMITS``, and whose parameters fit in memory."""
    if not isinstance(spec, dict):
        raise _bad(where, "model", f"must be a dict {{'class': str, 'args': dict}}, got {spec!r:.80}")
    name = spec.get("class")
    if name not in ALLOWED_MODELS:
        raise ValueError(f"model class must be one of {list(ALLOWED_MODELS)}, got {name!r:.80} (key 'model.class' "
                         f"in {where})")
    cls = getattr(denoisers, name)
    args = spec.get("args")
    if not isinstance(args, dict):
        raise _bad(where, "model.args", f"must be a dict of {name}'s constructor arguments, got {args!r:.80}")
    allowed = list(inspect.signature(cls).parameters)
    for key, value in args.items():
        if key not in allowed:
            raise _bad(where, f"model.args.{key}", f"is not an argument of {name} (allowed: {allowed})")
        high = MODEL_ARG_LIMITS.get(key, 2**31 - 1)
        if not _is_int(value) or not 1 <= value <= high:
            raise _bad(where, f"model.args.{key}", f"must be an integer in [1, {high}], got {value!r:.80}")
    try:
        with torch.device("meta"):  # count the parameters without allocating them
            n_params = sum(p.numel() for p in cls(**args).parameters())
    except (TypeError, ValueError) as err:
        raise _bad(where, "model.args", f"does not build a {name}: {err}") from None
    # the weights, their EMA, and the state dict they are loaded from, in float32
    _limits.check_memory(f"checkpoint {where}: model.args", args, 3 * 4 * n_params, f"{n_params} parameters")
    return spec


def check_schedule_config(config, where: str = "schedule config") -> dict:
    """Raise ValueError naming the key unless ``config`` is ``{"name": <named schedule>, "T": int}`` or
    ``{"name": "custom", "betas": [numbers in (0, 1)]}`` with ``T`` (or the number of betas) in [1, MAX_T]."""
    if not isinstance(config, dict):
        raise _bad(where, "schedule", f"must be a dict such as {{'name': 'linear', 'T': 1000}}, got {config!r:.80}")
    name = config.get("name")
    if name not in (*SCHEDULE_NAMES, "custom"):
        raise _bad(where, "schedule.name", f"must be one of {[*SCHEDULE_NAMES, 'custom']}, got {name!r:.80}")
    if name == "custom":
        betas = config.get("betas")
        if not isinstance(betas, list) or not 1 <= len(betas) <= MAX_T:
            raise _bad(where, "schedule.betas", f"must be a list of 1 to {MAX_T} numbers for a custom schedule, "
                                                f"got {type(betas).__name__}")
        if not all(_is_real(b) and 0.0 < b < 1.0 for b in betas):
            raise _bad(where, "schedule.betas", "must hold numbers in (0, 1) only")
    else:
        T = config.get("T")
        if not _is_int(T) or not 1 <= T <= MAX_T:
            raise _bad(where, "schedule.T", f"must be an integer in [1, {MAX_T}], got {T!r:.80}")
    return config


def _check_same_T(spec: dict, schedule: dict, where: str) -> None:
    """The network embeds t in [0, T) of its own T: a schedule of another length would feed it timesteps it was
    not trained on (or out of its range)."""
    T = schedule["T"] if schedule["name"] != "custom" else len(schedule["betas"])
    param = inspect.signature(getattr(denoisers, spec["class"])).parameters.get("T")
    if param is None:
        return
    net_T = spec["args"].get("T", param.default)
    if net_T != T:
        raise _bad(where, "schedule", f"has T={T} but the network was built for T={net_T} (key 'model.args.T'); a "
                                      f"network samples only the schedule it was trained with")


def check_config(meta, where: str = "config") -> dict:
    """Check a checkpoint config (the JSON) against its schema and return it; a ValueError names the key.

    Required: ``format``, ``format_version`` (at most ``FORMAT_VERSION``), ``model`` (``check_model_spec``).
    When present: ``schedule`` (``check_schedule_config``), ``step`` (an integer >= 0), ``has_ema`` (a bool),
    ``seed`` (an integer), ``weights_sha256`` (64 hex digits); a schedule's T must be the network's T.
    Other keys are free."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{where!r} is not a seqdiff_kit checkpoint config (expected \"format\": "
                         f"{FORMAT!r}, got {got!r:.80})")
    version = meta.get("format_version")
    if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise _bad(where, "format_version", f"must be an integer in [1, {FORMAT_VERSION}] (this version of "
                                            f"seqdiff_kit reads up to {FORMAT_VERSION}), got {version!r:.80}")
    if "model" not in meta:
        raise _bad(where, "model", "is missing: the model's class and constructor arguments")
    check_model_spec(meta["model"], where)
    if "schedule" in meta:
        check_schedule_config(meta["schedule"], where)
        _check_same_T(meta["model"], meta["schedule"], where)
    if "step" in meta and (not _is_int(meta["step"]) or meta["step"] < 0):
        raise _bad(where, "step", f"must be an integer >= 0, got {meta['step']!r:.80}")
    if "seed" in meta and not _is_int(meta["seed"]):
        raise _bad(where, "seed", f"must be an integer, got {meta['seed']!r:.80}")
    if "has_ema" in meta and not isinstance(meta["has_ema"], bool):
        raise _bad(where, "has_ema", f"must be true or false, got {meta['has_ema']!r:.80}")
    sha = meta.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                and all(c in "0123456789abcdef" for c in sha)):
        raise _bad(where, "weights_sha256", f"must be 64 lowercase hex digits, got {sha!r:.80}")
    return meta


# ---------------------------------------------------------------------- reading
def read_checkpoint(path, device="cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint pair safely: ``(tensors, config)`` with every stored tensor by its full name
    (``model.*``, ``ema.*``, ``extra.*``) on ``device``. The JSON is checked against its schema, then the pair's
    binding (module docstring): an interrupted save (the tensor file holds a later step of the same ``_RUN_KEYS``)
    is read, with a warning, from the config embedded in the tensor file; any other mismatch is a ValueError."""
    st_path, js_path = checkpoint_paths(path)
    meta = check_config(read_json_file(js_path), str(js_path))
    st_bytes = _read_bytes(st_path)
    tensors, embedded = _parse_safetensors(st_path, st_bytes)
    stripped = {k: v for k, v in meta.items() if k not in _UNBOUND_KEYS}
    if meta.get("weights_sha256") == hashlib.sha256(st_bytes).hexdigest():
        if embedded != stripped:
            if embedded is None:
                why = "the tensor file carries no config to check it against"
            else:
                keys = sorted(k for k in set(embedded) | set(stripped) if embedded.get(k) != stripped.get(k))
                why = f"key(s) {', '.join(map(repr, keys))} differ from the config saved inside the tensor file"
            raise ValueError(f"{str(js_path)!r} was edited after it was saved: {why}; restore it or save the "
                             f"checkpoint again")
    else:
        stale = (isinstance(embedded, dict) and embedded != stripped
                 and all(embedded.get(k) == stripped.get(k) for k in _RUN_KEYS)
                 and _is_int(embedded.get("step", 0)) and embedded.get("step", 0) >= stripped.get("step", 0))
        if not stale:
            why = ("has no weights_sha256" if meta.get("weights_sha256") is None
                   else "records another SHA-256 than the bytes of the tensor file")
            raise ValueError(f"checkpoint pair mismatch: {str(js_path)!r} {why} (corrupted weights, files from "
                             f"different runs, or an edited file); refusing to load {str(st_path)!r}")
        warnings.warn(f"{str(js_path)!r} is stale (step {stripped.get('step')}) and {str(st_path)!r} holds step "
                      f"{embedded.get('step')} of the same run: a save was interrupted; using the config embedded "
                      f"in the tensor file", stacklevel=2)
        meta = check_config(embedded, f"{st_path} (embedded config)")
    return {k: v.to(device) for k, v in tensors.items()}, meta


def build_model(spec: dict) -> nn.Module:
    """Rebuild a network from ``{"class": name, "args": {...}}``; only classes in the allowlist, with arguments
    checked by ``check_model_spec``."""
    check_model_spec(spec)
    return getattr(denoisers, spec["class"])(**spec["args"])


def sub_state(tensors: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix`` (``MODEL_PREFIX``, ``EMA_PREFIX``, ...), prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def check_state(state: dict, model: nn.Module, where: str, prefix: str = "", same_dtype: bool = False) -> None:
    """Raise ValueError naming the tensor unless each tensor of ``state`` (a state dict to load into ``model``,
    its names without ``prefix``) is finite and floating point where the model's is (float16, bfloat16, float32
    or float64: integer or bool weights are not weights). ``same_dtype``: the model's very dtype, as a resume
    needs (a cast weight is no longer the run that was saved). Names the model lacks are left to
    ``load_state_dict``."""
    own = model.state_dict()
    for name, t in state.items():
        ref = own.get(name)
        if ref is None:
            continue
        full = prefix + name
        if same_dtype and t.dtype != ref.dtype:
            raise ValueError(f"{where}: tensor {full!r} is {t.dtype}, the model's is {ref.dtype}; a run resumes "
                             f"only with the dtype it saved (a cast changes every later step)")
        if not ref.is_floating_point():
            continue
        if t.dtype not in FLOATING:
            raise ValueError(f"{where}: tensor {full!r} has dtype {t.dtype}; weights must be floating point "
                             f"(float16, bfloat16, float32 or float64)")
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"{where}: tensor {full!r} holds {bad} NaN or infinite value(s); weights must be "
                             f"finite")


def load_checkpoint(path, device="cpu", use_ema: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint: ``(model in eval mode on device, config)``.

    ``path`` is the stem, the ``.json`` or the ``.safetensors`` file. ``use_ema`` loads the EMA weights when
    the checkpoint has them (the usual choice for sampling), else the raw weights.
    Raises FileNotFoundError for a missing file, ValueError for a corrupt, mismatched or pickle file and for
    weights that are not finite floating-point numbers (``check_state``)."""
    tensors, meta = read_checkpoint(path, device="cpu")
    model = build_model(meta.get("model"))
    prefix = EMA_PREFIX if use_ema and any(k.startswith(EMA_PREFIX) for k in tensors) else MODEL_PREFIX
    state = sub_state(tensors, prefix)
    check_state(state, model, f"checkpoint {str(path)!r}", prefix)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r}: stored {prefix[:-1]} weights do not fit "
                         f"{meta['model']['class']}({meta['model'].get('args')}): {err}") from None
    return model.to(device).eval(), meta
