# Runs on MicroPython: the firmware's measuring pipeline over a tape (roadnode.mpy.lib.tape, the
# reader the golden model uses under CPython), batched by rnfw.pipeline.run_batches.
# Usage: micropython estimate.py TAPE CONFIG_JSON   (runtime.micropython_env puts tape on the path)
# Prints "S" lines (segments) and "E" lines (events) as tab-separated integers.
import sys
from array import array

import tape
from rnfw import config
from rnfw.pipeline import Pipeline, run_batches

path, config_path = sys.argv[1:3]
cfg, _ = config.load(config_path)
imu = tape.ImuReader(path)
gps = tape.GpsReader(path)
pipe = Pipeline(cfg, imu.odr_hz, imu.period_ms, imu.lsb_per_g)
samples = array("h", bytes(2 * 3 * 128))
gbuf = bytearray(256)
out = sys.stdout
for t in run_batches(pipe, imu, gps, samples, gbuf):
    q = pipe.est.closed
    while q.n:
        o = q.first()
        out.write("S\t" + "\t".join(str(q.buf[o + i]) for i in range(10)) + "\n")
        q.pop()
    q = pipe.est.events
    while q.n:
        o = q.first()
        out.write("E\t" + "\t".join(str(q.buf[o + i]) for i in range(6)) + "\n")
        q.pop()
