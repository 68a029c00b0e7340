# Runs on MicroPython: the unchanged firmware on simulated hardware fed by scenario tapes.
# Usage: micropython run_node.py TAPE_DIR BOARD_JSON CONFIG_JSON PART BAUD DURATION_S
# stdout: the node's console (COBS frames between 0x00 bytes); stderr: a final "heap" line.
import gc
import sys
import json
import machine  # the shims first: their footprint is the simulation's, not the firmware's
import os  # noqa: F401  (the ESP32 view of os: built in on the board, a module here)
import simhw
import dev_imu
import dev_tape
import simclock

tape_dir, board_path, config_path, part, baud, duration = sys.argv[1:7]
if len(sys.argv) > 7:  # faults to inject, JSON: {"imu_nack": until_us, "imu_stuck": true, ...}
    simhw.faults.update(json.loads(sys.argv[7]))
with open(board_path) as f:
    bd = json.load(f)
model = (dev_imu.Icm42688 if part == "icm42688" else dev_imu.Mpu6050)(dev_tape.ImuTape(tape_dir + "/imu.bin"))
simhw.attach_i2c(bd["i2c"]["id"], bd["imu"]["addr"], model)
simhw.attach_uart(bd["uart"]["id"], dev_tape.GpsTape(tape_dir + "/gps.bin", int(baud)))
if bd.get("supply"):
    simhw.adc_uv[bd["supply"]["adc_pin"]] = int(12600000 / bd["supply"]["divider"])

gc.collect()
sim_used = gc.mem_alloc()
from rnfw import app

node = app.Node(board_path, config_path, vitals_path=config_path + ".vitals")
import uos  # the unix port's own os (getenv): the harness's, not the board's

_start = uos.getenv("RNSIM_NODE_MS")
if _start:  # a node that has been running for days: its millisecond clock stands here
    node.ms = node._hb_ms = node._gc_ms = int(_start)
total = 0
try:
    import os

    total = os.stat(tape_dir + "/imu.bin")[6] // 12  # samples on the tape
except OSError:
    pass
try:
    # to the end of the recording: the pass after the last sample was produced
    # (the cap only matters when the IMU never delivers: the recording plays from its first sample)
    node.run(int(float(duration)) + 60, until=lambda: total and model.produced > total)
except simhw.WatchdogReset:
    sys.stderr.write("watchdog reset at %d ms\n" % (simclock.now_us() // 1000))
v = node.vitals
gc.collect()
total = gc.mem_free() + gc.mem_alloc()
sys.stderr.write("heap total=%d sim=%d min_free=%d free=%d produced=%d node_ms=%d\n"
                 % (total, sim_used, v.min_free_heap, v.free_heap, model.produced, node.ms))
