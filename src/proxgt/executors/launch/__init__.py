"""The torch.distributed launcher (one process per block of nodes, on one or several machines) and its
worker process (``python -m proxgt.executors.launch.worker``)."""

from proxgt.executors.launch.launcher import launch

__all__ = ["launch"]
