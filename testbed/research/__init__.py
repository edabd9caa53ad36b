"""Research methods for split inference: the single entry point that loads them all.

Importing :mod:`testbed.research` imports every module of :mod:`testbed.research.methods`; each
registers its :class:`~testbed.research.registry.Method` in :data:`METHODS` (training/calibration
behind ``testbed train``, rows of ``testbed research-eval``) and its learned codec stages in the
codec registry (each stage declares its compute cost and, if it has one, its fine-tuned tail).
Whoever needs the learned stages (the pipeline cache, the emulator, the CLI) imports this package.

* ``autoencoder`` - autoencoder bottleneck with the time-dependent clustering loss (TCL),
  Berg et al., IEEE Access 2025, doi:10.1109/ACCESS.2025.3579107;
* ``qcnet`` - server-side quantization compensator network, Sánchez Leal et al., IEEE Access
  2025, doi:10.1109/ACCESS.2025.3627072;
* ``softquant`` - trainable bitwise soft quantization, arXiv:2603.05172;
* ``augq`` - augmented quantization granularity, Mujtaba et al., Applied Intelligence 2025;
* ``nestquant`` - integer-nesting quantization of head weights, Xie et al., arXiv:2506.17870;
* ``base`` - the tiny digits ResNet and the plain codecs the methods are compared with;
* ``entropy`` - the learned entropy-coded bottleneck baseline (factorized prior + rANS), Ballé et
  al., ICLR 2018 (arXiv:1802.01436), as split computing uses it (Matsubara et al., 2022).

Importing this package first pins the CPU instruction sets torch reads at import
(:func:`testbed.research.repro.pin_cpu_isa`), when torch is not imported yet, so that a seed gives
the same numbers on another x86-64 machine.
"""

from testbed.research.repro import pin_cpu_isa

pin_cpu_isa()

from testbed.research.methods import load_all  # noqa: E402
from testbed.research.registry import METHODS, Method, Option, register_method  # noqa: E402

__all__ = ["METHODS", "Method", "Option", "register_method"]

load_all()
