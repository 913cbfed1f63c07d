"""Per-point normals kernel: the eigen-solvers against numpy.linalg.eigh, analytic surfaces, the
numpy reference on real LAS/LAZ files (k nearest and radius), invariance to point order,
threads and tiling, distance ties, degenerate neighbourhoods and every rejection."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gil_probe import gil_probe
from pointcloud_pipeline import _normals, normals
from pointcloud_pipeline.normals import (DEFAULT_K, MAX_K, Normals, estimate_normals,
                                         symmetric_eigen)
from reference_normals import reference_normals

OFFSET = np.array([500000.0, 4900000.0, 100.0])  # LAS-like absolute coordinates
# real files: (path under las/, radius in the file's units); laspy/simple.laz is LAZ
REAL_FILES = (('pdal/autzen_trim.las', 6.0), ('lidr/Megaplot.laz', 2.0),
              ('lidr/MixedConifer.laz', 1.5), ('pdal/test1_4.las', 5.0),
              ('laspy/simple.laz', 200.0))
SIGN_TOLERANCE = 1e-6  # |deciding value| below this: the orientation may differ by rounding


def read_las(path):
    laspy = pytest.importorskip('laspy', reason='laspy is not installed: pip install '
                                                'laspy==2.7.0 lazrs==0.8.2 (LAS/LAZ reading)')
    if path.suffix == '.laz':
        pytest.importorskip('lazrs', reason='lazrs is not installed: pip install lazrs==0.8.2 '
                                            '(LAZ decompression for laspy)')
    las = laspy.read(path)
    return np.column_stack([las.x, las.y, las.z]).astype(np.float64)


@pytest.fixture(scope='module')
def real_clouds(shared_data):
    return {name: read_las(shared_data / 'las' / name) for name, _ in REAL_FILES}


@pytest.fixture(scope='module')
def autzen(real_clouds):
    return real_clouds['pdal/autzen_trim.las']


def plane_points(count, seed, normal_axis=None):
    """Random points on a plane through OFFSET: z = 0 (default), y = 0 or x = 0 in local
    coordinates, spread over 50 x 50 m."""
    rng = np.random.default_rng(seed)
    local = np.zeros((count, 3))
    in_plane = [axis for axis in range(3) if axis != (2 if normal_axis is None else normal_axis)]
    local[:, in_plane] = rng.uniform(-25, 25, (count, 2))
    return local + OFFSET


def assert_below(values, bound):
    values, bound = np.broadcast_arrays(values, bound)
    worst = np.argmax(values - bound)
    assert (values <= bound).all(), (values.flat[worst], bound.flat[worst])


def same_bytes(a, b):
    for field in ('normals', 'curvature', 'neighbour_distance', 'neighbour_count'):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape, field
        assert x.tobytes() == y.tobytes(), field
    assert a.nan_count == b.nan_count


def up_deciding(normals):
    """The component that decides the up rule's sign: nz, or ny where nz == 0, then nx."""
    return np.where(normals[:, 2] != 0, normals[:, 2],
                    np.where(normals[:, 1] != 0, normals[:, 1], normals[:, 0]))


def assert_matches_reference(result, expected, deciding):
    """Same NaN set, neighbour distances and counts; normals within 1e-5 where the orientation
    is decided clearly (|deciding| > SIGN_TOLERANCE), up to sign elsewhere; curvature 1e-5."""
    nan = np.isnan(expected['curvature'])
    np.testing.assert_array_equal(np.isnan(result.curvature), nan)
    np.testing.assert_array_equal(np.isnan(result.normals).any(axis=1), nan)
    assert result.nan_count == expected['nan_count'] == nan.sum()
    np.testing.assert_array_equal(result.neighbour_distance, expected['neighbour_distance'])
    np.testing.assert_array_equal(result.neighbour_count, expected['neighbour_count'])
    clear = ~nan & (np.abs(deciding) > SIGN_TOLERANCE)
    np.testing.assert_allclose(result.normals[clear], expected['normals'][clear], rtol=0,
                               atol=1e-5)
    unclear = ~nan & ~clear
    dots = np.abs((result.normals[unclear] * expected['normals'][unclear]).sum(axis=1))
    np.testing.assert_allclose(dots, 1.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.curvature[~nan], expected['curvature'][~nan], rtol=0,
                               atol=1e-5)
    assert unclear.sum() <= max(5, 1e-3 * len(nan)), unclear.sum()


