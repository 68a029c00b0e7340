"""The ``roadnode`` command line: a thin layer over the library.

Subcommands are loaded lazily (``name -> "module:attribute"``) so that ``roadnode --help`` and
quick commands do not pay for importing numpy/scipy/matplotlib.
"""

from __future__ import annotations

import importlib
import sys

import click

from roadnode import __version__
from roadnode.errors import RoadnodeError

# name -> "module:attr" of a click command or group. Each lives in its own module under cli/.
COMMANDS: dict[str, str] = {
    "iri": "roadnode.cli.iri:iri",
    "scenario": "roadnode.cli.scenario:scenario",
    "nmea": "roadnode.cli.nmea:nmea",
    "demo": "roadnode.cli.demo:demo",
    "decode": "roadnode.cli.decode:decode",
    "estimate": "roadnode.cli.estimate:estimate",
    "sim": "roadnode.cli.sim:sim",
    "monitor": "roadnode.cli.monitor:monitor",
    "status": "roadnode.cli.status:status",
    "config": "roadnode.cli.config:config",
    "flash": "roadnode.cli.flash:flash",
    "replay": "roadnode.cli.replay:replay",
    "collect": "roadnode.cli.collect:collect",
    "fleet": "roadnode.cli.fleet:fleet",
    "serve": "roadnode.cli.serve:serve",
    "capture": "roadnode.cli.capture:capture",
    "calibrate": "roadnode.cli.calibrate:calibrate",
    "tls-ca": "roadnode.cli.tlsca:tls_ca",
}


class LazyGroup(click.Group):
    """click's lazy-loading group: a subcommand's module is imported only when that command runs or
    the command list is shown, so start-up pays for click alone. Heavy libraries (numpy, scipy,
    serial, MQTT, Flask...) are imported inside the commands that use them: tests/cli/test_cli_startup.py
    checks that `roadnode --help` imports none."""

    def list_commands(self, ctx):
        """Every registered command name, sorted, without importing anything."""
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        """The click command registered under ``name`` (imported now), or None if there is none."""
        target = COMMANDS.get(name)
        if target is None:
            return None
        mod_name, attr = target.split(":")
        cmd = getattr(importlib.import_module(mod_name), attr)
        if not isinstance(cmd, click.Command):
            raise TypeError(f"COMMANDS[{name!r}] = {target!r} is not a click command")
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="roadnode")
def cli():
    """roadnode: road-roughness sensor nodes, road science and board tools.

    Exit codes: 0 ok, 1 a check failed, 2 bad input or usage, 3 device unreachable or
    misbehaving, 130 interrupted.
    """


def main(argv=None):
    """Console-script entry point: library errors become one clear line and an exit code."""
    try:
        cli.main(args=argv, prog_name="roadnode", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return e.code
    except click.exceptions.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:  # `roadnode scenario`: the help
            click.echo(e.ctx.get_help())
            return e.exit_code
        where = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
        click.echo(f"error: {one_line(e.format_message())}{where}", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {one_line(e.format_message())}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except RoadnodeError as e:
        click.echo(f"error: {one_line(str(e))}", err=True)
        return e.exit_code
    return 0


def one_line(msg: str) -> str:
    """A message as one printable line: file names and data quoted in it may hold newlines or
    control characters, which would split the line or drive the terminal."""
    msg = " ".join(msg.split("\n")).strip()
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)


def entry():
    """The `roadnode` console script: exit with :func:`main`'s code."""
    sys.exit(main())
