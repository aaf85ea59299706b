"""Running a trained generator: ``runner.load_runner`` is the one entry (a
training workdir or an export folder -> an ``NlabPredictor``); ``predictor``
runs the model code on images of any size (tiles, dtype fallback)."""
