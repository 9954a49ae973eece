"""Synthetic non-contrast head CT with known bleeds: our sample data, training set and test oracle.

Anatomy is drawn analytically in a head frame (x → R, y → A, z → S, mm, origin at the brain centre)
and sampled through a random pose on a scanner grid: soft edges of one pixel plus sub-slice
averaging give partial volume; in-plane blur and correlated noise imitate reconstruction; padding
outside the reconstruction circle is stored like real DICOM (−3024 HU). Every bleed is rendered as a
blood fraction per voxel; a voxel belongs to a lesion in `truth_mask` when that fraction is ≥ 0.5.

- anatomy.py: the head (tissues, skull, brain, ventricles, cisterns, skull base);
- bleeds.py: the five subtypes' shapes, edema and fractures;
- scanner.py: pose, partial volume, blur, noise, beam hardening, padding;
- generator.py: one seed's phantom from the three, and its truth;
- export.py: files and the console script.

Console script `ich-phantom --seed N --out DIR [--format nifti|dicom|nrrd] [--slice-thickness MM]
[--subtypes IPH,SDH,…|none]` writes ct + truth_mask + truth.json (design "File contracts").
"""
from .anatomy import HU
from .bleeds import BLOOD_HU, Lesion
from .export import main, write_dicom_series, write_phantom
from .generator import RESERVED_SEEDS, Phantom, PhantomGenerator, generate
from .scanner import PADDING_HU

__all__ = ["BLOOD_HU", "HU", "Lesion", "PADDING_HU", "Phantom", "PhantomGenerator", "RESERVED_SEEDS", "generate",
           "main", "write_dicom_series", "write_phantom"]
