VERSION = (0, 2, 0)
VERSION_STR = "%d.%d.%d" % VERSION
