"""Straightforward numpy reference of per-point normals (rules: pointcloud_pipeline.normals).

Whole cloud in memory: scipy's cKDTree proposes candidates, numpy ranks them by the exact pair
(squared distance, id) and checks that no point outside the candidates can compete, and
numpy.linalg.eigh decomposes the covariances. Only the rules come from the package's
documentation; every formula is written out again here. Used by the tests and by
bench/bench_normals.py (the numpy baseline).
"""
import numpy as np
from scipy.spatial import cKDTree

DEGENERATE_GAP = 1e-8
TIE_TOLERANCE = 1e-6  # candidates this close to the last one (metres) may tie with outsiders


def squared_norms(d):
    """(dx * dx + dy * dy) + dz * dz of (..., 3) float64 differences."""
    return (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]


def knn_neighbourhoods(points, ids, k):
    """(index, d2): N x K arrays (K = min(k + 1, N)) of every point's K smallest
    (squared distance, id) pairs, in that order, the point itself included."""
    count = len(points)
    keep = min(k + 1, count)
    tree = cKDTree(points - points.mean(axis=0))
    centred = tree.data
    index = np.empty((count, keep), np.int64)
    d2 = np.empty((count, keep), np.float64)
    todo = np.arange(count)
    candidates = min(count, keep + 8)
    while todo.size:
        _, found = tree.query(centred[todo], candidates)
        found = found.reshape(todo.size, candidates)
        distances = squared_norms(points[found] - points[todo][:, None, :])
        order = np.lexsort((ids[found], distances), axis=-1)
        found = np.take_along_axis(found, order, axis=-1)
        distances = np.take_along_axis(distances, order, axis=-1)
        # certain when every candidate beyond the K-th is clearly farther than the K-th, or
        # when the candidates are the whole cloud
        certain = (np.sqrt(distances[:, keep - 1]) + TIE_TOLERANCE < np.sqrt(distances[:, -1])
                   if candidates < count else np.ones(todo.size, bool))
        index[todo[certain]] = found[certain, :keep]
        d2[todo[certain]] = distances[certain, :keep]
        todo = todo[~certain]
        candidates = min(count, 2 * candidates)
    return index, d2


def radius_neighbourhoods(points, ids, radius):
    """(query, neighbour, d2) of every pair with d2 <= radius * radius (each point with itself
    included), sorted by query, then (d2, id of the neighbour)."""
    tree = cKDTree(points - points.mean(axis=0))
    pairs = tree.query_pairs(radius + TIE_TOLERANCE, output_type='ndarray')
    query = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(len(points))])
    neighbour = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(len(points))])
    d2 = squared_norms(points[neighbour] - points[query])
    inside = d2 <= radius * radius
    query, neighbour, d2 = query[inside], neighbour[inside], d2[inside]
    order = np.lexsort((ids[neighbour], d2, query))
    return query[order], neighbour[order], d2[order]


def covariances_knn(points, index):
    """N x 3 x 3 covariance sums of each row of neighbour indices (relative to the point)."""
    d = points[index] - points[:, None, :]
    d -= d.mean(axis=1, keepdims=True)
    return np.einsum('nki,nkj->nij', d, d)


def covariances_radius(points, query, neighbour):
    """N x 3 x 3 covariance sums and neighbour counts of the radius pairs (sorted by query)."""
    count = len(points)
    sizes = np.bincount(query, minlength=count)
    d = points[neighbour] - points[query]
    mean = np.zeros((count, 3))
    np.add.at(mean, query, d)
    mean /= np.maximum(sizes, 1)[:, None]
    d -= mean[query]
    products = d[:, :, None] * d[:, None, :]
    covariance = np.zeros((count, 3, 3))
    np.add.at(covariance, query, products)
    return covariance, sizes


def normals_from_covariances(points, covariance, sizes, always_up=True, viewpoint=None):
    """(normals N x 3, curvature N, degenerate N bool) by numpy.linalg.eigh and the rules."""
    trace = np.trace(covariance, axis1=1, axis2=2)
    scale = np.where(trace > 0, trace, 1.0)
    values, vectors = np.linalg.eigh(covariance / scale[:, None, None])
    degenerate = ((sizes < 3) | ~(trace > 0)
                  | (values[:, 1] - values[:, 0] <= DEGENERATE_GAP * values[:, 2]))
    normals = vectors[:, :, 0] / np.linalg.norm(vectors[:, :, 0], axis=1, keepdims=True)
    up_flip = np.where(normals[:, 2] != 0, normals[:, 2] < 0,
                       np.where(normals[:, 1] != 0, normals[:, 1] < 0, normals[:, 0] < 0))
    if viewpoint is not None:
        dot = ((viewpoint[0] - points[:, 0]) * normals[:, 0]
               + (viewpoint[1] - points[:, 1]) * normals[:, 1]
               + (viewpoint[2] - points[:, 2]) * normals[:, 2])
        flip = np.where(dot != 0, dot < 0, up_flip)
    elif always_up:
        flip = up_flip
    else:
        flip = np.zeros(len(points), bool)
    normals = np.where(flip[:, None], -normals, normals) + 0.0
    with np.errstate(invalid='ignore', divide='ignore'):
        curvature = np.abs(values[:, 0]) / values.sum(axis=1)
    normals[degenerate] = np.nan
    curvature[degenerate] = np.nan
    return normals, curvature, degenerate


def reference_normals(points, k=8, radius=None, ids=None, always_up=True, viewpoint=None):
    """dict of normals, curvature, neighbour_distance, neighbour_count, nan_count for every
    point of an N x 3 float64 cloud."""
    points = np.asarray(points, np.float64)
    count = len(points)
    ids = np.arange(count) if ids is None else np.asarray(ids, np.int64)
    if radius is None:
        index, d2 = knn_neighbourhoods(points, ids, k)
        covariance = covariances_knn(points, index)
        sizes = np.full(count, index.shape[1])
        distance = (np.sqrt(d2[:, -1]) if index.shape[1] == k + 1
                    else np.full(count, np.inf))
    else:
        query, neighbour, _ = radius_neighbourhoods(points, ids, radius)
        covariance, sizes = covariances_radius(points, query, neighbour)
        distance = np.full(count, float(radius))
    normals, curvature, degenerate = normals_from_covariances(points, covariance, sizes,
                                                              always_up, viewpoint)
    return {'normals': normals, 'curvature': curvature, 'neighbour_distance': distance,
            'neighbour_count': sizes, 'nan_count': int(degenerate.sum())}
