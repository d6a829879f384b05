"""``photonic-sim`` command line — the composition root.

Loads YAML configs, applies ``--set`` overrides, validates everything before any work
(types, finite numbers, names, the memory the run needs, the output folder, a resumed
checkpoint's config), resolves device presets (``calibration``), and dispatches on
``workload.kind`` to the registered workload. Exit codes: 0 ok, 2 bad input, 1 internal
failure, 130 stopped by Ctrl-C / SIGTERM.

A workload module defines ``Config`` and ``run(cfg, ctx)``; it may also define
``estimate_memory_bytes(cfg, ctx_like) -> int`` (checked against the machine's available
memory before the run), ``RESUME_SAFE_FIELDS`` (workload keys that a ``--resume`` may change
because they do not alter the trajectory), ``HEADLINE_METRICS`` (metrics printed at the end)
and ``section_model(path, workload_dict)`` (the pydantic model a free-form dict field is
checked against, so that an unknown key there is reported with its valid keys).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, ValidationError

from photonic.runio import BadInput, Interrupted
from photonic.textutil import did_you_mean

# kind → module defining ``Config`` and ``run(cfg, ctx)``.
WORKLOADS: dict[str, str] = {
    "mesh_demo": "photonic.demo",
    "pinn": "mlfrontends.pinn.workload",
    "area_energy": "circuits.area_energy",
    "calibrate_mesh": "calibration.workload",
    "unlearn": "mlfrontends.unlearning.workload",
    "forget_vector": "mlfrontends.unlearning.forget_vector",
    "decode": "mlfrontends.decoding.workload",
    "sweep": "photonic.sweep",
    "lm_perplexity": "mlfrontends.lm.perplexity",
}

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Fields a --resume may change when the workload declares no RESUME_SAFE_FIELDS: the run's
# name (only the default folder) and how often a run evaluates and checkpoints.
GENERIC_RESUME_SAFE = frozenset({"name", "workload.eval_every", "workload.checkpoint_every"})

# Files whose presence marks a folder as holding a photonic-sim run.
RUN_MARKERS = ("config.resolved.yaml", "metrics.json", "report.md", "checkpoint.pt")
# a run's checkpoints: checkpoint.pt, and those of its stages (e.g. pretrain_checkpoint.pt)
CHECKPOINT_SUFFIX = "checkpoint.pt"

SET_EXAMPLE = "--set workload.rows=32 --set chip.preset=ideal"

__all__ = ["app", "main", "load_run", "find_config", "apply_override", "BadInput", "WORKLOADS"]


class ChipConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "ideal"
    noise: Literal["all", "ideal"] | dict[str, Any] = "all"
    overrides: dict[str, Any] = Field(default_factory=dict)


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    seed: int = Field(0, ge=0)
    chip: ChipConfig = ChipConfig()
    workload: dict[str, Any]


# --------------------------------------------------------------------------- YAML reading
class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first at line {first + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _yaml_error(err: yaml.YAMLError) -> str:
    """One line: 'line L, column C: problem' (PyYAML's own text spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def parse_yaml(text: str) -> Any:
    """YAML text → Python data (safe tags only, duplicate keys refused)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: Path) -> Any:
    """The parsed content of a UTF-8 YAML file; BadInput for unreadable, binary, non-UTF-8
    or malformed files."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot be read ({e.strerror}); check the path and its "
                       "permissions") from None
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise BadInput(f"{path}: is a binary file (NUL byte at offset {offset}), not a YAML "
                       "config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                       f"{e.start}); save the config as UTF-8") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as e:
        raise BadInput(f"{path}: not valid YAML ({_yaml_error(e)})") from None


# --------------------------------------------------------------------------- config loading
def find_config(name: str) -> Path:
    """A path, or the bare name of a shipped config (with or without ``.yaml``)."""
    p = Path(name)
    if p.is_file():
        return p
    if p.is_dir():
        raise BadInput(f"config {name!r} is a folder; give a YAML file or a shipped config's "
                       "name")
    stem = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    bare = len(p.parts) == 1
    if bare:
        for folder in (Path.cwd() / "configs", REPO_CONFIGS):
            if (folder / stem).is_file():
                return folder / stem
    shipped = sorted(q.name for q in REPO_CONFIGS.glob("*.yaml")) if REPO_CONFIGS.is_dir() else []
    if not bare:  # a path: a shipped config's name would be an unrelated suggestion
        raise BadInput(f"config file {name!r} not found; check the path")
    raise BadInput(f"config {name!r} not found (not a file, not a shipped config)"
                   f"{did_you_mean(stem, shipped)} Shipped configs: {', '.join(shipped)}")


