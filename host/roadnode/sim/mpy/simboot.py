"""Start of the simulated board: what the ESP32's ROM, MicroPython's startup and _boot.py do.

Mounts the flash image (LittleFS v2) at '/', attaches the board's devices (IMU register model,
GPS UART tape or a silent GPS), then runs boot.py and — unless the board came up in the raw REPL —
main.py, as the ESP32 port does. The supervisor (roadnode.sim.board) starts this with `-i`, so the
REPL follows. Resets raise simhw exceptions that end the process with a code the supervisor reads.
"""

import sys
import uos as os  # the built-in (os.py on this path is the ESP32's reduced view)
import vfs

# This script runs from roadnode.mpy.build.compiled_sim's folder: the simulation and the modules it
# shares with the host (roadnode/mpy/lib: the tape reader) as .mpy beside it. Loading .mpy makes no
# parse trees between the simulation's objects, which had left the firmware a heap of holes (4 KB
# the largest after a soft reset, ~90 KB now, where flash's 4 KB deflate window had failed to fit).

# everything of the simulation is imported before the flash is mounted at '/'
import machine  # noqa: F401  (the shims: machine, time, simhw, simclock)
import os as _esp_os  # noqa: F401  (the ESP32's view of os, for the firmware)
import simhw  # reads RNSIM_RESET_CAUSE / RNSIM_STATE
import dev_imu  # noqa: F401
import esp  # noqa: F401  (the ESP32 port's esp module: IDF log level)
import select  # noqa: F401  (poll whose timeout passes on the board's clock)
import dev_tape  # noqa: F401
import simclock
import simnames
from flashdev import BoardFlash as _Flash

_env = os.getenv


def _mount():
    img = _env("RNSIM_FLASH")
    if not img:
        return
    dev = _Flash(img, 4096, int(_env("RNSIM_FS_BLOCKS") or 512))
    try:
        fs = vfs.VfsLfs2(dev)
    except OSError:
        vfs.VfsLfs2.mkfs(dev)
        fs = vfs.VfsLfs2(dev)
    vfs.mount(fs, "/")
    os.chdir("/")
    # from here on the host's folders are gone: the board's own sys.path, as on the ESP32
    sys.path[:] = ["", ".frozen", "/lib"]


def _devices():
    import json

    bd_path = _env("RNSIM_BOARD")
    if not bd_path:
        return
    with open(bd_path) as f:
        bd = json.load(f)
    import dev_imu

    tape = _env("RNSIM_TAPE")  # a tape folder (roadnode.sim.tape.write_tapes): the GPS plays at its baud
    src = None
    if tape:
        import dev_tape

        tape += "/" + dev_tape.tape.FILE
        src = dev_tape.ImuTape(tape)
        simhw.attach_uart(bd["uart"]["id"], dev_tape.GpsTape(tape))
    chip = bd["mcu"]["chip"].replace("-", "")  # os.uname().machine as the ESP32 port builds it
    _esp_os._machine = "Generic %s module with %s" % (chip, chip)
    simhw.i2c_pins[bd["i2c"]["id"]] = (bd["i2c"]["scl"], bd["i2c"]["sda"])
    model = (dev_imu.Icm42688 if bd["imu"]["part"] == "icm42688" else dev_imu.Mpu6050)(src)
    simhw.attach_i2c(bd["i2c"]["id"], bd["imu"]["addr"], model)
    if bd.get("supply"):
        simhw.adc_uv[bd["supply"]["adc_pin"]] = int(machine.SUPPLY_RUN_UV / bd["supply"]["divider"])


# With `-i` the unix port opens the REPL even after a SystemExit from the script, so a reset
# raised while boot.py/main.py runs ends the process with a signal the supervisor maps back.
_SIGNALS = {0: "USR1", 3: "USR2", 4: "TERM"}


def _exit(code):
    os.system("kill -%s $PPID" % _SIGNALS.get(code, "USR2"))
    while True:
        pass


def _run(name):
    try:
        os.stat(name)
    except OSError:
        return
    try:
        exec(open(name).read(), {"__name__": "__main__"})
    except SystemExit as e:  # resets (simhw): the interpreter ends here
        _exit(e.args[0] if e.args else 0)
    except KeyboardInterrupt:
        print("KeyboardInterrupt")  # like the ESP32: Ctrl-C in main.py drops to the REPL
    except BaseException as e:
        sys.print_exception(e)


import simclock

if _env("RNSIM_REALTIME") == "1":
    simclock.set_realtime(True)
    simclock.set_cpu_ratio(0)  # the wall clock already is the board's clock


def _idle_watch():
    """Realtime: the ESP32's watchdog and soft timers keep running while the interpreter waits
    at the REPL (where no shim reads the clock). A thread looks in every 20 ms."""
    import utime
    import _thread

    def run():
        """Every 20 ms, if the firmware is not reading the clock, advance watchdog and timers."""
        while True:
            utime.sleep_ms(20)
            if simhw.wdt_deadline_us < 0 and not simhw.timers:
                continue
            if utime.ticks_diff(utime.ticks_us(), simclock._t0) - simclock._now < 50000:
                continue  # the firmware reads the clock itself: the shims do it there
            try:
                simhw.on_clock(simclock.now_us())
            except SystemExit as e:
                _exit(e.args[0] if e.args else 4)
            except Exception:
                pass

    _thread.start_new_thread(run, ())


if simclock.realtime():
    _idle_watch()
if _env("RNSIM_FAULTS"):
    import json

    simhw.faults.update(json.loads(_env("RNSIM_FAULTS")))
# Ctrl-C interrupts the board's code from boot.py on, never the simulation's start (the ESP32's ROM
# and MicroPython's C start-up): the supervisor takes it as an interrupt only once this file says so
# (board.py _interrupt_armed). Opened now: once the image is mounted at '/' the host's folders are out of reach.
_booted = None
if simhw.state_dir:
    try:
        _booted = open(simhw.state_dir + "/booted", "wb")
    except OSError:
        pass
_devices()
_mount()
simnames.pay_for_pools()  # the name pools the simulation's own names call for are its heap, not the firmware's
simclock.mark()  # the firmware's CPU time starts here (the simulation's setup is not the ESP32's)
if _booted is not None:
    _booted.write(b"1")
    _booted.close()
_run("boot.py")
if _env("RNSIM_RAW") != "1":
    _run("main.py")
