"""The NVML source through a stand-in module implementing exactly the NVML calls it makes."""

from __future__ import annotations

import time

import pytest

from loadbench.energy import EnergyConfig, EnergyMeter, SourceUnavailable
from loadbench.energy.nvml import NvmlSource

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_LIBRARY_NOT_FOUND = 12


class NVMLError(Exception):
    """As pynvml's: carries the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 12: "NVML Shared Library Not Found"}.get(self.value, "Unknown")


class FakeGpu:
    def __init__(self, name: bytes, energy_mj: int | None, power_mw: int) -> None:
        self.name = name
        self.energy_mj = energy_mj  # None: a pre-Volta part without the energy counter
        self.power_mw = power_mw


class FakeNvml:
    """Only the attributes NvmlSource may use; anything else is an AttributeError."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], *, init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.initialised = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> bytes:
        return handle.name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        if handle.energy_mj is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return handle.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return handle.power_mw


def test_energy_counter_is_read_as_differences_and_old_gpus_as_power() -> None:
    h200 = FakeGpu(b"NVIDIA H200", energy_mj=9_000_000_000, power_mw=650_000)
    p100 = FakeGpu(b"Tesla P100-PCIE-16GB", energy_mj=None, power_mw=125_500)
    nvml = FakeNvml([h200, p100])
    source = NvmlSource(nvml)
    channels = source.open()
    assert [(c.name, c.measures, c.signal) for c in channels] == [
        ("gpu0", "gpu", "counter_j"),
        ("gpu1", "gpu", "power_w"),
    ]
    assert "NVIDIA H200" in channels[0].detail and "energy counter" in channels[0].detail
    assert "power samples" in channels[1].detail

    h200.energy_mj += 1_500  # 1.5 J
    first = source.read(10)
    assert [(r.channel, r.t_ns, r.value) for r in first] == [(0, 10, 1.5), (1, 10, 125.5)]
    h200.energy_mj += 500
    assert source.read(20)[0].value == 2.0  # joules since open, not since the driver loaded

    source.close()
    source.close()
    assert nvml.shutdowns == 1


def test_counter_restart_after_a_driver_reload_keeps_what_was_counted() -> None:
    gpu = FakeGpu(b"NVIDIA A100", energy_mj=50_000, power_mw=0)
    source = NvmlSource(FakeNvml([gpu]))
    source.open()
    gpu.energy_mj = 53_000
    assert source.read(1)[0].value == 3.0
    gpu.energy_mj = 1_000  # the counter restarted from zero
    assert source.read(2)[0].value == 4.0
    gpu.energy_mj = 3_000
    assert source.read(3)[0].value == 6.0


def test_no_driver_and_no_gpu_are_reasons_not_crashes() -> None:
    with pytest.raises(SourceUnavailable, match="no NVIDIA driver"):
        NvmlSource(FakeNvml([], init_error=NVML_ERROR_LIBRARY_NOT_FOUND)).open()
    empty = FakeNvml([])
    with pytest.raises(SourceUnavailable, match="no NVIDIA GPU"):
        NvmlSource(empty).open()
    assert empty.shutdowns == 1  # initialised, so shut down again


def test_meter_integrates_an_nvml_counter_into_window_energy() -> None:
    # The stand-in GPU draws 300 W: its counter advances with the clock.
    gpu = FakeGpu(b"NVIDIA H100", energy_mj=0, power_mw=300_000)
    origin = time.perf_counter_ns()

    class Clocked(FakeNvml):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
            return round((time.perf_counter_ns() - origin) / 1e9 * 300 * 1e3)

    config = EnergyConfig(interval_s=0.02, idle_s=0.1)
    with EnergyMeter(config, sources=[NvmlSource(Clocked([gpu]))]) as meter:
        start = meter.mark("window_start")
        time.sleep(0.3)
        end = meter.mark("window_end")
    report = meter.report(output_tokens=600, requests=3)
    window_s = (end - start) / 1e9
    assert report["kind"] == "measured"
    assert report["source"] == "nvml: gpu0"
    assert report["mean_w_window"] == pytest.approx(300, rel=0.02)
    assert report["wh_window"] == pytest.approx(300 * window_s / 3600, rel=0.02)
    assert report["idle_w"] == pytest.approx(300, rel=0.05)  # it never idled: net is ~0
    assert abs(report["wh_window_net"]) < 0.05 * report["wh_window"]
    assert report["j_per_output_token"] == pytest.approx(300 * window_s / 600, rel=0.02)
    assert report["wh_per_request"] == pytest.approx(report["wh_window"] / 3, rel=1e-6)