def apply_override(cfg: dict, assignment: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into the nested dict ``cfg``."""
    if "=" not in assignment:
        raise BadInput(f"--set {assignment!r}: expected KEY=VALUE, e.g. {SET_EXAMPLE}")
    key, raw = assignment.split("=", 1)
    parts = [k for k in key.strip().split(".") if k]
    if not parts:
        raise BadInput(f"--set {assignment!r}: empty key; e.g. {SET_EXAMPLE}")
    node = cfg
    for i, k in enumerate(parts[:-1]):
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise BadInput(f"--set {assignment!r}: {'.'.join(parts[:i + 1])} is a value, "
                           "not a section")
        node = nxt
    try:
        node[parts[-1]] = parse_yaml(raw)
    except yaml.YAMLError as e:
        raise BadInput(f"--set {assignment!r}: value is not valid YAML "
                       f"({_yaml_error(e)})") from None


def _non_finite(node: Any, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(node, float) and not math.isfinite(node):
        yield path, node
    elif isinstance(node, Mapping):
        for k, v in node.items():
            yield from _non_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _non_finite(v, f"{path}[{i}]")


def refuse_non_finite(raw: Mapping, where: str) -> None:
    """No config value may be NaN or ±inf (no field of any workload has a use for them)."""
    for path, value in _non_finite(raw, ""):
        raise BadInput(f"{where}: {path} = {value}: not a finite number; give a finite value")


# ------------------------------------------------------------- booleans where numbers go
def _unwrap(ann: Any) -> list[Any]:
    """The alternatives of an annotation (Annotated and Optional/Union taken apart)."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _unwrap(get_args(ann)[0])
    if origin in (Union, types.UnionType):
        return [a for arg in get_args(ann) for a in _unwrap(arg)]
    return [ann]


def _admits_bool(ann: Any) -> bool:
    """False only where every alternative is a number type (int, float)."""
    for alt in _unwrap(ann):
        if alt in (int, float):
            continue
        if get_origin(alt) is Literal and not any(isinstance(a, bool) for a in get_args(alt)):
            continue
        if alt is type(None):
            continue
        return True
    return False


def _model_of(ann: Any) -> type[BaseModel] | None:
    for alt in _unwrap(ann):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            return alt
    return None


def _item_type(ann: Any) -> Any | None:
    for alt in _unwrap(ann):
        if get_origin(alt) is list and get_args(alt):
            return get_args(alt)[0]
    return None


def _misplaced_bools(model: type[BaseModel], raw: Mapping, prefix: str) -> Iterator[str]:
    """Paths of booleans given for number fields of ``model`` (pydantic reads true as 1)."""
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    for key, value in raw.items():
        f = fields.get(key)
        if f is None:
            continue
        path = f"{prefix}{key}"
        sub = _model_of(f.annotation)
        if isinstance(value, bool) and not _admits_bool(f.annotation):
            yield path
        elif isinstance(value, Mapping) and sub is not None:
            yield from _misplaced_bools(sub, value, path + ".")
        elif isinstance(value, list) and (item := _item_type(f.annotation)) is not None:
            item_model = _model_of(item)
            for i, v in enumerate(value):
                if isinstance(v, bool) and not _admits_bool(item):
                    yield f"{path}[{i}]"
                elif isinstance(v, Mapping) and item_model is not None:
                    yield from _misplaced_bools(item_model, v, f"{path}[{i}].")


def refuse_bools(model: type[BaseModel], raw: Mapping, where: str, prefix: str = "") -> None:
    for path in _misplaced_bools(model, raw, prefix):
        raise BadInput(f"{where}: {path}: a boolean (true/false) where a number is expected; "
                       "write a number")


# ------------------------------------------------------------------ validation messages
def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _model_at(model: type[BaseModel] | None, loc) -> type[BaseModel] | None:
    """The model a location points into (None where it passes through a non-model)."""
    m = model
    for part in loc:
        if isinstance(part, int) or m is None:
            continue
        f = m.model_fields.get(str(part))
        m = None if f is None else (_model_of(f.annotation) or
                                    _model_of(_item_type(f.annotation)))
    return m


def _find_key(raw: Any, key: str, path: tuple = ()) -> list[tuple]:
    """Every location of a mapping key ``key`` inside ``raw``."""
    found = []
    if isinstance(raw, Mapping):
        for k, v in raw.items():
            if str(k) == key:
                found.append(path + (k,))
            found += _find_key(v, key, path + (k,))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            found += _find_key(v, key, path + (i,))
    return found


def _loc_text(loc) -> str:
    """A pydantic location as a YAML path: ``a.b[0]``; a union member's tag (e.g.
    ``dict[str,any]``) is dropped, a mapping key's own error marked ``(key)``."""
    text = ""
    for part in loc:
        if part == "[key]":
            text += " (key)"
        elif isinstance(part, int):
            text += f"[{part}]"
        elif "[" not in part and "(" not in part:
            text += f".{part}" if text else part
    return text


def _unknown_key(e: dict, model, where: str, prefix: str, raw, section_model) -> str:
    """'unknown key' with the valid keys of the section the key really sits in (a key of a
    free-form dict checked by a validator is located in the raw config)."""
    loc = tuple(e["loc"])
    parent = _model_at(model, loc[:-1])
    if parent is not None and str(loc[-1]) not in parent.model_fields and raw is not None:
        hits = [h for h in _find_key(raw, str(loc[-1])) if h[:len(loc) - 1] == loc[:-1]]
        if len(hits) == 1 and hits[0] != loc:
            loc = hits[0]
            section = section_model(loc[:-1], raw) if section_model else None
            parent = section if section is not None else None
    path = f"{prefix}{_loc_text(loc)}"
    if parent is None:
        return f"{where}: {path}: unknown key of {prefix}{_loc_text(loc[:-1])}"
    fields = list(parent.model_fields)
    return (f"{where}: {path}: unknown key (valid keys: {', '.join(sorted(fields))})"
            f"{did_you_mean(str(loc[-1]), fields)}")


def _drop_union_tags(model: type[BaseModel], loc: tuple) -> tuple:
    """``loc`` without the member tags of discriminated unions (``optim.subspace_lm.lr`` →
    ``optim.lr``): the tag is a value of the config, not a key the user wrote."""
    out: list = []
    m: type[BaseModel] | None = model
    skip = False
    for part in loc:
        if skip:
            skip = False
            continue
        out.append(part)
        f = m.model_fields.get(str(part)) if m is not None and isinstance(part, str) else None
        if f is not None and any(isinstance(x, Discriminator) for x in f.metadata):
            skip = True
            m = None  # the member's own fields are not walked further
        elif not isinstance(part, int):
            m = _model_at(m, (part,)) if m is not None else None
    return tuple(out)


def _format_validation(err: ValidationError, model: type[BaseModel], where: str, prefix: str,
                       raw: Any = None, section_model=None) -> str:
    lines = []
    for e in err.errors(include_url=False):
        loc = _drop_union_tags(model, tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(_unknown_key(e, model, where, prefix, raw, section_model))
            continue
        if not loc:  # a model-level rule: its message names the fields; the input is all
            lines.append(f"{where}: {prefix.rstrip('.') or 'config'}: {msg}")
            continue
        if prefix and msg.startswith(prefix):  # a section's own rule, naming its full path
            lines.append(f"{where}: {msg}")
            continue
        value = e.get("input")
        expected = (e.get("ctx") or {}).get("expected")
        if expected and isinstance(value, str):
            choices = [c.strip().strip("'") for c in expected.replace(" or ", ",").split(",")]
            msg += did_you_mean(value, choices)
        head = f"{where}: {prefix}{_loc_text(loc)} = {_short(value)}: "
        same = [i for i, line in enumerate(lines) if line.startswith(head)]
        if same:  # another member of a union refused the same value
            lines[same[0]] += f"; or {msg[0].lower()}{msg[1:]}"
        else:
            lines.append(head + msg)
    return "\n".join(lines)


def workload_module(kind: str):
    if not isinstance(kind, str) or kind not in WORKLOADS:
        raise BadInput(f"workload.kind = {kind!r}: unknown workload (valid: "
                       f"{', '.join(sorted(WORKLOADS))}){did_you_mean(str(kind), WORKLOADS)}")
    return importlib.import_module(WORKLOADS[kind])


def _noise_config(spec, where: str):
    from photonic.noise import NoiseConfig

    try:
        return NoiseConfig.from_spec(spec)
    except ValidationError as e:
        raise BadInput(_format_validation(e, NoiseConfig, where, "chip.noise.")) from None


def _apply_device_override(node: dict, key: str, value: Any, path: str, where: str) -> None:
    """Set one override (a dotted key, or a nested mapping merged field by field, as
    ``--set chip.overrides.phase_dac.bits=12`` gives) into ``node``."""
    parts = str(key).split(".")
    for k in parts[:-1]:
        if not isinstance(node.get(k), dict):
            raise BadInput(f"{where}: chip.overrides.{path}: {k!r} is not a section "
                           f"of the device parameters")
        node = node[k]
    last = parts[-1]
    if last not in node:
        raise BadInput(f"{where}: chip.overrides.{path}: unknown device field"
                       f"{did_you_mean(last, list(node))}")
    if isinstance(value, dict) and isinstance(node[last], dict):
        for sub, v in value.items():
            _apply_device_override(node[last], sub, v, f"{path}.{sub}", where)
    else:
        node[last] = value


def _device(preset: str, overrides: dict, where: str, field_path: str):
    import calibration

    names = calibration.list_presets()
    if not isinstance(preset, str) or preset not in names:
        raise BadInput(f"{where}: {field_path} = {preset!r}: unknown preset (valid: "
                       f"{', '.join(names)}){did_you_mean(str(preset), names)}")
    dev = calibration.load_preset(preset)
    if overrides:
        from photonic.devices import DeviceParams

        data = dev.model_dump()
        for key, value in overrides.items():
            _apply_device_override(data, key, value, str(key), where)
        refuse_bools(DeviceParams, data, where, "chip.overrides.")
        try:
            dev = DeviceParams.model_validate(data)
        except ValidationError as e:
            raise BadInput(_format_validation(e, DeviceParams, where, "chip.overrides.")) \
                from None
    return dev


def _workload_config(module, workload: dict, where: str):
    refuse_bools(module.Config, workload, where, "workload.")
    try:
        return module.Config.model_validate(workload)
    except ValidationError as e:
        raise BadInput(_format_validation(e, module.Config, where, "workload.", workload,
                                          getattr(module, "section_model", None))) from None
    except (ValueError, TypeError) as e:  # a rule checked after pydantic (model_post_init)
        raise BadInput(f"{where}: workload: {e}") from None


def load_run(config: str, sets: list[str]) -> tuple[Path, RunConfig, Any, Any, dict]:
    """Read, override and validate a run config; returns (path, run, workload cfg, module,
    resolved extras). Raises BadInput on any user error."""
    path = find_config(config)
    where = str(path)
    raw = read_yaml_file(path)
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: the top level must be a mapping with name, chip, workload "
                       f"(got {type(raw).__name__})")
    for s in sets:
        apply_override(raw, s)
    refuse_non_finite(raw, where)
    refuse_bools(RunConfig, raw, where)
    try:
        run = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise BadInput(_format_validation(e, RunConfig, where, "", raw)) from None
    kind = run.workload.get("kind")
    if kind is None:
        raise BadInput(f"{path}: workload.kind is missing (valid: {', '.join(sorted(WORKLOADS))})")
    module = workload_module(kind)
    wcfg = _workload_config(module, run.workload, where)
    noise = _noise_config(run.chip.noise, where)
    device = _device(run.chip.preset, run.chip.overrides, where, "chip.preset")
    presets = {}
    for i, name in enumerate(getattr(wcfg, "presets", None) or []):
        presets[name] = _device(name, {}, where, f"workload.presets[{i}]")
    return path, run, wcfg, module, {"device": device, "noise": noise, "presets": presets}


# --------------------------------------------------------------------------- resources
def _gib(n_bytes: float) -> str:
    if n_bytes < 2**30:
        return f"{n_bytes / 2**20:.3g} MiB"
    gib = n_bytes / 2**30
    return f"{gib:.3g} GiB" if gib < 1000 else f"{gib:,.0f} GiB"


def check_memory(module, wcfg, run: RunConfig, extra: dict, where: str) -> tuple[int, int]:
    """(needed, available) bytes; BadInput when the workload's estimate exceeds the memory
    available. A module without ``estimate_memory_bytes`` needs 0 by this check."""
    from photonic.runio import available_memory_bytes

    estimate = getattr(module, "estimate_memory_bytes", None)
    have = available_memory_bytes()
    if estimate is None:
        return 0, have
    ctx_like = types.SimpleNamespace(seed=run.seed, device=extra["device"],
                                     noise=extra["noise"], presets=extra["presets"])
    need = int(estimate(wcfg, ctx_like))
    if need > have:
        raise BadInput(f"{where}: the run needs about {_gib(need)} of memory "
                       f"(workload {wcfg.kind!r} at these sizes) but {_gib(have)} is available "
                       "on this machine; reduce the sizes under workload")
    return need, have


# --------------------------------------------------------------------------- output folder
def _folder_entries(out: Path) -> list[Path]:
    from photonic.runio import TEMP_PREFIX, TEMP_SUFFIX

    return sorted(p for p in out.iterdir()
                  if not (p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX)))


