"""Where the repository's files are, for tests at any depth of tests/."""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CONFIG = os.path.join(REPO_ROOT, 'configs', 'test.py')
