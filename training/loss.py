"""The masked loss: mean squared error over valid pixels only."""

from __future__ import annotations

import torch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE of (B, F, P, P) forecasts over the pixels where ``mask`` (B, P, P) is 1.

    ``torch.where`` selects before squaring, so an invalid pixel contributes neither to the loss nor
    to any gradient, even when its target or prediction is NaN or infinite.
    """
    keep = (mask > 0).unsqueeze(1).expand_as(prediction)
    error = torch.where(keep, prediction - torch.where(keep, target, torch.zeros_like(target)),
                        torch.zeros_like(prediction))
    return (error * error).sum() / keep.sum().clamp_min(1)
