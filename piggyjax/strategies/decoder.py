"""Decoder: the encoder stays the base's; the decoder, its BatchNorm statistics and the head
train and are stored per task."""
from __future__ import annotations

from piggyjax.strategies.base import Strategy, host, is_decoder, merge, split


def is_decoder_stats(path) -> bool:
  return is_decoder(("backbone",) + tuple(path[1:])) if path[0] == "backbone" else True


def _trains(path) -> bool:
  return path[0] != "backbone" or is_decoder(path)


class Decoder(Strategy):

  def split_params(self, params, config):
    trainable, frozen = split(params, _trains)
    return frozen, trainable

  def payload(self, task, frozen, trainable, batch_stats, config):
    params = host(merge(frozen, trainable))
    dec, _ = split(params, _trains)
    dec_stats, _ = split(host(batch_stats), is_decoder_stats)
    return {"params": dec, "batch_stats": dec_stats}, None
