"""edgekit bundle / deploy / status / doctor: flags in, one library call, a table out."""

from __future__ import annotations

import asyncio
import functools

import click

from ..errors import ConfigError, DeployError
from ._common import THREADS, OutputFile, emit, json_option, quiet_option

_HOST_KEY = click.Choice(["strict", "accept-new", "off"])


class DeployInterrupted(DeployError):
    """Ctrl-C: every row says where its device stopped and what serves there."""

    exit_code = 130


def _raise_for(rows, host):
    """One device: its failure (or interruption) is the message. Several: a count naming each."""
    bad = [r for r in rows if r["status"] in ("failed", "interrupted")]
    if not bad:
        return
    stopped = [r for r in bad if r["status"] == "interrupted"]
    if host:
        r = bad[0]
        if r["status"] == "interrupted":
            raise DeployInterrupted(f"{r['host']}: {r['error']}")
        raise DeployError(f"{r['host']}: step '{r['step']}' failed: {r['error']}")
    if stopped:
        raise DeployInterrupted(f"interrupted (Ctrl-C): {len(stopped)} of {len(rows)} devices stopped early: "
                                + "; ".join(f"{r['host']}: {r['error']}" for r in stopped))
    raise DeployError(f"{len(bad)} of {len(rows)} devices failed: "
                      + ", ".join(f"{r['host']} ({r['step']})" for r in bad))


