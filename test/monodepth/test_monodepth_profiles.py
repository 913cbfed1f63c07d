"""Model profiles: the shipped YAML files load, and bad profiles fail naming the bad key."""
import math

import pytest
import yaml

from conftest import REPO_ROOT
from pointcloud_pipeline.monodepth import (ModelProfile, available_profiles, load_profile,
                                           profile_from_dict)

SHIPPED = {
    # name: (input_size, output_kind, mean, resize)
    'midas_v21_small': ((256, 256), 'inverse_relative', (0.485, 0.456, 0.406), 'stretch'),
    'depth_anything_v2_small': ((518, 518), 'inverse_relative', (0.485, 0.456, 0.406), 'stretch'),
    'fastdepth_256x320': ((256, 320), 'metric', (0.0, 0.0, 0.0), 'stretch'),
    'fastdepth_224x224': ((224, 224), 'metric', (0.0, 0.0, 0.0), 'stretch'),
}


def test_shipped_profiles_are_the_documented_ones():
    assert set(available_profiles()) == set(SHIPPED)
    assert {p.stem for p in (REPO_ROOT / 'config' / 'models').glob('*.yaml')} == set(SHIPPED)


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_shipped_profile_loads_by_name_and_by_path(name):
    size, kind, mean, resize = SHIPPED[name]
    profile = load_profile(name)
    assert profile.name == name
    assert profile.input_size == size
    assert profile.output_kind == kind
    assert profile.mean == pytest.approx(mean)
    assert profile.resize == resize
    assert profile.scale == pytest.approx(1 / 255)
    assert profile.layout == 'NCHW' and profile.channel_order == 'rgb'
    assert load_profile(REPO_ROOT / 'config' / 'models' / f'{name}.yaml') == profile


def write(tmp_path, data, name='profile.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def valid():
    return {'name': 'test', 'input_size': [64, 96], 'mean': [0.5, 0.5, 0.5], 'std': 0.5,
            'output_kind': 'disparity', 'baseline_m': 0.12, 'max_depth_m': 20.0}


def test_profile_file_with_defaults(tmp_path):
    profile = load_profile(write(tmp_path, valid()))
    assert profile == ModelProfile(name='test', input_size=(64, 96), mean=(0.5, 0.5, 0.5),
                                   std=(0.5, 0.5, 0.5), output_kind='disparity',
                                   baseline_m=0.12, max_depth_m=20.0)
    assert profile.input_name is None and profile.output == 0 and profile.focal_px is None
    assert profile.min_depth_m == 0.0 and profile.resize == 'stretch'


@pytest.mark.parametrize('key,value,message', [
    ('input_size', [64], 'input_size must be \\[height, width\\]'),
    ('input_size', [64, -1], 'input_size'),
    ('input_size', [64.5, 96], 'input_size'),
    ('channel_order', 'rgba', 'channel_order must be one of rgb, bgr'),
    ('layout', 'CHW', 'layout must be one of NCHW, NHWC'),
    ('resize', 'fit', 'resize must be one of stretch, letterbox, crop'),
    ('interpolation', 'lanczos', 'interpolation'),
    ('output_kind', 'depth', 'output_kind must be one of metric, inverse_relative, disparity'),
    ('mean', [0.5, 0.5], 'mean must be 3 finite numbers'),
    ('std', [0.5, 0.0, 0.5], 'std must not contain 0'),
    ('scale', 0, 'scale must be > 0'),
    ('scale', 'x', 'scale must be a finite number'),
    ('output_scale', 0.0, 'output_scale must not be 0'),
    ('output', -1, 'output must be an output index'),
    ('input_name', '', 'input_name must be a non-empty string'),
    ('baseline_m', None, 'baseline_m is required when output_kind is disparity'),
    ('max_depth_m', -2.0, 'max_depth_m must be a number > 0'),
    ('min_depth_m', 30.0, 'max_depth_m \\(20.0\\) must be greater than min_depth_m'),
    ('min_depth_m', float('nan'), 'min_depth_m must be a finite number'),
])
def test_bad_value_names_the_key(tmp_path, key, value, message):
    data = valid()
    data[key] = value
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=message) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_unknown_and_missing_keys(tmp_path):
    data = valid()
    data['inpt_size'] = [1, 2]
    with pytest.raises(ValueError, match="unknown key 'inpt_size'"):
        load_profile(write(tmp_path, data))
    data = valid()
    del data['input_size']
    with pytest.raises(ValueError, match="missing required key 'input_size'"):
        load_profile(write(tmp_path, data))


def test_disparity_only_keys_rejected_for_other_kinds():
    with pytest.raises(ValueError, match='focal_px is only used when output_kind is disparity'):
        ModelProfile(name='m', input_size=(8, 8), output_kind='metric', focal_px=500.0)


def test_not_a_mapping_or_not_yaml(tmp_path):
    path = tmp_path / 'list.yaml'
    path.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='must be a mapping'):
        load_profile(path)
    path = tmp_path / 'broken.yaml'
    path.write_text('name: [unclosed\n')
    with pytest.raises(ValueError, match='cannot read the profile YAML'):
        load_profile(path)
    with pytest.raises(ValueError, match='must be a mapping'):
        profile_from_dict(None)


def test_missing_profile():
    with pytest.raises(FileNotFoundError,
                       match="no model profile named 'midas_v9'.*midas_v21_small"):
        load_profile('midas_v9')
    with pytest.raises(FileNotFoundError, match='model profile file not found'):
        load_profile('/nonexistent/profile.yaml')


def test_max_depth_null_or_infinite_means_no_limit():
    assert ModelProfile(name='m', input_size=(8, 8), max_depth_m=None).max_depth_m is None
    profile = ModelProfile(name='m', input_size=(8, 8), max_depth_m=math.inf)
    assert profile.max_depth_m == math.inf  # an explicit infinity is also "no limit"
