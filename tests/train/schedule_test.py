"""train/schedule.py: a run's length, each step's mode, and when the
adversarial and perceptual terms and the spike detector start."""

import pytest

from scsnet_jax import config_lib
from scsnet_jax.errors import UserError
from scsnet_jax.train import schedule


@pytest.fixture
def config():
  return config_lib.get_base_config()


def test_total_steps_from_steps_or_from_epochs(config):
  config.train.steps = 17
  assert schedule.total_steps(config) == 17
  config.train.steps = 0
  config.train.num_epochs = 3
  config.train.num_train_examples = 1000
  config.data.global_batch_size = 64
  assert schedule.total_steps(config) == 47   # ceil(3000 / 64)
  config.train.num_train_examples = 0
  with pytest.raises(UserError, match='set config.train.steps'):
    schedule.total_steps(config)


@pytest.mark.parametrize('name, expected', [
    ('alternate', [False, True, False, True]),
    ('automatic', [False] * 4),
    ('referential', [True] * 4)])
def test_mode_for_step(config, name, expected):
  config.train.mode_schedule = name
  assert [schedule.mode_for_step(config, s) for s in range(4)] == expected


def test_adversarial_and_perceptual_starts(config):
  config.loss.adversarial_weight = 1.0
  config.loss.gan_start_step = 3
  config.loss.perceptual_weight = 5.0
  config.loss.perceptual_start_step = -1   # with the GAN
  assert [schedule.gan_active(config, s) for s in range(5)] == [
      False, False, False, True, True]
  assert [schedule.perceptual_active(config, s) for s in range(5)] == [
      False, False, False, True, True]
  config.loss.perceptual_start_step = 1
  assert [schedule.perceptual_active(config, s) for s in range(3)] == [
      False, True, True]
  config.loss.adversarial_weight = 0.0
  config.loss.perceptual_weight = 0.0
  assert not schedule.gan_active(config, 10)
  assert not schedule.perceptual_active(config, 10)


def test_settling_is_twice_the_warmup_unless_given(config):
  config.optimizer.warmup_steps = 100
  assert schedule.settling_steps(config) == 200
  config.train.spike_check_from = 51
  assert schedule.settling_steps(config) == 50
  config.train.spike_check_from = 0
  assert schedule.settling_steps(config) == 0
