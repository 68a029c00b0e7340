"""Roughness estimation from the node's raw streams: the float64 reference of the on-device method."""