def check_out_folder(out: Path, *, resume: bool, force: bool) -> bool:
    """Refuse an output path that cannot hold this run; True when it holds an earlier run
    (to be continued with --resume or replaced with --force). Writes nothing."""
    if resume and force:
        raise BadInput("--resume and --force exclude each other: --resume continues the run "
                       f"in {out}, --force deletes it")
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file, not a folder; choose a folder path")
    anc = out
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise BadInput(f"--out {out}: {anc} is a file, so no folder can be made under it; "
                       "choose another --out")
    if not os.access(anc, os.W_OK | os.X_OK) or not _can_create_in(anc):
        raise BadInput(f"--out {out}: {anc} is not writable; choose another --out")
    if anc != out:
        return False
    entries = _folder_entries(out)
    if not entries:
        return False
    names = [p.name for p in entries]
    if not any(m in RUN_MARKERS or m.endswith(CHECKPOINT_SUFFIX) for m in names):
        raise BadInput(f"--out {out}: the folder holds files that are not a photonic-sim "
                       f"run's ({', '.join(names[:3])}); choose an empty or new folder")
    if not (resume or force):
        raise BadInput(f"--out {out}: the folder holds another run "
                       f"({', '.join(n for n in RUN_MARKERS if n in names)}); add --resume to "
                       "continue it, --force to replace it, or choose another --out")
    return True


