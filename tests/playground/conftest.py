"""The playground tier: Bakeoff's whole Kubernetes loop on this machine (`tests.support.playground`): the e2e
cluster, the operator as a subprocess, simulated replicas as local processes, Prometheus and one local
endpoint per variant. Needs hack/build-tools.sh, hack/build-kserve.sh, hack/fetch-crds.sh and
hack/build-prometheus.sh; skipped without them (failed with CI=true)."""

from tests.support.playground import playground, playground_namespace

__all__ = ["playground", "playground_namespace"]
