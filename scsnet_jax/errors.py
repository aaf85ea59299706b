"""The package's one error policy.

A mistake in what the user gave (a flag, a config value, an input file, a
checkpoint path) raises ``UserError`` with a one-line message that names the
thing and the problem; a missing or unwritable path raises the ``OSError``
the system gave. Entry points (``main``, ``predict``, ``export``, the tools)
catch exactly these two, print the line and exit non-zero; a batch command
reports the file and goes on with the next. Anything else is a bug and
propagates with its traceback.
"""


class UserError(ValueError):
  """A mistake in the user's input: printed as one line, no traceback.

  A ``ValueError``, so code that validates values can be caught either way.
  """


# Exit status of a training run that SIGTERM stopped before its last step
# (after saving): 75 = EX_TEMPFAIL ("try again later"), so a scheduler can
# tell it from success (0) and from errors (1) and requeue the job
# (launch/slurm.sbatch does).
EXIT_STOPPED_EARLY = 75
