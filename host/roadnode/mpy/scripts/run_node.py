# Runs on MicroPython: the unchanged firmware on simulated hardware fed by scenario tapes, one power-on
# of the node (roadnode.sim.offline runs one per boot when the power is cut during the drive).
# Usage: micropython run_node.py TAPE_DIR BOARD_JSON CONFIG_JSON PART BAUD DURATION_S [FAULTS_JSON]
# (TAPE_DIR holds the drive's tape, roadnode.sim.tape.write_tapes; the reader is mpy/lib/tape.py)
# Environment (set by roadnode.sim.offline):
#   RNSIM_FLASH        the node's flash: a LittleFS image mounted at '/', kept across power cuts, holding
#                      the firmware (rnfw/), /board.json and /config.json (offline.py puts them there)
#   RNSIM_FW_DIR       the compiled firmware on the host (holding rnfw/), imported from there
#   RNSIM_DRIVE_US     this power-on on the drive's clock (0 for the first)
#   RNSIM_T0_US        the scenario's t = 0 on the drive's clock (learnt from the first boot)
#   RNSIM_CUT_US       the power fails at this time of the drive's clock
#   RNSIM_NET          load the ESP32's network/socket modules (sim/mpy/network.py)
# stdout: the node's console (COBS frames between 0x00 bytes); stderr: "cut ..." when the power failed,
# else a final "heap" line (and a "net" line with the network's counters).
import gc
import sys
import json
import simclock

# everything up to the firmware's import is the harness's and the simulation's (the shims, the ESP32's
# built-in network and socket modules loaded by select with RNSIM_NET, the flash's mount): not the
# firmware's CPU time (the bracket closes right before `from rnfw import app`)
simclock.fw()
import select  # noqa: F401

import machine  # the shims first: their footprint is the simulation's, not the firmware's
import os  # noqa: F401  (the ESP32 view of os: built in on the board, a module here)
import simhw
import dev_imu
import dev_tape
import simnames
import uos  # the unix port's own os (getenv, system): the harness's, not the board's

tape_dir, board_path, config_path, part, baud, duration = sys.argv[1:7]
if len(sys.argv) > 7:  # faults to inject, JSON: {"imu_nack": until_us, "imu_stuck": true, ...}
    simhw.faults.update(json.loads(sys.argv[7]))
_env = uos.getenv
drive_us = int(_env("RNSIM_DRIVE_US") or 0)
t0 = _env("RNSIM_T0_US")
t0 = int(t0) if t0 else None
with open(board_path) as f:
    bd = json.load(f)
_path = tape_dir + "/" + dev_tape.tape.FILE  # the GPS plays at the tape's own baud (BAUD names it too)
tape = dev_tape.ImuTape(_path)
gps = dev_tape.GpsTape(_path)
total = tape.samples  # samples on the tape
skipped = 0  # samples of the tape the drive went through while the node was off


class _Resume:
    """After a power cut the drive has gone on: the first sample the restarted IMU produces is the
    drive's sample of that moment. Seek the tape there, then hand the model the tape itself."""

    def next(self, v):
        """The first sample after the restart: seek the tape, then let the tape supply the rest."""
        global skipped
        i = (drive_us + model.t_next - t0) * model.odr_hz // 1000000
        skipped = i if i > 0 else 0
        tape.seek(skipped)
        model.source = tape
        tape.next(v)


if t0 is None:
    source = tape
else:
    # the scenario's clock goes on: t = 0 lies before this power-on
    simhw.stream_t0_us = t0 - drive_us
    source = _Resume()
    gps.skip_to(drive_us - t0)  # the scenario's time at power-on: the GPS bytes sent before it are lost
model = (dev_imu.Icm42688 if part == "icm42688" else dev_imu.Mpu6050)(source)
simhw.attach_i2c(bd["i2c"]["id"], bd["imu"]["addr"], model)
simhw.attach_uart(bd["uart"]["id"], gps)
if bd.get("supply"):
    simhw.adc_uv[bd["supply"]["adc_pin"]] = int(machine.SUPPLY_RUN_UV / bd["supply"]["divider"])


