"""oneshot-nas: hardware-aware one-shot NAS (SPOS / OneShot+) on MXNet Gluon.

Pure-Python parts (`space`, `counting`, `sampling`, `search`) import without MXNet; the network
parts (`blocks`, `supernet`, `subnet`, ...) import MXNet when imported.
"""
__version__ = "0.1.0"