def ssh_options(f):
    """Connection flags shared by deploy, status and doctor."""
    opts = [
        click.option("--host", "host", metavar="USER@HOST", help="The device, e.g. pi@raspberrypi.local (or :PORT)."),
        click.option("--hosts", "inventory", metavar="INVENTORY.yaml", type=click.Path(dir_okay=False),
                     help="Many devices from an inventory file (run in parallel)."),
        click.option("--port", type=click.IntRange(1, 65535), help="SSH port (default 22)."),
        click.option("--key", type=click.Path(dir_okay=False), help="SSH private key (default: agent / ~/.ssh)."),
        click.option("--known-hosts", type=click.Path(dir_okay=False),
                     help="known_hosts file (default ~/.ssh/known_hosts)."),
        click.option("--host-key-check", type=_HOST_KEY, default="strict", show_default=True,
                     help="accept-new trusts a device seen for the first time and records its key."),
        click.option("--root", help="Deploy folder on the device (default from the profile: ~/edgekit)."),
        click.option("--python", "python_cmd", help="Python on the device (default from the profile: python3)."),
        click.option("--concurrency", type=click.IntRange(1, 256), help="Devices at a time with --hosts (default 4)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _targets(host, inventory, port, key, known_hosts, host_key_check, opts):
    from ..deploy.fleet import load_inventory
    from ..deploy.ssh import Target

    if bool(host) == bool(inventory):
        raise ConfigError("Give exactly one of --host USER@HOST or --hosts INVENTORY.yaml"
                          + ("; received both" if host else ""))
    tkw = {"port": port, "key": key, "known_hosts": known_hosts, "host_key_check": host_key_check}
    if inventory:
        return load_inventory(inventory, {k: v for k, v in tkw.items() if v is not None}, opts)
    return [(Target.parse(host, **tkw), opts)], None


def _run_all(items, fn, concurrency):
    from ..deploy.fleet import run_fleet
    from ..deploy.ssh import require_asyncssh

    require_asyncssh()  # a missing asyncssh is one clear error, not one failed row per device

    return asyncio.run(run_fleet(items, fn, concurrency))


def _echo_progress(quiet):
    if quiet:
        return None
    return lambda host, step: click.echo(f"[{host}] {step} ...", err=True)


# -- bundle -------------------------------------------------------------------------------------

@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--profile", "-p", required=True, help="Device profile name (edgekit devices --profiles) or YAML path.")
@click.option("--out", "-o", required=True, type=OutputFile(stdout=False), help="Bundle file to write (.tar.gz).")
@click.option("--version", "version", help="Release name on the device (default: <model>-<UTC time>-<hash>).")
@click.option("--device", help="Runtime device on the target (default: the profile's preferred device).")
@click.option("--threads", type=THREADS, help="Inference threads (default: the profile's).")
@click.option("--serve-host", help="Address the server binds on the device (default: the profile's service.host).")
@click.option("--serve-port", type=click.IntRange(1, 65535), help="Server port (default: the profile's, 8080).")
@click.option("--with-wheels", is_flag=True, help="Carry every runtime wheel for the device (no internet there).")
@click.option("--python-version", help="Device Python for carried wheels, e.g. 3.11 (default: the profile's).")
@click.option("--sign", "sign_key", metavar="KEY", type=click.Path(dir_okay=False),
              help="Sign the bundle with this OpenSSH private key (ssh-keygen -Y sign); devices with an "
                   "allowed-signers file refuse bundles not signed by a key in it.")
@quiet_option
@json_option
def bundle(model, profile, out, version, device, threads, serve_host, serve_port, with_wheels, python_version,
           sign_key, quiet, json_path):
    """Build a deployable bundle: model, manifest with checksums, runtime requirements, service, smoke test."""
    from ..deploy.bundle import build_bundle, describe

    if with_wheels and not quiet:
        click.echo(f"collecting the runtime wheels for {profile} (pip download) ...", err=True)

    manifest = build_bundle(model, profile, out, version=version, device=device, threads=threads, host=serve_host,
                            port=serve_port, with_wheels=with_wheels, python_version=python_version, sign=sign_key)
    row = {**describe(manifest), "out": out, "signed": sign_key is not None}
    emit([row], json_path, payload={k: v for k, v in manifest.items() if k != "profile"})


# -- deploy -------------------------------------------------------------------------------------

@click.command()
@click.argument("bundle_path", metavar="BUNDLE", required=False, type=click.Path(dir_okay=False))
@ssh_options
@click.option("--serve-host", help="Address the server binds on the device (kept across releases; default: the bundle's).")
@click.option("--serve-port", type=click.IntRange(1, 65535),
              help="Server port on the device (kept across releases; default: the bundle's).")
@click.option("--pip-arg", "pip_args", multiple=True, help="Extra pip argument on the device (repeatable).")
@click.option("--health-timeout", type=click.FloatRange(1), default=60.0, show_default=True,
              help="Seconds to wait for the server to become ready.")
@click.option("--rollback", is_flag=True, help="Switch back to the previous release instead of deploying.")
@click.option("--to", "to_version", help="With --rollback: the release to go back to.")
@click.option("--profile", help="With --rollback: profile for the device defaults (python, root).")
@click.option("--allowed-signers", type=click.Path(exists=True, dir_okay=False),
              help="Install this allowed-signers file (ssh-keygen(1) format) on the device: from then on it deploys "
                   "only bundles signed (edgekit bundle --sign) by a key in it.")
@click.option("--unsigned", type=click.Choice(["accept", "refuse"]),
              help="The device's policy for unsigned bundles (default: refuse once it has allowed signers).")
@quiet_option
@json_option
def deploy(bundle_path, host, inventory, port, key, known_hosts, host_key_check, root, python_cmd, concurrency,
           serve_host, serve_port, pip_args, health_timeout, rollback, to_version, profile, allowed_signers, unsigned,
           quiet, json_path):
    """Deploy a bundle over SSH: preflight, upload, verify, install, smoke test, switch, health check.

    Any failure leaves (or puts back) the previous release serving and names the step that failed.
    """
    from ..deploy.deploy import (DeployOptions, check_bundle_path, check_options, deploy_host, resolve_profile,
                                 rollback_host)
    from ..deploy.fleet import summary_rows

    opts = DeployOptions(root=root, python=python_cmd, serve_host=serve_host, serve_port=serve_port,
                         pip_args=list(pip_args), health_timeout=health_timeout, allowed_signers=allowed_signers,
                         unsigned=unsigned)
    check_options(opts)
    if rollback:
        if bundle_path:
            raise ConfigError(f"--rollback takes no bundle; received {bundle_path!r}. Roll back, or deploy the bundle")
        prof = resolve_profile(profile)
        fn = functools.partial(_rollback_one, rollback_host, prof, to_version)
    else:
        if to_version or profile:
            raise ConfigError("--to and --profile only go with --rollback (a bundle carries its own profile)")
        path = check_bundle_path(bundle_path)
        fn = functools.partial(_deploy_one, deploy_host, path, _echo_progress(quiet))
    items, inv_conc = _targets(host, inventory, port, key, known_hosts, host_key_check, opts)
    rows = _run_all(items, fn, concurrency or inv_conc or 4)
    if host:  # one device: the failure is the message
        _raise_for(rows, host)
    emit(summary_rows(rows), json_path, payload=rows)
    _raise_for(rows, None)


async def _deploy_one(deploy_host, path, progress, target, opts):
    return await deploy_host(path, target, opts, progress=progress)


async def _rollback_one(rollback_host, profile, to_version, target, opts):
    return await rollback_host(target, opts, profile=profile, to=to_version)


# -- status -------------------------------------------------------------------------------------

@click.command()
@ssh_options
@click.option("--profile", help="Profile for the device defaults (python, root).")
@json_option
def status(host, inventory, port, key, known_hosts, host_key_check, root, python_cmd, concurrency, profile,
           json_path):
    """What a device runs: release, service state, health, latency figures measured there."""
    from ..deploy.deploy import DeployOptions, check_options, resolve_profile, status_host, status_row

    opts = DeployOptions(root=root, python=python_cmd)
    check_options(opts)
    prof = resolve_profile(profile)

    async def one(target, o):
        st = await status_host(target, o, prof)
        st["status"] = "ok"
        return st

    items, inv_conc = _targets(host, inventory, port, key, known_hosts, host_key_check, opts)
    rows = _run_all(items, one, concurrency or inv_conc or 4)
    if host:
        _raise_for(rows, host)
    table = [status_row(r) if r["status"] == "ok" else
             {"host": r["host"], "release": "?", "service": "unreachable" if r["status"] == "failed" else r["status"],
              "ready": None} for r in rows]
    emit(table, json_path, payload=rows)
    if any(r["status"] == "interrupted" for r in rows):
        _raise_for(rows, None)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise DeployError(f"{len(failed)} of {len(rows)} devices did not answer: "
                          + "; ".join(f"{r['host']}: {r['error']}" for r in failed))


# -- doctor -------------------------------------------------------------------------------------

@click.command()
@click.option("--profile", "-p", required=True, help="Device profile name or YAML path.")
@click.option("--host", metavar="USER@HOST", help="Check this device over SSH instead of this machine.")
@click.option("--port", type=click.IntRange(1, 65535))
@click.option("--key", type=click.Path(dir_okay=False))
@click.option("--known-hosts", type=click.Path(dir_okay=False))
@click.option("--host-key-check", type=_HOST_KEY, default="strict", show_default=True)
@click.option("--root", help="Deploy folder to check free disk at (default from the profile).")
@click.option("--python", "python_cmd", help="Python on the device (default from the profile).")
@json_option
def doctor(profile, host, port, key, known_hosts, host_key_check, root, python_cmd, json_path):
    """Check a machine against a device profile and say what is missing (exit 2 if anything is)."""
    from ..deploy.deploy import DeployOptions, check_options
    from ..deploy.doctor import check_local, check_remote
    from ..deploy.ssh import Target
    from ..devices import load_profile

    prof = load_profile(profile)
    check_options(DeployOptions(root=root, python=python_cmd))
    if host:
        target = Target.parse(host, port=port, key=key, known_hosts=known_hosts, host_key_check=host_key_check)
        rows = asyncio.run(check_remote(target, prof, DeployOptions(root=root, python=python_cmd)))
        where = target.label
    else:
        if any(v is not None for v in (port, key, known_hosts)):
            raise ConfigError("--port, --key and --known-hosts only go with --host")
        rows = check_local(prof, root)
        where = "this machine"
    emit(rows, json_path, columns=["check", "wanted", "found", "ok", "fix"],
         title=f"{where} against profile {prof.name}:")
    missing = [r["check"] for r in rows if r["ok"] is False]
    if missing:
        raise DeployError(f"{where} is missing what {prof.name} needs: {', '.join(missing)}")
