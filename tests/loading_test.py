"""loading.py: which folders name a run's checkpoints, and the
one-line refusals of the others (crafted folders; no training here:
tests/train/checkpointing_test.py reads real checkpoints)."""

import pytest

from scsnet_jax.errors import UserError
from scsnet_jax import loading


@pytest.fixture()
def workdir(tmp_path):
  """WORKDIR/checkpoints with finished step 5 and an unfinished step 7."""
  (tmp_path / 'w' / 'checkpoints' / '5' / 'generator_ema').mkdir(parents=True)
  (tmp_path / 'w' / 'checkpoints' / '7.orbax-checkpoint-tmp-1').mkdir()
  return tmp_path / 'w'


def test_a_workdir_its_checkpoints_or_one_step_folder_all_resolve(workdir):
  checkpoints = str(workdir / 'checkpoints')
  assert loading.resolve_checkpoint(workdir) == (checkpoints, None)
  assert loading.resolve_checkpoint(workdir, 5) == (checkpoints, 5)
  assert loading.resolve_checkpoint(checkpoints) == (checkpoints, None)
  assert loading.resolve_checkpoint(workdir / 'checkpoints' / '5') == (
      checkpoints, 5)


def test_the_latest_finished_step_is_read_and_others_are_named(workdir):
  checkpoints = str(workdir / 'checkpoints')
  assert loading._resolve_step(checkpoints, 'W', None) == 5  # not 7: unfinished
  with pytest.raises(FileNotFoundError,
                     match=r'no checkpoint for step 9 under W; available: \[5\]'):
    loading._resolve_step(checkpoints, 'W', 9)


def test_a_step_folder_and_another_step_disagree(workdir):
  with pytest.raises(UserError, match='is step 5 but step 6 was asked for'):
    loading.resolve_checkpoint(workdir / 'checkpoints' / '5', 6)


@pytest.mark.parametrize('name, reason', [('nothing', 'no such folder'),
                                          ('empty', 'no checkpoints under it')])
def test_other_folders_are_one_line_naming_what_was_expected(tmp_path, name,
                                                             reason):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError) as error:
    loading.resolve_checkpoint(tmp_path / name)
  message = str(error.value)
  assert '\n' not in message and reason in message
  assert message.endswith('(expected a training workdir, its checkpoints/ '
                          'folder, one checkpoints/STEP folder, or a folder '
                          'written by scsnet_jax.export)')
