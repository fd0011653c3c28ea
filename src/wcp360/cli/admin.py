"""`wcp360 admin ...`: account administration for the host administrator (seed 003 shapes)."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, host, read_password, runtime_from
from wcp360.cli.output import json_text, table, terminal_safe

if TYPE_CHECKING:
    from wcp360.identity.views import UserView

app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)

Username = Annotated[str, typer.Option("--username", "-u", help="Account name")]
PasswordOpt = Annotated[str | None, typer.Option("--password", help="'-' reads it from stdin; omitted: prompt")]


def _split(values: list[str] | None) -> list[str]:
    return [r.strip() for v in values or [] for r in v.split(",") if r.strip()]


@app.command("create-user")
def create_user(
    username: Username,
    email: Annotated[str, typer.Option("--email")],
    roles: Annotated[list[str], typer.Option("--roles", help="Comma-separated or repeated")],
    password: PasswordOpt = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an account."""
    secret = read_password(password)
    with runtime_from(config_dir, data_dir) as rt:
        user = rt.users.create(host(), username, email, secret, _split(roles))
    typer.echo(f"created user {user.username} ({user.id}) with roles {', '.join(user.roles)}")


@app.command("update-user")
def update_user(
    username: Username,
    add_roles: Annotated[list[str] | None, typer.Option("--add-roles")] = None,
    remove_roles: Annotated[list[str] | None, typer.Option("--remove-roles")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Change an account's roles or email."""
    with runtime_from(config_dir, data_dir) as rt:
        user_id = rt.users.find_id(username)
        if email is not None:
            rt.users.update(host(), user_id, email=email)
        user = rt.users.change_roles(host(), user_id, _split(add_roles), _split(remove_roles))
    typer.echo(f"updated user {user.username}: roles {', '.join(user.roles) or '(none)'}")


@app.command("disable-user")
def disable_user(username: Username, config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Disable an account: its sessions and tokens stop working at once."""
    with runtime_from(config_dir, data_dir) as rt:
        rt.users.set_status(host(), rt.users.find_id(username), "disabled")
    typer.echo(f"disabled user {username}")


@app.command("enable-user")
def enable_user(username: Username, config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Enable a disabled account."""
    with runtime_from(config_dir, data_dir) as rt:
        rt.users.set_status(host(), rt.users.find_id(username), "active")
    typer.echo(f"enabled user {username}")


@app.command("delete-user")
def delete_user(username: Username, config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Delete an account and everything it owns."""
    with runtime_from(config_dir, data_dir) as rt:
        rt.users.delete(host(), rt.users.find_id(username))
    typer.echo(f"deleted user {username}")


@app.command("reset-password")
def reset_password(
    username: Username,
    password: PasswordOpt = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set a new password and end the account's sessions."""
    secret = read_password(password, "New password")
    with runtime_from(config_dir, data_dir) as rt:
        rt.users.reset_password(host(), rt.users.find_id(username), secret)
    typer.echo(f"password reset for {username}; its sessions were ended")


@app.command("reset-2fa")
def reset_2fa(username: Username, config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Remove an account's second factor and recovery codes (it must enrol again)."""
    with runtime_from(config_dir, data_dir) as rt:
        rt.users.reset_two_factor(host(), rt.users.find_id(username))
    typer.echo(f"two-factor authentication reset for {username}")


@app.command("link-identity")
def link_identity(
    username: Username,
    provider: Annotated[str, typer.Option("--provider", help="The provider's name in security.yml")],
    subject: Annotated[str, typer.Option("--subject", help="Its stable id: OIDC `sub`, LDAP entryUUID")],
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Link an account to an identity at a provider (never by email: by the provider's subject)."""
    with runtime_from(config_dir, data_dir) as rt:
        issuer = rt.auth.providers.issuer_of(provider)
        rt.users.link_identity(host(), rt.users.find_id(username), provider, issuer, subject)
    typer.echo(f"{username} now signs in through {provider} as subject {terminal_safe(subject)}")


@app.command("unlink-identity")
def unlink_identity(
    username: Username,
    provider: Annotated[str, typer.Option("--provider")],
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove an account's link to a provider; its sessions end."""
    with runtime_from(config_dir, data_dir) as rt:
        rt.users.unlink_identity(host(), rt.users.find_id(username), provider)
    typer.echo(f"{username} no longer signs in through {provider}; its sessions were ended")


@app.command("list-users")
def list_users(
    output: Annotated[Literal["table", "json", "csv"], typer.Option("--format")] = "table",
    status: Annotated[str | None, typer.Option("--status")] = None,
    role: Annotated[str | None, typer.Option("--role")] = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List accounts."""
    with runtime_from(config_dir, data_dir) as rt:
        users, _ = rt.users.list_users(host(), limit=1_000_000, status=status, role=role)
    typer.echo(render_users(users, output), nl=False)


COLUMNS = ("username", "email", "roles", "sign_in", "status", "totp_enabled", "last_login_at", "id")


def render_users(users: list[UserView], output: str) -> str:
    if output == "json":
        return json_text([u.model_dump() for u in users]) + "\n"
    rows = [[",".join(getattr(u, c)) if c in ("roles", "sign_in") else getattr(u, c) for c in COLUMNS] for u in users]
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([terminal_safe(cell) for cell in row] for row in rows)
        return buffer.getvalue()
    return table(COLUMNS, rows)
