"""2D U-Net for hemorrhage segmentation (papers 002 and 003), built with MONAI.

Paper 002's 32-64-128-256 channels; ours adds batch norm (paper: none), which trains reliably on
our small synthetic set, and has six outputs (background + the five subtypes) so that one network
gives both the mask and the subtype. It reads 3 windows of one slice, or with `context` of the slice
and those above and below: 9 channels (2.5D, a departure: see the segmenter).
"""


def build_unet(channels=(32, 64, 128, 256), out_channels=6, context=False):
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=9 if context else 3, out_channels=out_channels, channels=tuple(channels),
                strides=(2,) * (len(channels) - 1), num_res_units=0, norm="batch")
