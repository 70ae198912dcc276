"""CRS helpers: the synthetic metro's local equidistant-cylindrical CRS with an exact
numpy inverse, and projection of lat/lon to any CRS (pyproj for everything else)."""
from __future__ import annotations

import numpy as np
from pyproj import Transformer

# ====================================================================== synthetic
_A_M = 6378137.0  # WGS84 semi-major axis (PROJ's eqc is spherical with this radius)


def local_crs(lat_deg: float, lon_deg: float) -> str:
    """A local equidistant-cylindrical metric CRS centred on (lat, lon).

    True to scale along meridians and along the anchor's parallel; within a 15 km metro
    the east-west scale error stays below ~0.3 %.  Chosen because its exact inverse is
    two multiplications, so lat/lon export of hundreds of millions of pings is cheap
    (:func:`project_to_latlon`, checked against pyproj in the tests).
    """
    return (
        f"+proj=eqc +lat_ts={lat_deg:.6f} +lat_0={lat_deg:.6f} +lon_0={lon_deg:.6f} "
        "+x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
    )


def _eqc_params(crs: str):
    """(lat_0, lon_0, lat_ts) if ``crs`` is a PROJ string made by :func:`local_crs`."""
    if not isinstance(crs, str) or not crs.startswith("+proj=eqc "):
        return None
    kv = dict(tok[1:].split("=", 1) for tok in crs.split() if "=" in tok)
    try:
        return float(kv["lat_0"]), float(kv["lon_0"]), float(kv["lat_ts"])
    except KeyError:
        return None


def _wrap_degrees(a: np.ndarray) -> None:
    """``a = a % 360 - 180`` in place.  The remainder is skipped when every value is in
    [0, 360) already (a metro never crosses the antimeridian), where it changes nothing."""
    if a.size and not (a.min() >= 0.0 and a.max() < 360.0):
        np.remainder(a, 360.0, out=a)
    a -= 180.0


def project_to_latlon(x_m, y_m, crs: str):
    """(lat_deg, lon_deg) of points in ``crs`` (numpy fast path for :func:`local_crs`)."""
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    p = _eqc_params(crs)
    if p is not None:
        lat0, lon0, lat_ts = p
        # in place, one new array per output: the same values as
        # lat0 + degrees(y / A) and (lon0 + degrees(x / (A cos lat_ts)) + 180) % 360 - 180
        lat = np.divide(y, _A_M, out=np.empty_like(y))
        np.degrees(lat, out=lat)
        np.add(lat0, lat, out=lat)
        lon = np.divide(x, _A_M * np.cos(np.radians(lat_ts)), out=np.empty_like(x))
        np.degrees(lon, out=lon)
        np.add(lon0, lon, out=lon)
        lon += 180.0
        _wrap_degrees(lon)  # across the antimeridian
        return lat, lon
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lat), np.asarray(lon)


def project_from_latlon(lat_deg, lon_deg, crs: str):
    """(x_m, y_m) in ``crs`` of WGS84 points (numpy fast path for :func:`local_crs`)."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    p = _eqc_params(crs)
    if p is not None:
        lat0, lon0, lat_ts = p
        # in place, one new array per output: the same values as radians(lat - lat0) * A
        # and radians((lon - lon0 + 180) % 360 - 180) * (A cos lat_ts)
        y = np.subtract(lat, lat0, out=np.empty_like(lat))
        np.radians(y, out=y)
        y *= _A_M
        x = np.subtract(lon, lon0, out=np.empty_like(lon))
        x += 180.0
        _wrap_degrees(x)
        np.radians(x, out=x)
        x *= _A_M * np.cos(np.radians(lat_ts))
        return x, y
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    return np.asarray(x), np.asarray(y)


