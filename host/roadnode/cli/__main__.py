from roadnode.cli import entry

entry()
