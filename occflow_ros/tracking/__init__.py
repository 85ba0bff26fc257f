"""The streaming engine: frame window, keyframe policy, vertex propagation, persistent ids."""
