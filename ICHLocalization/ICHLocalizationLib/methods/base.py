"""What every method shares: its catalogue entry, parameters, device, batched inference."""
from typing import Callable, Dict, Optional

import numpy as np

from ..models import ModelEntry, choose_device
from ..networks import prepare_for_inference


class Method:
    name = ""

    def __init__(self, entry: ModelEntry, state, device="auto", params: Optional[Dict] = None):
        import torch

        self.entry = entry
        self.device = choose_device(device) if isinstance(device, str) else device
        self.params = {**entry.params, **(params or {})}
        self.torch = torch
        self.build(state)
        for net in self.networks():
            prepare_for_inference(net).to(self.device)

    def build(self, state):
        raise NotImplementedError

    def to(self, device):
        """Move the networks (GPU out-of-memory falls back to the CPU)."""
        self.device = device
        for net in self.networks():
            net.to(device)
        return self

    def networks(self):
        return []

    def run(self, scan, progress: Optional[Callable[[float, str], None]] = None):
        raise NotImplementedError

    def batched(self, fn, array: np.ndarray, batch: int = 32, progress=None, label=""):
        """Apply fn to (N, …) float32 numpy in batches on the method's device; numpy results, concatenated."""
        torch = self.torch
        outs = []
        n = len(array)
        with torch.inference_mode():
            for s in range(0, n, batch):
                x = torch.from_numpy(np.ascontiguousarray(array[s:s + batch], dtype=np.float32)).to(self.device)
                out = fn(x)
                outs.append(tuple(o.float().cpu().numpy() for o in out) if isinstance(out, tuple) else out.float().cpu().numpy())
                if progress:
                    progress(min(1.0, (s + batch) / max(1, n)), label)
        if not outs:
            return None
        if isinstance(outs[0], tuple):
            return tuple(np.concatenate([o[i] for o in outs]) for i in range(len(outs[0])))
        return np.concatenate(outs)
