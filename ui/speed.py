"""The Train page's speed measurements: a background service shared by every session of the server.

A reading (training images/s, a trainer's start, the load it was taken at) is measured in a thread,
one at a time, and kept until it is stale or the machine's load has moved; the page never waits for one.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import streamlit as st

from core.train import cost as E
from core.train.recipe import ConfigError, TrainConfig
from ui.warmup import wait_for_warm_up

STALE_S = 600.0  # a speed measured longer ago is measured again (the machine's load has moved on)
LOAD_CHANGE = 0.5  # ... as is one measured at a load average per CPU this far from now's
# Session state: this session's browser has drawn the estimates once (set by their first run).
DRAWN = "train_estimates_drawn"


@dataclass
class Reading:
    """One background measurement: training images/s, device, a trainer's start, when and at what load."""

    images_per_s: float
    device: str
    start_s: float
    at: float
    load: float
    error: str | None = None


@st.cache_resource
def _speeds() -> dict:
    """Measurements shared by every session of this server: {key: Reading}, the keys being measured,
    a lock over both, and one lock so that measurements run one at a time (they would slow each other)."""
    return {"readings": {}, "pending": set(), "lock": threading.Lock(), "one_at_a_time": threading.Lock()}


def _start_seconds(store: dict) -> float:
    """A trainer process's start (core.train.cost.start_seconds), measured once per STALE_S: it does not
    depend on the recipe, and each measurement starts a Python process."""
    at, seconds = store.get("start", (0.0, 0.0))
    if time.time() - at > STALE_S:
        seconds = E.start_seconds()
        store["start"] = (time.time(), seconds)
    return seconds


def _measure(key: tuple) -> None:
    """Thread body: measure `key`'s speed (core.train.cost) and a trainer's start; store the Reading."""
    store = _speeds()
    size, model, batch_size, device, amp, channels_last, weight_decay = key
    reading = None
    try:
        with store["one_at_a_time"]:
            # The warm-up's imports run in this process: measured alongside them, the few timed steps would
            # read slower than a trainer process will train (a first visit right after the start).
            wait_for_warm_up()
            load = E.load_per_cpu()
            try:
                ips, dev = E.measure_speed(TrainConfig(size=size, model=model, batch_size=batch_size, device=device,
                                                       amp=amp, channels_last=channels_last, weight_decay=weight_decay))
                reading = Reading(ips, dev, _start_seconds(store), time.time(), load)
            except (ConfigError, RuntimeError, OSError) as e:
                reading = Reading(0.0, device, 0.0, time.time(), load, error=str(e))
    finally:  # whatever happened, the key is no longer being measured (a later visit tries again)
        with store["lock"]:
            if reading is not None:
                store["readings"][key] = reading
            store["pending"].discard(key)


def speed(cfg: TrainConfig, size: int, n_train: int) -> Reading | None:
    """The latest measurement of `cfg`'s training speed at `size` (a batch never holds more than the
    training images), or None before the first one is ready. Never waits: a missing, stale (older than
    STALE_S) or off-load (the load per CPU moved by LOAD_CHANGE) reading starts a background measurement,
    once this session's browser has drawn the page (DRAWN): a first visit's browser is still loading the
    widgets' code then, and a measurement (a few training steps and a trainer process's start) would take
    the CPU from it. The estimates' next refresh comes from the browser once it has drawn them.

    Keyed by what changes speed only: split sizes, subset, epochs, lr, ... are arithmetic on top
    (core.train.cost.Estimate), so changing them never measures again.
    """
    key = (size, cfg.model, min(cfg.batch_size, n_train), cfg.device, cfg.amp, cfg.channels_last, cfg.weight_decay)
    store = _speeds()
    with store["lock"]:
        reading = store["readings"].get(key)
        fresh = reading is not None and (time.time() - reading.at < STALE_S
                                          and abs(E.load_per_cpu() - reading.load) < LOAD_CHANGE)
        if not fresh and key not in store["pending"] and st.session_state.get(DRAWN):
            store["pending"].add(key)
            threading.Thread(target=_measure, args=(key,), daemon=True, name=f"speed-{size}px").start()
    return reading
