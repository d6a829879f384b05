"""Circuit cross-check and layout figures for issue 3 (prints tables; not part of the tests).

    python benchmarks/circuits_crosscheck.py [--out DIR]

1. SAX circuit S-matrix vs hub transfer matrix of programmed 8×8 Clements / Reck meshes:
   ideal, with coupler errors and losses, and over a ±20 nm sweep (max |S − T|).
2. Layout build times, layout-true vs analytic mesh areas for N = 4 … 32, and a GDS + PNG of
   an 8×8 tensor core written to DIR (default reports/circuits_crosscheck).
3. Per shipped preset: layout-true MZI cell and 16×16 mesh area vs the preset's analytic
   MZI footprint (benchmarks may read presets; the circuits package itself never does).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import unitary_group

import circuits
from photonic import DeviceParams, NoiseConfig, decompose
from photonic.devices import CouplerParams, MziParams
from photonic.mesh import BALANCED_TOPOLOGIES
from photonic.noise import realise_mesh, sample_mesh_errors


def crosscheck(n: int = 8) -> None:
    device = DeviceParams(
        coupler=CouplerParams(split_error_std_rad=0.05, dispersion_per_um=0.3),
        mzi=MziParams(insertion_loss_db=0.3, loss_std_db=0.1),
    )
    sweep = np.linspace(1.53, 1.57, 41)
    print(f"{'topology':9s} {'ideal':>9s} {'errors':>9s} {'sweep±20nm':>11s} {'t_sweep_s':>9s}")
    for topology in ("clements", "reck"):
        phases = decompose(torch.as_tensor(unitary_group.rvs(n, random_state=0)), topology=topology)
        errors = sample_mesh_errors(
            phases.layout, device, generator=torch.Generator().manual_seed(0)
        )
        kw = dict(
            alpha_rad=errors.alpha_rad.numpy(),
            beta_rad=errors.beta_rad.numpy(),
            loss_db=errors.loss_db.numpy(),
            pad_loss_db=device.mzi.insertion_loss_db if topology in BALANCED_TOPOLOGIES else 0.0,
        )
        ideal = np.abs(circuits.mesh_smatrix(phases) - phases.matrix().numpy()).max()
        noise = NoiseConfig(coupler_error=True, insertion_loss=True)
        hub = realise_mesh(phases, device=device, noise=noise, errors=errors).numpy()
        err = np.abs(circuits.mesh_smatrix(phases, **kw) - hub).max()
        t0 = time.perf_counter()
        s = circuits.mesh_smatrix(phases, wavelength_um=sweep, coupler_dispersion_per_um=0.3, **kw)
        t_sweep = time.perf_counter() - t0
        hub_sweep = np.stack(
            [
                realise_mesh(
                    phases,
                    device=device,
                    noise=noise.model_copy(update={"wavelength_um": float(wl)}),
                    errors=errors,
                ).numpy()
                for wl in sweep
            ]
        )
        sw = np.abs(s - hub_sweep).max()
        print(f"{topology:9s} {ideal:9.2e} {err:9.2e} {sw:11.2e} {t_sweep:9.2f}")


def layouts(out: Path) -> None:
    print(f"\n{'design':12s} {'N':>3s} {'build_s':>8s} {'bbox_um':>20s} {'area_mm2':>9s}")
    for design in ("mesh", "tensor_core"):
        for n in (4, 8, 16, 32):
            t0 = time.perf_counter()
            c = circuits.build(design, n=n, topology="clements")
            dt = time.perf_counter() - t0
            box = f"{c.dxsize:.0f} x {c.dysize:.0f}"
            area = circuits.footprint_um2(c) / 1e6
            print(f"{design:12s} {n:3d} {dt:8.3f} {box:>20s} {area:9.3f}")
    print(
        f"\n{'topology':9s} {'N':>3s} {'K':>4s} {'layout_mm2':>10s} {'analytic_mm2':>12s} "
        f"{'gap':>7s}"
    )
    for r in circuits.compare_mesh_areas(ns=(4, 8, 12, 16, 24, 32)):
        print(
            f"{r['topology']:9s} {r['n']:3d} {r['num_mzis']:4d} {r['layout_area_um2'] / 1e6:10.3f} "
            f"{r['analytic_area_um2'] / 1e6:12.3f} {r['gap']:+7.1%}"
        )
    core = circuits.build("tensor_core", n=8)
    gds = circuits.write_gds(core, out / "tensor_core_8.gds")
    t0 = time.perf_counter()
    png = circuits.render_png(core, out / "tensor_core_8.png", title="8×8 SVD tensor core")
    print(f"\nwrote {gds} and {png} (render {time.perf_counter() - t0:.2f} s)")
    t0 = time.perf_counter()
    circuits.render_png(circuits.build("tensor_core", n=32), out / "tensor_core_32.png")
    print(f"render N=32 tensor core PNG: {time.perf_counter() - t0:.2f} s")


def presets(n: int = 16) -> None:
    """Layout-true MZI cell per shipped preset vs the preset's analytic MZI footprint."""
    import calibration
    from photonic.footprint import mesh_area_um2

    print(
        f"\n{'preset':24s} {'heater_um':>9s} {'pitch_um':>8s} {'cell_LxH_um':>13s} "
        f"{'preset_LxH_um':>13s} {f'mesh{n}_layout_mm2':>17s} {'preset_analytic_mm2':>19s}"
    )
    for name in calibration.list_presets():
        device = calibration.load_preset(name)
        settings = circuits.settings_from_device(device)
        geo = circuits.cell_geometry_um(**settings)
        layout = circuits.layout_area_um2("mesh", n=n, **settings) / 1e6
        analytic = mesh_area_um2(device, n=n) / 1e6
        print(
            f"{name:24s} {settings['heater_length_um']:9.1f} {settings['mode_pitch_um']:8.1f} "
            f"{geo['mzi_length_um']:6.1f}x{geo['mzi_height_um']:<6.1f} "
            f"{device.mzi_cell_length_um:6.1f}x{device.mzi_cell_height_um:<6.1f} "
            f"{layout:17.3f} {analytic:19.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/circuits_crosscheck"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    crosscheck()
    layouts(args.out)
    presets()


if __name__ == "__main__":
    main()
