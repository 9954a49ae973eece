"""Speed and memory of every method (and all three together) on phantom scans.

    python benchmarks/bench.py --json OUT [--device cpu|cuda] [--cases scan32,scan300]

Cases: "scan32" 512×512×32 at 0.45×0.45×5 mm, "scan300" 512×512×300 at 0.625 mm (their phantom's
generation time is reported too: `phantom_seconds`). Each case runs in
its own process so that peak RSS is that case's. Wall seconds are split into load (reading the
NIfTI), preprocessing (head mask, crops, alignment, cascade grid), inference (time inside the
methods' batched network calls) and post-processing (the rest). The same run measures the machine's
float32 matmul rate and reports, per network family, achieved FLOP/s (conv and linear FLOPs counted
by hooks) as a fraction of it: "efficiency" from each network's second (warm) run on scan32,
"efficiency_first_run" from its first, one-off set-up included.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {"scan32": {"pixel_mm": 0.45, "slice_thickness": 5.0, "slices": 32},
         "scan300": {"pixel_mm": 0.625, "slice_thickness": 0.625, "slices": 300}}
METHODS = ("cascade", "mil", "unet")


def matmul_gflops(device="cpu", n=2048, repeat=5):
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * repeat / (time.perf_counter() - t) / 1e9


class Instrument:
    """Per method, inference time: its batched network calls (every forward pass goes through
    Method.batched, tensors to and from the device included); FLOPs: hooks on conv/linear layers."""

    def __init__(self, methods, device):
        import torch

        self.torch, self.device = torch, device
        self.seconds, self.flops, self.handles, self._restore = {}, {}, [], []
        for method in methods:
            name, original = method.name, method.batched
            self.seconds[name], self.flops[name] = 0.0, 0.0

            def timed(*args, _original=original, _name=name, **kwargs):
                t0 = time.perf_counter()
                out = _original(*args, **kwargs)
                if self.device == "cuda":
                    self.torch.cuda.synchronize()
                self.seconds[_name] += time.perf_counter() - t0
                return out

            method.batched = timed
            self._restore.append((method, original))
            for net in method.networks():
                for m in net.modules():
                    if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                        self.handles.append(m.register_forward_hook(
                            lambda mod, inp, out, _name=name: self._count(_name, mod, inp, out)))

    def _count(self, name, module, inputs, output):
        torch = self.torch
        if isinstance(module, torch.nn.Linear):
            flops = 2.0 * output.numel() * module.in_features
        elif isinstance(module, torch.nn.ConvTranspose2d):
            flops = 2.0 * inputs[0].numel() * module.out_channels * module.kernel_size[0] * module.kernel_size[1] / module.groups
        else:
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            flops = 2.0 * output.numel() * k
        self.flops[name] += flops

    def close(self):
        for h in self.handles:
            h.remove()
        for method, original in self._restore:
            method.batched = original


def run_case(name, device, threads):
    """One case in this process: phantom → NIfTI → per method and all together."""
    import torch

    from ICHLocalizationLib.io import read_volume
    from ICHLocalizationLib.phantom import generate, write_phantom
    from ICHLocalizationLib.pipeline import Pipeline
    from ICHLocalizationLib.preprocessing import PreparedScan

    torch.set_num_threads(threads)
    spec = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        t_gen = time.perf_counter()
        phantom = generate(9100 + len(name), subtypes=["IPH", "SDH", "IVH"], **spec)
        t_gen = time.perf_counter() - t_gen
        write_phantom(phantom, Path(tmp), "nifti")
        del phantom
        pipe = Pipeline(METHODS, device=device)
        out = {"slices": spec["slices"], "seconds": {}, "split": {}, "flops": {}, "inference_seconds": {},
               "warm_inference_seconds": {}, "phantom_seconds": round(t_gen, 2)}
        for label, methods in [(m, (m,)) for m in METHODS] + [("all", METHODS)]:
            t0 = time.perf_counter()
            volume = read_volume(Path(tmp) / "ct.nii.gz")
            t_load = time.perf_counter() - t0
            scan = PreparedScan(volume)
            t1 = time.perf_counter()
            _ = scan.head, scan.crop
            if {"mil", "unet"} & set(methods):
                scan.crop_hu(256), scan.crop_hu(128)
            if "cascade" in methods:
                scan.cascade_grid()
            t_pre = time.perf_counter() - t1
            inst = Instrument([pipe.instances[m] for m in methods], device)
            t2 = time.perf_counter()
            for m in methods:
                pipe.instances[m].run(scan)
            t_run = time.perf_counter() - t2
            inst.close()
            total = t_load + t_pre + t_run
            out["seconds"][label] = round(total, 3)
            t_inf = sum(inst.seconds.values())
            out["split"][label] = {"load": round(t_load, 3), "preprocessing": round(t_pre, 3),
                                   "inference": round(t_inf, 3), "postprocessing": round(t_run - t_inf, 3)}
            if label == "all":  # each method's second run in this process: its networks are warm
                out["warm_inference_seconds"] = inst.seconds
            else:  # the first run: includes one-off set-up (oneDNN kernel selection, allocations)
                out["flops"][label] = inst.flops[label]
                out["inference_seconds"][label] = inst.seconds[label]
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
        return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="scan32,scan300")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print its JSON
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.threads)))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    gflops = matmul_gflops(args.device)
    result = {"device": args.device, "threads": args.threads, "matmul_gflops": round(gflops, 1), "cases": {}}
    if args.device == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0)
    for name in args.cases.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run([sys.executable, __file__, "--json", args.json, "--device", args.device,
                               "--threads", str(args.threads), "--case", name], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        result["cases"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name}: {result['cases'][name]['seconds']} s, peak {result['cases'][name]['peak_rss_mb']} MB", file=sys.stderr)
    c32 = result["cases"].get("scan32") or next(iter(result["cases"].values()))
    # Like the matmul rate (timed after one untimed product), the networks' rate is their warm one;
    # the first run's, one-off set-up included, is reported beside it.
    rate = lambda seconds: {m: round(c32["flops"][m] / max(seconds[m], 1e-9) / 1e9 / gflops, 3) for m in METHODS}
    result["efficiency"] = rate(c32["warm_inference_seconds"])
    result["efficiency_first_run"] = rate(c32["inference_seconds"])
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
