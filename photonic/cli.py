"""``photonic-sim`` command line — the composition root.

Loads YAML configs, applies ``--set`` overrides, validates everything before any work,
resolves device presets (``calibration``), and dispatches on ``workload.kind`` to the
registered workload. Exit codes: 0 ok, 2 bad input, 1 internal failure.
"""

from __future__ import annotations

import difflib
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def closest(name: str, choices) -> str:
    """'; did you mean X?' for the closest valid choice ('' when nothing is close)."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    if not close:
        pref = [c for c in choices if c.startswith(str(name)[:3])]
        close = pref[:1]
    return f"; did you mean {close[0]!r}?" if close else ""


class BadInput(Exception):
    """A user error: reported in one message, exit code 2."""


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


# --------------------------------------------------------------------------- config loading
def find_config(name: str) -> Path:
    """A path, or the bare name of a shipped config (with or without ``.yaml``)."""
    p = Path(name)
    if p.is_file():
        return p
    stem = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    for folder in (Path.cwd() / "configs", REPO_CONFIGS):
        if (folder / stem).is_file():
            return folder / stem
    shipped = sorted(q.name for q in REPO_CONFIGS.glob("*.yaml")) if REPO_CONFIGS.is_dir() else []
    hint = closest(stem, shipped)
    raise BadInput(f"config {name!r} not found (not a file, not a shipped config){hint} "
                   f"Shipped configs: {', '.join(shipped)}")


def apply_override(cfg: dict, assignment: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into the nested dict ``cfg``."""
    if "=" not in assignment:
        raise BadInput(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set workload.iters=10")
    key, raw = assignment.split("=", 1)
    parts = [k for k in key.strip().split(".") if k]
    if not parts:
        raise BadInput(f"--set {assignment!r}: empty key")
    node = cfg
    for k in parts[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise BadInput(f"--set {assignment!r}: {k!r} is a value, not a section")
        node = nxt
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise BadInput(f"--set {assignment!r}: value is not valid YAML ({e})") from None


def _format_validation(err: ValidationError, model: type[BaseModel], where: str, prefix: str):
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        path = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        value = e.get("input")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            fields = _fields_at(model, e["loc"][:-1])
            hint = closest(str(e["loc"][-1]), fields)
            msg = f"unknown key (valid keys: {', '.join(sorted(fields))}){hint}"
            lines.append(f"{where}: {path}: {msg}")
            continue
        expected = (e.get("ctx") or {}).get("expected")
        if expected and isinstance(value, str):
            choices = [c.strip().strip("'") for c in expected.replace(" or ", ",").split(",")]
            msg += closest(value, choices)
        lines.append(f"{where}: {path} = {value!r}: {msg}")
    return "\n".join(lines)


def _fields_at(model: type[BaseModel], loc) -> list[str]:
    m = model
    for part in loc:
        f = getattr(m, "model_fields", {}).get(part)
        ann = getattr(f, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            m = ann
        else:
            return list(getattr(m, "model_fields", {}))
    return list(getattr(m, "model_fields", {}))


def workload_module(kind: str):
    if kind not in WORKLOADS:
        hint = closest(str(kind), WORKLOADS)
        raise BadInput(f"workload.kind = {kind!r}: unknown workload (valid: "
                       f"{', '.join(sorted(WORKLOADS))}){hint}")
    return importlib.import_module(WORKLOADS[kind])


def _noise_config(spec, where: str):
    from photonic.noise import NoiseConfig

    try:
        return NoiseConfig.from_spec(spec)
    except ValidationError as e:
        raise BadInput(_format_validation(e, NoiseConfig, where, "chip.noise.")) from None


def _device(preset: str, overrides: dict, where: str, field_path: str):
    import calibration

    names = calibration.list_presets()
    if preset not in names:
        hint = closest(preset, names)
        raise BadInput(f"{where}: {field_path} = {preset!r}: unknown preset (valid: "
                       f"{', '.join(names)}){hint}")
    dev = calibration.load_preset(preset)
    if overrides:
        from photonic.devices import DeviceParams

        data = dev.model_dump()

        def apply(node: dict, key: str, value: Any, path: str) -> None:
            """Set one override (a dotted key, or a nested mapping merged field by field,
            as ``--set chip.overrides.phase_dac.bits=12`` gives) into ``node``."""
            parts = str(key).split(".")
            for k in parts[:-1]:
                if not isinstance(node.get(k), dict):
                    raise BadInput(f"{where}: chip.overrides.{path}: {k!r} is not a section "
                                   f"of the device parameters")
                node = node[k]
            last = parts[-1]
            if last not in node:
                hint = closest(last, list(node))
                raise BadInput(f"{where}: chip.overrides.{path}: unknown device field{hint}")
            if isinstance(value, dict) and isinstance(node[last], dict):
                for sub, v in value.items():
                    apply(node[last], sub, v, f"{path}.{sub}")
            else:
                node[last] = value

        for key, value in overrides.items():
            apply(data, key, value, str(key))
        try:
            dev = DeviceParams.model_validate(data)
        except ValidationError as e:
            raise BadInput(_format_validation(e, DeviceParams, where, "chip.overrides→")) from None
    return dev


def load_run(config: str, sets: list[str]) -> tuple[Path, RunConfig, Any, Any, dict]:
    """Read, override and validate a run config; returns (path, run, workload cfg, module,
    resolved extras). Raises BadInput on any user error."""
    path = find_config(config)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise BadInput(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: the top level must be a mapping with name, chip, workload")
    for s in sets:
        apply_override(raw, s)
    try:
        run = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise BadInput(_format_validation(e, RunConfig, str(path), "")) from None
    kind = run.workload.get("kind")
    if kind is None:
        raise BadInput(f"{path}: workload.kind is missing (valid: {', '.join(sorted(WORKLOADS))})")
    module = workload_module(kind)
    try:
        wcfg = module.Config.model_validate(run.workload)
    except ValidationError as e:
        raise BadInput(_format_validation(e, module.Config, str(path), "workload.")) from None
    noise = _noise_config(run.chip.noise, str(path))
    device = _device(run.chip.preset, run.chip.overrides, str(path), "chip.preset")
    presets = {}
    for i, name in enumerate(getattr(wcfg, "presets", None) or []):
        presets[name] = _device(name, {}, str(path), f"workload.presets[{i}]")
    return path, run, wcfg, module, {"device": device, "noise": noise, "presets": presets}


# --------------------------------------------------------------------------- commands
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Simulate photonic tensor cores and run ML workloads on them.")
presets_app = typer.Typer(no_args_is_help=True, help="Device presets (with sources).")
app.add_typer(presets_app, name="presets")


def _fail(msg: str, code: int) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="Config path or bare name of a shipped config")],
    set_: Annotated[list[str], typer.Option("--set", help="Override, e.g. workload.iters=100")] = [],  # noqa: B006,E501
    out: Annotated[Path | None, typer.Option(help="Output folder (default reports/<name>)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars")] = False,
) -> None:
    """Run a workload config and write metrics.json, report.md and figures."""
    try:
        path, cfg, wcfg, module, extra = load_run(config, set_)
    except BadInput as e:
        _fail(str(e), 2)
    from photonic import __version__
    from photonic.runio import RunContext, atomic_write_bytes

    out_dir = out or Path("reports") / cfg.name
    import calibration

    provenance = {"preset": cfg.chip.preset,
                  "sources": calibration.preset_sources(cfg.chip.preset),
                  "presets": {n: calibration.preset_sources(n) for n in extra["presets"]}}
    ctx = RunContext(out=out_dir, seed=cfg.seed, device=extra["device"], noise=extra["noise"],
                     resume=resume, provenance=provenance, presets=extra["presets"],
                     show_progress=not quiet)
    resolved = cfg.model_dump()
    resolved["workload"] = wcfg.model_dump(mode="json")
    resolved["resolved"] = {
        "package_version": __version__,
        "config_file": str(path),
        "overrides": list(set_),
        "device": extra["device"].model_dump(mode="json"),
        "noise": extra["noise"].model_dump(mode="json"),
        "preset_provenance": provenance,
    }
    atomic_write_bytes(ctx.path("config.resolved.yaml"),
                       yaml.safe_dump(resolved, sort_keys=False).encode())
    t0 = time.perf_counter()
    try:
        metrics = module.run(wcfg, ctx)
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; files so far (and any checkpoint) are in {out_dir}", err=True)
        raise typer.Exit(130) from None
    except BadInput as e:
        _fail(str(e), 2)
    except Exception:
        traceback.print_exc()
        _fail(f"internal failure while running {cfg.name!r}", 1)
    from photonic.runio import flatten_metrics

    flat = flatten_metrics(metrics or {})
    flat.setdefault("wall_s", time.perf_counter() - t0)
    ctx.write_json("metrics.json", flat)
    typer.echo(f"wrote {out_dir}/ (report.md, metrics.json, config.resolved.yaml)")


@app.command()
def validate(
    config: Annotated[str, typer.Argument(help="Config path or bare name")],
    set_: Annotated[list[str], typer.Option("--set", help="Override KEY=VALUE")] = [],  # noqa: B006
) -> None:
    """Check a config (and its overrides) without running it."""
    try:
        path, cfg, wcfg, _, extra = load_run(config, set_)
    except BadInput as e:
        _fail(str(e), 2)
    typer.echo(f"{path}: ok (workload {wcfg.kind!r}, preset {cfg.chip.preset!r})")


@app.command()
def sweep(
    config: Annotated[str, typer.Argument(help="Sweep config path or bare name")],
    set_: Annotated[list[str], typer.Option("--set", help="Override KEY=VALUE")] = [],  # noqa: B006
    out: Annotated[Path | None, typer.Option(help="Output folder")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars")] = False,
) -> None:
    """Run a design-space sweep config (workload.kind: sweep); resumes finished points."""
    run(config, set_=set_, out=out, resume=True, quiet=quiet)


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
        hint = closest(name, names)
        _fail(f"unknown preset {name!r} (valid: {', '.join(names)}){hint}", 2)
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
