"""Pure autoscaling decisions: replicas for every variant from its signals, capacity and free GPUs."""
