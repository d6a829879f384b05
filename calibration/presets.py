"""Device presets: YAML data with provenance, resolved into :class:`photonic.DeviceParams`.

A preset file ``calibration/presets/<name>.yaml`` has exactly these top-level keys::

    description: one line saying what platform this is
    extends: other_preset          # optional: start from that preset, then apply params
    params:                        # nested like DeviceParams (shifter:, coupler:, ...)
      shifter:
        kind: thermal              # strings / booleans / null may stand bare
        p_pi_mw: {value: 30.0, source: "SimPhony device library: SOI thermal shifter"}

Every number must be written as ``{value: ..., source: "..."}``; a value we computed
rather than read starts its source with ``derived:`` and says how, one we picked without a
reference starts with ``assumption:``. A variant is its base plus overrides (``extends:``),
never a copied file. Fields a preset chain leaves unset keep the ``DeviceParams`` default and
are reported as such by :func:`preset_sources`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from photonic.devices import DeviceParams
from photonic.textutil import did_you_mean

__all__ = [
    "PRESET_DIR",
    "PresetError",
    "list_presets",
    "load_preset",
    "preset_sources",
    "preset_file",
    "preset_description",
]

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_SOURCE = "default: photonic.DeviceParams (no preset sets it)"
_TOP_KEYS = ("description", "extends", "params")
# Fields DeviceParams derives from others when no preset sets them.
DERIVED_SOURCES = {
    "mzi.insertion_loss_db": "derived: 2 × coupler.insertion_loss_db + "
    "shifter.insertion_loss_db + waveguide.loss_db_per_cm × MZI cell length "
    "(photonic.devices.mzi_loss_db)",
}


class PresetError(ValueError):
    """A preset file is missing, malformed or sets an invalid value."""


def _dirs(directory: str | Path | None) -> tuple[Path, ...]:
    """Search path: a user folder (e.g. exported calibrations) first, then the shipped one."""
    return (PRESET_DIR,) if directory is None else (Path(directory).resolve(), PRESET_DIR)


def list_presets(*, directory: str | Path | None = None) -> list[str]:
    """Names of the shipped presets (plus those in ``directory``), sorted."""
    return sorted({p.stem for d in _dirs(directory) for p in d.glob("*.yaml")})


def preset_file(name: str, *, directory: str | Path | None = None) -> Path:
    """Path of preset ``name``; unknown names get a did-you-mean error listing valid ones."""
    for d in _dirs(directory):
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    names = list_presets(directory=directory)
    hint = did_you_mean(str(name), names)
    raise PresetError(f"unknown preset {name!r}{hint} Valid presets: {', '.join(names)}")


def _is_sourced(node: Any) -> bool:
    keys = set(node) if isinstance(node, dict) else set()
    return keys in ({"value", "source"}, {"value", "source", "note"})


def _walk(
    node: dict, model: type[BaseModel], prefix: str, path: Path,
    values: dict[str, Any], sources: dict[str, str],
) -> None:
    """Flatten ``node`` (a params mapping for ``model``) into dotted values and sources,
    checking field names against the model and that every number carries a source."""
    if not isinstance(node, dict):
        raise PresetError(f"{path}: params{prefix and '.' + prefix}: expected a mapping of "
                          f"fields, got {node!r}")
    fields = model.model_fields
    for key, sub in node.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            hint = did_you_mean(str(key), list(fields))
            raise PresetError(f"{path}: params.{dotted}: unknown field{hint} "
                              f"(valid: {', '.join(fields)})")
        ann = fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _walk(sub, ann, dotted, path, values, sources)
            continue
        if _is_sourced(sub):
            src = sub["source"]
            if not isinstance(src, str) or not src.strip():
                raise PresetError(f"{path}: params.{dotted}.source = {src!r}: a source must be "
                                  f"a non-empty string")
            values[dotted], sources[dotted] = sub["value"], src.strip()
        elif isinstance(sub, bool | str) or sub is None:
            values[dotted] = sub
            sources[dotted] = f"{path.name}: stated (no number)"
        elif isinstance(sub, int | float):
            raise PresetError(f"{path}: params.{dotted} = {sub!r}: every number needs a source; "
                              f"write {{value: {sub!r}, source: \"...\"}}")
        else:
            raise PresetError(f"{path}: params.{dotted} = {sub!r}: expected a value or "
                              f"{{value: ..., source: ...}}")


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PresetError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise PresetError(f"{path}: the top level must be a mapping with keys {_TOP_KEYS}")
    for key in raw:
        if key not in _TOP_KEYS:
            hint = did_you_mean(str(key), _TOP_KEYS)
            raise PresetError(f"{path}: unknown top-level key {key!r}{hint} "
                              f"(valid: {', '.join(_TOP_KEYS)})")
    if not isinstance(raw.get("description"), str):
        raise PresetError(f"{path}: description: a one-line string is required")
    return raw


def _resolve(
    name: str, dirs: tuple[Path, ...], chain: tuple[str, ...] = ()
) -> tuple[dict, dict, dict]:
    """(values, sources, files) keyed by dotted field, base first, then this preset's own."""
    if name in chain:
        raise PresetError(f"extends cycle: {' -> '.join(chain + (name,))}")
    path = preset_file(name, directory=dirs[0] if len(dirs) > 1 else None)
    raw = _read(path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    files: dict[str, Path] = {}
    base = raw.get("extends")
    if base is not None:
        if not isinstance(base, str):
            raise PresetError(f"{path}: extends = {base!r}: expected a preset name")
        try:
            bv, bs, bf = _resolve(base, dirs, chain + (name,))
        except PresetError as e:
            raise PresetError(f"{path}: extends = {base!r}: {e}") from None
        values.update(bv)
        sources.update(bs)
        files.update(bf)
    own_v: dict[str, Any] = {}
    own_s: dict[str, str] = {}
    _walk(raw.get("params") or {}, DeviceParams, "", path, own_v, own_s)
    values.update(own_v)
    sources.update(own_s)
    files.update(dict.fromkeys(own_v, path))
    return values, sources, files


def _nest(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, v in values.items():
        node = out
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def load_preset(name: str, *, directory: str | Path | None = None) -> DeviceParams:
    """The validated :class:`photonic.DeviceParams` of preset ``name`` (``extends`` resolved).

    Errors name the YAML file that set the offending value, the dotted field, the value and
    the rule it breaks. ``directory`` adds a folder of user presets (e.g. an exported
    calibration) searched before the shipped ones. Files are re-read at every call (they are
    small), so an edited or newly exported preset is seen at once.
    """
    return _load(name, _dirs(directory))


def _load(name: str, dirs: tuple[Path, ...]) -> DeviceParams:
    values, _, files = _resolve(name, dirs)
    data = _nest(values)
    data["name"] = name
    try:
        return DeviceParams.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        dotted = ".".join(str(p) for p in err["loc"])
        # A model-level rule (e.g. "the shifter must reach 2π") reports its section's path.
        where = files.get(dotted) or next(
            (f for k, f in reversed(files.items()) if k.startswith(dotted + ".") or not dotted),
            preset_file(name, directory=dirs[0] if len(dirs) > 1 else None),
        )
        shown = values.get(dotted, err.get("input"))
        rule = err["msg"].removeprefix("Value error, ")
        raise PresetError(f"{where}: params.{dotted} = {shown!r}: {rule}") from None


def preset_sources(name: str, *, directory: str | Path | None = None) -> dict[str, str]:
    """Source of every leaf field of the resolved preset, keyed by dotted field name.

    Fields no preset in the chain sets are reported as :data:`DEFAULT_SOURCE`.
    """
    dirs = _dirs(directory)
    _load(name, dirs)  # validate first: provenance of an invalid preset is meaningless
    _, sources, _ = _resolve(name, dirs)
    out: dict[str, str] = {"name": "preset name"}
    for dotted in _leaf_fields(DeviceParams):
        if dotted != "name":
            out[dotted] = sources.get(dotted, DERIVED_SOURCES.get(dotted, DEFAULT_SOURCE))
    return out


def preset_description(name: str, *, directory: str | Path | None = None) -> str:
    return _read(preset_file(name, directory=directory))["description"]


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for key, f in model.model_fields.items():
        dotted = f"{prefix}{key}"
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaf_fields(ann, dotted + ".")
        else:
            out.append(dotted)
    return out
