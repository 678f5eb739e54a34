"""Channel concatenation of tensors on one set of sites (the skip connections of a U-Net)."""

import torch

from ..tensor import SparseTensor


def cat(*tensors: SparseTensor) -> SparseTensor:
    """feats of every tensor side by side, on the sites of the first.

    Tensors sharing the first one's coordinate map are joined as they are; a tensor holding the same
    sites in another row order is reordered to match; anything else raises ValueError.
    """
    if not tensors:
        raise ValueError("cat needs at least one SparseTensor")
    for i, t in enumerate(tensors):
        if not isinstance(t, SparseTensor):
            raise TypeError(f"cat: argument {i} must be a SparseTensor, got {type(t).__name__}")
    first = tensors[0]
    feats = [first.feats]
    for i, t in enumerate(tensors[1:], start=1):
        if t.stride != first.stride:
            raise ValueError(f"cat: argument {i} has stride {t.stride}, expected {first.stride} (that of argument 0)")
        aligned = feats_on_sites_of(first, t)
        if aligned is None:
            raise ValueError(
                f"cat: argument {i} holds other sites than argument 0 ({t.num_sites} vs {first.num_sites} sites); "
                "concatenation needs the same sites"
            )
        feats.append(aligned)
    return first.replace_feats(torch.cat(feats, 1))


def feats_on_sites_of(first: SparseTensor, t: SparseTensor) -> torch.Tensor | None:
    """t's features in the row order of first's sites: as they are when both share one coordinate
    map, reordered when t holds the same sites in another order; None when t holds other sites."""
    if t.coordinate_map is first.coordinate_map:
        return t.feats
    rows = t.coordinate_map.query(first.coords) if t.num_sites == first.num_sites else None
    if rows is None or bool((rows < 0).any()):
        return None
    return t.feats.index_select(0, rows.long())
