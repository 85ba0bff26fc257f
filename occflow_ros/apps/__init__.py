"""What is built on the node and the tracker: the demo, bag replay, ground-truth bags and their scoring.

The one room above ``ros/`` (it may import every room below it; nothing below imports it): each
module is one application, reached from ``occflow_ros.cli``'s console commands.
"""

from __future__ import annotations

__all__: list = []
