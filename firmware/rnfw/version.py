VERSION = (0, 1, 0)
VERSION_STR = "%d.%d.%d" % VERSION