def _can_create_in(folder: Path) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def clear_run_files(out: Path) -> None:
    """--force: delete an earlier run's files (the folder's files and its cache/)."""
    for p in out.iterdir():
        if p.is_file() or p.is_symlink():
            p.unlink()
        elif p.name == "cache":
            shutil.rmtree(p)


# --------------------------------------------------------------------------- resume
def _diff(old: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
    from photonic.runio import flatten_metrics

    a, b = flatten_metrics(old), flatten_metrics(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_resume(out: Path, run_config: dict, module) -> str | None:
    """Refuse to resume a checkpoint written with a different config (unless only fields
    that do not change the trajectory differ); every checkpoint of the run is checked
    (checkpoint.pt and its stages'); returns a note to print, or None."""
    notes = [_check_checkpoint(ckpt, run_config, module)
             for ckpt in sorted(out.glob(f"*{CHECKPOINT_SUFFIX}")) if ckpt.is_file()]
    return next((n for n in notes if n is not None), None)


def _check_checkpoint(ckpt: Path, run_config: dict, module) -> str | None:
    import torch

    from photonic.runio import config_hash

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same user error
        raise BadInput(f"--resume: {ckpt} cannot be read ({type(e).__name__}); delete it or "
                       "use --force to start over") from None
    if not isinstance(state, dict) or "run_config_hash" not in state:
        return (f"warning: {ckpt} records no config (written by an older version); resuming "
                "without checking that it was written with this config")
    if state["run_config_hash"] == config_hash(run_config):
        return None
    declared = getattr(module, "RESUME_SAFE_FIELDS", None)
    safe = GENERIC_RESUME_SAFE if declared is None else \
        {"name"} | {f"workload.{f}" for f in declared}
    # the config's own fields first, then the device and noise they resolve to
    diff = sorted(_diff(state.get("run_config") or {}, run_config),
                  key=lambda d: d[0].startswith(("device.", "noise.")))
    unsafe = [d for d in diff if d[0] not in safe]
    if unsafe:
        shown = "; ".join(f"{k}: {_short(a, 30)} → {_short(b, 30)}" for k, a, b in unsafe[:4])
        more = f" and {len(unsafe) - 4} more" if len(unsafe) > 4 else ""
        raise BadInput(f"--resume: {ckpt} was written with another config ({shown}{more}); "
                       "resume with the checkpoint's values, or use --force to start over")
    return ("resuming although " + ", ".join(k for k, _, _ in diff) +
            " differ from the checkpoint's config (they do not change the trajectory)")


# --------------------------------------------------------------------------- commands
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Simulate photonic tensor cores and run ML workloads on them.")
presets_app = typer.Typer(no_args_is_help=True, help="Device presets (with sources).",
                          context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(presets_app, name="presets")

_STATE = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from photonic import __version__

        typer.echo(f"photonic-sim {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error "
                                        "(bad input included)")] = False,
) -> None:
    """Simulate photonic tensor cores and run ML workloads on them."""
    _STATE["debug"] = debug


def _fail(msg: str, code: int) -> None:
    if _STATE["debug"]:
        traceback.print_exc()
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@contextmanager
def _stop_on_signals(ctx) -> Iterator[None]:
    """SIGINT / SIGTERM ask the run to stop at its next safe point (ctx.stop_requested);
    a second one aborts at once (KeyboardInterrupt)."""
    def handler(signum, frame):
        if ctx.stop_requested:
            raise KeyboardInterrupt
        ctx.stop_requested = True
        typer.echo(f"\n{signal.Signals(signum).name}: stopping at the next safe point "
                   "(checkpoint first); press Ctrl-C again to abort now", err=True)

    if _in_main_thread():
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    else:
        old = {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _resolved(path: Path, cfg: RunConfig, wcfg, extra: dict, sets: list[str],
              provenance: dict) -> tuple[dict, dict]:
    """(run_config, config.resolved.yaml content): the first is what a checkpoint records
    and a resume compares; the second adds package version and provenance."""
    from photonic import __version__

    run_config = {"name": cfg.name, "seed": cfg.seed,
                  "chip": cfg.chip.model_dump(mode="json"),
                  "workload": wcfg.model_dump(mode="json"),
                  "device": extra["device"].model_dump(mode="json"),
                  "noise": extra["noise"].model_dump(mode="json")}
    resolved = {k: run_config[k] for k in ("name", "seed", "chip", "workload")}
    resolved["resolved"] = {
        "package_version": __version__, "config_file": str(path), "overrides": list(sets),
        "device": run_config["device"], "noise": run_config["noise"],
        "preset_provenance": provenance}
    return run_config, resolved


@dataclass
class _Prepared:
    path: Path
    cfg: RunConfig
    wcfg: Any
    module: Any
    extra: dict
    out_dir: Path
    has_run: bool
    provenance: dict
    run_config: dict
    resolved: dict
    note: str | None


def _prepare(config: str, sets: list[str], out: Path | None, resume: bool,
             force: bool) -> _Prepared:
    """Every check before work; returns what the run needs. Writes nothing."""
    import calibration

    path, cfg, wcfg, module, extra = load_run(config, sets)
    check_memory(module, wcfg, cfg, extra, str(path))
    out_dir = out or Path("reports") / cfg.name
    has_run = check_out_folder(out_dir, resume=resume, force=force)
    provenance = {"preset": cfg.chip.preset,
                  "sources": calibration.preset_sources(cfg.chip.preset),
                  "presets": {n: calibration.preset_sources(n) for n in extra["presets"]}}
    run_config, resolved = _resolved(path, cfg, wcfg, extra, sets, provenance)
    note = check_resume(out_dir, run_config, module) if resume and has_run else None
    return _Prepared(path, cfg, wcfg, module, extra, out_dir, has_run, provenance, run_config,
                     resolved, note)


def _headline(module, flat: dict) -> str:
    keys = getattr(module, "HEADLINE_METRICS", None)
    if keys is None:
        keys = [k for k, v in flat.items()
                if isinstance(v, int | float) and not isinstance(v, bool)][:3]
    parts = [f"{k} = {flat[k]:.6g}" if isinstance(flat[k], float) else f"{k} = {flat[k]}"
             for k in keys if k in flat]
    return ", ".join(parts)


def _written_since(out: Path, t_wall: float) -> list[str]:
    names = []
    for p in sorted(out.iterdir()):
        if p.is_dir():
            names.append(f"{p.name}/")
        elif p.stat().st_mtime >= t_wall - 1:
            names.append(p.name)
    return names


def _execute(module, wcfg, ctx, config: str, out_dir: Path) -> dict:
    """The workload call, with stop-on-signal; exits 130 / 2 / 1 on interruption, bad input
    found during the run, or an internal failure."""
    try:
        with _stop_on_signals(ctx):
            return module.run(wcfg, ctx) or {}
    except Interrupted as e:
        _fail(f"stopped at {e.args[0] if e.args else 'a safe point'}; checkpoint written; "
              f"resume with: photonic-sim run {config} --out {out_dir} --resume", 130)
    except KeyboardInterrupt:
        _fail(f"interrupted; files so far (and the last periodic checkpoint, if any) are in "
              f"{out_dir}", 130)
    except BadInput as e:
        _fail(str(e), 2)
    except Exception:
        traceback.print_exc()
        _fail(f"internal failure while running {wcfg.kind!r}", 1)


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="Config path or bare name of a shipped config "
                                          "(e.g. mesh_demo)")],
    set_: Annotated[list[str], typer.Option("--set", help="Override KEY=VALUE (the value is "
                                            f"YAML), repeatable, e.g. {SET_EXAMPLE}")] = [],  # noqa: B006,E501
    out: Annotated[Path | None, typer.Option(help="Output folder (default reports/<name>)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its "
                                         "checkpoint (refused if the config differs)")] = False,
    force: Annotated[bool, typer.Option(help="Replace the run already in OUT (its files are "
                                        "deleted first)")] = False,
    dry_run: Annotated[bool, typer.Option(help="Check everything (config, memory, output "
                                          "folder, checkpoint) and stop before any work")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars")] = False,
    seeds: Annotated[str | None, typer.Option(help="Run once per seed, in parallel: N, "
                                              "LOW-HIGH or a list (0-4, 0,2,5); "
                                              "OUT/seed_<n>/ each, OUT/summary.md")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="With --seeds: seeds run at once "
                                                "(default one per seed, at most the CPU "
                                                "count)")] = None,
    scheduler: Annotated[str | None, typer.Option(help="With --seeds: a Dask scheduler "
                                                  "address, e.g. tcp://10.0.0.5:8786 "
                                                  "(default: local processes)")] = None,
) -> None:
    """Run a workload config and write metrics.json, report.md, figures and
    config.resolved.yaml into OUT."""
    if seeds is not None or workers is not None or scheduler is not None:
        _run_seeds(config, set_, seeds, out=out, resume=resume, force=force, workers=workers,
                   scheduler=scheduler, quiet=quiet, dry_run=dry_run)
        return
    try:
        p = _prepare(config, set_, out, resume, force)
    except BadInput as e:
        _fail(str(e), 2)
    if p.note:
        typer.echo(p.note, err=True)
    out_dir = p.out_dir
    if dry_run:
        typer.echo(f"{p.path}: ok; dry run, nothing written (would write to {out_dir})")
        return
    from photonic.runio import RunContext, flatten_metrics

    if force and p.has_run:
        clear_run_files(out_dir)
    created = not out_dir.exists()
    ctx = RunContext(out=out_dir, seed=p.cfg.seed, device=p.extra["device"],
                     noise=p.extra["noise"], resume=resume, provenance=p.provenance,
                     presets=p.extra["presets"], show_progress=not quiet,
                     run_config=p.run_config)
    t0, t_wall = time.perf_counter(), time.time()
    try:
        metrics = _execute(p.module, p.wcfg, ctx, config, out_dir)
    except typer.Exit:
        if created and out_dir.is_dir() and not any(p.is_file() for p in out_dir.rglob("*")):
            shutil.rmtree(out_dir)  # nothing was written: leave no empty folders behind
        raise
    flat = flatten_metrics(metrics)
    flat.setdefault("wall_s", time.perf_counter() - t0)
    ctx.write_json("metrics.json", flat)
    ctx.write_text("config.resolved.yaml", yaml.safe_dump(p.resolved, sort_keys=False))
    typer.echo(f"{p.cfg.name}: {_headline(p.module, flat)}")
    typer.echo(f"wrote {out_dir}/: {', '.join(_written_since(out_dir, t_wall))}")


