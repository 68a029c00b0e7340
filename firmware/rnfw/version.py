VERSION = (0, 3, 0)
VERSION_STR = "%d.%d.%d" % VERSION
