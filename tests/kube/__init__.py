"""The real Kubernetes control plane the suite runs on with ``--backend kube``."""

# Where the session's real control plane's admin kubeconfig is, for every (xdist) worker.
KUBECONFIG_ENV = "ROLLOUT_TEST_KUBECONFIG"
# ``sandbox`` or ``kube``: set from ``--backend`` for every process the tests start.
BACKEND_ENV = "ROLLOUT_TEST_BACKEND"
