"""Safe checkpoints: tensors in a ``.safetensors`` file, everything else in a ``.json`` file beside it.

A checkpoint is a pair ``<stem>.safetensors`` + ``<stem>.json``. The JSON holds the model's class name and
constructor arguments (every network has a ``.config`` dict), the schedule, the loss, the dataset, the step,
the seed and the library/torch versions, plus the SHA-256 of the ``.safetensors`` bytes so that a torn or
mismatched pair is detected instead of silently loaded.

Pickle is never used: ``torch.load`` and ``pickle`` are never called, files named ``.pt``/``.pkl``/``.pth``/
``.ckpt`` are refused, and so is any file whose bytes look like a pickle (a ``0x80`` protocol marker) or a zip
archive (``torch.save``'s format, which holds a ``data.pkl``). Models are rebuilt only from an allowlist of
class names in :mod:`seqdiff_kit.denoisers`.

Both files are written atomically: a temporary file in the same folder, ``fsync``, then ``os.replace``.
"""
from __future__ import annotations

import hashlib
import json
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

FORMAT = "seqdiff_kit-checkpoint"
FORMAT_VERSION = 1
ALLOWED_MODELS = ("MLPDenoiser", "TinyUNet")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
MODEL_PREFIX, EMA_PREFIX, EXTRA_PREFIX = "model.", "ema.", "extra."
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


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
    """Write ``<stem>.safetensors`` (tensors) and ``<stem>.json`` (config), each atomically.

    Tensors are stored as ``model.<name>`` (the state dict), ``ema.<name>`` and ``extra.<name>`` (e.g. the
    optimizer moments and the generator state ``torch.Generator.get_state()``, a uint8 tensor).
    The JSON is ``config`` plus ``model = {"class", "args"}``, the format tag, the library and torch versions
    and ``weights_sha256``, the SHA-256 of the tensor file (so a mismatched pair is detected on load).
    The tensor file is replaced first, then the JSON."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    st_path, js_path = checkpoint_paths(path)
    meta = _jsonable(dict(config), "config")
    meta["model"] = model_spec(model)
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
    # the tensor file carries its own copy of the config, so it is a complete checkpoint by itself: a crash
    # between the two os.replace calls leaves a stale JSON that load_checkpoint detects and steps around
    blob = _st_save(tensors, metadata={"format": FORMAT, "config": json.dumps(meta, sort_keys=True)})
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


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {str(path)!r}")
    return path.read_bytes()


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
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"corrupt checkpoint {str(path)!r}: safetensors could not read it ({err})") from None
    embedded = (header.get("__metadata__") or {}).get("config")
    try:
        embedded = json.loads(embedded) if embedded is not None else None
    except json.JSONDecodeError:
        embedded = None
    return tensors, embedded


def _parse_json(path: Path, data: bytes) -> dict:
    _refuse_if_pickle(path, data)
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt checkpoint config {str(path)!r}: not valid UTF-8 JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a seqdiff_kit checkpoint config (expected \"format\": "
                         f"{FORMAT!r}, got {meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r})")
    return meta


def read_checkpoint(path, device="cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint pair safely: ``(tensors, config)`` with every stored tensor by its full name
    (``model.*``, ``ema.*``, ``extra.*``) on ``device``.

    The JSON's ``weights_sha256`` must match the tensor file. If it does not and the tensor file's embedded
    config differs from the JSON, the JSON is stale (a save interrupted between its two renames): the tensor
    file is complete and its embedded config is used, with a warning. Otherwise the pair is refused."""
    st_path, js_path = checkpoint_paths(path)
    js_bytes = _read_bytes(js_path)
    st_bytes = _read_bytes(st_path)
    meta = _parse_json(js_path, js_bytes)
    tensors, embedded = _parse_safetensors(st_path, st_bytes)
    want = meta.get("weights_sha256")
    if want is not None and hashlib.sha256(st_bytes).hexdigest() != want:
        stripped = {k: v for k, v in meta.items() if k not in ("weights_file", "weights_sha256")}
        if isinstance(embedded, dict) and embedded.get("format") == FORMAT and embedded != stripped:
            warnings.warn(f"{str(js_path)!r} is stale (it does not describe {str(st_path)!r}, probably an "
                          f"interrupted save); using the config embedded in the tensor file", stacklevel=2)
            meta = embedded
        else:
            raise ValueError(f"checkpoint pair mismatch: the bytes of {str(st_path)!r} do not match the SHA-256 "
                             f"recorded in {str(js_path)!r} (corrupted weights or files from different runs)")
    return {k: v.to(device) for k, v in tensors.items()}, meta


def build_model(spec: dict) -> nn.Module:
    """Rebuild a network from ``{"class": name, "args": {...}}``; only classes in the allowlist."""
    from . import denoisers  # the module, so that classes added later (TinyUNet) are found

    if not isinstance(spec, dict) or not isinstance(spec.get("args", {}), dict):
        raise ValueError(f"model spec must be a dict {{'class': str, 'args': dict}}, got {spec!r}")
    name = spec.get("class")
    if name not in ALLOWED_MODELS:
        raise ValueError(f"model class must be one of {list(ALLOWED_MODELS)}, got {name!r}")
    cls = getattr(denoisers, name, None)
    if cls is None:
        raise ValueError(f"model class {name!r} is allowed but not defined in seqdiff_kit.denoisers "
                         f"in this version ({__version__})")
    return cls(**spec.get("args", {}))


def sub_state(tensors: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix`` (``MODEL_PREFIX``, ``EMA_PREFIX``, ...), prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_checkpoint(path, device="cpu", use_ema: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint: ``(model in eval mode on device, config)``.

    ``path`` is the stem, the ``.json`` or the ``.safetensors`` file. ``use_ema`` loads the EMA weights when
    the checkpoint has them (the usual choice for sampling), else the raw weights.
    Raises FileNotFoundError for a missing file, ValueError for a corrupt, mismatched or pickle file."""
    tensors, meta = read_checkpoint(path, device="cpu")
    model = build_model(meta.get("model"))
    prefix = EMA_PREFIX if use_ema and any(k.startswith(EMA_PREFIX) for k in tensors) else MODEL_PREFIX
    state = sub_state(tensors, prefix)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r}: stored {prefix[:-1]} weights do not fit "
                         f"{meta['model']['class']}({meta['model'].get('args')}): {err}") from None
    return model.to(device).eval(), meta