def _run_seeds(config: str, sets: list[str], seeds: str | None, *, out: Path | None,
               resume: bool, force: bool, workers: int | None, scheduler: str | None,
               quiet: bool, dry_run: bool) -> None:
    """``run --seeds``: this command once per seed on an executor (photonic.multiseed)."""
    from photonic.multiseed import MANIFEST, SeedsInputError, run_seeds

    if seeds is None:
        _fail(f"--workers {workers} / --scheduler {scheduler}: these set how --seeds runs; "
              "give --seeds too, e.g. --seeds 0-4", 2)
    try:
        path, cfg, wcfg, module, extra = load_run(config, sets)
        check_memory(module, wcfg, cfg, extra, str(path))
    except BadInput as e:
        _fail(str(e), 2)
    out = out or Path("reports") / cfg.name
    if (out / MANIFEST).is_file() and not (resume or force):
        _fail(f"--out {out} holds a multi-seed run; continue it with --resume or replace it "
              "with --force", 2)
    if dry_run:
        typer.echo(f"{path}: ok; dry run, nothing written (would write to {out})")
        return
    try:
        res = run_seeds(run, config=str(path), label=config, sets=list(sets), seeds=seeds,
                        kind=wcfg.kind, out=out, resume=resume, force=force, workers=workers,
                        address=scheduler, executor="dask" if scheduler else "processes",
                        show_progress=not quiet)
    except (SeedsInputError, BadInput) as e:
        _fail(str(e), 2)
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; finished seeds and checkpoints are in {out}; continue with "
                   "--resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"wrote {out}/ (summary.md, summary.json; seeds run {res.ran}, "
               f"finished before {res.skipped})")
    if res.failed:
        _fail("seeds failed: " + "; ".join(f"seed {s} (exit {c}): {tail}"
                                           for s, (c, tail) in sorted(res.failed.items())), 1)


