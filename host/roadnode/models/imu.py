"""Accelerometer models of the MPU-6050 and ICM-42688-P: what the part puts in its FIFO.

Chain: specific force in the vehicle frame + gravity -> mounting rotation into the sensor frame ->
anti-alias low-pass (the part's digital LPF, 2nd-order Butterworth here) -> decimation to the ODR
-> white noise at the datasheet density over the ODR/2 band -> scale error and bias -> 16-bit
quantisation at the range's LSB/g -> clipping at the range and int16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal
from scipy.spatial.transform import Rotation

from roadnode.errors import InputError

G = 9.80665


@dataclass(frozen=True)
class ImuPart:
    """An accelerometer part's datasheet figures."""

    name: str
    title: str
    ranges_g: tuple[int, ...]
    noise_ug_rthz: float  # accelerometer noise density
    odr_min: float
    odr_max: float
    fifo_bytes: int
    who_am_i: int
    bias_mg_max: float  # zero-g offset, typical worst case
    scale_err_max: float  # sensitivity tolerance

    def lsb_per_g(self, range_g: int) -> float:
        """Counts per g at a full-scale range (16-bit signed output)."""
        return 32768.0 / range_g


PARTS: dict[str, ImuPart] = {
    # MPU-6050: 400 ug/rtHz, zero-g +-50 mg (X/Y), sensitivity +-3%; FIFO 1024 B; WHO_AM_I 0x68.
    "mpu6050": ImuPart("mpu6050", "InvenSense MPU-6050", (2, 4, 8, 16), 400.0, 4.0, 1000.0, 1024, 0x68, 50.0, 0.03),
    # ICM-42688-P: 70 ug/rtHz, zero-g +-20 mg, sensitivity +-0.5%; FIFO 2048 B; WHO_AM_I 0x47.
    "icm42688": ImuPart("icm42688", "TDK ICM-42688-P", (2, 4, 8, 16), 70.0, 12.5, 8000.0, 2048, 0x47, 20.0, 0.005),
}


def get_part(name: str) -> ImuPart:
    """A known IMU part by name; InputError listing them otherwise."""
    try:
        return PARTS[name]
    except KeyError:
        raise InputError(f"unknown IMU {name!r}: use {', '.join(PARTS)}") from None


@dataclass
class ImuConfig:
    """How the simulated IMU is set up and mounted (None fields: drawn from the seed)."""

    part: str = "mpu6050"
    range_g: int = 8
    odr_hz: float = 200.0
    aaf_hz: float | None = None  # default: ODR/4 (a DLPF setting well below Nyquist)
    mount_rpy_deg: tuple[float, float, float] | None = None  # None: a random few-degree tilt per seed
    bias_mg: tuple[float, float, float] | None = None  # None: random within the part's tolerance
    scale_err: tuple[float, float, float] | None = None
    seed: int = 0


class ImuModel:
    """The counts an IMU part outputs for a vehicle's motion: mounting tilt, bias, scale error, noise,
    anti-alias filter and quantisation."""

    def __init__(self, cfg: ImuConfig):
        self.cfg = cfg
        self.part = get_part(cfg.part)
        if cfg.range_g not in self.part.ranges_g:
            raise InputError(f"{self.part.title}: range must be one of {self.part.ranges_g} g, got {cfg.range_g}")
        if not self.part.odr_min <= cfg.odr_hz <= self.part.odr_max:
            raise InputError(f"{self.part.title}: ODR {cfg.odr_hz} Hz outside {self.part.odr_min}–{self.part.odr_max} Hz")
        rng = np.random.default_rng(cfg.seed + 7919)
        self.mount_rpy_deg = cfg.mount_rpy_deg if cfg.mount_rpy_deg is not None else tuple(
            rng.uniform(-6, 6, 3) * np.array([1, 1, 30])
        )
        self.bias_g = (np.array(cfg.bias_mg) if cfg.bias_mg is not None
                       else rng.uniform(-1, 1, 3) * self.part.bias_mg_max * 0.5) / 1000.0
        self.scale = 1.0 + (np.array(cfg.scale_err) if cfg.scale_err is not None
                            else rng.uniform(-1, 1, 3) * self.part.scale_err_max * 0.5)
        self.rot = Rotation.from_euler("xyz", self.mount_rpy_deg, degrees=True)
        self.lsb_per_g = self.part.lsb_per_g(cfg.range_g)
        self.aaf_hz = cfg.aaf_hz or cfg.odr_hz / 4
        self._rng = np.random.default_rng(cfg.seed)

    def noise_sigma_g(self) -> float:
        """RMS noise over the output band: density x sqrt(ODR/2) (noise is white up to Nyquist)."""
        return self.part.noise_ug_rthz * 1e-6 * np.sqrt(self.cfg.odr_hz / 2)

    def sample(self, t_sim: np.ndarray, acc_vehicle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t_odr, counts int16 (M, 3)) from specific force (N, 3) m/s^2 in the vehicle frame."""
        t_sim = np.asarray(t_sim, float)
        fs = 1.0 / (t_sim[1] - t_sim[0])
        step = fs / self.cfg.odr_hz
        if step < 2 or abs(step - round(step)) > 1e-6:
            raise InputError(f"simulation rate {fs:g} Hz must be an integer multiple (>= 2x) of the ODR")
        step = int(round(step))
        f = np.asarray(acc_vehicle, float) / G
        f = f + np.array([0.0, 0.0, 1.0])  # gravity: a level sensor at rest reads +1 g up
        f_s = self.rot.inv().apply(f)  # vehicle -> sensor frame
        sos = signal.butter(2, self.aaf_hz, fs=fs, output="sos")
        zi = signal.sosfilt_zi(sos)[:, :, None] * f_s[0][None, None, :]  # start settled
        filt, _ = signal.sosfilt(sos, f_s, axis=0, zi=zi)
        dec = filt[::step]
        t_odr = t_sim[::step]
        dec = dec + self._rng.normal(0.0, self.noise_sigma_g(), dec.shape)
        dec = dec * self.scale + self.bias_g
        counts = np.round(dec * self.lsb_per_g)
        counts = np.clip(counts, -32768, 32767).astype(np.int16)
        return t_odr, counts
