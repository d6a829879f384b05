"""The network of a ``pinn`` run, digital or on the photonic core, and the parameter views
the steppers need: which names are MZI phases, their [0, 2π) box, the DAC-realised values,
the read-out layer's blocks and the noise generators a checkpoint keeps."""

from __future__ import annotations

import copy
import math

import torch

from photonic.runio import RunContext

from ..zo import ParamLayout
from .chip import ChipMLP
from .config import Config, net_spec
from .derivatives import Autograd, DerivativeEstimator, build_estimator
from .models import DenseLinear, TTLinear, build_mlp
from .pdes import PDE

__all__ = ["build_network", "make_estimator", "is_phase", "phase_bounds", "dac_realise",
           "readout_names", "readout_blocks", "noise_generators", "is_electronic"]


def is_electronic(cfg: Config, i: int, last: int, is_tt: bool) -> bool:
    """Whether layer ``i`` (of 0..``last``) runs in electronics under model.chip_layers."""
    if cfg.model.execution == "digital":
        return True
    if cfg.model.chip_layers == "tt":
        return not is_tt
    return cfg.model.chip_layers == "all_but_readout" and i == last and not is_tt


def build_network(cfg: Config, ctx: RunContext,
                  init: torch.nn.Module | None = None) -> torch.nn.Module:
    """The configured MLP, digital or with its layers on the photonic core. ``init``: a
    trained digital network of the same architecture to start from (programmed onto the
    meshes, ``PretrainConfig``) instead of the seed's random one; in the phase domain its
    phases are set around the design's thermal crosstalk
    (``PhotonicMatrix.compensate_crosstalk``)."""
    spec = net_spec(cfg)
    dtype = getattr(torch, cfg.model.precision)
    if init is not None:
        net = copy.deepcopy(init).to(dtype)
    else:
        net = build_mlp(
            spec["widths"], activation=spec["activation"],
            tt_layers=spec["tt_layers"] if cfg.model.arch == "tt" else None,
            tt_rank=cfg.model.tt_rank, tt_init=cfg.model.tt_init, dtype=dtype, seed=ctx.seed,
        )
    if cfg.model.execution == "digital":
        return net
    import photonic

    layers = []
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers):
        if is_electronic(cfg, i, last, isinstance(layer, TTLinear)):
            layers.append(layer)  # electronic dense layer
            continue
        kw = dict(mode=cfg.model.execution, tile=cfg.model.tile, device=ctx.device,
                  noise=ctx.noise, seed=ctx.seed + 1000 * (i + 1), dtype=dtype)
        if isinstance(layer, TTLinear):
            new = photonic.TTPhotonicLinear(
                list(layer.in_shape), list(layer.out_shape), list(layer.ranks[1:-1]),
                cores=[c.detach() for c in layer.cores], **kw)
        else:
            new = photonic.PhotonicLinear(layer.weight.shape[1], layer.weight.shape[0],
                                          weight=layer.weight.detach(), **kw)
        new.bias.data.copy_(layer.bias.detach())
        if init is not None and cfg.model.execution == "phase":
            for m in new.modules():  # a trained network: program it around the crosstalk
                if isinstance(m, photonic.PhotonicMatrix):
                    m.compensate_crosstalk()
        layers.append(new)
    return ChipMLP(layers, spec["activation"], fast=ctx.noise.linear_detection)


def make_estimator(cfg: Config, pde: PDE) -> DerivativeEstimator:
    """The configured derivative estimator (Stein σ: the network's default or estimator's)."""
    e, sigma = cfg.estimator, net_spec(cfg)["sigma"]
    if e.kind == "autograd":
        return Autograd(hess_dims=pde.hess_dims)
    kw = {"sg_stein": dict(sigma=sigma, level=e.level),
          "mc_stein": dict(sigma=sigma, num_samples=e.num_samples),
          "fd": dict(step=e.step)}[e.kind]
    return build_estimator(e.kind, **kw)


def readout_names(net: torch.nn.Module) -> tuple[str, ...]:
    """Parameter names of the network's last (read-out) layer."""
    last = len(net.layers) - 1
    return tuple(f"layers.{last}.{n}" for n, _ in net.layers[last].named_parameters())


def is_phase(name: str) -> bool:
    """Whether a parameter name is a photonic mesh's MZI phases (PhotonicMatrix.phases);
    every other trainable parameter (gains, biases, electronic weights) is continuous."""
    return name.endswith("phases")


def phase_bounds(net: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds over the trainable parameters: [0, 2π) for every phase (just below 2π, which
    the DAC wraps to 0), none for gains, biases and electronic weights. A phase that starts
    at or above the upper bound is set to 0, which the DAC realises identically."""
    layout = ParamLayout(net)
    lo = torch.full((layout.dim,), -math.inf, dtype=torch.float64)
    hi = torch.full((layout.dim,), math.inf, dtype=torch.float64)
    for name, p, sl in zip(layout.names, layout.params, layout.slices, strict=True):
        if is_phase(name):
            lo[sl], hi[sl] = 0.0, 2 * math.pi * (1 - 1e-6)
            with torch.no_grad():
                p.masked_fill_(p >= hi[sl].reshape(p.shape).to(p.dtype), 0.0)
    if not bool(torch.isfinite(lo).any()):
        raise ValueError("optim.clamp_phases: the network has no trainable phases "
                         "(model.execution must be 'phase')")
    return lo, hi


def readout_blocks(net: torch.nn.Module, size: int | None) -> dict[str, int]:
    """optim.readout_block_size for the parameters of an electronic read-out layer."""
    if size is None:
        return {}
    last = net.layers[len(net.layers) - 1]
    if not isinstance(last, DenseLinear):
        raise ValueError("optim.readout_block_size: the read-out layer is "
                         f"{type(last).__name__}, not an electronic dense layer")
    return dict.fromkeys(readout_names(net), size)


def noise_generators(module: torch.nn.Module) -> list[torch.Generator]:
    """Noise generators of the photonic layers (their state is part of a checkpoint)."""
    return [m._gen for m in module.modules() if isinstance(getattr(m, "_gen", None),
                                                           torch.Generator)]


def dac_realise(net: torch.nn.Module, layout: ParamLayout, ctx: RunContext):
    """(P, D) programmed parameter vectors → what the chip sets: every ``phases`` entry on
    the phase-DAC grid (photonic.quantize_phase), expressed within ±π of the programmed
    value; electronic gains and biases unchanged. None when phases are not quantised."""
    if not ctx.noise.phase_quantization or not any(map(is_phase, layout.names)):
        return None
    from photonic import quantize_phase

    mask = torch.zeros(layout.dim, dtype=torch.bool)
    for name, sl in zip(layout.names, layout.slices, strict=True):
        if is_phase(name):
            mask[sl] = True
    shifter, dac = ctx.device.shifter, ctx.device.phase_dac

    def realise(flat: torch.Tensor) -> torch.Tensor:
        q = quantize_phase(flat.detach(), shifter, dac.bits, dac.grid)
        near = flat + torch.remainder(q - flat + math.pi, 2 * math.pi) - math.pi
        return torch.where(mask, near, flat)

    return realise