# --- eigen-solvers --------------------------------------------------------------------------

def random_rotations(count, rng):
    q, r = np.linalg.qr(rng.normal(size=(count, 3, 3)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def spectra_matrices(spectra, rng):
    """Symmetric matrices R diag(spectrum) R^T with random rotations."""
    spectra = np.asarray(spectra, np.float64)
    rotations = random_rotations(len(spectra), rng)
    matrices = np.einsum('nij,nj,nkj->nik', rotations, spectra, rotations)
    return (matrices + np.swapaxes(matrices, 1, 2)) / 2


def test_symmetric_eigen_matches_eigh():
    rng = np.random.default_rng(1)
    general = rng.normal(size=(2000, 3, 3))
    general = general + np.swapaxes(general, 1, 2)
    near = spectra_matrices([[1.0, 1.0 + 1e-12, 2.0], [0.0, 1e-14, 1.0], [3.0, 3.0, 3.0 + 1e-9],
                             [1e-20, 2e-20, 5.0], [-1.0, -1.0 + 1e-13, 4.0]] * 200, rng)
    exact = np.array([np.diag([1.0, 1.0, 2.0]), np.eye(3), np.zeros((3, 3)),
                      np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), np.diag([5.0, 0.0, 0.0]),
                      np.diag([2.0, 1.0, 1.0]), np.diag([1e300, 1.0, 1e-300])])
    for matrices in (general, near, exact):
        values, vectors = symmetric_eigen(matrices)
        expected_values, expected_vectors = np.linalg.eigh(matrices)
        scale = np.abs(expected_values).max(axis=1, keepdims=True)
        assert_below(np.abs(values - expected_values), 1e-14 * scale)
        assert (np.diff(values, axis=1) >= 0).all()
        # orthonormal columns, and A V = V diag(w)
        gram = np.einsum('nki,nkj->nij', vectors, vectors)
        np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-14)
        residual = np.einsum('nij,njk->nik', matrices, vectors) - vectors * values[:, None, :]
        assert_below(np.abs(residual), 1e-14 * scale[:, :, None])
        # a well-separated eigenvalue has the same eigenvector up to sign
        for column in range(3):
            others = np.delete(expected_values, column, axis=1)
            gap = np.abs(others - expected_values[:, column:column + 1]).min(axis=1)
            separated = gap > 1e-6 * scale[:, 0]
            dots = np.abs((vectors[:, :, column] * expected_vectors[:, :, column]).sum(axis=1))
            np.testing.assert_allclose(dots[separated], 1.0, atol=1e-8)


