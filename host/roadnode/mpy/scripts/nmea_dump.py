# Runs on MicroPython: the firmware's NMEA parser over a captured log, one line per sentence.
# Usage: micropython nmea_dump.py LOGFILE
# Output lines: "S<TAB>line<TAB>type<TAB>error<TAB>has_pos<TAB>lat_e7<TAB>lon_e7<TAB>speed_mmps<TAB>tod_ms<TAB>sentence"
# then "C<TAB>name=value..." counters. Reading in 256-byte chunks keeps the heap flat for any size.
import sys
from rnfw import nmea


def report(p, t, err):
    """Print one parsed sentence as a tab-separated S line."""
    sys.stdout.write(
        "S\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n"
        % (p.start_line, nmea.TYPES[t], nmea.ERRORS[err], 1 if p.s_has_pos else 0, p.s_lat_e7,
           p.s_lon_e7, p.s_speed_mmps, p.s_tod_ms, p.sentence().decode())
    )


def main(path):
    """Parse an NMEA file as the node does; print each sentence, then the parser's counters."""
    p = nmea.NmeaParser(callback=report)
    buf = bytearray(256)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            p.feed(buf, n)
    for k in ("sentences_ok", "checksum_errors", "malformed", "overflows", "ignored", "fixes", "line"):
        sys.stdout.write("C\t%s\t%d\n" % (k, getattr(p, k)))


main(sys.argv[1])
