"""NVIDIA GPUs through NVML (the ``pynvml`` module of ``nvidia-ml-py``, imported only when used).

Per device, one channel. Volta and later keep a total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded): it is read as
differences, which is exact whatever the sampling rate. Older GPUs only report power
(``nvmlDeviceGetPowerUsage``, milliwatts), which is sampled and integrated with the trapezoid rule.

The NVML calls made, and nothing else: ``nvmlInit``, ``nvmlShutdown``, ``nvmlDeviceGetCount``,
``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetName``, ``nvmlDeviceGetTotalEnergyConsumption``,
``nvmlDeviceGetPowerUsage``, and the exception class ``NVMLError``. A test double implements
exactly these.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

from loadbench.energy.base import Channel, Reading, SourceUnavailable


class NvmlSource:
    """One ``counter_j`` (or, on pre-Volta GPUs, ``power_w``) channel per NVIDIA device."""

    name = "nvml"
    estimated = False

    def __init__(self, nvml: ModuleType | Any | None = None) -> None:
        # ``nvml`` replaces the pynvml module (tests pass a stand-in); None imports it on open.
        self._nvml = nvml
        self._handles: list[Any] = []
        self._counter: list[bool] = []
        self._first_mj: list[int] = []
        self._last_mj: list[int] = []
        self._base_j: list[float] = []
        self._initialised = False

    def open(self) -> list[Channel]:
        """Initialise NVML and choose counter or power per device; ``SourceUnavailable`` if none."""
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml as nvml  # a dependency, but imported only when NVML is asked for
            except ImportError:
                raise SourceUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
            self._nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise SourceUnavailable(f"NVML did not initialise ({exc}): no NVIDIA driver here") from None
        self._initialised = True
        try:
            count = nvml.nvmlDeviceGetCount()
            if count == 0:
                raise SourceUnavailable("NVML found no NVIDIA GPU")
            channels = []
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                model = nvml.nvmlDeviceGetName(handle)
                if isinstance(model, bytes):
                    model = model.decode(errors="replace")
                try:
                    mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                    counter = True
                except nvml.NVMLError:
                    nvml.nvmlDeviceGetPowerUsage(handle)  # must work, or the device is unusable
                    mj, counter = 0, False
                self._handles.append(handle)
                self._counter.append(counter)
                self._first_mj.append(mj)
                self._last_mj.append(mj)
                self._base_j.append(0.0)
                channels.append(
                    Channel(
                        f"gpu{index}",
                        "gpu",
                        "counter_j" if counter else "power_w",
                        detail=f"{model} ({'energy counter' if counter else 'power samples'})",
                    )
                )
            return channels
        except SourceUnavailable:
            self.close()
            raise
        except nvml.NVMLError as exc:
            self.close()
            raise SourceUnavailable(f"NVML failed while listing GPUs: {exc}") from None

    def read(self, now_ns: int) -> list[Reading]:
        """Joules since ``open`` per counter device, watts per power-only device."""
        nvml = self._nvml
        readings = []
        for i, handle in enumerate(self._handles):
            if self._counter[i]:
                mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                if mj < self._last_mj[i]:
                    # The driver reloaded and the counter restarted from zero: keep what was
                    # counted and continue from the new origin.
                    self._base_j[i] += (self._last_mj[i] - self._first_mj[i]) / 1e3
                    self._first_mj[i] = 0
                self._last_mj[i] = mj
                joules = self._base_j[i] + (mj - self._first_mj[i]) / 1e3
                readings.append(Reading(i, now_ns, joules))
            else:
                mw = nvml.nvmlDeviceGetPowerUsage(handle)
                readings.append(Reading(i, now_ns, mw / 1e3))
        return readings

    def close(self) -> None:
        """Shut NVML down once; later calls do nothing."""
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
