"""Video files in and out, one frame at a time (PyAV: FFmpeg in its wheels).

Why PyAV: it is maintained, ships FFmpeg (decoders, libx264, the muxers)
inside its wheels, so nothing needs a system FFmpeg, and it exposes packets,
so the audio stream is copied without decoding (remuxed packet for packet).

``probe(path)`` checks a file before any model loads and says what it is
(``Clip``: size, rate, frame count, rotation, audio); a missing file, an
image, a file without a video stream or without a decodable frame, an
unsupported codec, or a file FFmpeg cannot read is one ``UserError`` line.
``frames(clip)`` yields (index, uint8 RGB (H, W, 3), pts) one frame at a
time, and the input's audio packets go to the writer as they are demuxed,
so memory does not grow with the clip. ``Writer`` encodes into a temporary
file in the output's folder that is renamed over the output only when
``close()`` finishes; ``abort()`` (any error, Ctrl-C) removes it.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import tempfile
from typing import Callable, Iterator, Optional

import numpy as np

from scsnet_jax import atomic
from scsnet_jax.errors import UserError, first_line

try:
  import av
except ImportError:  # the optional extra: pip install -e '.[video]'
  av = None

# What FFmpeg raises (nothing when PyAV is missing): one line, as UserError.
FFMPEG_ERRORS = (av.FFmpegError,) if av is not None else ()

DEFAULT_CODEC = 'libx264'
DEFAULT_CRF = 18
DEFAULT_PIX_FMT = 'yuv420p'
# Demuxers that read single pictures (FFmpeg opens a PNG as a 1-frame video).
_IMAGE_DEMUXERS = ('image2', 'apng', 'gif', 'webp', 'tiff', 'ico', 'bmp')


def require_av():
  if av is None:
    raise UserError('video needs PyAV: pip install "scsnet_jax[video]" '
                    '(or pip install av)')
  return av


@dataclasses.dataclass
class Clip:
  """What ``probe`` learnt of an input video (stored orientation)."""
  path: str
  width: int
  height: int
  rate: fractions.Fraction      # average frame rate
  time_base: fractions.Fraction
  frame_count: int              # from the container; 0 when it does not say
  rotation: int                 # counter-clockwise degrees to display
  has_audio: bool
  codec: str


def _is_image(container) -> bool:
  name = container.format.name
  return name.endswith('_pipe') or any(
      part in _IMAGE_DEMUXERS for part in name.split(','))


def _av_error(path: str, error: Exception) -> UserError:
  text = first_line(error)
  return UserError(f'{path}: cannot read the video ({text})')


def probe(path: str) -> Clip:
  """Opens ``path`` and decodes its first frame; a ``UserError`` line for
  anything that is not a readable video."""
  require_av()
  if not os.path.exists(path):
    raise UserError(f'{path}: no such file')
  if os.path.isdir(path):
    raise UserError(f'{path}: is a folder, not a video file')
  try:
    container = av.open(path)
  except av.EOFError:
    raise UserError(f'{path}: ends before any video frame (empty or '
                    'truncated)') from None
  except av.FFmpegError as error:
    raise _av_error(path, error) from None
  with container:
    if _is_image(container):
      raise UserError(f'{path}: is an image, not a video (for photos use '
                      'python -m scsnet_jax.predict)')
    if not container.streams:
      raise UserError(f'{path}: has no video frames (empty or truncated)')
    if not container.streams.video:
      raise UserError(f'{path}: has no video stream (not a video, or '
                      'truncated)')
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
      raise UserError(f'{path}: unsupported video codec')
    codec = stream.codec_context.name
    try:
      first = next(iter(container.decode(stream)), None)
    except av.FFmpegError as error:
      raise UserError(f'{path}: cannot decode its {codec} video '
                      f'({first_line(error)})') from None
    if first is None:
      raise UserError(f'{path}: has no video frames')
    rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(
        25)
    frame_count = int(stream.frames or 0)
    if not frame_count and stream.duration and stream.time_base:
      frame_count = int(round(float(stream.duration * stream.time_base
                                    * rate)))
    return Clip(path, first.width, first.height, fractions.Fraction(rate),
                stream.time_base or fractions.Fraction(1, 90000), frame_count,
                int(getattr(first, 'rotation', 0) or 0) % 360,
                bool(container.streams.audio), codec)


def frames(clip: Clip, on_audio: Callable[[object], None]
           ) -> Iterator[tuple[int, np.ndarray, Optional[int]]]:
  """(index, uint8 RGB (H, W, 3), pts in ``clip.time_base``) per frame,
  streamed; every audio packet of the first audio stream goes to
  ``on_audio`` as it is demuxed. A decoding error mid-file (a truncated or
  broken video) is one ``UserError`` line."""
  with av.open(clip.path) as container:
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    streams = [video] + ([audio] if audio is not None else [])
    index = 0
    try:
      for packet in container.demux(streams):
        if packet.stream is audio:
          if packet.dts is not None:
            on_audio(packet)
          continue
        for frame in packet.decode():
          yield index, frame.to_ndarray(format='rgb24'), frame.pts
          index += 1
    except av.FFmpegError as error:
      raise UserError(f'{clip.path}: broken video at frame {index} '
                      f'({first_line(error)})') from None
  if index == 0:
    raise UserError(f'{clip.path}: has no video frames')


def check_codec(codec: str) -> None:
  """A ``UserError`` line for an encoder this FFmpeg does not have."""
  require_av()
  try:
    found = av.codec.Codec(codec, 'w')
  except Exception:  # UnknownCodecError, ValueError  pylint: disable=broad-except
    raise UserError(f'--codec {codec}: no such video encoder in this '
                    'FFmpeg (try libx264, libx265, libvpx-vp9, mpeg4)'
                    ) from None
  if found.type != 'video':
    raise UserError(f'--codec {codec}: is not a video encoder')


class Writer:
  """An output video under a temporary name in the output's folder; the
  audio stream (if any) copied from the input packet for packet.

  ``write(rgb, pts)`` encodes one uint8 (Ht, Wt, 3) frame with the input's
  timestamp; ``close()`` flushes, renames over ``path`` and fsyncs the
  folder; ``abort()`` removes the temporary file (safe to call twice).
  """

  def __init__(self, path: str, clip: Clip, size: tuple[int, int], *,
               codec: str = DEFAULT_CODEC, crf: int = DEFAULT_CRF,
               pix_fmt: str = DEFAULT_PIX_FMT):
    self.path = path
    folder = os.path.dirname(os.path.abspath(path))
    handle, self.temp = tempfile.mkstemp(
        dir=folder, prefix='.tmp-', suffix='-' + os.path.basename(path)[-40:])
    os.close(handle)
    self._done = False
    try:
      self.container = av.open(self.temp, 'w',
                               format=_format_for(path))
      height, width = size
      self.video = self.container.add_stream(
          codec, rate=clip.rate, options={'crf': str(crf)}
          if codec in ('libx264', 'libx265', 'libvpx-vp9') else {})
      self.video.width, self.video.height = width, height
      self.video.pix_fmt = pix_fmt
      self.video.time_base = clip.time_base
      self.video.codec_context.time_base = clip.time_base
      if clip.rotation and hasattr(self.video, 'set_display_rotation'):
        self.video.set_display_rotation(clip.rotation)  # PyAV 15+
      elif clip.rotation:   # older PyAV: the mov muxer's 'rotate' tag
        self.video.metadata['rotate'] = str((360 - clip.rotation) % 360)
      self.audio = None
      if clip.has_audio:
        with av.open(clip.path) as source:
          template = source.streams.audio[0]
          self.audio = (self.container.add_stream_from_template(template)
                        if hasattr(self.container,
                                   'add_stream_from_template')
                        else self.container.add_stream(template=template))
      self._time_base = clip.time_base
      self._next_pts = 0
    except BaseException as error:
      self.abort()
      if isinstance(error, (av.FFmpegError, ValueError)):
        hint = ('; .mkv holds any audio codec' if 'does not support'
                in str(error) else '')
        raise UserError(f'{path}: cannot write the video '
                        f'({first_line(error)}{hint})') from None
      raise

  def mux_audio(self, packet) -> None:
    if self.audio is not None:
      packet.stream = self.audio
      self.container.mux(packet)

  def write(self, rgb: np.ndarray, pts: Optional[int]) -> None:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb),
                                       format='rgb24')
    if pts is None or pts < self._next_pts:   # keep timestamps increasing
      pts = self._next_pts
    frame.pts, frame.time_base = pts, self._time_base
    self._next_pts = pts + 1
    self.container.mux(self.video.encode(frame))

  def close(self) -> None:
    """Flushes the encoder, closes the file and renames it over ``path``."""
    try:
      self.container.mux(self.video.encode(None))
      self.container.close()
      os.chmod(self.temp, 0o666 & ~atomic._UMASK)  # pylint: disable=protected-access
      os.replace(self.temp, self.path)
      self._done = True
    except BaseException:
      self.abort()
      raise

  def abort(self) -> None:
    if self._done:
      return
    container = getattr(self, 'container', None)
    if container is not None:
      try:
        container.close()
      except Exception:  # pylint: disable=broad-except
        pass
    try:
      os.remove(self.temp)
    except OSError:
      pass
    self._done = True


def _format_for(path: str) -> Optional[str]:
  """The muxer for the output's extension (the temporary name keeps it,
  but say it explicitly); None lets FFmpeg guess."""
  ext = os.path.splitext(path)[1].lower()
  return {'.mp4': 'mp4', '.m4v': 'mp4', '.mov': 'mov', '.mkv': 'matroska',
          '.webm': 'webm', '.avi': 'avi'}.get(ext)
