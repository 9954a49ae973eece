"""What the extension's two Slicer modules say of themselves in the module list and in Help &
Acknowledgement: one category, one list of contributors, one acknowledgement."""

CATEGORY = "Radiology"
CONTRIBUTORS = ["ICH Localization developers"]
ACKNOWLEDGEMENT = """
Methods after Nemcek et al. (3D localization; weakly supervised MIL), Hernández Farah and Pérez Ruiz
(CNN + U-Net), Hssayeni et al. (PhysioNet CT-ICH) and Castro et al. (slice classification).
Real training scans: PhysioNet CT-ICH (Hssayeni et al.) and PHE-SICH-CT-IDS.
Built on 3D Slicer, PyTorch, MONAI, SimpleITK, pydicom and scikit-image.
"""


def describe_module(parent, title: str, help_text: str):
    """Fill the `parent` Slicer gives a scripted module (after ScriptedLoadableModule.__init__ has
    put its template texts there) with this extension's facts."""
    parent.title = title
    parent.categories = [CATEGORY]
    parent.dependencies = []
    parent.contributors = list(CONTRIBUTORS)
    parent.helpText = help_text
    parent.acknowledgementText = ACKNOWLEDGEMENT