def test_smallest_eigenpair_of_the_kernel_matches_eigh():
    """The normal's solver: trigonometric eigenvalues and a cross-product eigenvector, error
    about 1e-16 / gap^2 (gap = (l1 - l0) / trace); Jacobi below a gap of 1e-2, error about
    1e-16 / gap; undefined (degenerate) at a gap <= DEGENERATE_GAP."""
    rng = np.random.default_rng(2)
    lines = np.column_stack([rng.uniform(0, 0.1, 3000), np.zeros(3000), np.ones(3000)])
    lines[:, 1] = lines[:, 0] + 10.0 ** rng.uniform(-9, -1, 3000)  # gaps from 1e-9 to 0.1
    spectra = np.concatenate([
        rng.uniform(0, 1, (3000, 3)),                                 # general
        np.column_stack([rng.uniform(0, 1e-6, 1000), rng.uniform(0.1, 1, (1000, 2))]),  # planes
        [[0.0, 1.0, 1.0], [0.0, 1.0, 2.0], [1e-12, 0.5, 0.5]] * 100,  # l1 = l2
        lines,
        [[0.0, 0.0, 1.0], [0.0, 1e-12, 1.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0 + 1e-9]] * 100,
    ])
    spectra = np.sort(spectra, axis=1)
    matrices = np.ascontiguousarray(spectra_matrices(spectra, rng) * 7.5)
    values = np.empty((len(matrices), 3))
    vectors = np.empty((len(matrices), 3))
    defined = np.empty(len(matrices), np.uint8)
    _normals.smallest_eigen(matrices, values, vectors, defined, 1)
    defined = defined.astype(bool)
    expected_values, expected_vectors = np.linalg.eigh(matrices)
    trace = np.trace(matrices, axis1=1, axis2=2)
    gap = (expected_values[:, 1] - expected_values[:, 0]) / expected_values[:, 2]
    clearly = np.abs(gap / normals.DEGENERATE_GAP - 1) > 1e-3
    np.testing.assert_array_equal(defined[clearly], gap[clearly] > normals.DEGENERATE_GAP)
    assert defined.sum() > 0.85 * len(matrices)
    assert_below(np.abs(values[defined, 0] - expected_values[defined, 0]), 2e-14 * trace[defined])
    np.testing.assert_allclose(values[defined].sum(axis=1), trace[defined], rtol=1e-14)
    relative_gap = (expected_values[defined, 1] - expected_values[defined, 0]) / trace[defined]
    sign = np.sign((vectors[defined] * expected_vectors[defined, :, 0]).sum(axis=1))
    error = np.linalg.norm(vectors[defined] - sign[:, None] * expected_vectors[defined, :, 0],
                           axis=1)
    assert_below(error, 2e-16 / relative_gap ** 2 + 1e-15 / relative_gap)
    np.testing.assert_allclose(np.linalg.norm(vectors[defined], axis=1), 1.0, atol=1e-15)


def test_symmetric_eigen_rejects_bad_matrices():
    with pytest.raises(ValueError, match=r'shape \(\.\.\., 3, 3\)'):
        symmetric_eigen(np.zeros((3, 2)))
    with pytest.raises(ValueError, match='symmetric'):
        symmetric_eigen(np.arange(9.0).reshape(3, 3))
    with pytest.raises(ValueError, match='finite'):
        symmetric_eigen(np.full((3, 3), np.nan))
    values, vectors = symmetric_eigen(np.eye(3)[None].repeat(4, 0).reshape(2, 2, 3, 3))
    assert values.shape == (2, 2, 3) and vectors.shape == (2, 2, 3, 3)


# --- analytic surfaces ----------------------------------------------------------------------

@pytest.mark.parametrize('axis, expected', [(2, (0.0, 0.0, 1.0)), (1, (0.0, 1.0, 0.0)),
                                            (0, (1.0, 0.0, 0.0))])
def test_axis_planes_give_the_plane_normal_and_zero_curvature(axis, expected):
    points = plane_points(3000, seed=axis, normal_axis=axis)
    for kwargs in ({}, {'k': 20}, {'radius': 2.5}):
        result = estimate_normals(points, **kwargs)
        assert result.nan_count == 0
        np.testing.assert_allclose(result.normals, np.broadcast_to(expected, (3000, 3)),
                                   rtol=0, atol=1e-9)
        assert np.abs(result.curvature).max() <= 1e-9
    # with nz == 0 the sign follows y, then x (up rule); always_up=False keeps the solver's
    free = estimate_normals(points, always_up=False)
    np.testing.assert_allclose(np.abs(free.normals @ np.array(expected)), 1.0, atol=1e-9)
    # a viewpoint on the negative side turns every normal towards it
    viewpoint = OFFSET - 10.0 * np.array(expected)
    towards = estimate_normals(points, viewpoint=viewpoint)
    np.testing.assert_allclose(towards.normals, -np.broadcast_to(expected, (3000, 3)),
                               atol=1e-9)


