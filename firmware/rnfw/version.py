VERSION = (0, 4, 0)
VERSION_STR = "%d.%d.%d" % VERSION
