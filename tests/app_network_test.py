"""app.py's settings, without gradio: a warning for a server other
machines can reach, --auth's login file handed to gradio's launch, and
the starter weights when no --checkpoint is given."""

import types

import pytest

from scsnet_jax import app


def _args(tmp_path, *extra):
  (tmp_path / 'w').mkdir(exist_ok=True)
  return app.parse_args(['--checkpoint', str(tmp_path / 'w'), *extra])


def test_only_loopback_hosts_are_quiet(tmp_path):
  for host in ('127.0.0.1', '127.0.0.2', '::1', '[::1]', 'localhost'):
    assert app.network_warning(_args(tmp_path, '--host', host)) is None, host
  for host in ('0.0.0.0', '192.168.1.5', '::', 'example.org'):
    warning = app.network_warning(_args(tmp_path, '--host', host))
    assert warning.startswith('warning: serving on ' + host), warning
    assert '\n' not in warning and 'no login' in warning


def test_auth_file_is_read_and_checked(tmp_path, capsys):
  login = tmp_path / 'login.txt'
  login.write_text('# users\nann:s3cret:with:colons\n\nbob:pw\n')
  args = _args(tmp_path, '--host', '0.0.0.0', '--auth', str(login))
  assert args.auth_pairs == [('ann', 's3cret:with:colons'), ('bob', 'pw')]
  assert 'unencrypted' in app.network_warning(args)
  login.write_text('no colon here\n')
  with pytest.raises(SystemExit) as exit_info:
    _args(tmp_path, '--auth', str(login))
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert 'line 1 is not user:password' in err and 'Traceback' not in err


def test_serve_hands_the_login_to_gradio(tmp_path, monkeypatch):
  login = tmp_path / 'login.txt'
  login.write_text('ann:pw\n')
  launched = {}
  page = types.SimpleNamespace(
      queue=lambda **kw: types.SimpleNamespace(
          launch=lambda **kw: launched.update(kw)))
  monkeypatch.setattr(app.runner_lib, 'load_runner', lambda *a, **k: None)
  monkeypatch.setattr(app.app_requests, 'Colouriser',
                      lambda *a, **k: types.SimpleNamespace(close=lambda: None))
  monkeypatch.setattr(app, 'build_page', lambda *a: page)
  app.serve(_args(tmp_path, '--auth', str(login)), block=False)
  assert launched['auth'] == [('ann', 'pw')]
  assert launched['server_name'] == '127.0.0.1' and launched['share'] is False


def test_without_checkpoint_the_app_serves_the_starter_weights(capsys):
  """No --checkpoint: the shipped starter export, said once on stderr."""
  from scsnet_jax import starter  # pylint: disable=g-import-not-at-top
  args = app.parse_args([])
  assert args.checkpoint == starter.STARTER_DIR
  assert capsys.readouterr().err.count(starter.NOTE) == 1
