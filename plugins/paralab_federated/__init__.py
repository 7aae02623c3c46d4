"""paralab_federated: Federated learning: partitions, FedAvg/FedProx/FedAdam, a vectorized simulator, Ray.

Work in progress: this plugin contributes nothing yet.
"""

PARALAB_API = "1.0"
