"""The serial ports of this machine that look like ESP32 boards (their USB-serial bridge's ids)."""

from __future__ import annotations

# USB-serial bridges found on ESP32 boards (VID, PID): CP210x, CH340, CH9102, FTDI, ESP32-S3/C3 native USB
ESP_USB_IDS = {(0x10C4, 0xEA60), (0x1A86, 0x7523), (0x1A86, 0x55D4), (0x0403, 0x6001), (0x0403, 0x6015),
               (0x303A, 0x1001), (0x303A, 0x4001)}


def esp_ports() -> list[str]:
    """Device paths of the ports whose USB ids are an ESP32 board's bridge (`flash --all`), sorted."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports() if (p.vid, p.pid) in ESP_USB_IDS)
