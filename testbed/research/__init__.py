"""Research codecs for split inference (issue 6), each with a registered codec stage and a
``testbed train`` command:

* :mod:`.autoencoder` - autoencoder bottleneck with the time-dependent clustering loss (TCL),
  Berg et al., IEEE Access 2025, doi:10.1109/ACCESS.2025.3579107;
* :mod:`.qcnet` - server-side quantization compensator network, Sánchez Leal et al., IEEE Access
  2025, doi:10.1109/ACCESS.2025.3627072;
* :mod:`.softquant` - trainable bitwise soft quantization, arXiv:2603.05172;
* :mod:`.augq` - augmented quantization granularity, Mujtaba et al., Applied Intelligence 2025;
* :mod:`.nestquant` / :mod:`.modes` - integer-nesting quantization of head weights, Xie et al.,
  arXiv:2506.17870 (``modes`` is torch-free, for the simulator).

Submodules are imported on use; importing this package stays light.
"""

from testbed.config.modes import NestQuantModes, NestQuantPolicy, choose_mode, modes_path, switch_bytes

__all__ = ["NestQuantModes", "NestQuantPolicy", "choose_mode", "modes_path", "switch_bytes"]
