"""`wcp360 site list|create|show|certify|delete|upload`: tenants' websites, as the host
administrator (the service and audit events of /api/v1/tenants/{id}/sites)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, fail, host, runtime_from
from wcp360.cli.output import json_text, table

if TYPE_CHECKING:
    from wcp360.hosting.views import SiteView

app = typer.Typer(help="Tenants' websites: nginx, certificates, uploads.", no_args_is_help=True)
Format = Annotated[Literal["table", "json"], typer.Option("--format")]
COLUMNS = ("name", "domains", "kind", "certificate", "expires", "serving", "document root")
CHUNK = 1024 * 1024


def _print(sites: list[SiteView], output: str) -> None:
    if output == "json":
        typer.echo(json_text([s.model_dump() for s in sites]))
        return
    rows = [
        [s.name, " ".join(s.domains), s.kind, s.certificate.status, s.certificate.not_after, s.serving, s.document_root]
        for s in sites
    ]
    typer.echo(table(COLUMNS, rows), nl=False)
    for site in sites:
        if site.certificate.error:
            typer.echo(f"{site.name}: certificate: {site.certificate.error} (next try {site.certificate.next_attempt})")


@app.command("list")
def list_sites(
    tenant: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """The tenant's sites and their certificates."""
    with runtime_from(config_dir, data_dir) as rt:
        _print(rt.sites.list(host(), rt.tenants.find_id(host(), tenant)), output)


@app.command()
def create(
    tenant: str,
    name: Annotated[str, typer.Argument(help="a-z first, then a-z 0-9 -, at most 32")],
    domains: Annotated[list[str], typer.Argument(help="its names (IDNA: Unicode names are welcome)")],
    kind: Annotated[Literal["static", "php", "proxy"], typer.Option("--kind")] = "static",
    process: Annotated[str | None, typer.Option("--process", help="php/proxy: the tenant's process")] = None,
    root: Annotated[str | None, typer.Option("--root", help="beneath public/ (default: the name)")] = None,
    autoindex: Annotated[bool, typer.Option("--autoindex")] = False,
    hsts: Annotated[bool, typer.Option("--hsts/--no-hsts")] = True,
    output: Format = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a site; it is served, and its certificate issued, when this returns."""
    from pydantic import ValidationError

    from wcp360.system.protocol import SiteSpec

    try:
        spec = SiteSpec(
            name=name, domains=domains, kind=kind, process=process, root=root, autoindex=autoindex, hsts=hsts
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(map(str, first['loc'])) or 'site'}: {str(first['msg']).removeprefix('Value error, ')}", 2)
    with runtime_from(config_dir, data_dir) as rt:
        made = rt.sites.create(host(), rt.tenants.find_id(host(), tenant), spec)
    _print([made], output)


@app.command()
def show(
    tenant: str, name: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """One of the tenant's sites."""
    with runtime_from(config_dir, data_dir) as rt:
        _print([rt.sites.get(host(), rt.tenants.find_id(host(), tenant), name)], output)


@app.command()
def certify(
    tenant: str, name: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """Issue (or renew) the site's certificate now."""
    with runtime_from(config_dir, data_dir) as rt:
        _print([rt.sites.certify(host(), rt.tenants.find_id(host(), tenant), name)], output)


@app.command()
def delete(
    tenant: str,
    name: str,
    confirm: Annotated[str, typer.Option("--confirm", help="the site's name again")],
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove the site and revoke its certificate (its files stay in the home)."""
    with runtime_from(config_dir, data_dir) as rt:
        gone = rt.sites.delete(host(), rt.tenants.find_id(host(), tenant), name, confirm)
    revoked = {True: "revoked", False: "not revoked (the CA refused)", None: "nothing to revoke"}[gone.revoked]
    typer.echo(f"site {name} of {tenant} deleted; certificate {revoked}")


@app.command()
def upload(
    tenant: str,
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    path: Annotated[str, typer.Option("--path", help="beneath the document root (an archive: where it unpacks)")] = "",
    unpack: Annotated[bool, typer.Option("--unpack/--no-unpack", help="unpack a .zip, .tar, .tar.gz, .tgz")] = True,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Put a file, or an archive's files, into the site (checked and scanned before anything lands)."""
    lowered = file.name.lower()
    kind: Literal["file", "zip", "tar"] = "file"
    if unpack and lowered.endswith(".zip"):
        kind = "zip"
    elif unpack and lowered.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")):
        kind = "tar"
    target = path or (file.name if kind == "file" else "")
    with runtime_from(config_dir, data_dir) as rt:
        tenant_id = rt.tenants.find_id(host(), tenant)
        with rt.sites.staging() as staged, file.open("rb") as source:
            while chunk := source.read(CHUNK):
                staged.write(chunk)
            staged.close()
            done = rt.sites.upload(host(), tenant_id, name, kind, target, staged)
    scanned = "scanned" if done.scanned else "not scanned"
    typer.echo(f"{done.files} files, {done.directories} directories, {done.bytes} bytes into {name} ({scanned})")
