"""calibration — device presets with provenance, and calibration of fabricated meshes.

- presets: ``load_preset``, ``list_presets``, ``preset_sources`` (YAML under ``presets/``);
- a virtual fabricated chip: ``fabricate`` → (``VirtualChip``, ``ChipTruth``);
- characterisation: ``MeshCharacterizer().fit(chip)`` (homodyne receivers) and
  ``IntensityCharacterizer().fit(chip)`` (power meters only), scikit-learn shape;
- programming: ``naive_codes``, ``ErrorAwareProgrammer``;
- the ``calibrate_mesh`` workload lives in :mod:`calibration.workload`.

The public API is exactly what this module re-exports.
"""

from calibration.characterise import IntensityCharacterizer, MeshCharacterizer
from calibration.chip import ChipTruth, VirtualChip, fabricate
from calibration.presets import (
    PresetError,
    list_presets,
    load_preset,
    preset_description,
    preset_sources,
)
from calibration.program import ErrorAwareProgrammer, naive_codes

__all__ = [
    "ChipTruth",
    "ErrorAwareProgrammer",
    "IntensityCharacterizer",
    "MeshCharacterizer",
    "PresetError",
    "VirtualChip",
    "fabricate",
    "list_presets",
    "load_preset",
    "naive_codes",
    "preset_description",
    "preset_sources",
]
