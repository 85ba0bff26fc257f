"""The synthetic 4D world (exact occupancy and correspondences, simulated depth camera) and datasets."""
