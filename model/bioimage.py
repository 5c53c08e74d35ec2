"""The network as bioimage.io tools run it: one forward is the whole argmax episode.

A bioimage.io model package (``pixeldrl export``) names :class:`PixelDRLEpisode` as the
architecture of its ``pytorch_state_dict`` weights, with the model config as keyword
arguments. bioimage.io tools (bioimageio.core, deepImageJ, ilastik, ...) apply the
package's preprocessing (the per-channel 0.5/99.5 percentile scaling and the clip to
[0, 1] of model/preprocess.py), then call ``forward`` once; PixelDRL-MG needs t_max
steps of the policy, each on the mask the previous one left, so the steps run inside
``forward``. napari-pixeldrl itself never loads these weights: it reads the native
safetensors checkpoint the package carries (model/package.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .inference import pad_to_multiple, run_batch
from .network import build_model


class PixelDRLEpisode(nn.Module):
    """PixelDRL-MG (or the U-Net baseline) with its argmax episode and post-processing.

    ``forward(image)``: image (B, C, H, W) float32, already scaled to [0, 1] per channel;
    returns the final mask f(T) as float32 (B, 1, H, W) of 0 and 1, the mask
    ``pixeldrl predict`` writes for the same slice. Any H and W: the slice is padded to
    a multiple of 8 (the extractor pools three times) and the mask cropped back, as
    model/inference.py does.
    """

    def __init__(self, **model_config):
        super().__init__()
        # The kwargs come from the package's YAML: validated as any checkpoint config is.
        self.config = ModelConfig.from_dict(model_config)
        self.network = build_model(self.config)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        x, _ = pad_to_multiple(image.to(torch.float32))
        result = run_batch(self.network, self.config, x, size, self.config.t_max)
        return torch.from_numpy(result.mask).to(device=image.device, dtype=torch.float32)[:, None]
