"""Building ROS messages in tests: PointCloud2 from a ``depth.Cloud`` through rclpy's usual
message path (the nodes publish the serialized cloud instead: ros.cloud_messages)."""
from sensor_msgs.msg import PointCloud2, PointField

from pointcloud_pipeline.ros.data_field import set_data


def point_fields(specs):
    """``sensor_msgs/PointField`` messages from field specs (``name, offset, datatype, count``
    attributes, e.g. ``layouts.PointFieldSpec``)."""
    return [PointField(name=spec.name, offset=int(spec.offset), datatype=int(spec.datatype),
                       count=int(spec.count)) for spec in specs]


def cloud_to_pointcloud2(cloud, header, buffer=None):
    """A ``sensor_msgs/PointCloud2`` holding ``cloud`` (a ``depth.Cloud``: ``data`` bytes,
    ``width, height, point_step, row_step, is_dense, fields``), little-endian, with ``header``.

    buffer: the ``MessageBuffer`` the cloud was written into, for the one-copy path.
    """
    nbytes = int(cloud.height) * int(cloud.row_step)
    data = cloud.data
    if len(data) != nbytes:
        raise ValueError(f'cloud data has {len(data)} bytes, height x row_step = {nbytes}')
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(cloud.height), int(cloud.width)
    msg.fields = point_fields(cloud.fields)
    msg.is_bigendian = False
    msg.point_step, msg.row_step = int(cloud.point_step), int(cloud.row_step)
    msg.is_dense = bool(cloud.is_dense)
    if buffer is not None:
        buffer.assign(msg, data)
    else:
        set_data(msg, data)
    return msg
