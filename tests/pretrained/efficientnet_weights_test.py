"""Reading EfficientNet-Lite0's state dict: the checks that name a wrong
file's problem, the class names, and the converted tree's shapes and
parameter count against the published figure."""

import jax
import numpy as np
import pytest

from scsnet_jax.pretrained import efficientnet_lite as lite
from scsnet_jax.pretrained import efficientnet_weights as weights
from tests import helpers


def test_state_dict_checks_name_the_problem():
  state = {key: np.zeros((1,), np.float32) for key in weights.expected_keys()}
  state['_blocks.0._se_reduce.weight'] = np.zeros((1,), np.float32)
  with pytest.raises(weights.WeightsError, match='squeeze-and-excitation'):
    weights.convert_state_dict(state, 'b0.pth')
  del state['_blocks.0._se_reduce.weight'], state['_fc.bias']
  with pytest.raises(weights.WeightsError, match='missing _fc.bias'):
    weights.convert_state_dict(state, 'x.pth')
  with pytest.raises(weights.WeightsError, match='has shape'):
    weights.convert_state_dict({**state, '_fc.bias': np.zeros(1)}, 'x.pth')


def test_class_names_file():
  names = weights.imagenet_class_names()
  assert len(names) == 1000 and names[0] == 'tench'
  assert names[281] == 'tabby cat' and names[968] == 'cup'


def test_converted_params_have_lite0_shapes_and_size():
  params = helpers.efficientnet_lite0_params_or_skip()
  shapes = jax.tree.map(np.shape, params)
  assert shapes == jax.tree.map(tuple, lite.expected_shapes(),
                                is_leaf=lambda x: isinstance(x, tuple))
  # 4,652,008 learned parameters with BatchNorm's gamma and beta
  # (d-li14/efficientnet-lite.pytorch's table); folding keeps one bias per
  # BatchNorm channel where there were two.
  folded = helpers.count_params(params)
  batchnorm_channels = sum(p['bias'].shape[0] for p in
                           jax.tree.leaves(params, is_leaf=lambda x: isinstance(
                               x, dict) and 'kernel' in x)) - 1000
  assert folded + batchnorm_channels == 4_652_008
