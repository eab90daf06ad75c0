"""A tiny salient-object segmenter exported to ONNX with U^2-Net's interface.

U^2-Net (``u2net.onnx``, what rembg ships) takes one ``1x3x320x320`` float input, RGB
scaled to 0..1 and normalised with ImageNet's mean and std, and gives a ``1x1x320x320``
map in 0..1 as its first output (side outputs follow). This net keeps exactly that
interface at toy width, so ``pipelines.background_removal`` runs it the way it runs a
real u2net / isnet file: a small encoder-decoder of convolutions, dynamic batch axis.

``build_tiny_segmenter`` (the catalog's ``tiny = "segmenter"``) writes one with random
weights, fixed by seed, in a second: its masks are meaningless, every code path is real.
``train_tiny_segmenter`` fits the same net to synthetic subject-on-background images (a
flat or graded backdrop, an ellipse or polygon of another colour, noise) in well under a
minute on a CPU; the tests export that one and check removal against the true mask.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from weights.tiny import SEED

logger = logging.getLogger(__name__)

SIZE = 320  # U^2-Net's input side
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
INPUT_NAME = "input.1"  # the name u2net.onnx's input carries


CORE_SIZE = 80  # the net works at a quarter of its input side


def tiny_core() -> Any:
    """The trainable part, at 80 px: logits of "subject" per pixel.

    Besides the picture it sees each pixel's distance to the picture's mean colour (the
    backdrop dominates the mean), a cheap global cue a toy-width net cannot learn from
    its small receptive field alone."""
    import torch
    from torch import nn

    class Core(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Sequential(
                nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
                nn.Upsample(scale_factor=4, mode="bilinear"),
            )  # fmt: skip
            self.head = nn.Sequential(
                nn.Conv2d(16 + 4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            apart = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2).sum(1, keepdim=True).sqrt()
            x = torch.cat([x, apart], dim=1)
            return self.head(torch.cat([self.encode(x), x], dim=1))

    return Core()


def tiny_net(core: Any = None) -> Any:
    """U^2-Net's interface around ``core``: 320 px in, pooled to 80, logits upsampled
    back to 320 and squashed to 0..1; two outputs (the map and a side output)."""
    import torch
    from torch import nn

    class TinySegmenter(nn.Module):
        def __init__(self, core: nn.Module) -> None:
            super().__init__()
            self.pool = nn.AvgPool2d(SIZE // CORE_SIZE)
            self.core = core
            self.up = nn.Upsample(scale_factor=SIZE // CORE_SIZE, mode="bilinear")

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mask = torch.sigmoid(self.up(self.core(self.pool(x))))
            return mask, mask  # u2net has seven outputs; callers read the first

    return TinySegmenter(core if core is not None else tiny_core())


def export_onnx(net: Any, out: Path) -> Path:
    """Export ``net`` to ``out`` with u2net's input and output names and shapes."""
    import torch

    net.eval()
    example = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(
        net,
        (example,),
        str(out),
        input_names=[INPUT_NAME],
        output_names=["d0", "d1"],
        dynamic_axes={INPUT_NAME: {0: "batch"}, "d0": {0: "batch"}, "d1": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return Path(out)


def build_tiny_segmenter(out: Path) -> Path:
    """Write the random-weight tiny segmenter to ``out`` (an ``.onnx`` file)."""
    import torch

    torch.manual_seed(SEED)
    return export_onnx(tiny_net(), out)


def synthetic_scene(rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One subject on a background: uint8 HxWx3 RGB and its bool HxW mask.

    Backdrop: a flat or graded colour; subject: an ellipse or a convex-ish polygon of a
    colour well apart from the backdrop, somewhere inside; light pixel noise on top."""
    from PIL import Image, ImageDraw

    back = rng.integers(0, 256, 3)
    subject = (back + rng.integers(90, 166, 3) * rng.choice([-1, 1], 3)) % 256
    yy, xx = np.mgrid[0:size, 0:size] / size
    tilt = rng.uniform(-40, 40, 2)
    image = back[None, None, :] + (tilt[0] * yy + tilt[1] * xx)[..., None]
    mask_image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_image)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    rx, ry = rng.uniform(0.12, 0.28, 2) * size
    if rng.random() < 0.5:
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    else:
        # Corners spread around the centre (jittered), so no polygon is a sliver.
        corners = int(rng.integers(3, 7))
        spread = 2 * np.pi * np.arange(corners) / corners
        angles = rng.uniform(0, 2 * np.pi) + spread + rng.uniform(-0.3, 0.3, corners)
        points = [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]
        draw.polygon(points, fill=255)
    mask = np.asarray(mask_image) > 127
    image[mask] = subject + (tilt[0] * yy + tilt[1] * xx)[mask][:, None] * 0.5
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 NxHxWx3 -> float32 Nx3xHxW as u2net expects (ImageNet mean and std)."""
    x = images.astype(np.float32) / 255.0
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def train_tiny_segmenter(out: Path, steps: int = 200, batch: int = 8, seed: int = 0) -> Path:
    """Train the tiny net on synthetic scenes and export it to ``out`` (ONNX).

    The core trains on 80 px scenes (what it sees of a 320 px input after pooling), on
    one torch thread: convolutions this small run several times faster so on a shared
    CPU. Blocking; well under a minute on a 2-core box."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        core = tiny_core()
        optimiser = torch.optim.Adam(core.parameters(), lr=1e-2)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for step in range(steps):
            scenes = [synthetic_scene(rng, CORE_SIZE) for _ in range(batch)]
            x = torch.from_numpy(normalise(np.stack([s[0] for s in scenes])))
            y = torch.from_numpy(np.stack([s[1] for s in scenes])[:, None].astype(np.float32))
            loss = loss_fn(core(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step % 50 == 0:
                logger.info("tiny segmenter step %d loss %.4f", step, loss.item())
        return export_onnx(tiny_net(core), out)
    finally:
        torch.set_num_threads(threads)
