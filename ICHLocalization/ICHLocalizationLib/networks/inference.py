"""Ready a trained network for inference: batch norm folded into the convolutions, channels-last memory.

Both are exact up to float rounding (< 1e-6) and matter on the CPU, where they make the small
networks 1.4–4× faster (measured by benchmarks/bench.py): a folded network skips one pass over
every feature map, and oneDNN's convolutions are fastest on NHWC data.
"""
import torch.nn as nn


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """Fold BatchNorm into the preceding convolution in every child that torch.fx can trace.

    Children are replaced, the module itself is kept, so its own methods (e.g. MILNet.likelihood)
    still work; a child that cannot be traced (data-dependent control flow, a ModuleDict) is
    searched one level deeper.
    """
    from torch.fx.experimental.optimization import fuse

    for name, child in module.named_children():
        try:
            folded = fuse(child)
        except Exception:  # noqa: BLE001 - not traceable: look inside it instead
            folded = fold_batch_norm(child)
        setattr(module, name, folded)
    return module


def prepare_for_inference(net: nn.Module) -> nn.Module:
    """Eval mode, batch norm folded, weights in channels-last layout (in place; returns net)."""
    import torch

    net.eval()
    fold_batch_norm(net)
    return net.to(memory_format=torch.channels_last)
