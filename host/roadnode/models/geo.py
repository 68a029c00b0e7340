"""Positions along a route: a straight great-circle line from an origin at a heading."""

from __future__ import annotations

import numpy as np

R_EARTH = 6371008.8  # mean radius, m


def destination(lat_deg, lon_deg, heading_deg, distance_m):
    """Point reached after ``distance_m`` along a great circle (vectorised over distance)."""
    lat1 = np.radians(lat_deg)
    lon1 = np.radians(lon_deg)
    brg = np.radians(heading_deg)
    d = np.asarray(distance_m, float) / R_EARTH
    lat2 = np.arcsin(np.sin(lat1) * np.cos(d) + np.cos(lat1) * np.sin(d) * np.cos(brg))
    lon2 = lon1 + np.arctan2(np.sin(brg) * np.sin(d) * np.cos(lat1), np.cos(d) - np.sin(lat1) * np.sin(lat2))
    return np.degrees(lat2), (np.degrees(lon2) + 540.0) % 360.0 - 180.0


def distance_m(lat1, lon1, lat2, lon2):
    """Haversine distance."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R_EARTH * np.arcsin(np.sqrt(a))
