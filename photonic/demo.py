"""``mesh_demo`` workload: program a random matrix on a tensor core and report fidelity.

metrics.json keys: ``fidelity`` (normalised overlap, :func:`photonic.metrics.matrix_fidelity`),
``rel_frobenius_error``, ``output_rel_error`` (of y = Wx through the full detection chain),
``num_mzis``, ``num_phase_shifters``, ``num_tiles`` and the conversion counts.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from photonic.core import TensorCore, tensor_core_memory_bytes
from photonic.mesh import TOPOLOGIES
from photonic.metrics import matrix_fidelity, rel_frobenius_error
from photonic.runio import RunContext, WorkloadConfig
from photonic.textutil import markdown_table


class Config(WorkloadConfig):
    kind: Literal["mesh_demo"] = "mesh_demo"
    rows: int = Field(16, ge=1, description="M of the random M×N matrix")
    cols: int = Field(16, ge=1, description="N of the random M×N matrix")
    tile: int = Field(16, ge=2, description="k of the k×k SVD tiles")
    topology: str = "clements"
    batch: int = Field(256, ge=1, description="random input vectors for the output error")

    def model_post_init(self, _ctx) -> None:
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology={self.topology!r}: valid choices {sorted(TOPOLOGIES)}")


HEADLINE_METRICS = ("fidelity", "rel_frobenius_error", "output_rel_error")


def estimate_memory_bytes(cfg: Config, ctx_like) -> int:
    """Peak memory of the run (checked by the CLI before it starts)."""
    return tensor_core_memory_bytes(cfg.rows, cfg.cols, tile=cfg.tile, batch=cfg.batch)


def run(cfg: Config, ctx: RunContext) -> dict:
    g = torch.Generator().manual_seed(ctx.seed)
    w = torch.randn(cfg.rows, cfg.cols, generator=g, dtype=torch.float64)
    core = TensorCore.from_matrix(w, tile=cfg.tile, topology=cfg.topology, device=ctx.device,
                                  noise=ctx.noise, seed=ctx.seed)
    realised = core.matrix()
    x = torch.randn(cfg.batch, cfg.cols, generator=g, dtype=torch.float64)
    y = core(x)
    ref = x @ w.T
    metrics = {
        "fidelity": float(matrix_fidelity(w, realised)),
        "rel_frobenius_error": float(rel_frobenius_error(w, realised)),
        "output_rel_error": float(torch.linalg.norm(y - ref) / torch.linalg.norm(ref)),
        **core.counts.as_dict(),
    }
    lines = [
        f"# Mesh demo: a random {cfg.rows}×{cfg.cols} matrix on {cfg.tile}×{cfg.tile} "
        f"{cfg.topology} SVD tiles",
        "",
        f"Preset `{ctx.provenance.get('preset', ctx.device.name)}`; noise switched on: "
        + (", ".join(k for k, v in ctx.noise.model_dump().items() if v is True) or "none"),
        "",
        *markdown_table(["quantity", "value"], metrics.items()),
    ]
    lines += ["", "fidelity = |⟨W, Ŵ⟩|²/(‖W‖²‖Ŵ‖²) of the realised (complex) matrix Ŵ; "
              "output_rel_error includes input DAC, detector noise and ADC."]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return metrics
