"""Pure decisions: placement of variants, the recommendation. No Kubernetes, kopf or HTTP here."""
