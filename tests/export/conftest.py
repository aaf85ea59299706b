"""The export folder of ``tiny.TINY`` at scale 2 that several files read."""

import pytest
from flax import nnx

from scsnet_jax.export import writer
from scsnet_jax.models.generator import Generator
from tests.export.tiny import TINY, config_dict


@pytest.fixture(scope='session')
def exported(tmp_path_factory):
  """(live generator, its params, the folder, the manifest)."""
  gen = Generator(TINY, rngs=nnx.Rngs(1))
  graphdef, state = nnx.split(gen)
  params = state.to_pure_dict()
  path = str(tmp_path_factory.mktemp('x') / 'export')
  manifest = writer.export_generator(graphdef, params, config_dict(TINY), path,
                                     scales=(2,), step=3)
  return gen, params, path, manifest
