"""Run a network with group normalisation on tiles as if it saw the whole image.

``torch.nn.GroupNorm`` normalises each feature map by its mean and variance over the whole
input. On a tile those statistics are the tile's, so a network run tile by tile gives a
different answer than on the whole image (on the shipped deconvolver, up to 20 % in total flux
between 128- and 192-pixel views of one image). `ImageWideNorm` makes every ``GroupNorm`` use
statistics gathered over all tiles of an image instead, layer by layer in the order the network
runs them: each pass normalises the layers calibrated so far with their image-wide
statistics and records, over all tiles (weighted by the tiles' blending weights, so each pixel
counts once), those of the next group of layers whose inputs depend only on calibrated layers,
stopping the network there. The groups (`ImageWideNorm.levels`) are found once by perturbing
each layer's output on a small input and seeing which layers' inputs change: in a residual
block, the shortcut's and the body's first normalisation share a pass. After the last group,
one more pass gives the output. (A cheaper fixed-point iteration, recording all layers in every
pass, diverged.) The cost, one partial pass per group, is paid only for images larger than one
tile.

Pixels without data (a cube's NaN border, set to 0 before the network) would enter those
statistics too. The shipped deconvolver has no bias before its first normalisation, so it is
blind to the scale of its input: its flux scale is set by these statistics alone, and 5 blank
rows out of 96 raised the total flux of the example cube by 6.6 %. Both `ImageWideNorm` (the
caller multiplies the blending weights by the valid-pixel map) and `ValidPixelNorm` (one pass,
for an image processed whole) therefore weight each pixel by whether it has data.

The network pads its input at the end of each axis to a multiple of its size multiple,
repeating the edge pixels, and its own statistics count that padding. The weights are padded
the same way (`pad_weights`: the padding weighs what the pixel it repeats weighs), so that with
no blank pixel the weighted statistics are the network's own whatever the image size; weighting
the padding 0 moved the total flux of a 92-pixel crop of the example cube by -3.2 % for one
blank pixel. A tile's own padding is no part of the image and weighs 0 in `ImageWideNorm`: the
caller pads the image as the network would before cutting it into tiles on the network's
pooling grid (`~deepfocus.deconvolution.Deconvolver` does).

Written here: PyTorch has no tiled inference with shared normalisation statistics, nor a
masked group normalisation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ImageWideNorm", "ValidPixelNorm", "pad_weights", "pool_weights"]


def _padding_multiple(model):
    """The multiple to which ``model`` pads its input (replicating the edge values), 1 if none.

    `~deepfocus.models.networks.EncoderDecoderNetwork` (the deconvolver) pads the end of each
    axis to a multiple of ``config.size_multiple``; other modules are assumed not to pad.
    """
    from ..models.networks import EncoderDecoderNetwork

    return int(model.config.size_multiple) if isinstance(model, EncoderDecoderNetwork) else 1


def pad_weights(weights, multiple, replicate=True):
    """Pixel weights padded the way the network pads its input.

    The network pads the end of each axis to a multiple of its size multiple by repeating the
    edge pixels, and counts the padding in its normalisation statistics; the weights are padded
    the same way (the edge weights repeated), so that where every pixel has weight 1 the
    weighted statistics are the network's own.

    Parameters
    ----------
    weights : `torch.Tensor`
        ``(b, 1, h, w)`` weight of every input pixel (dimensionless, >= 0).
    multiple : int
        The network pads each axis to a multiple of this (1: no padding).
    replicate : bool
        Repeat the edge weights (an image processed whole); False: weight the padding 0 (a
        tile, whose padding is no part of the image).

    Returns
    -------
    padded : `torch.Tensor`
        ``(b, 1, H, W)``, ``H`` and ``W`` the multiples of ``multiple`` at or above ``h`` and ``w``.
    """
    import torch

    h, width = weights.shape[-2:]
    ph, pw = (-h) % multiple, (-width) % multiple
    if not (ph or pw):
        return weights
    mode = "replicate" if replicate else "constant"
    return torch.nn.functional.pad(weights, (0, pw, 0, ph), mode=mode)


def _factor(n, size):
    """Downsampling factor from ``n`` input pixels to ``size`` feature-map pixels.

    The network halves its feature maps at each level (2x max pooling, ``ceil_mode``): the
    smallest power of two ``f`` with ``ceil(n / f) == size`` (on a padded input, ``n / size``
    exactly). ``ceil(n / size)`` is not: 33 pixels pooled by 8 give 5, and ``ceil(33 / 5)`` is 7.
    """
    f = 1
    while -(-n // f) > size:
        f *= 2
    if -(-n // f) == size:
        return f
    return max(1, -(-n // size))  # not a halving network: the nearest uniform pooling


def pool_weights(weights, shape, multiple=1):
    """Pixel weights averaged down to the resolution of a feature map.

    Parameters
    ----------
    weights : `torch.Tensor`
        ``(b, 1, h, w)`` weight of every input pixel (dimensionless, >= 0), or of every pixel
        of the padded input (see `pad_weights`).
    shape : tuple of int
        Spatial shape ``(H, W)`` of the feature map.
    multiple : int
        Pad ``weights`` first as the network pads its input, to a multiple of this, repeating
        the edge weights (`pad_weights`; 1: as given).

    Returns
    -------
    pooled : `torch.Tensor`
        ``(b, 1, H, W)``: the mean weight of the (padded) input pixels under each feature-map
        pixel. The pooling factor of each axis is the power of two that maps the input onto
        the feature map (8 from 40 or from 33 pixels to 5); a last window that overhangs the
        input (no padding) averages the pixels it holds.
    """
    import torch

    weights = pad_weights(weights, multiple)
    h, width = weights.shape[-2:]
    kernel = (_factor(h, shape[0]), _factor(width, shape[1]))
    if kernel != (1, 1):
        weights = torch.nn.functional.avg_pool2d(weights, kernel, ceil_mode=True)
    return weights[..., : shape[0], : shape[1]]


def _weighted_statistics(module, x, weights):
    """Per-group mean and variance ``(b, groups, 1)`` of ``x`` for ``module`` (a ``GroupNorm``),
    its pixels weighted by ``weights`` (``(b, 1, H, W)``, the resolution of ``x``)."""
    b, c = x.shape[:2]
    g = module.num_groups
    xg = x.reshape(b, g, -1)
    wg = weights.reshape(b, 1, -1).expand(b, c, -1).reshape(b, g, -1)
    s0 = wg.sum(-1, keepdim=True).clamp_min(1e-30)
    mean = (wg * xg).sum(-1, keepdim=True) / s0
    var = (wg * (xg - mean) ** 2).sum(-1, keepdim=True) / s0
    return mean, var


def _normalise(module, x, mean, var):
    """``module`` (a ``GroupNorm``) applied to ``x`` with the given per-group ``mean`` and
    ``var`` (``(b, groups, 1)``) instead of its own statistics, then its affine transform."""
    import torch

    b, c = x.shape[:2]
    xg = x.reshape(b, module.num_groups, -1)
    y = ((xg - mean) / torch.sqrt(var + module.eps)).reshape(x.shape)
    if module.affine:
        shape = (1, c) + (1,) * (x.ndim - 2)
        y = y * module.weight.reshape(shape) + module.bias.reshape(shape)
    return y


class ValidPixelNorm:
    """Context manager: every ``GroupNorm`` normalises over the pixels with data only.

    For an image processed in one piece: each layer's mean and variance are taken over the
    pixels whose weight is 1 (those with data) and not over the blank ones (0); every pixel is
    then normalised with them. The pixels the network pads its input with (the edge pixels
    repeated) take the weights of the pixels they repeat (`pad_weights`), so with no blank pixel
    this is the network's own normalisation, whatever the image size.

    Parameters
    ----------
    model : `torch.nn.Module`
        The network (2-D; its ``GroupNorm`` layers are hooked while the context is active).
    multiple : int, optional
        The multiple to which the network pads its input (default: the
        ``config.size_multiple`` of an `~deepfocus.models.networks.EncoderDecoderNetwork`, else
        1, no padding).

    Notes
    -----
    Call `set_weights` before each batch.
    """

    def __init__(self, model, multiple=None):
        import torch

        self._torch = torch
        self.norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
        self.multiple = _padding_multiple(model) if multiple is None else int(multiple)
        self._handles = []
        self._weights = None

    def __enter__(self):
        self._handles = [norm.register_forward_hook(self._hook) for norm in self.norms]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def set_weights(self, weights):
        """Weight ``(m, h, w)`` of every pixel of the next batch: 1 with data, 0 without."""
        weights = self._torch.as_tensor(np.asarray(weights, np.float32))[:, None]
        self._weights = pad_weights(weights, self.multiple)

    def _hook(self, module, inputs, output):
        x = inputs[0]
        weights = pool_weights(self._weights, x.shape[2:]).to(x.dtype)
        return _normalise(module, x, *_weighted_statistics(module, x, weights))


class _Stop(Exception):
    """Raised by the hook of the layer being calibrated: the rest of the network is not needed."""


class ImageWideNorm:
    """Context manager that replaces every ``GroupNorm``'s statistics by image-wide ones.

    Parameters
    ----------
    model : `torch.nn.Module`
        The network (its ``GroupNorm`` layers are hooked while the context is active).
    n_images : int
        Number of images in the stack being processed (statistics are kept per image).
    multiple : int, optional
        The multiple to which the network pads its input (as for `ValidPixelNorm`).

    Notes
    -----
    For each group in `levels`: `calibrate` it, run every tile through `forward` (which stops
    once the group is recorded), then `end_pass`. Then run every tile through `forward` once
    more. Before each batch, `set_batch` gives the batch's image indices and blending weights.
    """

    def __init__(self, model, n_images, multiple=None):
        import torch

        self._torch = torch
        self.model = model
        self.n_images = n_images
        self.multiple = _padding_multiple(model) if multiple is None else int(multiple)
        self.norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
        self.frozen = {}  # {layer index: (mean, var)} arrays (n_images, groups)
        self.targets = frozenset()
        self._recorded = set()
        self._sums = {}
        self.order = self._execution_order()
        self.levels = self._dependency_levels()
        self._handles = []
        self._ids = None
        self._weights = None

    def __enter__(self):
        for index, norm in enumerate(self.norms):
            self._handles.append(norm.register_forward_hook(self._hook(index)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _execution_order(self):
        """Indices of the ``GroupNorm`` layers in the order a forward pass runs them."""
        torch = self._torch
        seen = []
        handles = [
            norm.register_forward_hook(lambda *a, i=i: seen.append(i) if i not in seen else None)
            for i, norm in enumerate(self.norms)
        ]
        try:
            with torch.no_grad():
                dims = getattr(getattr(self.model, "config", None), "dims", 2)
                self.model(torch.zeros((1, 1) + (16,) * dims))
        finally:
            for handle in handles:
                handle.remove()
        return seen

    def _dependency_levels(self):
        """Groups of layers (in execution order) to calibrate together: a layer joins the first
        group after every layer whose output changes its input."""
        torch = self._torch
        dims = getattr(getattr(self.model, "config", None), "dims", 2)
        x = torch.randn((1, 1) + (32,) * dims, generator=torch.Generator().manual_seed(0))
        perturb = {"layer": None}
        inputs = {}

        def hook(i):
            def record(module, args, output):
                inputs[i] = args[0].detach().clone()
                if perturb["layer"] == i:
                    return output + torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
                return output

            return record

        handles = [norm.register_forward_hook(hook(i)) for i, norm in enumerate(self.norms)]
        try:
            with torch.no_grad():
                self.model(x)
                baseline = dict(inputs)
                depends = {j: set() for j in self.order}
                for i in self.order:
                    perturb["layer"] = i
                    self.model(x)
                    for j in self.order:
                        if not torch.equal(inputs[j], baseline[j]):
                            depends[j].add(i)
        finally:
            for handle in handles:
                handle.remove()
        levels, done = [], set()
        while len(done) < len(self.order):
            group = [j for j in self.order if j not in done and depends[j] <= done]
            if not group:  # pragma: no cover - a cycle cannot happen in a feed-forward network
                group = [next(j for j in self.order if j not in done)]
            levels.append(group)
            done.update(group)
        return levels

    def calibrate(self, indices):
        """Record the statistics of layers ``indices`` in the next pass (and stop there)."""
        self.targets = frozenset(np.atleast_1d(indices).tolist())

    def forward(self, batch):
        """The network on ``batch`` (a tensor); None when it stopped at the calibrated layer."""
        self._recorded = set()
        try:
            return self.model(batch)
        except _Stop:
            return None

    def set_batch(self, ids, weights):
        """Image index ``(m,)`` and weight ``(m, h, w)`` of every tile of the next batch.

        The weight is the tile's blending weight, times 0 on pixels without data so that they
        do not enter the statistics. The pixels the network pads a tile with count 0: inside
        the image the neighbouring tiles cover them. For the statistics of the image as the
        network sees it whole, pad the image as the network would (its edge pixels repeated to
        a multiple of ``multiple``) and cut it into tiles whose sides and starts are multiples
        of ``multiple``, on the network's pooling grid (`~deepfocus.deconvolution.Deconvolver`
        does).
        """
        self._ids = np.asarray(ids)
        weights = self._torch.as_tensor(np.asarray(weights, np.float32))[:, None]
        self._weights = pad_weights(weights, self.multiple, replicate=False)

    def end_pass(self):
        """Turn the statistics recorded in this pass into those used by the next one."""
        for index, (s0, s1, s2) in self._sums.items():
            mean = s1 / np.maximum(s0, 1e-30)
            self.frozen[index] = (mean, np.maximum(s2 / np.maximum(s0, 1e-30) - mean**2, 0.0))
        self._sums = {}
        self.targets = frozenset()

    def _hook(self, index):
        torch = self._torch

        def hook(module, inputs, output):
            x = inputs[0]
            b, c = x.shape[:2]
            g = module.num_groups
            xg = x.reshape(b, g, -1)
            if index in self.frozen:
                mean, var = self.frozen[index]
                mean = torch.as_tensor(mean[self._ids], dtype=x.dtype)[:, :, None]
                var = torch.as_tensor(var[self._ids], dtype=x.dtype)[:, :, None]
                return _normalise(module, x, mean, var)
            if index not in self.targets:
                return output
            w = pool_weights(self._weights, x.shape[2:])  # (b, 1, H, W)
            wg = w.reshape(b, 1, -1).expand(b, c, -1).reshape(b, g, -1)
            s0 = (wg.sum(-1)).double().numpy()
            s1 = ((wg * xg).sum(-1)).double().numpy()
            s2 = ((wg * xg * xg).sum(-1)).double().numpy()
            acc = self._sums.setdefault(index, [np.zeros((self.n_images, g)) for _ in range(3)])
            for k, a, b1, c2 in zip(self._ids, s0, s1, s2, strict=True):
                acc[0][k] += a
                acc[1][k] += b1
                acc[2][k] += c2
            self._recorded.add(index)
            if self._recorded >= self.targets:
                raise _Stop
            return output

        return hook
