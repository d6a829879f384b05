"""calibration — device presets with provenance, and calibration of fabricated meshes.

The public API is exactly what this module re-exports.
"""

from calibration.presets import (
    PresetError,
    list_presets,
    load_preset,
    preset_description,
    preset_sources,
)

__all__ = [
    "PresetError",
    "list_presets",
    "load_preset",
    "preset_description",
    "preset_sources",
]
