"""Running the language models' linear layers on the hub's photonic tensor cores.

Two ways, both through ``photonic.convert_linear`` (every ``nn.Linear`` of the model, i.e. all
attention, MLP / expert, router and LM-head projections, becomes a ``photonic.PhotonicLinear``):

- ``photonic_model``: the converted model itself. Each forward maps the weights onto SVD tiles
  and runs the inputs through the chip with all enabled non-idealities, per inference
  (detector noise, DAC/ADC quantisation, dynamic phase noise). Exact, but the hub's
  ``optical_matmul`` costs seconds per layer call on this CPU, so whole-benchmark sweeps are
  out of reach with it.
- ``realised_model``: a copy of the model whose weights are replaced by the real matrices the
  programmed chip realises (``PhotonicMatrix.realised_matrix``), i.e. a weight-stationary chip
  programmed once: every mesh non-ideality of the preset (phase quantisation, gamma error,
  fabrication offsets, thermal crosstalk, coupler splitting error, insertion loss, and one
  draw of the dynamic phase noise) is kept; per-inference detector noise and DAC/ADC
  quantisation are not. With the detector/converter flags off, both ways give the same
  logits (tested).
"""

from __future__ import annotations

import copy

import torch

import photonic
from mlfrontends.lm.model import CausalLM


def photonic_model(model: CausalLM, *, device: photonic.DeviceParams,
                   noise: photonic.NoiseConfig, tile: int = 8, seed: int = 0) -> CausalLM:
    """A float64 copy of ``model`` with every linear layer a ``PhotonicLinear`` (weight mode)."""
    chip = copy.deepcopy(model).double()
    return photonic.convert_linear(chip, mode="weight", tile=tile, device=device, noise=noise,
                                   seed=seed)


@torch.no_grad()
def realised_model(model: CausalLM, *, device: photonic.DeviceParams,
                   noise: photonic.NoiseConfig, tile: int = 8, seed: int = 0) -> CausalLM:
    """A copy of ``model`` (same dtype) whose linear weights are the chip-realised matrices."""
    chip = photonic_model(model, device=device, noise=noise, tile=tile, seed=seed)
    out = copy.deepcopy(model)
    state = out.state_dict()
    for name, mod in chip.named_modules():
        if isinstance(mod, photonic.PhotonicLinear):
            state[f"{name}.weight"] = mod.core.realised_matrix().to(state[f"{name}.weight"].dtype)
    out.load_state_dict(state)
    return out