@app.command()
def validate(
    config: Annotated[str, typer.Argument(help="Config path or bare name of a shipped config")],
    set_: Annotated[list[str], typer.Option("--set", help="Override KEY=VALUE, e.g. "
                                            f"{SET_EXAMPLE}")] = [],  # noqa: B006
) -> None:
    """Check a config (and its overrides, and the memory it needs) without running it."""
    try:
        path, cfg, wcfg, module, extra = load_run(config, set_)
        need, have = check_memory(module, wcfg, cfg, extra, str(path))
    except BadInput as e:
        _fail(str(e), 2)
    memory = f", needs about {_gib(need)} of {_gib(have)} available" if need else ""
    typer.echo(f"{path}: ok (workload {wcfg.kind!r}, preset {cfg.chip.preset!r}{memory})")


@app.command()
def sweep(
    config: Annotated[str, typer.Argument(help="Sweep config path or bare name "
                                          "(workload.kind: sweep)")],
    set_: Annotated[list[str], typer.Option("--set", help="Override KEY=VALUE, e.g. "
                                            "--set 'workload.n=[4, 8]'")] = [],  # noqa: B006
    out: Annotated[Path | None, typer.Option(help="Output folder")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars")] = False,
) -> None:
    """Run a design-space sweep config (workload.kind: sweep); resumes finished points."""
    try:
        path = find_config(config)
        raw = read_yaml_file(path)
        kind = (raw.get("workload") or {}).get("kind") if isinstance(raw, dict) else None
        for s in set_:
            if s.split("=", 1)[0].strip() == "workload.kind":
                kind = parse_yaml(s.split("=", 1)[1]) if "=" in s else kind
        if kind != "sweep":
            raise BadInput(f"{path}: workload.kind = {kind!r}: `photonic-sim sweep` runs sweep "
                           f"configs (kind: sweep); run this one with: photonic-sim run {config}")
    except (BadInput, yaml.YAMLError) as e:
        _fail(str(e), 2)
    run(config, set_=set_, out=out, resume=True, force=False, dry_run=False, quiet=quiet)


@presets_app.command("list")
def presets_list() -> None:
    """List the shipped device presets."""
    import calibration

    for name in calibration.list_presets():
        typer.echo(name)


@presets_app.command("show")
def presets_show(name: Annotated[str, typer.Argument(help="Preset name")]) -> None:
    """Show a preset's resolved parameters with the source of each value."""
    import calibration

    names = calibration.list_presets()
    if name not in names:
        _fail(f"unknown preset {name!r} (valid: {', '.join(names)}){did_you_mean(name, names)}",
              2)
    dev = calibration.load_preset(name)
    sources = calibration.preset_sources(name)
    from photonic.runio import flatten_metrics

    flat = flatten_metrics(dev.model_dump(mode="json"))
    width = max(len(k) for k in flat)
    for k, v in flat.items():
        src = sources.get(k, "")
        typer.echo(f"{k:<{width}}  {json.dumps(v):>12}  {src}")


def main() -> None:
    try:
        app()
    except BadInput as e:  # pragma: no cover - commands convert these already
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
