"""Circuit cross-check and layout figures (prints tables; not part of the tests).

    python benchmarks/circuits_crosscheck.py [--out DIR] [--parts crosscheck layouts presets]

1. The S-matrix of programmed Clements / Reck meshes (N = 4, 8, 16) built from simphony's own
   coupler and waveguide models and solved by SAX, against the hub's ``Mesh.matrix()``
   (max |S / common_path_factor − T_hub|): ideal at 1.55 µm, over a ±20 nm sweep with coupler
   dispersion and dispersive arms, and over the sweep with coupler errors and losses.
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
from photonic import DeviceParams, Mesh, NoiseConfig, decompose
from photonic.devices import CouplerParams, MziParams
from photonic.noise import sample_mesh_errors
from photonic.textutil import markdown_table

SWEEP_UM = np.linspace(1.53, 1.57, 9)
# Dispersive arms (ng ≠ neff): a 500 nm × 220 nm SOI strip, TE, neff ≈ 2.44 and ng ≈ 4.2 at
# 1.55 µm (Chrostowski & Hochberg, Silicon Photonics Design, 2015, ch. 3).
ARM = circuits.ArmWaveguide(section_length_um=100.0, neff=2.44, ng=4.2)
DEVICE = DeviceParams(
    coupler=CouplerParams(split_error_std_rad=0.05, dispersion_per_um=0.3),
    mzi=MziParams(insertion_loss_db=0.3, loss_std_db=0.1),
)


CHIP = NoiseConfig(coupler_error=True, insertion_loss=True)


def _hub_sweep(phases, noise: NoiseConfig, errors) -> np.ndarray:
    return np.stack([
        Mesh(phases, device=DEVICE, errors=errors,
             noise=noise.model_copy(update={"wavelength_um": float(wl)})).matrix().numpy()
        for wl in SWEEP_UM
    ])


def _case(n: int, topology: str, seed: int) -> np.ndarray:
    """Errors (ideal @λ0, ideal sweep, errors+loss sweep), sweep movement, solve seconds."""
    phases = decompose(torch.as_tensor(unitary_group.rvs(n, random_state=seed)), topology)
    errors = sample_mesh_errors(phases.layout, DEVICE,
                                generator=torch.Generator().manual_seed(seed))
    common = circuits.mesh_path_factor(phases.layout, wavelength_um=SWEEP_UM, arm=ARM)
    common = common[:, None, None]
    t0 = time.perf_counter()
    ideal = circuits.mesh_smatrix(phases, wavelength_um=SWEEP_UM,
                                  **circuits.hub_settings(phases.layout, DEVICE, arm=ARM))
    t_solve = time.perf_counter() - t0
    chip = circuits.hub_settings(phases.layout, DEVICE, noise=CHIP, errors=errors, arm=ARM)
    real = circuits.mesh_smatrix(phases, wavelength_um=SWEEP_UM, **chip) / common
    ideal = ideal / common
    centre = int(np.argmin(np.abs(SWEEP_UM - DEVICE.design_wavelength_um)))
    err_ideal = np.abs(ideal[centre] - Mesh(phases).matrix().numpy()).max()
    err_sweep = np.abs(ideal - _hub_sweep(phases, NoiseConfig(), None)).max()
    err_real = np.abs(real - _hub_sweep(phases, CHIP, errors)).max()
    moved = np.abs(ideal[0] - ideal[centre]).max()
    return np.array([err_ideal, err_sweep, err_real, moved, t_solve])


def crosscheck(ns=(4, 8, 16), seeds=(0, 1, 2)) -> None:
    """Max |S/c − T_hub| per mesh: median and worst over seeds (unitary and chip errors)."""
    print(f"sweep {SWEEP_UM[0]:.2f}–{SWEEP_UM[-1]:.2f} µm ({SWEEP_UM.size} points), coupler "
          f"dispersion {DEVICE.coupler.dispersion_per_um} /µm, arms neff {ARM.neff}, "
          f"ng {ARM.ng}, section {ARM.section_length_um} µm")
    rows = []
    for topology in ("clements", "reck"):
        for n in ns:
            r = np.stack([_case(n, topology, seed) for seed in seeds])
            med, worst = np.median(r, 0), r.max(0)
            rows.append([topology, n, *(f"{med[i]:.1e} / {worst[i]:.1e}" for i in range(3)),
                         f"{r[:, 3].min():.3f}", f"{med[4]:.1f}"])
    headers = ["topology", "N", "ideal @1.55 µm", "ideal sweep", "errors+loss sweep",
               "sweep moves T by (min over seeds)", "solve_s (median)"]
    print(f"max |S/c − T_hub|, median / worst over seeds {list(seeds)}:")
    print("\n".join(markdown_table(headers, rows)))
    rounding_floor()


def rounding_floor(n: int = 8, topology: str = "reck") -> None:
    """The agreement is float64 rounding of the arms' absolute phases 2π n L / λ, which grow
    with the section length: shorter sections, smaller residual."""
    phases = decompose(torch.as_tensor(unitary_group.rvs(n, random_state=0)), topology)
    hub = Mesh(phases).matrix().numpy()
    rows = []
    for length_um in (1.0, 10.0, 100.0, 1000.0):
        arm = circuits.ArmWaveguide(section_length_um=length_um, neff=ARM.neff, ng=ARM.ng)
        s = circuits.mesh_smatrix(phases, arm=arm)
        err = np.abs(s / circuits.mesh_path_factor(phases.layout, arm=arm) - hub).max()
        phase = 2 * np.pi * ARM.neff * length_um / DEVICE.design_wavelength_um
        rows.append([length_um, f"{phase:.3g}", f"{err:.1e}"])
    print(f"\n{topology} N={n}, ideal, 1.55 µm, seed 0: residual vs arm section length")
    print("\n".join(markdown_table(["section_um", "phase per section (rad)",
                                     "max abs(S/c − T_hub)"], rows)))


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


PARTS = {  # name → part, run in this order
    "crosscheck": lambda args: crosscheck(),
    "layouts": lambda args: layouts(args.out),
    "presets": lambda args: presets(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/circuits_crosscheck"))
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS),
                        help="parts to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, part in PARTS.items():
        if name in args.parts:
            part(args)


if __name__ == "__main__":
    main()
