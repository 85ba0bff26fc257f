"""Meshing (MISE + marching cubes), mesh cleanup, point-cloud filtering and normalisation."""
