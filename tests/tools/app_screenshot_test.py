"""app_screenshot's command line: the default output is a new file in the
current folder, never the tracked docs/images/app.png (issue 22, item 10).
The browser run itself is tested in tests/app_test.py."""

import os

from tools import app_screenshot


def test_default_output_is_outside_the_tracked_screenshot(
    tmp_path, monkeypatch, capsys):
  calls = []

  def fake_run_page(url, photo, output, scale=None):
    calls.append((url, photo, output, scale))
    return app_screenshot.PageRun((448, 300), 'done', 12, [])

  monkeypatch.setattr(app_screenshot, 'run_page', fake_run_page)
  monkeypatch.chdir(tmp_path)
  assert app_screenshot.main(['--input', 'photo.png']) == 0
  (url, photo, output, scale), = calls
  assert (url, photo, scale) == ('http://127.0.0.1:7860', 'photo.png', None)
  assert output == 'app_screenshot.png'
  assert os.path.abspath(output) == str(tmp_path / 'app_screenshot.png')
  assert 'result 448x300' in capsys.readouterr().out
  assert app_screenshot.main(['--input', 'p.png', '--output', 'x.png']) == 0
  assert calls[-1][2] == 'x.png'
