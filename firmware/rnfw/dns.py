"""A DNS A-record query and its answer, over UDP, for the MQTT client (rnfw.mqtt): the query is
sent and the answer read over later passes, so a host name never blocks the main loop. A separate
module: a node given an IP address never loads it (heap). encode() makes a query, decode() reads
the answer."""


def _skipname(d, o):
    n = len(d)
    while True:
        if o >= n:
            raise ValueError("dns reply cut short")
        b = d[o]
        if b == 0:
            return o + 1
        if b & 0xC0 == 0xC0:  # compression pointer ends the name
            return o + 2
        if b & 0xC0:
            raise ValueError("dns reply: bad label")
        o += b + 1


def decode(d, tid):
    """The first A record of DNS reply d to query id tid as 'a.b.c.d'; None if d is not the reply
    to that query; ValueError for an error reply, a malformed one, or one without an address."""
    n = len(d)
    if n < 12 or (d[0] << 8 | d[1]) != tid or not d[2] & 0x80:
        return None
    if d[3] & 15:
        raise ValueError("dns rcode %d" % (d[3] & 15))
    o = 12
    for _ in range(d[4] << 8 | d[5]):
        o = _skipname(d, o) + 4
    for _ in range(d[6] << 8 | d[7]):
        o = _skipname(d, o)
        if o + 10 > n:
            raise ValueError("dns reply cut short")
        ln = d[o + 8] << 8 | d[o + 9]
        a = o + 10
        if a + ln > n:
            raise ValueError("dns reply cut short")
        if d[o + 1] == 1 and d[o] == 0 and d[o + 2] == 0 and d[o + 3] == 1 and ln == 4:
            return "%d.%d.%d.%d" % (d[a], d[a + 1], d[a + 2], d[a + 3])
        o = a + ln
    raise ValueError("dns no address")


def encode(name, tid):
    """A recursive DNS query for the A record of name (bytes or str)."""
    if isinstance(name, str):
        name = name.encode()
    q = bytearray(18 + len(name))
    q[0] = tid >> 8
    q[1] = tid & 0xFF
    q[2] = 1  # recursion desired
    q[5] = 1  # one question
    o = 12
    for label in name.split(b"."):
        n = len(label)
        if not 0 < n < 64:
            raise ValueError("bad host name")
        q[o] = n
        q[o + 1 : o + 1 + n] = label
        o += n + 1
    q[o + 2] = 1  # QTYPE A (q[o] = 0 ends the name)
    q[o + 4] = 1  # QCLASS IN
    return q
