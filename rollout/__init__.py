"""rollout-controller: progressive delivery for Kubernetes and Istio.

Sub-packages: ``api`` (models of the custom resources), ``domain`` (pure decision code),
``routers``, ``cluster`` and ``controller`` (I/O), ``sandbox`` (the local cluster), ``cli``.
"""

__version__ = "0.1.0"
