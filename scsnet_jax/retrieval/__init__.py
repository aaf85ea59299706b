"""Choosing a colour reference automatically from a folder of the user's
own photos (``--reference-gallery``).

  features.py   photo -> descriptors through its gray (EfficientNet-Lite0)
  index.py      a folder's descriptors, cached on disk, incremental
  ranking.py    global cosine, then spatial + histogram re-rank of the top k
  api.py        Gallery and retrieve(gray_image, gallery): the Python API
  choices.py    predict's and the app's use: one choice per input, and
                references.json
  benchmark.py  recall@k on view pairs, speed, memory, colour (CIEDE2000)

Nothing here imports the SCSNet model except ``benchmark``.
"""
