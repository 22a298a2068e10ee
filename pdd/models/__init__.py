"""PDD models: the frozen teachers (VMamba-Tiny, wide-ResNet50-2), the five architectures, losses and maps."""

from pdd.models.options import Fidelity, PDDOptions, Variant
from pdd.models.selective_scan import selective_scan
from pdd.models.torch_model import PDDModel, build_pdd
from pdd.models.vmamba import VMamba, vmamba_tiny

__all__ = ["Fidelity", "PDDModel", "PDDOptions", "Variant", "VMamba", "build_pdd", "selective_scan", "vmamba_tiny"]