_img = _env("RNSIM_FLASH")
if _img:  # the node's flash at '/', as the ESP32's _boot.py mounts it (offline.py put the firmware on it)
    simclock.fw()  # (the ESP32's _boot.py, not the firmware)
    import vfs
    from flashdev import BoardFlash as _Flash  # the partition driver is built in: not the firmware's time

    vfs.mount(vfs.VfsLfs2(_Flash(_img, 4096, int(_env("RNSIM_FS_BLOCKS")), cut_file="")), "/")
    uos.chdir("/")
    # The firmware is on the flash (it takes its room there), but is imported from the host's copy:
    # through the flash model its import would add ~2 s of charged boot time that `sim run`'s timing
    # has never had (SimBoard's boots have it). The host's folders are gone otherwise.
    vfs.mount(vfs.VfsPosix(_env("RNSIM_FW_DIR")), "/.rnsim")
    sys.path[:] = ["/.rnsim", "", ".frozen", "/lib"]
    simclock.mark()
    board_path, config_path = "/board.json", "/config.json"

_cut = _env("RNSIM_CUT_US")
if _cut:

    def _power_fails(_):
        # nothing of the firmware runs any more: no finally, no flush; the flash keeps what was written
        t = simhw.stream_t0_us
        sys.stderr.write("cut drive_us=%d t0_us=%d\n" % (drive_us + simclock.now_us(),
                                                         -1 if t is None else t + drive_us))
        if "network" in sys.modules:
            sys.stderr.write(sys.modules["network"].stats_line() + "\n")
        uos.system("kill -9 $PPID")  # the unix port runs in the process the host started

    simhw.timers.append([int(_cut) - drive_us, 0, _power_fails, None])

simnames.pay_for_pools()  # the name pools the simulation's own names call for: its heap (simnames.py)
gc.collect()
sim_used = gc.mem_alloc()
simclock.mark()
from rnfw import app

node = app.Node(board_path, config_path, vitals_path=config_path + ".vitals")

_start = _env("RNSIM_NODE_MS")
if _start:  # a node that has been running for days: its millisecond clock stands here
    node.ms = node._hb_ms = node._gc_ms = int(_start)
# RNSIM_LINGER_S: after the drive the vehicle stands this long, engine on (the end of the drive is
# closed after stop_close_s; the uplink delivers what it holds)
_linger_ms = int(float(_env("RNSIM_LINGER_S") or 0) * 1000)
_end_ms = [-1]


def _until():
    if not (total and model.produced + skipped > total):
        return False
    if _end_ms[0] < 0:
        _end_ms[0] = node.ms
    return (node.ms - _end_ms[0]) & 0x3FFFFFFF >= _linger_ms


try:
    # to the end of the recording: the pass after the last sample was produced (plus the linger)
    # (the cap only matters when the IMU never delivers: the recording plays from its first sample)
    node.run(int(float(duration) - drive_us / 1000000) + 60 + _linger_ms // 1000, until=_until)
except simhw.WatchdogReset:
    sys.stderr.write("watchdog reset at %d ms\n" % (simclock.now_us() // 1000))
v = node.vitals
gc.collect()
total = gc.mem_free() + gc.mem_alloc()
_d = node.imu  # the node's own counts (an uplink other than the console shows no heartbeat here)
sys.stderr.write("heap total=%d sim=%d min_free=%d free=%d produced=%d node_ms=%d skipped=%d overflows=%d lost=%d\n"
                 % (total, sim_used, v.min_free_heap, v.free_heap, model.produced, node.ms, skipped,
                    _d.overflows if _d else -1, _d.samples_lost if _d else -1))
if "network" in sys.modules:
    sys.stderr.write(sys.modules["network"].stats_line() + "\n")
_sc = node.pipe.sc if node.pipe else None
if _sc:  # self-calibration's state (1 learning, 2 stored, 3 identified), windows, settings in force
    sys.stderr.write("selfcal %s\n" % " ".join(str(x) for x in _sc.values()))
_u = node.uplink
if hasattr(_u, "last_error"):  # the MQTT client's view of its link (what the node would tell a technician)
    sys.stderr.write("uplink connects=%d errors=%d last_error=%s\n" % (_u.connects, _u.errors, _u.last_error))
