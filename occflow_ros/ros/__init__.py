"""The only room that imports rclpy or message packages: conversions, the node, rosbag2 IO."""
