"""Runs the chosen methods on one volume, sharing preprocessing: the one entry used by the Slicer
logic, `ich-localize` and `ich-evaluate`."""
import time
from typing import Callable, Dict, Optional

from .findings import MethodRun, Results
from .methods import get_method_class
from .models import Catalogue, ModelError, choose_device, load_state
from .preprocessing import PreparedScan
from .volume import CTVolume

METHOD_ORDER = ("cascade", "mil", "unet")


class Cancelled(Exception):
    """The user cancelled the run."""


def parse_methods(methods) -> tuple:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = [m.lower() for m in methods]
    bad = [m for m in methods if m not in METHOD_ORDER]
    if bad or not methods:
        raise ModelError(f"unknown method(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(METHOD_ORDER)}")
    return tuple(m for m in METHOD_ORDER if m in methods)


class Pipeline:
    """Loaded methods, reused across volumes (a batch loads each network once)."""

    def __init__(self, methods=METHOD_ORDER, models=None, model_ids: Optional[Dict[str, str]] = None,
                 device="auto", params: Optional[Dict[str, dict]] = None, log: Callable[[str], None] = None):
        import torch

        torch.manual_seed(0)
        self.methods = parse_methods(methods)
        self.device = choose_device(device)
        self.log = log or (lambda msg: None)
        catalogue = Catalogue.load(models)
        self.instances = {}
        for name in self.methods:
            entry = catalogue.get(name, (model_ids or {}).get(name))
            cls = get_method_class(name)
            self.instances[name] = cls(entry, load_state(entry), self.device, (params or {}).get(name))

    def run(self, volume: CTVolume, progress: Callable[[float, str], None] = None,
            cancelled: Callable[[], bool] = None) -> Results:
        scan = PreparedScan(volume)
        results = Results(input=volume.name, volume=volume, warnings=list(volume.warnings))
        n = len(self.methods)
        for i, name in enumerate(self.methods):
            if cancelled and cancelled():
                raise Cancelled("cancelled by the user")
            method = self.instances[name]

            def sub_progress(frac, label="", i=i):
                """Each method reports its steps here, so a cancel takes effect within a method."""
                if cancelled and cancelled():
                    raise Cancelled("cancelled by the user")
                if progress:
                    progress((i + min(max(frac, 0.0), 1.0)) / n, label or name)

            t0 = time.perf_counter()
            res = self._run_one(method, scan, sub_progress)
            res.runs.append(MethodRun(name, method.entry.tag, str(method.device), time.perf_counter() - t0))
            results.merge(res)
            sub_progress(1.0, name)
        return results

    def _run_one(self, method, scan, progress):
        import torch

        try:
            return method.run(scan, progress)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            msg = f"{method.name}: GPU out of memory; finished on the CPU instead"
            self.log(msg)
            method.to(torch.device("cpu"))
            res = method.run(scan, progress)
            res.warnings.append(msg)
            return res
