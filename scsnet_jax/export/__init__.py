"""Deployable export of a trained generator: ``python -m scsnet_jax.export``.

``format`` is the artifact format (file names, manifest keys, the symbolic
inputs every writer traces with); ``reader`` opens an export folder (all that
predict and the app need); ``writer`` writes one, with a writer per format
(jax.export files itself, ``onnx_writer``: ONNX files) chosen from
``writer.WRITERS``; ``trust`` checks a folder before anything in it runs;
``cli`` is the command line.
"""
