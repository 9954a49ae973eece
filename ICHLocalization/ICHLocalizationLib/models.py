"""Model catalogue, checksums, safe weights loading and device choice.

The catalogue (`Resources/Models/catalogue.json`) is data: one entry per model with id, method,
version, weights files with sha256, the input it expects, its labels with SNOMED CT codes, its
parameters (detector h/T/d, thresholds), how it was trained and what it scored. Weights are loaded
with `torch.load(weights_only=True)` only after their sha256 matched: a file carrying pickled code
is refused, never executed.
"""
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"
METHODS = ("cascade", "mil", "unet")


class ModelError(RuntimeError):
    """A model that cannot be used; the message says why and what to do."""


def models_dir(override=None) -> Path:
    return Path(override or os.environ.get("ICH_MODELS_DIR") or DEFAULT_MODELS_DIR)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelEntry:
    id: str
    method: str
    version: str
    files: Dict[str, Dict[str, str]]  # role → {"file": name, "sha256": hex}
    input: Dict[str, object] = field(default_factory=dict)
    params: Dict[str, object] = field(default_factory=dict)
    labels: List[dict] = field(default_factory=list)
    training: Dict[str, object] = field(default_factory=dict)
    metrics: Dict[str, object] = field(default_factory=dict)
    default: bool = False
    directory: Optional[Path] = None

    @property
    def tag(self):
        return f"{self.id}@{self.version}"

    def to_json(self):
        d = {k: v for k, v in self.__dict__.items() if k != "directory"}
        return d


class Catalogue:
    FILE = "catalogue.json"

    def __init__(self, entries: List[ModelEntry], directory: Path):
        self.entries, self.directory = entries, directory

    @classmethod
    def load(cls, directory=None) -> "Catalogue":
        directory = models_dir(directory)
        path = directory / cls.FILE
        if not path.exists():
            raise ModelError(f"no model catalogue at {path}; pass --models DIR with a catalogue.json "
                             "(train one with ich-train) or reinstall the extension")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})")
        entries = []
        for e in raw.get("models", []):
            try:
                entries.append(ModelEntry(**{k: v for k, v in e.items() if k in ModelEntry.__dataclass_fields__},
                                          directory=directory))
            except TypeError as exc:
                raise ModelError(f"{path}: entry {e.get('id', '?')} is incomplete ({exc})")
        return cls(entries, directory)

    def save(self):
        path = self.directory / self.FILE
        data = {"schema": "ich-model-catalogue/1", "models": [e.to_json() for e in self.entries]}
        path.write_text(json.dumps(data, indent=1) + "\n")

    def for_method(self, method: str) -> List[ModelEntry]:
        return [e for e in self.entries if e.method == method]

    def get(self, method: str, model_id: Optional[str] = None) -> ModelEntry:
        """The named model, or the method's default. Refuses a model made for another method."""
        if method not in METHODS:
            raise ModelError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if model_id:
            match = [e for e in self.entries if e.id == model_id or e.tag == model_id]
            if not match:
                raise ModelError(f"no model {model_id!r} in {self.directory / self.FILE}")
            if match[0].method != method:
                raise ModelError(f"model {model_id!r} is a {match[0].method} model, not a {method} model")
            return match[0]
        cands = self.for_method(method)
        if not cands:
            raise ModelError(f"no {method} model in {self.directory / self.FILE}; train one with `ich-train {method}`")
        return next((e for e in cands if e.default), cands[0])

    def upsert(self, entry: ModelEntry):
        self.entries = [e for e in self.entries if e.id != entry.id]
        if entry.default:
            for e in self.entries:
                if e.method == entry.method:
                    e.default = False
        self.entries.append(entry)


def load_state(entry: ModelEntry, role: str = "weights"):
    """Verify the file's sha256 and load its tensors without executing any pickled code."""
    import pickle

    import torch

    spec = entry.files.get(role)
    if spec is None:
        raise ModelError(f"model {entry.tag} has no '{role}' file in its catalogue entry")
    path = Path(entry.directory) / spec["file"]
    if not path.exists():
        raise ModelError(f"model file {path} is missing; reinstall the extension or fix the catalogue")
    digest = file_sha256(path)
    if digest != spec["sha256"]:
        raise ModelError(f"model file {path.name} does not match its catalogue checksum "
                         f"(sha256 {digest[:12]}… ≠ {spec['sha256'][:12]}…); it was changed or corrupted: restore it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, ValueError) as exc:
        raise ModelError(f"model file {path.name} holds more than weights (pickled objects or code) and was "
                         f"refused; only plain tensor state dicts are loaded ({type(exc).__name__})")


def choose_device(requested: str = "auto"):
    """'auto' → CUDA when present, else CPU; 'cuda'/'gpu' without CUDA → a clear error."""
    import torch

    req = (requested or "auto").lower()
    if req in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ModelError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
        return torch.device("cuda")
    if req == "cpu":
        return torch.device("cpu")
    if req.startswith("cuda:"):
        return torch.device(req)
    if req != "auto":
        raise ModelError(f"unknown device {requested!r}; use auto, cpu or cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_devices() -> str:
    import torch

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return f"CPU only ({torch.get_num_threads()} threads)"
