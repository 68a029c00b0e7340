"""Positions along a route on a spherical Earth: a straight great-circle line from an origin at a
heading, or a polyline (a route file, a path over the road network).

A sphere of the mean radius is within 0.5% of WGS84 for distances and far better for bearings: at
town scale that is centimetres per 100 m, below the GPS noise the model adds. The node measures
distance from GPS speed, never from positions, so the choice does not reach its segments.
"""

from __future__ import annotations

import numpy as np

R_EARTH = 6371008.8  # mean radius, m


def destination(lat_deg, lon_deg, heading_deg, distance_m):
    """Point reached after ``distance_m`` along a great circle (vectorised over all arguments)."""
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


def bearing_deg(lat1, lon1, lat2, lon2):
    """Initial great-circle bearing from point 1 to point 2, 0–360° clockwise from north."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.degrees(np.arctan2(y, x)) % 360.0


def polyline_lengths(lat, lon) -> np.ndarray:
    """Cumulative distance (m) at each vertex of a polyline, from 0."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    return np.concatenate([[0.0], np.cumsum(distance_m(lat[:-1], lon[:-1], lat[1:], lon[1:]))])


def along_polyline(lat, lon, vertex_m, d):
    """Position and heading at distances ``d`` along a polyline whose vertices lie at ``vertex_m``.

    Each point is reached along its leg's great circle from the leg's first vertex; the heading is
    the leg's bearing there (it turns at the vertices, as a map's polyline does). ``vertex_m`` need
    not be the legs' great-circle lengths: a path over the road network scales each road's piece
    to its length on the profile grid, and positions then follow that scale.
    """
    lat, lon, s = np.asarray(lat, float), np.asarray(lon, float), np.asarray(vertex_m, float)
    d = np.clip(np.asarray(d, float), s[0], s[-1])
    leg = np.clip(np.searchsorted(s, d, side="right") - 1, 0, len(s) - 2)
    geo_len = distance_m(lat[:-1], lon[:-1], lat[1:], lon[1:])
    hdg = bearing_deg(lat[:-1], lon[:-1], lat[1:], lon[1:])
    span = s[1:] - s[:-1]
    frac = np.where(span[leg] > 0, (d - s[leg]) / np.where(span[leg] > 0, span[leg], 1.0), 0.0)
    plat, plon = destination(lat[leg], lon[leg], hdg[leg], frac * geo_len[leg])
    return plat, plon, hdg[leg]


def to_local_m(lat, lon, lat0, lon0):
    """East and north (m) of points from an origin: an equirectangular map, good to 1e-4 within a
    few kilometres (used only to measure how far a point lies from a road)."""
    k = np.radians(1.0) * R_EARTH
    return (np.asarray(lon, float) - lon0) * k * np.cos(np.radians(lat0)), (np.asarray(lat, float) - lat0) * k
