"""occflow_ros: 4D reconstruction of deforming objects from a depth-camera stream (Occupancy Flow).

Rooms (dependencies point down this list, never up):
``model`` (networks), ``geometry`` (meshing, filtering, normalisation), ``tracking`` (the streaming
engine), ``data`` (synthetic 4D world, datasets), ``training``, ``evaluation``, and ``ros`` (the only
room that imports rclpy or message packages). Importing this package imports none of them.
"""

__version__ = "0.1.0"