def test_ramp_at_45_degrees():
    rng = np.random.default_rng(3)
    u, v = rng.uniform(-20, 20, (2, 4000))
    points = np.column_stack([u, v, u]) + OFFSET  # z rises with x
    expected = np.array([-1.0, 0.0, 1.0]) / np.sqrt(2)
    for kwargs in ({}, {'radius': 2.0}):
        result = estimate_normals(points, **kwargs)
        assert result.nan_count == 0
        np.testing.assert_allclose(result.normals, np.broadcast_to(expected, (4000, 3)),
                                   atol=1e-9)
        assert np.abs(result.curvature).max() <= 1e-9
    below = estimate_normals(points, viewpoint=OFFSET + [10.0, 0.0, -10.0])
    np.testing.assert_allclose(below.normals, -np.broadcast_to(expected, (4000, 3)), atol=1e-9)


def test_sphere_gives_radial_normals():
    count, radius = 20000, 10.0
    index = np.arange(count) + 0.5
    polar = np.arccos(1 - 2 * index / count)
    azimuth = np.pi * (1 + 5 ** 0.5) * index
    radial = np.column_stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                              np.cos(polar)])
    points = OFFSET + radius * radial
    inward = estimate_normals(points, viewpoint=OFFSET)
    assert inward.nan_count == 0
    # the plane through 9 points about 0.25 m apart is normal to the sphere at their centroid,
    # up to ~0.1 m from the point: a deviation of up to ~0.01 rad from the point's radius
    deviation = np.linalg.norm(inward.normals + radial, axis=1)
    assert deviation.max() < 1.5e-2 and np.median(deviation) < 5e-3
    assert 0 < np.median(inward.curvature) < 1e-3
    up = estimate_normals(points)
    assert (up.normals[:, 2] >= 0).all()
    np.testing.assert_allclose(np.abs((up.normals * inward.normals).sum(axis=1)), 1.0,
                               atol=1e-12)


# --- the numpy reference on real LAS/LAZ files ----------------------------------------------

@pytest.mark.parametrize('name, radius', REAL_FILES)
def test_real_files_match_the_reference_knn(real_clouds, name, radius):
    points = real_clouds[name]
    expected = reference_normals(points, k=DEFAULT_K)
    result = estimate_normals(points)
    assert isinstance(result, Normals) and result.normals.shape == points.shape
    assert_matches_reference(result, expected, up_deciding(expected['normals']))


@pytest.mark.parametrize('name, radius', REAL_FILES)
def test_real_files_match_the_reference_radius(real_clouds, name, radius):
    points = real_clouds[name]
    expected = reference_normals(points, radius=radius)
    result = estimate_normals(points, radius=radius)
    assert result.neighbour_count.min() >= 1
    assert_matches_reference(result, expected, up_deciding(expected['normals']))


