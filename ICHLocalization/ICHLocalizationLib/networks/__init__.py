"""Networks: the MIL slice classifier (max-pool | attention), small slice classifiers, the U-Net."""
from .classifier import SliceClassifier
from .inference import prepare_for_inference
from .mil import MILNet
from .unet import build_unet

__all__ = ["MILNet", "SliceClassifier", "build_unet", "prepare_for_inference"]
