"""The one small-fit helper: minimise a loss over a few tensors by L-BFGS (temperature scaling, mixture
weights, the out-of-scope regression all fit this way)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def minimize(loss: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], **options) -> None:
    """Minimise ``loss()`` over ``params`` (tensors with ``requires_grad``, changed in place) with one step of
    :class:`torch.optim.LBFGS` and a strong-Wolfe line search; ``options`` (``lr``, ``max_iter``,
    ``tolerance_grad``...) go to the optimiser."""
    opt = torch.optim.LBFGS(list(params), line_search_fn="strong_wolfe", **options)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    opt.step(closure)