def test_real_file_viewpoint_and_other_k_match_the_reference(real_clouds):
    points = real_clouds['lidr/MixedConifer.laz']
    viewpoint = points.mean(axis=0) + [0.0, 0.0, 300.0]
    expected = reference_normals(points, k=15, viewpoint=viewpoint)
    result = estimate_normals(points, k=15, viewpoint=viewpoint)
    towards = viewpoint - points
    deciding = (towards * expected['normals']).sum(axis=1) / np.linalg.norm(towards, axis=1)
    assert_matches_reference(result, expected, deciding)
    many = reference_normals(points[:8000], k=64)
    assert_matches_reference(estimate_normals(points[:8000], k=64), many,
                             up_deciding(many['normals']))
    unoriented = estimate_normals(points, k=15, always_up=False)
    dots = np.abs((unoriented.normals * expected['normals']).sum(axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-5)


# --- invariance -----------------------------------------------------------------------------

def test_point_order_does_not_change_any_byte(autzen):
    rng = np.random.default_rng(4)
    for kwargs in ({}, {'radius': 6.0}):
        full = estimate_normals(autzen, **kwargs)
        order = rng.permutation(len(autzen))
        shuffled = estimate_normals(autzen[order], ids=order, **kwargs)
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        for field in ('normals', 'curvature', 'neighbour_distance', 'neighbour_count'):
            assert getattr(shuffled, field)[back].tobytes() == getattr(full, field).tobytes()


def test_thread_counts_give_identical_bytes(autzen):
    for kwargs in ({}, {'k': 30}, {'radius': 6.0}):
        reference = estimate_normals(autzen, threads=1, **kwargs)
        for threads in (2, 3, 0):
            same_bytes(estimate_normals(autzen, threads=threads, **kwargs), reference)


def test_input_layouts_give_identical_bytes(autzen):
    points = autzen[:20000]
    reference = estimate_normals(points)
    same_bytes(estimate_normals(np.asfortranarray(points)), reference)
    same_bytes(estimate_normals(points.astype('>f8')), reference)
    read_only = points.copy()
    read_only.flags.writeable = False
    same_bytes(estimate_normals(read_only), reference)
    wide = np.zeros((len(points), 5))
    wide[:, 1:4] = points
    same_bytes(estimate_normals(wide[:, 1:4]), reference)  # strided rows
    reversed_rows = points[::-1]
    result = estimate_normals(reversed_rows, ids=np.arange(len(points))[::-1].copy())
    assert result.normals[::-1].tobytes() == reference.normals.tobytes()


def test_tile_with_halo_equals_the_whole_cloud(autzen):
    """A tiler's call (tile points first, then halo points, file indices as ids) gives the
    whole file's bytes for every tile point whose neighbourhood is inside the halo."""
    low = autzen.min(axis=0)
    tile = ((autzen[:, 0] >= low[0] + 300) & (autzen[:, 0] < low[0] + 600)
            & (autzen[:, 1] >= low[1] + 150) & (autzen[:, 1] < low[1] + 350))
    halo_width = 25.0
    edges = (low[0] + 300 - halo_width, low[0] + 600 + halo_width,
             low[1] + 150 - halo_width, low[1] + 350 + halo_width)
    inside = ((autzen[:, 0] >= edges[0]) & (autzen[:, 0] < edges[1])
              & (autzen[:, 1] >= edges[2]) & (autzen[:, 1] < edges[3]))
    halo = inside & ~tile
    ids = np.concatenate([np.flatnonzero(tile), np.flatnonzero(halo)])
    tile_points = autzen[tile]
    to_edge = np.min([tile_points[:, 0] - edges[0], edges[1] - tile_points[:, 0],
                      tile_points[:, 1] - edges[2], edges[3] - tile_points[:, 1]], axis=0)
    for kwargs in ({}, {'radius': 6.0}):
        whole = estimate_normals(autzen, **kwargs)
        part = estimate_normals(autzen[ids], ids=ids, core=int(tile.sum()), **kwargs)
        assert len(part.normals) == tile.sum()
        covered = part.neighbour_distance < to_edge
        assert covered.mean() > 0.99
        for field in ('normals', 'curvature', 'neighbour_distance', 'neighbour_count'):
            assert (getattr(part, field)[covered].tobytes()
                    == getattr(whole, field)[tile][covered].tobytes()), field
        # the same with a boolean core mask over the points in file order
        masked = estimate_normals(autzen[inside], ids=np.flatnonzero(inside),
                                  core=tile[inside], **kwargs)
        assert masked.normals[covered].tobytes() == whole.normals[tile][covered].tobytes()


def test_concurrent_calls_from_python_threads(autzen):
    points = autzen[:30000]
    expected = estimate_normals(points, threads=1)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: estimate_normals(points, threads=1), range(4)))
    for result in results:
        same_bytes(result, expected)


