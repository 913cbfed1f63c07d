"""``bev/occupancy`` (nav_msgs/OccupancyGrid) for the nodes: parameters and message packing.

- :func:`declare_occupancy_parameters` declares ``occupancy.enable``, ``occupancy.min_height``,
  ``occupancy.max_height``, ``occupancy.ground_tolerance`` (and ``occupancy.ground_z`` where the
  node's frame is not at the ground) with descriptors; :meth:`OccupancySettings.from_parameters`
  turns them into :class:`~pointcloud_pipeline.occupancy.OccupancyBands` or raises ValueError
  naming the parameter (for the nodes' ``validator``).
- :class:`OccupancyGridBuffer` holds the int8 cells the kernel writes into (reused across
  frames) and packs them into an OccupancyGrid with one memcpy: rclpy copies an ``array('b')``
  assigned to an ``int8[]`` field with memcpy (and element by element anything else: a numpy
  array or a memoryview costs ~130 ms for 1600 x 1600 cells).
"""
from array import array
from dataclasses import dataclass

from geometry_msgs.msg import Pose
from nav_msgs.msg import MapMetaData, OccupancyGrid
import numpy as np

from ..occupancy import OccupancyBands, occupancy_origin, occupancy_shape


def declare_occupancy_parameters(params, *, min_height=0.1, max_height=2.0,
                                 ground_tolerance=0.05, ground_z=None):
    """Declare the ``occupancy.*`` parameters on a node's ParameterDeclarer with these defaults
    (metres). ground_z: None when the node's grid frame is a body frame on the ground (no
    ``occupancy.ground_z`` parameter: the ground is z = 0), else the parameter's default."""
    d = params.declare
    d('occupancy.enable', True, 'publish bev/occupancy (nav_msgs/OccupancyGrid)')
    d('occupancy.min_height', float(min_height), 'metres above the ground; a point from here '
      'to max_height occupies its cell', value_range=(0.0, 100.0))
    d('occupancy.max_height', float(max_height), 'metres above the ground; higher points '
      '(ceilings, overhangs) do not occupy', value_range=(0.0, 100.0))
    d('occupancy.ground_tolerance', float(ground_tolerance), 'metres; a point within this of '
      'the ground frees its cell (must be < min_height)', value_range=(0.0, 100.0))
    if ground_z is not None:
        d('occupancy.ground_z', float(ground_z), "metres; z of the ground in the grid's frame",
          value_range=(-1000.0, 1000.0))


@dataclass(frozen=True)
class OccupancySettings:
    """The ``occupancy.*`` parameters of a node, checked."""

    enable: bool
    bands: OccupancyBands

    @classmethod
    def from_parameters(cls, values):
        """From {parameter name: value}; ValueError naming the parameters when they disagree."""
        try:
            bands = OccupancyBands(min_height=values['occupancy.min_height'],
                                   max_height=values['occupancy.max_height'],
                                   ground_tolerance=values['occupancy.ground_tolerance'],
                                   ground_z=values.get('occupancy.ground_z', 0.0))
        except ValueError as error:
            raise ValueError(f'occupancy.* parameters: {error}') from None
        return cls(enable=bool(values['occupancy.enable']), bands=bands)


class OccupancyGridBuffer:
    """The int8 cells of one ``bev/occupancy`` publisher, reused across frames.

    The kernel writes into :meth:`view`; :meth:`message` packs them (one memcpy; the message
    never shares this buffer).
    """

    def __init__(self):
        self._array = array('b')
        self._view = np.frombuffer(self._array, dtype=np.int8)

    def view(self, grid):
        """A writable ``height x width`` int8 view for ``grid`` (a BevGrid; reallocated only
        when the number of cells changes; the contents are undefined)."""
        shape = occupancy_shape(grid)
        cells = shape[0] * shape[1]
        if cells != len(self._array):
            self._view = None  # release the export before replacing the array
            self._array = array('b', bytes(cells))
            self._view = np.frombuffer(self._array, dtype=np.int8)
        return self._view.reshape(shape)

    def message(self, grid, bands, header):
        """An OccupancyGrid of the cells in :meth:`view` for ``grid`` and ``bands``:
        ``header`` (its stamp is also ``info.map_load_time``), ``info.resolution``, ``width``
        (cells along x), ``height`` (cells along y), ``origin`` at cell (0, 0)'s corner
        (x_min, y_min, ground_z) with the identity orientation."""
        height, width = occupancy_shape(grid)
        if height * width != len(self._array):
            raise ValueError(f'the buffer holds {len(self._array)} cells, the grid has '
                             f'{height * width}: call view(grid) first')
        x, y, z = occupancy_origin(grid, bands)
        origin = Pose()
        origin.position.x, origin.position.y, origin.position.z = x, y, z
        info = MapMetaData(map_load_time=header.stamp, resolution=float(grid.resolution),
                           width=width, height=height, origin=origin)
        msg = OccupancyGrid(header=header, info=info)
        msg.data = self._array  # copied by the setter (memcpy)
        if msg.data is self._array:  # stored, not copied (ROS_PYTHON_CHECK_FIELDS=1)
            msg.data = array('b', self._array)
        return msg
