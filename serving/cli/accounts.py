"""The admin's ``kiln tenants create``, ``kiln keys create|list|revoke`` and
``kiln credits grant``, directly on the database at ``KILN_DATABASE_URL`` (no server
needed)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from serving.cli.base import Command, CommandFailed, Group
from serving.core.settings import Settings


@contextlib.contextmanager
def _accounts(settings: Settings) -> Iterator[Any]:
    """Accounts on the configured database, closed afterwards; unknown ids and refused
    amounts become errors."""
    from serving.core.accounts import Accounts, UnknownKey
    from serving.core.ledger import CreditsLimit, Ledger, UnknownTenant

    accounts = Accounts(Ledger.of(settings))
    try:
        yield accounts
    except (UnknownTenant, UnknownKey, CreditsLimit) as exc:
        raise CommandFailed(str(exc)) from None
    finally:
        accounts.ledger.close()


def cmd_tenants_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a tenant; print its id."""
    with _accounts(settings) as accounts:
        tenant = accounts.create_tenant(args.name)
    print(f"tenant {tenant.id}  name={tenant.name}")
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key; print it (the only time it is shown)."""
    with _accounts(settings) as accounts:
        issued = accounts.create_key(args.tenant_id, role=args.role)
    print(f"key {issued.record.id}  tenant={issued.record.tenant_id}  role={issued.record.role}")
    print("API key (shown once; only its hash is stored):")
    print(f"  {issued.key}")
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    """List a tenant's keys by prefix."""
    with _accounts(settings) as accounts:
        keys = accounts.keys(args.tenant_id)
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "live"
        print(f"{key.id}  {key.prefix}…  role={key.role}  {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a key."""
    with _accounts(settings) as accounts:
        key = accounts.revoke(args.key_id)
    print(f"revoked {key.id} ({key.prefix}…)")
    return 0


def cmd_credits_grant(args: argparse.Namespace, settings: Settings) -> int:
    """Grant credits to a tenant; print the new balance."""
    from serving.core.credits.balances import grant

    if args.amount <= 0:
        print("kiln: the amount must be a positive whole number of credits", file=sys.stderr)
        return 2
    with _accounts(settings) as accounts:
        balance = grant(accounts.ledger, args.tenant_id, args.amount, "cli grant")
    print(f"tenant {args.tenant_id}: balance {balance.available} (held {balance.held})")
    return 0


def _tenant_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")


def _tenant_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tenant_id")


def _key_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tenant_id")
    parser.add_argument("--role", choices=("tenant", "admin"), default="tenant")


def _key_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key_id")


def _grant_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tenant_id")
    parser.add_argument("amount", type=int)


TENANTS = Group(
    "tenants",
    "tenants (on the database)",
    (Command("create", "create a tenant", cmd_tenants_create, _tenant_name),),
)
KEYS = Group(
    "keys",
    "API keys (on the database)",
    (
        Command("create", "create a key, printed once", cmd_keys_create, _key_create_arguments),
        Command("list", "a tenant's keys, by prefix", cmd_keys_list, _tenant_id),
        Command("revoke", "revoke a key", cmd_keys_revoke, _key_id),
    ),
)
CREDITS = Group(
    "credits",
    "credits (on the database)",
    (Command("grant", "grant credits to a tenant", cmd_credits_grant, _grant_arguments),),
)