def test_kernel_releases_the_gil(autzen):
    with gil_probe() as ticks_during:
        released = ticks_during(lambda: [estimate_normals(autzen, threads=1) for _ in range(3)])
    assert released > 10, released


# --- ties and duplicates ---------------------------------------------------------------------

def lattice(size, spacing=1.0):
    axes = np.arange(size) * spacing
    return np.stack(np.meshgrid(axes, axes, axes, indexing='ij'), axis=-1).reshape(-1, 3)


def test_equal_distances_are_broken_by_id_whatever_the_order():
    """On a cubic lattice k = 8 takes the 6 face neighbours and 2 of the 12 edge neighbours at
    sqrt(2): the ids decide which, so the normals depend on the ids, never on the order."""
    points = lattice(8) + OFFSET
    rng = np.random.default_rng(5)
    ids = rng.permutation(len(points)) * 3 + 7  # unique, unordered, not 0..N-1
    expected = reference_normals(points, k=8, ids=ids)
    result = estimate_normals(points, ids=ids)
    assert_matches_reference(result, expected, up_deciding(expected['normals']))
    assert result.nan_count < len(points)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(points))
        shuffled = estimate_normals(points[order], ids=ids[order])
        assert shuffled.normals.tobytes() == result.normals[order].tobytes()
        assert shuffled.curvature.tobytes() == result.curvature[order].tobytes()
    other_ids = estimate_normals(points, ids=ids[::-1].copy())
    assert other_ids.normals.tobytes() != result.normals.tobytes()  # the ids matter


def test_flat_grid_ties_and_radius_on_the_border():
    grid = np.stack(np.meshgrid(np.arange(40.0), np.arange(40.0)), -1).reshape(-1, 2)
    points = np.column_stack([grid, 0.1 * np.sin(grid[:, 0]) * np.cos(grid[:, 1])]) + OFFSET
    for kwargs in ({'k': 6}, {'k': 12}, {'radius': 1.0}, {'radius': 2.0}):
        expected = reference_normals(points, **kwargs)
        result = estimate_normals(points, **kwargs)
        assert_matches_reference(result, expected, up_deciding(expected['normals']))
        order = np.random.default_rng(6).permutation(len(points))
        shuffled = estimate_normals(points[order], ids=order, **kwargs)
        assert shuffled.normals.tobytes() == result.normals[order].tobytes()


def test_duplicate_points_are_neighbours_like_any_other():
    points = plane_points(500, seed=7)
    copies = np.concatenate([points, np.repeat(points[:1], 20, axis=0)])
    result = estimate_normals(copies)
    # 21 identical points: 9 of them form each one's neighbourhood (degenerate)
    assert np.isnan(result.normals[0]).all() and np.isnan(result.normals[500:]).all()
    assert (result.neighbour_distance[500:] == 0).all()
    defined = ~np.isnan(result.curvature)
    assert defined.sum() > 450
    np.testing.assert_allclose(result.normals[defined], np.broadcast_to([0, 0, 1],
                                                                         (defined.sum(), 3)),
                               atol=1e-9)
    expected = reference_normals(copies)
    assert_matches_reference(result, expected, up_deciding(expected['normals']))


# --- degenerate neighbourhoods and small inputs ---------------------------------------------

def test_degenerate_neighbourhoods_are_nan():
    line = OFFSET + np.arange(50)[:, None] * np.array([0.3, 0.4, 0.5])
    collinear = estimate_normals(line)
    assert collinear.nan_count == 50 and np.isnan(collinear.curvature).all()
    assert np.isnan(collinear.normals).all()
    same = estimate_normals(np.repeat(OFFSET[None], 12, axis=0))
    assert same.nan_count == 12
    np.testing.assert_array_equal(same.neighbour_distance, 0.0)
    # the 6 face neighbours of a lattice point are isotropic: no smallest direction
    isotropic = estimate_normals(lattice(5), k=6)
    centre = 2 * 25 + 2 * 5 + 2
    assert np.isnan(isotropic.normals[centre]).all()
    # a radius too small to hold 3 points
    sparse = estimate_normals(plane_points(200, seed=8), radius=1e-3)
    assert sparse.nan_count == 200
    np.testing.assert_array_equal(sparse.neighbour_count, 1)
    np.testing.assert_array_equal(sparse.neighbour_distance, 1e-3)


