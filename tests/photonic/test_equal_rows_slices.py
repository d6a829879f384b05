"""equal_rows on rows wider than one key slice and on rows holding NaN."""

import torch

import photonic.core as core
from photonic import equal_rows


def test_rows_differing_only_in_the_last_slice_or_holding_nan_are_grouped_bitwise():
    D = 2 * core._KEY_COLUMNS + 5  # three slices, the last one partial
    a, b = torch.randn(2, D, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    late = a.clone()
    late[-1] += 1.0  # differs in the partial last slice only
    nan = a.clone()
    nan[3] = float("nan")
    rows = torch.stack([a, b, late, a, nan, nan, b])
    first, inverse = equal_rows(rows)
    assert first[inverse].tolist() == [0, 1, 2, 0, 4, 4, 1]
    assert torch.isfinite(core._row_keys(rows[:4])).all()