def test_small_and_empty_inputs():
    empty = estimate_normals(np.empty((0, 3)))
    assert empty.normals.shape == (0, 3) and empty.curvature.shape == (0,)
    assert empty.nan_count == 0
    for count in (1, 2):
        tiny = estimate_normals(OFFSET + np.eye(3)[:count])
        assert tiny.nan_count == count and np.isnan(tiny.normals).all()
        np.testing.assert_array_equal(tiny.neighbour_distance, np.inf)
        np.testing.assert_array_equal(tiny.neighbour_count, count)
    three = estimate_normals(OFFSET + np.eye(3))  # fewer than k + 1: incomplete, still a plane
    np.testing.assert_allclose(three.normals, np.full((3, 3), 1 / np.sqrt(3)), atol=1e-12)
    np.testing.assert_array_equal(three.neighbour_distance, np.inf)
    assert estimate_normals(OFFSET + np.eye(3), core=0).normals.shape == (0, 3)
    assert estimate_normals(OFFSET + np.eye(3), radius=2.0).nan_count == 0


# --- rejections -----------------------------------------------------------------------------

def test_bad_arguments_are_rejected_with_clear_messages():
    points = plane_points(100, seed=9)
    cases = [
        (dict(points=points.tolist()), 'numpy array'),
        (dict(points=points[:, :2]), r'N x 3'),
        (dict(points=points[None]), r'N x 3'),
        (dict(points=points.astype(np.float32)), 'float64'),
        (dict(points=points.astype(np.int64)), 'float64'),
        (dict(points=np.where(np.arange(100)[:, None] == 7, np.nan, points)), 'row 7'),
        (dict(points=np.where(np.arange(100)[:, None] == 3, np.inf, points)), 'NaN or infinite'),
        (dict(points=points * 1e7), 'magnitude'),
        (dict(k=1), 'k must be an integer from 2'),
        (dict(k=MAX_K + 1), 'k must be an integer from 2'),
        (dict(k=8.0), 'k must be an integer'),
        (dict(k=True), 'k must be an integer'),
        (dict(radius=0.0), 'radius must be a finite number > 0'),
        (dict(radius=-1.0), 'radius must be'),
        (dict(radius=np.inf), 'radius must be'),
        (dict(radius='1'), 'radius must be'),
        (dict(k=8, radius=1.0), 'either k or radius'),
        (dict(ids=np.arange(99)), r'shape \(100,\)'),
        (dict(ids=np.zeros(100, np.int64)), 'unique'),
        (dict(ids=np.arange(100.0)), 'integers'),
        (dict(ids=list(range(100))), 'numpy integer array'),
        (dict(ids=np.full(100, 2 ** 63, np.uint64)), 'int64'),
        (dict(core=101), 'core must be from 0'),
        (dict(core=-1), 'core must be from 0'),
        (dict(core=np.ones(99, bool)), r'shape \(100,\)'),
        (dict(core=np.arange(5)), 'boolean mask'),
        (dict(core=True), 'boolean mask'),
        (dict(always_up=1), 'always_up must be True or False'),
        (dict(viewpoint=(1.0, 2.0)), 'three finite numbers'),
        (dict(viewpoint=(1.0, 2.0, np.nan)), 'three finite numbers'),
        (dict(viewpoint='abc'), 'three'),
        (dict(threads=-1), 'threads must be an integer'),
        (dict(threads=2.0), 'threads must be an integer'),
    ]
    for kwargs, message in cases:
        arguments = {'points': points, **kwargs}
        with pytest.raises(ValueError, match=message):
            estimate_normals(arguments.pop('points'), **arguments)
